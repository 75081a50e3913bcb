"""Canonical string form of an answer (LaTeX spacing, wrappers, units, degrees, separators, prefixes)."""

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
