"""Exact numbers: integers, decimals, fractions, mixed numbers, scientific notation, and their comparison."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

from .limits import MAX_EXPONENT, MAX_NUMBER_DIGITS
from .normalization import normalize_answer
from .tolerance import close


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


def numbers_equal(pred: Number, gold: Number) -> bool:
    """Exact equality, or :func:`~.tolerance.close` (relative, ``REL_TOL``) for values that are not integer literals.

    An integer gold needs an exact match (142.01 is not 142). Two decimals must also agree once the more
    precise one is rounded to the precision of the other (4.4678e14 is not 4.4677e14, 2.778 is 2.7778).
    """
    if pred.value == gold.value:
        return True
    if gold.integer_literal or pred.integer_literal:
        return False
    if not close(pred.value, gold.value):
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
