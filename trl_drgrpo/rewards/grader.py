"""Math answer extraction and grading (rule-based reward of the paper).

``extract_answer`` pulls the final answer out of a response according to the template's answer format, and
``grade`` compares it to the gold answer(s) with a cascade of increasingly expensive checks:

1. normalized string match (LaTeX spacing, ``\\left``/``\\right``, ``\\dfrac``, ``\\text{}``, units, degrees,
   thousands separators, ``x =`` prefixes, ``$`` wrappers, ...);
2. exact numbers (``Fraction``: integers, decimals, fractions, mixed numbers, scientific notation), with a
   relative tolerance only for inexact values;
3. element-wise comparison of tuples, intervals, sets, lists and matrices;
4. symbolic equality with sympy (through ``latex2sympy2_extended``);
5. Math-Verify as a last resort, only when our own parsers could not read one side.

Every stage is bounded: the scanned response, the candidate answer and the expressions handed to sympy are
capped in size, and expressions that could blow up (power towers, huge exponents, factorials of big numbers,
huge digit strings) are refused before any symbolic work. Wrong answers must never score 1, so every doubt
resolves to 0. The hard wall-clock guarantee lives in :mod:`trl_drgrpo.rewards` (a process pool).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from ..templates import Template, get_template

logger = logging.getLogger(__name__)

MAX_RESPONSE_CHARS = 20_000  # tail of the response that is scanned (final answers are at the end)
MAX_ANSWER_CHARS = 1_000  # longest extracted answer accepted
MAX_SYMBOLIC_CHARS = 400  # longest normalized answer handed to sympy / Math-Verify
MAX_NUMBER_DIGITS = 400  # longest digit string read as a number
MAX_EXPONENT = 5_000  # largest literal exponent allowed in symbolic work
MAX_FACTORIAL = 1_000  # largest literal factorial operand allowed in symbolic work
MAX_ELEMENTS = 64  # most elements compared in a tuple / set / list
REL_TOL = 1e-4  # relative tolerance for inexact numbers
DEFAULT_TIME_BUDGET_S = 1.0  # soft deadline for the symbolic stages of one ``grade`` call

__all__ = ["extract_answer", "grade", "is_equiv", "normalize_answer", "parse_number"]


# ----------------------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")


def _clean_response(response: Any) -> str:
    if not isinstance(response, str):
        response = "" if response is None else str(response)
    if len(response) > MAX_RESPONSE_CHARS:
        response = response[-MAX_RESPONSE_CHARS:]
    return response.replace("\x00", "")


def _last_boxed(text: str) -> str | None:
    """Content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` in ``text`` (None if unclosed)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (6 if text.startswith("\\boxed", start) else 5)
    n = len(text)
    if i < n and text[i] == " ":  # "\boxed 5": the next whitespace-delimited token
        m = re.match(r" +([^\s$]+)", text[i:])
        return m.group(1)[:MAX_ANSWER_CHARS] if m else None
    if i >= n or text[i] != "{":
        return None
    depth, j, end_limit = 0, i, min(n, i + MAX_ANSWER_CHARS + 2)
    while j < end_limit:
        c = text[j]
        if c == "\\":  # skip escaped characters such as \{ and \}
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
        j += 1
    return None  # truncated, unbalanced or too long


def _extract_r1(text: str) -> str | None:
    """``</think> <answer> ... </answer>`` (whitespace-lenient); the last answer block counts."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    if open_ < 0 or not text[:open_].rstrip().endswith("</think>"):
        return None
    answer = text[open_ + len("<answer>") : close].strip()
    if "\\boxed" in answer or "\\fbox" in answer:
        answer = _last_boxed(answer)
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer


def extract_answer(response: str, template: str | Template = "qwen_math") -> str | None:
    """Return the final answer written in ``response`` under ``template``'s answer format, or None."""
    fmt = get_template(template).answer_format
    try:
        text = _clean_response(response)
        answer = _extract_r1(text) if fmt == "r1" else _last_boxed(text)
    except Exception:  # extraction must never raise
        logger.debug("answer extraction failed", exc_info=True)
        return None
    if answer is None:
        return None
    answer = answer.strip()
    return answer or None


# ----------------------------------------------------------------------------------------------------------------
# Normalization
# ----------------------------------------------------------------------------------------------------------------

_UNIT_WORDS = (
    "degrees|degree|deg|cm|mm|km|meters|meter|metres|metre|inches|inch|feet|foot|ft|yards|yard|miles|mile|mph|"
    "seconds|second|sec|minutes|minute|min|hours|hour|hrs|hr|days|day|weeks|week|years|year|yr|months|month|"
    "cents|cent|dollars|dollar|units|unit|sq|square|cubic|kg|grams|gram|mg|liters|liter|ml|kcal|cal|Hz|kHz|MHz|"
    "GHz|eV|keV|MeV|GeV|nm|pc|kpc|Mpc|AU|ly|Angstroms|Angstrom|rad|radians|mol|Pa|atm|sr|arcsec|arcmin|"
    "points|point|people|students|ways|times|percent|pounds|lbs|oz"
)
_UNIT_RE = re.compile(rf"(?<![A-Za-z\\])(?:{_UNIT_WORDS})(?:\^\{{?-?\d+\}}?)?(?![A-Za-z])")
_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad|~|\\displaystyle|\\limits")
_LHS_RE = re.compile(r"^[A-Za-z](?:_\{?[A-Za-z0-9\\ ]+\}?)?(?:\([A-Za-z]\))?\s*=(?!=)")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


def _fix_fracs(s: str) -> str:
    r"""``\frac43`` -> ``\frac{4}{3}``, ``\frac9{19}`` -> ``\frac{9}{19}``, ``\sqrt2`` -> ``\sqrt{2}``."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s+([A-Za-z])\s*([A-Za-z0-9])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d+|[A-Za-z])", r"\\sqrt{\1}", s)
    return s


_UNIT_TEXT_RE = re.compile(r"\\text\s*\{([^{}]*)\}(\^\{?-?\d+\}?)?")


def _strip_units(s: str) -> str:
    """Drop ``\\text{unit}`` blocks and known unit words when a number/expression remains."""
    candidate = _UNIT_TEXT_RE.sub(
        lambda m: "" if re.fullmatch(r"[A-Za-z\s.]*", m.group(1)) else m.group(0), s
    )
    candidate = _UNIT_RE.sub("", candidate).strip()
    if candidate and re.search(r"\d", candidate):
        return candidate
    return _TEXT_RE.sub(lambda m: m.group(1), s)  # words only ("\\text{Evelyn}"): unwrap instead


def normalize_answer(answer: Any) -> str:
    """Canonical string form of an answer, used for string comparison and before parsing."""
    s = str(answer).replace("\x00", "").strip()
    if len(s) > MAX_ANSWER_CHARS:
        s = s[:MAX_ANSWER_CHARS]
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)\b\.?", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("\\mbox", "\\text").replace("\\textbf", "\\text").replace("\\mathrm", "\\text")
    s = re.sub(r"\\text\{\s*\}", "", s)
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\circ|\\degree", "", s)
    s = re.sub(r"\\?%|\\percent", "", s)
    s = s.replace("\\geqslant", "\\ge").replace("\\leqslant", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\leq", "\\le").replace("\\neq", "\\ne").replace("\\cdot", "*").replace("\\times", "*")
    s = s.replace("\\infty", "oo").replace("∞", "oo")
    s = _fix_fracs(s)
    s = _strip_units(s)
    s = s.strip().rstrip(".").strip()
    m = re.fullmatch(r"\\text\{\(?([A-Ea-e])\)?\}|\(([A-Ea-e])\)", s)  # multiple-choice letters
    if m:
        s = (m.group(1) or m.group(2)).upper()
    if s.count("=") == 1 and _LHS_RE.match(s):
        s = s.split("=", 1)[1]
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x01", s)  # keep "\pi r" from becoming "\pir"
    s = re.sub(r"\s+", "", s).replace("\x01", " ")
    s = re.sub(r"([_^])\{([A-Za-z0-9]+)\}", r"\1\2", s)  # x^{2} -> x^2, 52_{8} -> 52_8
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    while len(s) > 2 and s[0] == "(" and s[-1] == ")" and _balanced(s[1:-1]) and "," not in s:
        s = s[1:-1]  # redundant outer parentheses: "(x+1)" -> "x+1" (tuples keep theirs)
    return s


# ----------------------------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------------------------


class Number:
    """An exact rational value plus how it was written (for tolerance decisions)."""

    __slots__ = ("value", "decimal", "integer_literal")

    def __init__(self, value: Fraction, decimal: Decimal | None = None, integer_literal: bool = False):
        self.value = value
        self.decimal = decimal  # set when written as a terminating decimal / scientific number
        self.integer_literal = integer_literal

    def __repr__(self) -> str:
        return f"Number({self.value}, decimal={self.decimal}, integer_literal={self.integer_literal})"


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_SCI_RE = re.compile(rf"^({_NUM})(?:\*|x)10\^\{{?([-+]?\d+)\}}?$")
_POW10_RE = re.compile(r"^([-+]?)10\^\{?([-+]?\d+)\}?$")
_E_RE = re.compile(rf"^({_NUM})[eE]([-+]?\d+)$")
_FRAC_RE = re.compile(r"^([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}$")
_SLASH_RE = re.compile(r"^([-+]?\d+)/([-+]?\d+)$")
_MIXED_RE = re.compile(r"^([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")


def _decimal(text: str) -> Decimal | None:
    digits = sum(c.isdigit() for c in text)
    if digits == 0 or digits > MAX_NUMBER_DIGITS:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def parse_number(answer: str, normalized: bool = False) -> Number | None:
    """Read ``answer`` as an exact number, or return None if it is not a plain number."""
    s = answer if normalized else normalize_answer(answer)
    if not s or len(s) > MAX_NUMBER_DIGITS + 20:
        return None
    if re.fullmatch(r"[-+]?\d+", s):
        if len(s) > MAX_NUMBER_DIGITS:
            return None
        return Number(Fraction(int(s)), Decimal(int(s)), integer_literal=True)
    if re.fullmatch(_NUM, s):
        d = _decimal(s)
        return None if d is None else Number(Fraction(d), d)
    for pattern in (_SCI_RE, _E_RE):
        m = pattern.match(s)
        if m:
            exponent = int(m.group(2))
            mantissa = _decimal(m.group(1))
            if mantissa is None or abs(exponent) > MAX_EXPONENT:
                return None
            d = mantissa.scaleb(exponent)
            return Number(Fraction(d), d)
    m = _POW10_RE.match(s)
    if m:
        exponent = int(m.group(2))
        if abs(exponent) > MAX_EXPONENT:
            return None
        d = Decimal(f"{m.group(1)}1").scaleb(exponent)
        return Number(Fraction(d), d)
    m = _FRAC_RE.match(s) or _SLASH_RE.match(s)
    if m:
        sign = -1 if m.re is _FRAC_RE and m.group(1) == "-" else 1
        num, den = (
            (int(m.group(2)), int(m.group(3))) if m.re is _FRAC_RE else (int(m.group(1)), int(m.group(2)))
        )
        if den == 0 or max(len(str(abs(num))), len(str(abs(den)))) > MAX_NUMBER_DIGITS:
            return None
        return Number(sign * Fraction(num, den))
    m = _MIXED_RE.match(s)
    if m:
        whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if den == 0 or num >= den:  # "2\frac{5}{3}" is not a mixed number: leave it to sympy
            return None
        value = whole + Fraction(num, den)
        return Number(-value if m.group(1) == "-" else value)
    return None


def _rel_close(a: float, b: float, rel_tol: float = REL_TOL) -> bool:
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= rel_tol * max(abs(a), abs(b))


def numbers_equal(pred: Number, gold: Number) -> bool:
    """Exact equality, or agreement within ``REL_TOL`` for values that are not integer literals.

    An integer gold needs an exact match (142.01 is not 142). Two decimals must also agree once the more
    precise one is rounded to the precision of the other (4.4678e14 is not 4.4677e14, 2.778 is 2.7778).
    """
    if pred.value == gold.value:
        return True
    if gold.integer_literal or pred.integer_literal:
        return False
    if not _rel_close(float(pred.value), float(gold.value)):
        return False
    if pred.decimal is not None and gold.decimal is not None:
        coarse, fine = sorted((pred.decimal, gold.decimal), key=lambda d: -d.as_tuple().exponent)
        exp = coarse.as_tuple().exponent
        if not isinstance(exp, int) or abs(exp) > MAX_EXPONENT:
            return False
        try:
            return fine.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_UP) == coarse
        except InvalidOperation:
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# Structured answers (tuples, intervals, sets, lists, matrices)
# ----------------------------------------------------------------------------------------------------------------


def _split_top_level(s: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _balanced(s: str) -> bool:
    depth = 0
    for c in s:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _structure(s: str) -> tuple[str, list[str]] | None:
    """Split a normalized answer into (kind, elements) when it is a tuple, interval, set, list or matrix."""
    m = re.fullmatch(r"\\begin\{[pbvB]?matrix\}(.*)\\end\{[pbvB]?matrix\}", s)
    if m:
        rows = [r for r in m.group(1).split("\\\\") if r]
        cells = [c for r in rows for c in r.split("&")]
        return f"matrix{len(rows)}x{len(cells) // max(len(rows), 1)}", cells
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        inner = _split_top_level(s[1:-1])
        if len(inner) >= 2:
            return ("tuple" if s[0] + s[-1] == "()" else "interval" + s[0] + s[-1]), inner
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        return "set", _split_top_level(s[2:-2])
    if "," in s and _balanced(s):
        parts = _split_top_level(s)
        if len(parts) >= 2:
            return "set", parts
    return None


def _unordered_match(preds: list[str], golds: list[str], deadline: float) -> bool:
    remaining = list(golds)
    for p in preds:
        for i, g in enumerate(remaining):
            if _equiv_normalized(p, g, deadline):
                del remaining[i]
                break
        else:
            return False
    return not remaining


def _structured_equal(pred: str, gold: str, deadline: float) -> bool | None:
    """True/False when both sides are structured answers, None otherwise."""
    ps, gs = _structure(pred), _structure(gold)
    if ps is None and gs is None:
        return None
    if ps is None or gs is None:
        # "x \in [-2,7]" style or a one-element set vs. a bare value: let other stages decide
        return None
    (pk, pe), (gk, ge) = ps, gs
    if len(pe) != len(ge) or len(ge) > MAX_ELEMENTS or not all(pe) or not all(ge):
        return False
    if pk == "set" and gk == "set":
        return _unordered_match(pe, ge, deadline)
    if pk != gk:
        return False
    return all(_equiv_normalized(p, g, deadline) for p, g in zip(pe, ge, strict=True))


# ----------------------------------------------------------------------------------------------------------------
# Symbolic equality
# ----------------------------------------------------------------------------------------------------------------

_NESTED_POW_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?[\w.]*\^|\*\*[\w.(]*\*\*")
_BIG_EXP_RE = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*[-+]?(\d+)")
_FACT_RE = re.compile(r"(\d*)\s*\)?\s*!")
_DANGEROUS_RE = re.compile(
    r"\\(?:sum|prod|int|lim|iint|oint|underbrace|overbrace|cases|Gamma|zeta)|tetration|\\uparrow"
)


def _safe_for_symbolic(s: str) -> bool:
    """Refuse inputs that could make sympy explode (towers, huge exponents/factorials/digit strings)."""
    if not s or len(s) > MAX_SYMBOLIC_CHARS or "\\\\" in s:
        return False
    if not _balanced(s) or _DANGEROUS_RE.search(s) or _NESTED_POW_RE.search(s):
        return False
    if re.search(r"[\d)}]\s*_", s):  # latex2sympy drops subscripts of numbers: 4343_6 would read as 4343
        return False
    if any(len(d) > 60 for d in re.findall(r"\d+", s)):
        return False
    for m in _BIG_EXP_RE.finditer(s):
        if int(m.group(1)) > MAX_EXPONENT:
            return False
    for m in _FACT_RE.finditer(s):
        operand = m.group(1)
        if not operand or int(operand) > MAX_FACTORIAL:  # "(10^{100})!" or "n!": refuse
            if operand or s[max(0, m.start() - 1)] in ")}":
                return False
    if s.count("{") > 60 or s.count("(") > 60:
        return False
    if s.count("^") > 1 and re.search(r"[)}]\^\{?\(?(\d{3,})", s):  # ((10^{4000})^{4000})^{4000}
        return False
    if "\\binom" in s and ("^" in s or re.search(r"\d{4,}", s)):
        return False
    return True


def _plain_to_latex(s: str) -> str:
    """Make plain-text math readable by latex2sympy: ``sqrt(3)/2`` -> ``\\sqrt{3}/2``, ``**`` -> ``^``."""
    s = s.replace("**", "^")
    out, i = [], 0
    while i < len(s):
        if s.startswith("sqrt(", i) and (i == 0 or s[i - 1] != "\\"):
            depth, j = 0, i + 4
            while j < len(s):
                depth += s[j] == "("
                depth -= s[j] == ")"
                if depth == 0:
                    break
                j += 1
            if j >= len(s):
                return s
            out.append("\\sqrt{" + s[i + 5 : j] + "}")
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    s = "".join(out)
    s = re.sub(r"(?<![\\A-Za-z])(pi)(?![A-Za-z])", r"\\pi", s)
    return s


def _to_sympy(s: str):
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    text = _plain_to_latex(s.replace("oo", "\\infty"))
    return latex2sympy(text, conversion_config=ConversionConfig(lowercase_symbols=False))


def _sympy_size_ok(expr) -> bool:
    try:
        return expr.count_ops() <= 150 if hasattr(expr, "count_ops") else False
    except Exception:
        return False


def _sympy_equal(pred: str, gold: str, deadline: float) -> bool | None:
    """True/False from sympy, None when either side cannot be read."""
    import sympy

    if time.monotonic() > deadline or not (_safe_for_symbolic(pred) and _safe_for_symbolic(gold)):
        return None
    try:
        a, b = _to_sympy(pred), _to_sympy(gold)
    except Exception:
        return None
    if not all(isinstance(x, sympy.Expr) for x in (a, b)):
        if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
            checks = [_sympy_expr_equal(a.lhs, b.lhs, deadline), _sympy_expr_equal(a.rhs, b.rhs, deadline)]
            if all(checks):
                return True
            checks.append(_sympy_expr_equal(a.lhs - a.rhs, b.lhs - b.rhs, deadline))
            if checks[-1]:
                return True
            return None if None in checks else False
        try:
            return True if a == b else None  # sets, relations...: structural match, else let Math-Verify try
        except Exception:
            return None
    if not (_sympy_size_ok(a) and _sympy_size_ok(b)):
        return None
    if a.has(*_non_finite()) or b.has(*_non_finite()):  # a misread (e.g. \gamma as the Gamma function)
        return None
    return _sympy_expr_equal(a, b, deadline)


_POINTS = (
    (0.7319, 1.3717, 0.4123, 2.1187),
    (1.9133, 0.5791, 1.2477, 0.8521),
    (-1.1329, -0.6467, -1.7311, -0.3943),
)


def _non_finite():
    import sympy

    return (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)


class _Unsupported(Exception):
    """The float evaluator met a node it does not know (undefined function, set, ...)."""


_FLOAT_LIMIT = 1e250  # intermediate magnitude above which a numeric check is refused (prefer "unequal")


def _float_functions() -> dict:
    import cmath

    import sympy

    def real_only(fn):
        def wrapped(z: complex) -> complex:
            if abs(z.imag) > 1e-12 * max(1.0, abs(z.real)):
                raise _Unsupported("real function of a complex value")
            return complex(fn(z.real))

        return wrapped

    def log(z: complex, base: complex | None = None) -> complex:
        return cmath.log(z) if base is None else cmath.log(z) / cmath.log(base)

    def gamma_of(z: complex) -> complex:
        if abs(z.real) > 170:
            raise OverflowError("factorial too large")
        return complex(math.gamma(z.real)) if abs(z.imag) < 1e-12 else (_ for _ in ()).throw(_Unsupported())

    return {
        sympy.exp: cmath.exp,
        sympy.log: log,
        sympy.sin: cmath.sin,
        sympy.cos: cmath.cos,
        sympy.tan: cmath.tan,
        sympy.cot: lambda z: 1 / cmath.tan(z),
        sympy.sec: lambda z: 1 / cmath.cos(z),
        sympy.csc: lambda z: 1 / cmath.sin(z),
        sympy.asin: cmath.asin,
        sympy.acos: cmath.acos,
        sympy.atan: cmath.atan,
        sympy.sinh: cmath.sinh,
        sympy.cosh: cmath.cosh,
        sympy.tanh: cmath.tanh,
        sympy.Abs: lambda z: complex(abs(z)),
        sympy.floor: real_only(math.floor),
        sympy.ceiling: real_only(math.ceil),
        sympy.re: lambda z: complex(z.real),
        sympy.im: lambda z: complex(z.imag),
        sympy.factorial: lambda z: gamma_of(z + 1),
        sympy.gamma: gamma_of,
    }


def _float_eval(expr, subs: dict, functions: dict) -> complex:
    """Evaluate ``expr`` with Python complex floats: bounded in time, raises ``OverflowError`` on huge values."""
    import sympy

    if isinstance(expr, sympy.Symbol):
        if expr not in subs:
            raise _Unsupported(str(expr))
        value = complex(subs[expr])
    elif expr is sympy.I:
        value = 1j
    elif isinstance(expr, (sympy.Number, sympy.NumberSymbol)):
        if isinstance(expr, sympy.Integer) and abs(int(expr)).bit_length() > 900:
            raise OverflowError("integer too large")
        if isinstance(expr, sympy.Rational) and max(abs(expr.p), abs(expr.q)).bit_length() > 900:
            raise OverflowError("rational too large")
        value = complex(float(expr))
    elif isinstance(expr, sympy.Add):
        value = sum((_float_eval(arg, subs, functions) for arg in expr.args), 0j)
    elif isinstance(expr, sympy.Mul):
        value = 1 + 0j
        for arg in expr.args:
            value *= _float_eval(arg, subs, functions)
    elif isinstance(expr, sympy.Pow):
        base, exponent = (_float_eval(arg, subs, functions) for arg in expr.args)
        if base == 0 and exponent.real < 0:
            raise ZeroDivisionError("0 to a negative power")
        if base.imag == 0 and exponent.imag == 0 and (base.real > 0 or float(exponent.real).is_integer()):
            value = complex(math.pow(base.real, exponent.real))
        else:
            value = base**exponent
    elif isinstance(expr, sympy.binomial):
        n, k = (_float_eval(arg, subs, functions) for arg in expr.args)
        g = functions[sympy.gamma]
        value = g(n + 1) / (g(k + 1) * g(n - k + 1))
    elif expr.func in functions:
        value = functions[expr.func](*(_float_eval(arg, subs, functions) for arg in expr.args))
    else:
        raise _Unsupported(type(expr).__name__)
    if not (abs(value) <= _FLOAT_LIMIT):  # also catches inf and nan
        raise OverflowError("value too large")
    return value


def _point_value(expr, subs: dict, functions: dict) -> complex | None:
    """Float value at a point; None where the expression is undefined there (division by zero, log 0...)."""
    try:
        return _float_eval(expr, subs, functions)
    except (ZeroDivisionError, ValueError):
        return None


def _sympy_expr_equal(a, b, deadline: float) -> bool | None:
    """Equality of two sympy expressions, decided numerically (no expansion, so it stays bounded).

    Both sides are first evaluated with Python floats at a few fixed points (a bounded computation; a value
    beyond 1e250 makes the answer "unequal"); when they agree, exact expressions are confirmed at 30 digits
    with sympy. None means undecided (an unknown function).
    """
    import sympy

    try:
        if a == b:
            return True
        inexact = a.has(sympy.Float) or b.has(sympy.Float)
        symbols = sorted(a.free_symbols | b.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        functions = _float_functions()
        points = _POINTS if symbols else ((),)
        checked = 0
        for point in points:
            if time.monotonic() > deadline:
                return False
            values = {sym: point[k % len(point)] + 0.1 * k for k, sym in enumerate(symbols)}
            fa, fb = _point_value(a, values, functions), _point_value(b, values, functions)
            if fa is None or fb is None:
                if (fa is None) != (fb is None):
                    return False
                continue
            scale = max(abs(fa), abs(fb))
            if abs(fa - fb) > (REL_TOL if inexact else 1e-6) * scale:
                return False
            if not inexact:  # floats agree: confirm exactly-written values exactly (safe: magnitudes bounded)
                exact = {sym: sympy.Rational(repr(v)) for sym, v in values.items()}
                diff = (a - b).subs(exact) if exact else a - b
                if diff.is_Rational:
                    if diff != 0:
                        return False
                else:
                    dv = diff.evalf(30)
                    if not dv.is_number:
                        return None
                    if bool(abs(dv) > 1e-25 * max(1.0, scale)):
                        return False
            checked += 1
        if checked == 0:
            return None
        return checked >= min(2, len(points))
    except _Unsupported:
        return None
    except OverflowError:
        return False
    except Exception:
        return None


def _math_verify_equal(pred: str, gold: str) -> bool:
    """Math-Verify with its signal-based timeouts disabled (callers guard the input size)."""
    from math_verify import parse, verify

    if not (_safe_for_symbolic(pred) and _safe_for_symbolic(gold)):
        return False
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        g = parse(f"${gold}$", parsing_timeout=None)
        p = parse(f"${pred}$", parsing_timeout=None)
        if not g or not p:
            return False
        import sympy

        for parsed in (g[0], p[0]):  # a misread side (e.g. \gamma read as the Gamma function's pole)
            if isinstance(parsed, sympy.Basic) and parsed.has(sympy.zoo, sympy.nan):
                return False
        return bool(verify(g, p, timeout_seconds=None))
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------------------------
# Equivalence cascade
# ----------------------------------------------------------------------------------------------------------------


def _equiv_normalized(pred: str, gold: str, deadline: float, allow_math_verify: bool = False) -> bool:
    if pred == gold:
        return True
    if not pred or not gold:
        return False
    if re.fullmatch(r"[A-Za-z ]+", pred) and re.fullmatch(r"[A-Za-z ]+", gold) and len(gold) > 1:
        return pred.lower() == gold.lower()  # words ("Evelyn", "east") compare case-insensitively
    pb, gb = _BASE_RE.fullmatch(pred), _BASE_RE.fullmatch(gold)
    if pb or gb:  # numbers written in a base: 4343_6
        return bool(pb and gb) and _base_value(pb) == _base_value(gb) is not None
    pn, gn = parse_number(pred, normalized=True), parse_number(gold, normalized=True)
    if pn is not None and gn is not None:
        return numbers_equal(pn, gn)  # final: never let a looser checker overrule exact numbers
    structured = _structured_equal(pred, gold, deadline)
    if structured is not None:
        return structured
    if time.monotonic() > deadline:
        return False
    symbolic = _sympy_equal(pred, gold, deadline)
    if symbolic is not None:
        return symbolic
    if allow_math_verify and time.monotonic() <= deadline:
        return _math_verify_equal(pred, gold)
    return False


_BASE_RE = re.compile(r"([0-9A-Za-z]{1,64})_\{?(\d{1,2})\}?")


def _base_value(m: re.Match) -> int | None:
    base = int(m.group(2))
    try:
        return int(m.group(1), base) if 2 <= base <= 36 else None
    except ValueError:
        return None


def _gold_list(gold: Any) -> list[str]:
    if isinstance(gold, (list, tuple)):
        items = list(gold)
    else:
        items = [gold]
    out = []
    for g in items:
        if g is None:
            continue
        if isinstance(g, float):
            if not math.isfinite(g):
                continue
            g = str(int(g)) if g.is_integer() and abs(g) < 1e16 else repr(g)
        out.append(str(g).strip())
    return [g for g in out if g]


def is_equiv(pred: str, gold: Any, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> bool:
    """Whether the extracted answer ``pred`` equals ``gold`` (a str, number or list of acceptable answers)."""
    deadline = time.monotonic() + time_budget_s
    p = normalize_answer(pred)
    for g in _gold_list(gold):
        if _equiv_normalized(p, normalize_answer(g), deadline, allow_math_verify=True):
            return True
    return False


def grade(response: str, gold: Any, template: str | Template = "qwen_math") -> float:
    """1.0 if the answer extracted from ``response`` equals ``gold`` (any of them, for a list), else 0.0.

    Never raises on bad responses or golds; bounded in time by input guards and a soft deadline.
    """
    answer = extract_answer(response, template)
    if answer is None:
        return 0.0
    return grade_answer(answer, gold)


def grade_answer(answer: str | None, gold: Any, time_budget_s: float = DEFAULT_TIME_BUDGET_S) -> float:
    """Grade an already extracted answer (what the reward workers run)."""
    if answer is None:
        return 0.0
    try:
        return 1.0 if is_equiv(answer, gold, time_budget_s) else 0.0
    except Exception:
        logger.debug("grading failed", exc_info=True)
        return 0.0


def grade_many(answers: Sequence[str | None], golds: Sequence[Any]) -> list[float]:
    """Grade extracted answers against golds in-process (no hard timeout)."""
    return [grade_answer(a, g) for a, g in zip(answers, golds, strict=True)]
