"""Canonical string form of an answer (LaTeX spacing, wrappers, units, degrees, separators, lists, matrices).

Every rule here is a general rewrite that keeps the answer's meaning: it may merge two spellings of one object,
never two objects. Where a rewrite could glue two numbers together (``2 3`` -> ``23``) it keeps a separator.
"""

from __future__ import annotations

import re
from typing import Any

from .limits import MAX_ANSWER_CHARS
from .structures import _balanced

_UNIT_WORDS = (
    "degrees|degree|deg|cm|mm|km|meters|meter|metres|metre|inches|inch|feet|foot|ft|yards|yard|miles|mile|mph|"
    "seconds|second|sec|minutes|minute|min|hours|hour|hrs|hr|days|day|weeks|week|years|year|yr|months|month|"
    "cents|cent|dollars|dollar|units|unit|sq|square|cubic|kg|grams|gram|mg|liters|liter|ml|kcal|cal|Hz|kHz|MHz|"
    "GHz|eV|keV|MeV|GeV|nm|pc|kpc|Mpc|AU|ly|Angstroms|Angstrom|rad|radians|mol|Pa|atm|sr|arcsec|arcmin|"
    "points|point|people|students|ways|times|pounds|lbs|oz"
)
_UNIT_RE = re.compile(rf"(?<![A-Za-z\\])(?:{_UNIT_WORDS})(?:\^\{{?-?\d+\}}?)?(?![A-Za-z])")
# Font and text wrappers: the content is the answer (\text{807} is 807, \mathcal{B} is B).
_WRAPPERS = (
    "text|textbf|textit|textnormal|textrm|textsf|texttt|textup|emph|mbox|hbox|mathrm|mathbf|mathit|mathcal|"
    "mathsf|mathtt|mathbb|mathscr|mathfrak|mathnormal|boldsymbol|bm|operatorname"
)
_WRAPPER_RE = re.compile(rf"\\(?:{_WRAPPERS})\s*(?=\{{)")
_TEXT_RE = re.compile(r"\\text\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad|~|\\displaystyle|\\limits|\\hspace\{[^{}]*\}")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_THOUSANDS_SPACE_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\s\d{3})+(?![\d.])")
_PERCENT_RE = re.compile(
    r"\\?%|\\percent\b|\\text\{\s*(?:percent(?:age)?|pct)\s*\}|\b(?:percent(?:age)?|pct)\b"
)
# "a and b", "a \text{ and } b", "a, and b", "a or b": a list of answers.
_AND_RE = re.compile(
    r",?\s*\\text\{\s*(?:and|or)\s*\}\s*|,?\s+(?:and|or)\s+|(?<=[\d)}\]])(?:and|or)(?=[\d(\\{\[-])"
)
_PRIME_RE = re.compile(r"\^\s*\{\s*\\prime\s*\}|\^\s*\\prime|\\prime|’")
_MATRIX_RE = re.compile(
    r"[(\[]?\s*\\begin\{(pmatrix|bmatrix|Bmatrix|matrix|smallmatrix|array)\}(?:\{[^{}]*\})?(.*?)\\end\{\1\}\s*[)\]]?",
    re.S,
)
_DET_RE = re.compile(r"\\begin\{([vV]matrix)\}(.*?)\\end\{\1\}", re.S)
_DOUBLED_RE = re.compile(
    r"\\\\(?=(?:frac|dfrac|tfrac|sqrt|left|right|pi|cdot|times|text|mathbf|mathrm|infty|boxed|le|ge|leq|geq|in|cup|"
    r"cap|pm|circ|sin|cos|tan|log|ln)(?![A-Za-z]))"
)
_LIST_COMMA_RE = re.compile(r"\d,[ \t]+\d")  # "32, 349" is a list: a space after the comma
_GLUE = "\x03"  # a space between two numbers that must not vanish ("2 3" is not 23)
_INFINITY_WORD_RE = re.compile(r"(?<![\\A-Za-z])(?:inf|infinity|Infinity|INF)(?![A-Za-z])")


def _fix_fracs(s: str) -> str:
    r"""``\frac43`` -> ``\frac{4}{3}``, ``\frac9{19}`` -> ``\frac{9}{19}``, ``\sqrt2`` -> ``\sqrt{2}``."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s+([A-Za-z])\s*([A-Za-z0-9])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d+|[A-Za-z])", r"\\sqrt{\1}", s)
    return s


_UNIT_TEXT_RE = re.compile(r"\\text\s*\{([^{}]*)\}(\^\{?-?\d+\}?)?")


def _unwrap_text(s: str) -> str:
    """``\\text{x}`` -> ``x`` from the innermost block outwards."""
    for _ in range(8):  # bounded: nested wrappers deeper than this stay as they are
        new = _TEXT_RE.sub(lambda m: m.group(1), s)
        if new == s:
            break
        s = new
    return s


def _strip_units(s: str) -> str:
    """Drop ``\\text{unit}`` blocks and known unit words when a number/expression remains."""
    candidate = _UNIT_TEXT_RE.sub(
        lambda m: "" if re.fullmatch(r"[A-Za-z\s.]*", m.group(1)) else m.group(0), s
    )
    candidate = _UNIT_RE.sub("", candidate).strip()
    if candidate and re.search(r"\d", candidate):
        return _unwrap_text(candidate)
    return _unwrap_text(s)  # words only ("\\text{Evelyn}"): unwrap instead


def _canonical_matrices(s: str) -> str:
    """Every matrix environment (and its surrounding brackets) becomes ``\\begin{pmatrix}...\\end{pmatrix}``;
    ``vmatrix`` (a determinant) becomes ``\\det\\begin{pmatrix}...``, so it never equals the matrix itself."""
    s = _DET_RE.sub(lambda m: "\\det\\begin{pmatrix}" + m.group(2) + "\\end{pmatrix}", s)
    return _MATRIX_RE.sub(lambda m: "\\begin{pmatrix}" + m.group(2).strip() + "\\end{pmatrix}", s)


_CHAIN_RE = re.compile(r"([^<>=\\]+?)(<|\\le) ?([A-Za-z](?:\([A-Za-z]\))?)(<|\\le) ?([^<>=\\][^<>=]*)")
_CHAIN_DOWN_RE = re.compile(r"([^<>=\\]+?)(>|\\ge) ?([A-Za-z](?:\([A-Za-z]\))?)(>|\\ge) ?([^<>=\\][^<>=]*)")


def _chain_to_interval(s: str) -> str:
    """``a<x\\le b`` -> ``(a,b]`` and ``b>x\\ge a`` -> ``[a,b)``: a variable between two bounds is an interval."""
    m = _CHAIN_RE.fullmatch(s)
    if m:
        low, lop, _, hop, high = m.groups()
        return ("(" if lop == "<" else "[") + low + "," + high + (")" if hop == "<" else "]")
    m = _CHAIN_DOWN_RE.fullmatch(s)
    if m:
        high, hop, _, lop, low = m.groups()
        return ("(" if lop == ">" else "[") + low + "," + high + (")" if hop == ">" else "]")
    return s


def _plus_minus(s: str) -> str:
    """``a\\pm b`` -> ``a-b,a+b`` (one top-level ``\\pm``: two answers)."""
    if s.count("\\pm") != 1 or "," in s:
        return s
    rhs = strip_lhs(s)
    if rhs is not None:  # "x=1\\pm\\sqrt{2}": the two values of x
        return _plus_minus(rhs)
    if "=" in s:
        return s
    head, tail = s.split("\\pm")
    if not tail or not _balanced(head) or not _balanced(tail):
        return s
    return f"{head}-{tail},{head}+{tail}" if head else f"-{tail},{tail}"


def has_percent(answer: Any) -> bool:
    """Whether the answer is written as a percentage (``28\\%``, ``28 percent``, ``28 pct``)."""
    return bool(_PERCENT_RE.search(str(answer)))


def prime_count(normalized: str) -> int:
    """Primes in a normalized answer (``f'(x)``, ``E'``); two answers with different counts never match."""
    return normalized.count("'")


def _remove_spaces(s: str) -> str:
    """Drop whitespace without gluing numbers: thousands groups (``1 000``) join, other digit pairs keep a
    separator, a space after an exponent is a product (``2^6 3^5`` -> ``2^6*3^5``)."""
    s = _THOUSANDS_SPACE_RE.sub(lambda m: re.sub(r"\s", "", m.group(0)), s)
    s = re.sub(r"(\^\s*(?:\{[^{}]*\}|\d))\s+(?=\d)", r"\1*", s)
    s = re.sub(r"(?<=\d)\s+(?=\d)", _GLUE, s)
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x01", s)  # keep "\pi r" from becoming "\pir"
    s = re.sub(r"\s+", "", s)
    return s.replace("\x01", " ").replace(_GLUE, " ")


def normalize_answer(answer: Any) -> str:
    """Canonical string form of an answer, used for string comparison and before parsing."""
    s = str(answer).replace("\x00", "").replace(_GLUE, "").strip()
    if len(s) > MAX_ANSWER_CHARS:
        s = s[:MAX_ANSWER_CHARS]
    s = s.replace("\\$", "").replace("$", "")
    s = _DOUBLED_RE.sub(lambda m: "\\", s)  # JSON-style doubled backslashes: "\\\\frac" -> "\\frac"
    listed = bool(_LIST_COMMA_RE.search(s))
    s = s.replace("<=", "\\le ").replace(">=", "\\ge ")
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr|bigg|Bigg)\b\.?", "", s)
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = _WRAPPER_RE.sub(r"\\text", s)
    s = re.sub(r"\\text\{\s*\}", "", s)
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\circ|\\degree", "", s)
    s = _PERCENT_RE.sub("", s)
    s = _PRIME_RE.sub("'", s)
    s = _AND_RE.sub(",", s)
    s = s.replace(";", ",")  # "(0;-2;6)", "-12;-11": a separator
    s = s.replace("\\geqslant", "\\ge").replace("\\leqslant", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\leq", "\\le").replace("\\neq", "\\ne").replace("\\cdot", "*").replace("\\times", "*")
    s = s.replace("\\infty", "oo").replace("∞", "oo")
    s = _INFINITY_WORD_RE.sub("oo", s)  # plain syntax: inf, infinity (not \\inf, the infimum)
    s = _fix_fracs(s)
    s = _strip_units(s)
    s = s.strip().rstrip(".").strip()
    m = re.fullmatch(r"\(?([A-Ea-e])\)|\(([A-Ea-e])\)?|([A-E])", s)  # multiple-choice letters: (C), C)
    if m:
        s = (m.group(1) or m.group(2) or m.group(3)).upper()
    s = _remove_spaces(s)
    s = _canonical_matrices(s)
    # x^{2} -> x^2, x^{12} -> x^12, 52_{8} -> 52_8; never x^{2y} -> x^2y, which reads as x^2 * y
    s = re.sub(r"([_^])\{(\d+|[A-Za-z])\}(?![A-Za-z0-9])", r"\1\2", s)
    s = _chain_to_interval(s)
    if _THOUSANDS_RE.match(s) and not listed:
        s = s.replace(",", "")
    s = s.strip(",")
    if len(s) > 2 and s[0] == "{" and s[-1] == "}" and _balanced(s[1:-1]) and "," in s:
        s = "\\{" + s[1:-1] + "\\}"  # a set written with bare braces: {1,2}
    while len(s) > 2 and s[0] == "(" and s[-1] == ")" and _balanced(s[1:-1]) and "," not in s:
        s = s[1:-1]  # redundant outer parentheses: "(x+1)" -> "x+1" (tuples keep theirs)
    return _plus_minus(s)


_LHS_RE = re.compile(
    r"^(?:[A-Za-z]{1,3}(?:_\{?[A-Za-z0-9\\ ]+\}?)?(?:\([A-Za-z]\))?|\([A-Za-z](?:,[A-Za-z])+\))(?:=(?!=)|\\in(?![A-Za-z]))"
)


def strip_lhs(normalized: str) -> str | None:
    """``x=5`` -> ``5``, ``(x,y)=(1,2)`` -> ``(1,2)``, ``x\\in[0,1]`` -> ``[0,1]`` (a named answer: one ``=`` or
    ``\\in``, a short variable, function or tuple of variables on the left), else None."""
    m = _LHS_RE.match(normalized)
    if m is None:
        return None
    rest = normalized[m.end() :]
    return None if "=" in rest or "\\in" in rest else rest
