"""Symbolic equality with sympy (through ``latex2sympy2_extended``) and Math-Verify, behind input guards."""

from __future__ import annotations

import cmath
import functools
import logging
import math
import re
import zlib

from .fastparse import fast_read
from .limits import (
    MAX_EXPONENT,
    MAX_FACTORIAL,
    MAX_FUNCTIONS,
    MAX_NESTING,
    MAX_PAREN_NESTING,
    MAX_SYMBOLIC_CHARS,
    MAX_TOKENS,
    MAX_VERIFY_TOKENS,
)
from .plainparse import FUNCTIONS as _PLAIN_FUNCTIONS
from .plainparse import is_plain, plain_read
from .structures import _balanced
from .tolerance import CONFIRM_TOL, EXACT_TOL, RATIO_TOL, REL_TOL, close, negligible

_NESTED_POW_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?[\w.]*\^|\*\*[\w.(]*\*\*")
_BIG_EXP_RE = re.compile(r"(?:\^|\*\*)\s*\{?\s*\(?\s*[-+]?(\d+)")
_FACT_RE = re.compile(r"(\d*)\s*\)?\s*!")
_DANGEROUS_RE = re.compile(
    r"\\(?:sum|prod|int|lim|iint|oint|underbrace|overbrace|cases|Gamma|zeta)|tetration|\\uparrow"
)


_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{8,}")
_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\d+(?:\.\d+)?|[A-Za-z]|[^\s\w]")
_FUNCTION_RE = re.compile(
    r"\\(?:sqrt|frac|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh|tanh|log|ln|exp|binom)(?![A-Za-z])"
    r"|(?<![A-Za-z\\])(?:" + "|".join(sorted(_PLAIN_FUNCTIONS, key=len, reverse=True)) + r")\("
)


def nesting_depth(s: str, opening: str = "([{", closing: str = ")]}") -> int:
    """Deepest bracket nesting of ``s`` (continued and nested fractions, nested calls)."""
    depth = deepest = 0
    for c in s:
        if c in opening:
            depth += 1
            deepest = max(deepest, depth)
        elif c in closing:
            depth -= 1
    return deepest


def structure_ok(s: str) -> bool:
    """The structural bound, decided before any symbolic work: size, nesting, functions, tokens."""
    if not s or len(s) > MAX_SYMBOLIC_CHARS or nesting_depth(s) > MAX_NESTING:
        return False
    if nesting_depth(s, "(", ")") > MAX_PAREN_NESTING:  # the LaTeX parser's cost grows fastest with these
        return False
    if _WORD_RE.search(s):  # prose glued into one long "product" of letters: not math, and slow to parse
        return False
    if len(_FUNCTION_RE.findall(s)) > MAX_FUNCTIONS:
        return False
    return len(_TOKEN_RE.findall(s)) <= MAX_TOKENS


_EXPONENT_GROUP_RE = re.compile(r"(?:\^|\*\*)\s*[({]")


def _exponent_groups_ok(s: str) -> bool:
    """An exponent written as a group (``9^(4999*4999)``, ``2**{3000+3000}``) is bounded by the product of the
    integers in it, which must stay within ``MAX_EXPONENT`` (a reader would compute the power exactly)."""
    for m in _EXPONENT_GROUP_RE.finditer(s):
        depth, end = 0, m.end() - 1
        while end < len(s):
            depth += s[end] in "({"
            depth -= s[end] in ")}"
            if depth == 0:
                break
            end += 1
        bound = 1
        for number in re.findall(r"\d+(?:\.\d+)?", s[m.end() : end]):
            bound *= max(2.0, float(number))
            if bound > MAX_EXPONENT:
                return False
    return True


def _safe_for_symbolic(s: str) -> bool:
    """Refuse inputs that could make sympy explode (towers, huge exponents/factorials/digit strings)."""
    if not structure_ok(s) or "\\\\" in s:
        return False
    if "'" in s or re.search(r"\d \d", s):  # primes and space-separated numbers: string comparison only
        return False
    if not _balanced(s) or _DANGEROUS_RE.search(s) or _NESTED_POW_RE.search(s):
        return False
    if re.search(
        r"(?<![\w{^])\d+\s*_", s
    ):  # latex2sympy drops subscripts of numbers: 4343_6 would read as 4343
        return False
    if any(len(d) > 60 for d in re.findall(r"\d+", s)):
        return False
    for m in _BIG_EXP_RE.finditer(s):
        if int(m.group(1)) > MAX_EXPONENT:
            return False
    if not _exponent_groups_ok(s):
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


_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|pi|rho|sigma|"
    "tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Pi|Sigma|Phi|Psi|Omega"
)
_GREEK_WORD_RE = re.compile(rf"(?<![\\A-Za-z])({_GREEK})(?![A-Za-z])")


def _plain_to_latex(s: str) -> str:
    """Make plain-text math readable by latex2sympy: ``sqrt(3)/2`` -> ``\\sqrt{3}/2``, ``**`` -> ``^``,
    ``omega`` -> ``\\omega``."""
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
    return _GREEK_WORD_RE.sub(r"\\\1", "".join(out))


# ``3.2e-11`` inside an expression: scientific notation, as :func:`~.numbers.parse_number` reads a bare one (the
# readers would take ``e`` for Euler's number: ``3.2e - 11``). Not after ``^``/``_``/a letter (``x^2e-3``).
_E_NOTATION_RE = re.compile(r"(?<![\w.^_\\])(\d+(?:\.\d+)?|\.\d+)[eE]([-+]?\d+)(?![\d.])")


def _latex_text(s: str) -> str:
    """A normalized answer as LaTeX for the readers (``oo`` back to ``\\infty``, plain-text math as LaTeX,
    ``e`` notation as a power of ten)."""
    s = _E_NOTATION_RE.sub(r"(\1*10^{\2})", s)
    return _plain_to_latex(s.replace("oo", "\\infty")).replace(
        "\\hbar", "h_{bar}"
    )  # a symbol the parser lacks


def _to_sympy(s: str):
    """sympy form of a normalized answer (latex2sympy: general, slow)."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    return latex2sympy(_latex_text(s), conversion_config=ConversionConfig(lowercase_symbols=False))


@functools.lru_cache(maxsize=4096)
def _fast(s: str):
    """sympy form from the fast reader of the plain subset, None outside it (cached)."""
    return fast_read(_latex_text(s))


def _plain(s: str, marked: bool = True):
    """sympy form of a side written in plain programming syntax (:mod:`.plainparse`), None otherwise."""
    return plain_read(_E_NOTATION_RE.sub(r"(\1*10^{\2})", s), marked)


def _read_pair(pred: str, gold: str):
    """A side in plain programming syntax by the plain reader (the other side too if plain, else by the LaTeX
    readers); two LaTeX sides both by the fast reader when both lie in its subset, else both by latex2sympy (one
    reader per pair, so a pair's verdict never depends on which reader a side happened to need). A side that looks
    plain but that the plain reader declines sends the pair to the LaTeX readers, as before plain syntax was read."""
    sides = (pred, gold)
    if any(is_plain(s) for s in sides):
        plain = [_plain(s) if is_plain(s) else None for s in sides]
        if all((p is not None) == is_plain(s) for p, s in zip(plain, sides, strict=True)):
            a, b = (_other_side(s) if p is None else p for p, s in zip(plain, sides, strict=True))
            return a, b
    a, b = _fast(pred), _fast(gold)
    if a is not None and b is not None:
        return a, b
    return _read(pred), _read(gold)


def _other_side(s: str):
    """The side facing a plain one: by the LaTeX readers, else (where neither can read it) by the plain reader."""
    value = _latex_read(s)
    return _plain(s, marked=False) if value is None else value


def _latex_read(s: str):
    """A LaTeX side by the fast reader, else by latex2sympy (the fast reader mirrors latex2sympy's readings)."""
    fast = _fast(s)
    return fast if fast is not None else _read(s)


@functools.lru_cache(maxsize=4096)
def _read(s: str):
    """``_to_sympy``, None where it fails; cached (failures too), so a group's gold is read once per process."""
    try:
        return _to_sympy(s)
    except Exception:
        return None


def _sympy_size_ok(expr) -> bool:
    try:
        return expr.count_ops() <= 150 if hasattr(expr, "count_ops") else False
    except Exception:
        return False


def _imaginary_unit(a, b):
    """Read ``i`` as the imaginary unit on both sides when the gold ``b`` is a complex number: its only symbol
    is ``i`` and, with ``i`` as the unit, its value is not real (``1+2i``, ``i(2-i)``; not ``i^2+1``)."""
    import sympy

    i = sympy.Symbol("i")
    if b.free_symbols != {i}:
        return a, b
    try:
        value = complex(b.subs(i, sympy.I).evalf(15))
    except Exception:
        return a, b
    if negligible(value.imag, abs(value)):  # real (up to rounding): "i" is just a symbol
        return a, b
    return a.subs(i, sympy.I), b.subs(i, sympy.I)


def _equations_equal(a, b) -> bool | None:
    """``lhs = rhs`` equations are the same when ``lhs - rhs`` of one is a nonzero constant times the other's
    (rearranged, scaled or negated)."""
    da, db = a.lhs - a.rhs, b.lhs - b.rhs
    if da.free_symbols != db.free_symbols or not da.free_symbols:
        return _sympy_expr_equal(a.lhs, b.lhs) and _sympy_expr_equal(a.rhs, b.rhs)
    ratio = _constant_ratio(da, db)
    return None if ratio is None else ratio is not False


def _relations_equal(a, b) -> bool | None:
    """Inequalities ``l < r`` / ``l <= r`` (either direction) are the same when ``r - l`` of one is a POSITIVE
    constant times the other's and both are strict or both are not (``x <= 1`` is ``-x >= -1``)."""
    import sympy

    def canonical(rel):
        strict = isinstance(rel, (sympy.StrictLessThan, sympy.StrictGreaterThan))
        gap = (
            rel.rhs - rel.lhs
            if isinstance(rel, (sympy.StrictLessThan, sympy.LessThan))
            else rel.lhs - rel.rhs
        )
        return strict, gap  # the relation says gap > 0 (strict) or gap >= 0

    (sa, ga), (sb, gb) = canonical(a), canonical(b)
    if sa != sb:
        return False
    ratio = _constant_ratio(ga, gb)
    return None if ratio is None else ratio is not False and ratio > 0


_MAX_EXPANDED_TERMS = 64  # most terms an expansion may produce in the coefficient comparison


def _expanded_terms(expr) -> float:
    """An upper bound on the number of terms ``expand(expr)`` produces (decided before expanding)."""
    import sympy

    if isinstance(expr, sympy.Add):
        return sum(_expanded_terms(arg) for arg in expr.args)
    if isinstance(expr, sympy.Mul):
        return math.prod(_expanded_terms(arg) for arg in expr.args)
    if isinstance(expr, sympy.Pow) and isinstance(expr.base, sympy.Add):
        exponent = expr.exp
        if exponent.is_Integer and 0 < int(exponent) <= 16:
            return float(_expanded_terms(expr.base)) ** int(exponent)
    return 1


def _coefficients(expr, symbols) -> dict | None:
    """``expr`` as {term in the symbols: its constant coefficient} after expansion; None when too large."""
    import sympy

    if _expanded_terms(expr) > _MAX_EXPANDED_TERMS:
        return None
    out: dict = {}
    for term in sympy.Add.make_args(sympy.expand(expr)):
        coefficient, dependent = term.as_independent(*symbols, as_Add=False)
        out[dependent] = out.get(dependent, 0) + coefficient
    return {k: v for k, v in out.items() if v != 0}


def _coefficient_ratio(da, db, symbols, rel_tol: float):
    """``da / db`` from their coefficients when both expand to the same terms: the ratio when every coefficient
    of ``da`` is :func:`~.tolerance.close` to it times ``db``'s, else False; ``NotImplemented`` when the terms
    differ or the expansion is too large (sampling decides)."""
    ca, cb = _coefficients(da, symbols), _coefficients(db, symbols)
    if ca is None or cb is None or set(ca) != set(cb) or not ca:
        return NotImplemented
    try:
        va = {k: complex(v.evalf(30)) for k, v in ca.items()}
        vb = {k: complex(v.evalf(30)) for k, v in cb.items()}
    except (TypeError, ValueError):
        return NotImplemented
    reference = max(vb, key=lambda k: abs(vb[k]))
    if vb[reference] == 0 or va[reference] == 0:
        return False
    ratio = va[reference] / vb[reference]
    if not all(close(va[k], ratio * vb[k], rel_tol) for k in va):
        return False
    return ratio


def _constant_ratio(da, db):
    """``da / db`` when it is the same nonzero constant, False when it is not, None when undecidable (unknown
    functions). Decided from the coefficients when both expand to the same terms (relative to each coefficient,
    so a small constant term is never lost next to a large one), else at the fixed sample points."""
    import sympy

    if da.free_symbols != db.free_symbols or not da.free_symbols:
        return False
    if not (_sympy_size_ok(da) and _sympy_size_ok(db)):
        return None
    symbols = sorted(da.free_symbols, key=str)
    if len(symbols) > 8:
        return None
    rel_tol = REL_TOL if da.has(sympy.Float) or db.has(sympy.Float) else RATIO_TOL
    try:
        ratio = _coefficient_ratio(da, db, symbols, rel_tol)
    except Exception:
        ratio = NotImplemented
    if ratio is not NotImplemented:
        return _real_ratio(ratio, rel_tol)
    functions = _float_functions()
    ratios = []
    try:
        for point in _POINTS:
            values = {sym: point[k % len(point)] + 0.1 * k for k, sym in enumerate(symbols)}
            pa, pb = _point_value(da, values, functions), _point_value(db, values, functions)
            if pa is None and pb is None:
                continue
            if pa is None or pb is None:
                return False
            (fa, ma), (fb, mb) = pa, pb
            zero_a, zero_b = negligible(fa, ma), negligible(fb, mb)
            if zero_a and zero_b:  # both vanish at this point
                continue
            if zero_a or zero_b:
                return False
            ratios.append(fa / fb)
    except _Unsupported:
        return None
    except Exception:
        return False
    if len(ratios) < 2 or not all(close(r, ratios[0], rel_tol) for r in ratios):
        return False
    return _real_ratio(ratios[0], rel_tol)


def _real_ratio(ratio, rel_tol: float):
    """The real part of a ratio that is real (relative to its size), else False."""
    if ratio is False or ratio == 0 or not close(ratio, complex(ratio.real), rel_tol):
        return False
    return ratio.real


_RELATIONS = ("StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan")


def sympy_equal(pred: str, gold: str) -> bool | None:
    """True/False from sympy, None when either side cannot be read (or is outside the structural bound)."""
    import sympy

    if not (_safe_for_symbolic(pred) and _safe_for_symbolic(gold)):
        return None
    a, b = _read_pair(pred, gold)
    if a is None or b is None:
        return None
    if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
        try:
            return _equations_equal(*_imaginary_unit(a, b))
        except Exception:
            return None
    if all(type(x).__name__ in _RELATIONS for x in (a, b)):
        try:
            return _relations_equal(a, b)
        except Exception:
            return None
    if not all(isinstance(x, sympy.Expr) for x in (a, b)):
        try:
            return True if a == b else None  # sets, relations...: structural match, else let Math-Verify try
        except Exception:
            return None
    if not (_sympy_size_ok(a) and _sympy_size_ok(b)):
        return None
    if a.has(*_non_finite()) or b.has(*_non_finite()):  # a misread (e.g. \gamma as the Gamma function)
        return None
    a, b = _imaginary_unit(a, b)
    return _sympy_expr_equal(a, b)


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
            if not negligible(z.imag, abs(z)):
                raise _Unsupported("real function of a complex value")
            return complex(fn(z.real))

        return wrapped

    def log(z: complex, base: complex | None = None) -> complex:
        return cmath.log(z) if base is None else cmath.log(z) / cmath.log(base)

    def gamma_of(z: complex) -> complex:
        if abs(z.real) > 170:
            raise OverflowError("factorial too large")
        if not negligible(z.imag, abs(z)):
            raise _Unsupported("gamma of a complex value")
        return complex(math.gamma(z.real))

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
        sympy.acot: lambda z: cmath.atan(1 / z),
        sympy.asec: lambda z: cmath.acos(1 / z),
        sympy.acsc: lambda z: cmath.asin(1 / z),
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


def _float_eval(expr, subs: dict, functions: dict) -> tuple[complex, float]:
    """Evaluate ``expr`` with Python complex floats: bounded in time, raises ``OverflowError`` on huge values.

    Returns the value and the magnitude of the terms that produced it (sums add their terms' magnitudes,
    products multiply them), the scale against which rounding noise is judged (:func:`~.tolerance.negligible`).
    """
    import sympy
    from sympy.core.function import AppliedUndef

    magnitude = None
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
        value, magnitude = 0j, 0.0
        for arg in expr.args:
            v, m = _float_eval(arg, subs, functions)
            value += v
            magnitude += m
    elif isinstance(expr, sympy.Mul):
        value, magnitude = 1 + 0j, 1.0
        for arg in expr.args:
            v, m = _float_eval(arg, subs, functions)
            value *= v
            magnitude *= m
    elif isinstance(expr, sympy.Pow):
        (base, base_magnitude), (exponent, _) = (_float_eval(arg, subs, functions) for arg in expr.args)
        if base == 0 and exponent.real < 0:
            raise ZeroDivisionError("0 to a negative power")
        if base.imag == 0 and exponent.imag == 0 and (base.real > 0 or float(exponent.real).is_integer()):
            value = complex(math.pow(base.real, exponent.real))
        else:
            value = base**exponent
        if exponent.imag == 0 and exponent.real > 0:
            try:
                magnitude = math.pow(base_magnitude, exponent.real)
            except OverflowError:
                magnitude = math.inf
    elif isinstance(expr, sympy.binomial):
        n, k = (_float_eval(arg, subs, functions)[0] for arg in expr.args)
        g = functions[sympy.gamma]
        value = g(n + 1) / (g(k + 1) * g(n - k + 1))
    elif expr.func in functions:
        value = functions[expr.func](*(_float_eval(arg, subs, functions)[0] for arg in expr.args))
    elif isinstance(expr, AppliedUndef) and len(expr.args) == 1:
        # an unknown function f(u) (e.g. \omega(v+1/2) read as a call): the same fixed smooth function of u on
        # both sides, chosen by the name, so reordering compares equal and f(2u) vs 2f(u) does not
        u = _float_eval(expr.args[0], subs, functions)[0]
        k = 1 + (zlib.crc32(str(expr.func).encode()) % 997) / 997
        value = cmath.sin(k * u + 0.3) + 0.7 * k * u
    else:
        raise _Unsupported(type(expr).__name__)
    if not (abs(value) <= _FLOAT_LIMIT):  # also catches inf and nan
        raise OverflowError("value too large")
    return value, abs(value) if magnitude is None else max(magnitude, abs(value))


def _point_value(expr, subs: dict, functions: dict) -> tuple[complex, float] | None:
    """Float value at a point and the magnitude of its terms; None where the expression is undefined there
    (division by zero, log 0...)."""
    try:
        return _float_eval(expr, subs, functions)
    except (ZeroDivisionError, ValueError):
        return None


def _sympy_expr_equal(a, b) -> bool | None:
    """Equality of two sympy expressions, decided numerically (no expansion, so it stays bounded).

    Both sides are first evaluated with Python floats at a few fixed points (a bounded computation; a value
    beyond 1e250 makes the answer "unequal") and compared by :func:`~.tolerance.close` (``REL_TOL`` when a side
    holds a decimal, else the ``EXACT_TOL`` pre-check); when they agree, exact expressions are confirmed at 30
    digits, relative to the magnitude of their terms. Inexact expressions that expand to the same terms are
    compared term by term instead (``x + 1e-30`` is not ``x + 2e-30``). None means undecided (an unknown function).
    """
    import sympy

    try:
        if a == b:
            return True
        inexact = a.has(sympy.Float) or b.has(sympy.Float)
        symbols = sorted(a.free_symbols | b.free_symbols, key=str)
        if len(symbols) > 8:
            return False
        if inexact and symbols:  # term by term when both expand to the same terms: a small term is not lost
            try:
                ratio = _coefficient_ratio(a, b, symbols, REL_TOL)
            except Exception:
                ratio = NotImplemented
            if ratio is not NotImplemented:
                return ratio is not False and close(ratio, 1, REL_TOL)
        functions = _float_functions()
        points = _POINTS if symbols else ((),)
        checked = 0
        for point in points:
            values = {sym: point[k % len(point)] + 0.1 * k for k, sym in enumerate(symbols)}
            pa, pb = _point_value(a, values, functions), _point_value(b, values, functions)
            if pa is None or pb is None:
                if (pa is None) != (pb is None):
                    return False
                continue
            (fa, ma), (fb, mb) = pa, pb
            both_zero = negligible(fa, ma) and negligible(fb, mb)  # both vanish here, up to rounding
            if not both_zero and not close(fa, fb, REL_TOL if inexact else EXACT_TOL):
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
                    if bool(abs(dv) > CONFIRM_TOL * max(ma, mb)):
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


@functools.lru_cache(maxsize=4096)
def _mv_parse(text: str):
    """Math-Verify's reading of ``$text$`` (cached: a group's gold is read once per process); None if unread."""
    from math_verify import parse

    try:
        parsed = parse(f"${text}$", parsing_timeout=None)
    except Exception:
        return None
    return parsed or None


def math_verify_equal(pred: str, gold: str) -> bool:
    """Math-Verify with its signal-based timeouts disabled; only on small inputs (its ``verify`` simplifies,
    so its cost grows fast with size: the bound is decided here, before it runs)."""
    import sympy
    from math_verify import verify

    if not (_safe_for_symbolic(pred) and _safe_for_symbolic(gold)):
        return False
    if max(len(_TOKEN_RE.findall(pred)), len(_TOKEN_RE.findall(gold))) > MAX_VERIFY_TOKENS:
        return False
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    g, p = (_mv_parse(_E_NOTATION_RE.sub(r"(\1*10^{\2})", t)) for t in (gold, pred))  # e notation: as ours
    if g is None or p is None:
        return False
    for parsed in (g[0], p[0]):  # a misread side (e.g. \gamma read as the Gamma function's pole)
        if isinstance(parsed, sympy.Basic) and parsed.has(sympy.zoo, sympy.nan):
            return False
    smallest = _smallest_magnitude(g + p)
    if smallest < _MV_SMALLEST:  # its exact-number check chops small values (evalf(chop=True)): 1e-30 = 2e-30
        return False
    try:
        return bool(verify(g, p, float_rounding=_float_rounding(smallest), timeout_seconds=None))
    except Exception:
        return False


_MV_SMALLEST = 1e-6  # Math-Verify's numeric checks are absolute below about this size: not used there


def _float_rounding(smallest: float) -> int:
    """Decimal places for Math-Verify's rounding of decimals (its default, 6, is absolute: 0.0000123 would equal
    0.0000124): six significant digits of the smallest nonzero number either side holds."""
    if not 0 < smallest < 1:
        return 6
    return min(max(6, 5 - math.floor(math.log10(smallest))), 340)


def _smallest_magnitude(parsed: list) -> float:
    """Smallest nonzero absolute value among the numbers in Math-Verify's parsed sides (and their values)."""
    import sympy

    smallest = math.inf
    for item in parsed:
        if isinstance(item, sympy.Basic):
            numbers = list(item.atoms(sympy.Number))
            if getattr(item, "is_number", False):  # the value itself (6.674*10^{-11} holds no small atom)
                numbers.append(item.evalf(15))
            for number in numbers:
                try:
                    value = abs(complex(number))
                except (TypeError, ValueError):
                    continue
                if 0 < value < math.inf:
                    smallest = min(smallest, value)
    return smallest


_WARM = False


def warm() -> None:
    """Import sympy, latex2sympy and Math-Verify and run each once (once per process; idempotent)."""
    global _WARM
    if _WARM:
        return
    for pred, gold in (
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("2x+4y=3", "y=x"),
    ):
        sympy_equal(pred, gold)
    math_verify_equal("\\sqrt{4}", "2")
    _WARM = True
