"""A reader for answers written in plain programming syntax (sympy / calculator style), built straight into sympy.

``3*tan(pi*y/4) - 2``, ``log(b)*b**t``, ``5*sin(sqrt(72/2)*s)``, ``E**2``, ``acos(0)``: a whitelist tokenizer and a
recursive-descent parser of our own. Nothing is evaluated as Python code (no ``eval``, ``sympify`` or
``parse_expr``): each token is one of the names below, a number, a letter or an operator, and everything else
makes the reader decline (None), so the caller keeps its LaTeX readers.

Conventions (docs/reward.md, "Plain programming syntax"):

- ``*``, ``**`` and ``^`` (power, never XOR), implicit products (``2x``, ``3sin(x)``, ``(x+1)(x-1)``); implicit
  products bind tighter than ``/`` (``1/2x`` is ``1/(2x)``), as the LaTeX readers read ``1/2x``;
- functions only as calls ``name(...)``: ``sin cos tan sec csc cot``, their inverses (``asin``/``arcsin``, ...),
  ``sinh cosh tanh``, ``exp sqrt abs``/``Abs``, ``ln`` and ``log``: ``log`` is the NATURAL log, as in sympy
  (``log(x, b)`` is base ``b``); the LaTeX ``\\log x`` keeps its latex2sympy reading (base 10), so ``log(x)``
  equals ``\\ln x``, not ``\\log x``;
- ``pi``; ``e`` and ``E`` are Euler's number (as sympy's ``E`` and latex2sympy's ``e``: a side that uses ``e`` as
  a variable is read the same way on both sides, so it compares consistently); ``oo``/``inf``/``infinity``;
- a multi-letter word that is none of these is a product of letters (``xy`` is ``x*y``, as in LaTeX), unless it
  holds one of the names (``sinx``, ``pix``: declined, never guessed); Greek names are symbols (``theta``);
- one top-level ``=`` makes an equation; anything else (``!``, ``<``, ``|``, ``_`` but a letter's index, a
  letter or word before ``(`` that is not a function of ours: ``f(x)``, ``x(x+1)``, ``log10(x)``) is declined.

Work is bounded by the token count and nesting, both capped by the caller's structural guard before this runs,
and by a cap on literal powers (a number to an integer power beyond ``MAX_EXPONENT`` is declined).
"""

from __future__ import annotations

import functools
import re

from .fastparse import _Reader as _LatexReader
from .fastparse import _Unreadable as _Declined
from .limits import MAX_EXPONENT, MAX_NESTING, MAX_TOKENS

_TOKEN_RE = re.compile(r"\s*(\d+\.\d*|\.\d+|\d+|[A-Za-z]+|\*\*|[-+*/^_(){}\[\],=])")
_ARC = {
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "arcsec": "asec",
    "arccsc": "acsc",
    "arccot": "acot",
}
FUNCTIONS = {
    "sin", "cos", "tan", "sec", "csc", "cot", "asin", "acos", "atan", "asec", "acsc", "acot", "sinh", "cosh",
    "tanh", "exp", "sqrt", "abs", "Abs", "ln", "log", *_ARC,
}  # fmt: skip
_INFINITY = {"oo", "inf", "infinity", "Infinity"}
CONSTANTS = {"pi", "e", "E", *_INFINITY}
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
}  # fmt: skip
_RESERVED = sorted(FUNCTIONS | {"pi", "oo", "inf"}, key=len, reverse=True)
_CLOSING = {"(": ")", "{": "}"}
_MAX_ARGS = 2

# A side is in plain syntax when it has no LaTeX command and uses a name of ours as a word (a whitelisted call,
# ``pi``, ``oo``/``inf``/``infinity``) or a power written ``**`` or ``^(``.
_MARK_RE = re.compile(
    r"(?<![A-Za-z])(?:(?:" + "|".join(sorted(FUNCTIONS, key=len, reverse=True)) + r")\(|pi(?![A-Za-z])"
    r"|(?:oo|inf|infinity|Infinity)(?![A-Za-z]))|\*\*|\^\("
)


def is_plain(s: str) -> bool:
    """Whether ``s`` is written in plain programming syntax (no backslash; a call, ``pi``, ``oo``, ``**``, ``^(``)."""
    return "\\" not in s and _MARK_RE.search(s) is not None


class _Reader(_LatexReader):
    """The fast LaTeX reader's grammar (sums, terms, implicit products), with plain syntax's atoms and powers."""

    STOP = (*_LatexReader.STOP, ",", "=")

    def __init__(self, tokens: list[str]):
        super().__init__(tokens)
        self.depth = 0

    def relation(self):
        import sympy

        left = self.expr()
        if self.peek() == "=":
            self.take()
            return sympy.Eq(left, self.expr(), evaluate=False)
        return left

    def power(self):
        base = self.atom()
        if self.peek() in ("^", "**"):
            self.take()
            return _power(base, self.exponent())
        return base

    def exponent(self):
        if self.peek() in ("-", "+"):  # x**-1, 10^-3
            sign = self.take()
            value = self.exponent()
            return -value if sign == "-" else value
        return self.power()

    def bracket(self):
        opening = self.take()
        if opening not in _CLOSING:
            raise _Declined(opening)
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _Declined("nesting")
        value = self.expr()
        self.take(_CLOSING[opening])
        self.depth -= 1
        return value

    def call(self, name: str):
        import sympy

        self.take("(")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _Declined("nesting")
        args = [self.expr()]
        while self.peek() == "," and len(args) < _MAX_ARGS:
            self.take()
            args.append(self.expr())
        self.take(")")
        self.depth -= 1
        if len(args) == 2 and name != "log":
            raise _Declined(name)
        if name in ("ln", "log"):
            return sympy.log(*args)
        if name in ("abs", "Abs"):
            return sympy.Abs(args[0])
        return getattr(sympy, _ARC.get(name, name))(args[0])

    def atom(self):
        import sympy

        token = self.peek()
        if token in _CLOSING:
            return self.bracket()
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            return sympy.Float(token) if "." in token else sympy.Integer(token)
        if not token.isalpha():
            raise _Declined(token)
        if token in FUNCTIONS:
            if self.peek() != "(":
                raise _Declined(f"{token} without a call")
            return self.call(token)
        if self.peek() == "(" and token != "pi":  # f(x), y(t), omega(t): a call or a product, as in fastparse
            raise _Declined(f"{token}(...): a call or a product")
        if token == "pi":
            return sympy.pi
        if token in ("e", "E"):
            return sympy.E
        if token in _INFINITY:
            return sympy.oo
        if token in _GREEK:
            return sympy.Symbol(token)
        if len(token) == 1:
            return self.letter(token)
        if any(name in token for name in _RESERVED):
            raise _Declined(f"a name glued into {token}")
        letters = [sympy.E if c == "e" else sympy.Symbol(c) for c in token[:-1]]
        return sympy.Mul(*letters) * self.letter(token[-1])

    def letter(self, name: str):
        """A letter, with its index (``x_1``, ``x_{12}``) named as the LaTeX readers name it."""
        import sympy

        if name == "e":
            return sympy.E
        if self.peek() != "_":
            return sympy.Symbol(name)
        self.take()
        sub = self.take()
        if sub == "{":
            sub = self.take()
            self.take("}")
        if not sub.isalnum() or (sub[0].isdigit() and not sub.isdigit()):
            raise _Declined("index")
        return sympy.Symbol(f"{name}_{{{sub}}}" if len(sub) > 1 else f"{name}_{sub}")


def _power(base, exponent):
    """``base**exponent``, declined where sympy would build a huge exact number (``9**(4999*4999)``)."""
    if base.is_number and exponent.is_Integer and abs(int(exponent)) > MAX_EXPONENT:
        if base not in (0, 1, -1):
            raise _Declined("exponent")
    return base**exponent


def _tokens(s: str) -> list[str] | None:
    tokens, position = [], 0
    for m in _TOKEN_RE.finditer(s):
        if m.start() != position and s[position : m.start()].strip():
            return None
        tokens.append(m.group(1))
        position = m.end()
    if s[position:].strip() or not tokens or len(tokens) > MAX_TOKENS:
        return None
    return tokens


@functools.lru_cache(maxsize=4096)
def plain_read(s: str, marked: bool = True):
    """sympy form of ``s`` when it is written in plain programming syntax and lies in the reader's subset, else
    None (cached). ``marked=False`` reads a side with no mark of plain syntax too (no backslash still needed)."""
    if "\\" in s or (marked and not is_plain(s)):
        return None
    tokens = _tokens(s)
    if tokens is None:
        return None
    reader = _Reader(tokens)
    try:
        value = reader.relation()
    except (_Declined, ZeroDivisionError, TypeError, ValueError, AttributeError):
        return None
    except Exception:
        return None
    return value if reader.peek() is None else None
