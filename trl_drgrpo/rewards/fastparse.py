"""A fast reader for the plain part of LaTeX math (numbers, letters, + - * / ^, ``\\frac``, ``\\sqrt``, parentheses,
``\\sin``/``\\cos``/``\\tan``/``\\exp``, Greek letters), built straight into sympy.

latex2sympy's parser costs 10-700 ms per new string; most answers need none of its generality. This reader
mirrors latex2sympy's readings on its subset (``e`` is Euler's number, implicit products bind tighter than
``/``, ``x^23`` is ``x**23``, ``x_12`` is one symbol) and returns None for anything else, so the caller falls back
to latex2sympy for both sides of a comparison: a pair is always read by one reader.
"""

from __future__ import annotations

import re

_TOKEN_RE = re.compile(r"\s*(\d+\.\d+|\d+|\\[A-Za-z]+|[A-Za-z]|[-+*/^_(){}\[\]])")
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
}  # fmt: skip
_FUNCTIONS = {"sin", "cos", "tan", "exp"}


class _Unreadable(Exception):
    pass


class _Reader:
    STOP = ("+", "-", "*", "/", ")", "}", "]")  # tokens that end an implicit product

    def __init__(self, tokens: list[str]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unreadable(token)
        self.i += 1
        return token

    # expr := term (('+'|'-') term)*
    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    # term := product (('*'|'/') product)*   (implicit products bind tighter than '/', as in latex2sympy)
    def term(self):
        value = self.product()
        while self.peek() in ("*", "/"):
            op = self.take()
            right = self.product()
            value = value * right if op == "*" else value / right
        return value

    def product(self):
        if self.peek() in ("-", "+"):
            sign = self.take()
            value = self.product()
            return -value if sign == "-" else value
        value = self.power()
        while self.peek() is not None and self.peek() not in self.STOP:
            value = value * self.power()
        return value

    def power(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return base ** self.exponent()
        return base

    def exponent(self):
        token = self.peek()
        if token == "{":
            return self.group()
        if token is not None and (token[0].isdigit() or (len(token) == 1 and token.isalpha())):
            return self.atom_simple(self.take())
        raise _Unreadable(token)

    def group(self, open_: str = "{", close: str = "}"):
        self.take(open_)
        value = self.expr()
        self.take(close)
        return value

    def atom_simple(self, token: str):
        import sympy

        if token[0].isdigit():
            return sympy.Float(token) if "." in token else sympy.Integer(token)
        if token == "e":
            return sympy.E
        name = token
        if self.peek() == "_":
            self.take()
            sub = self.take()
            if sub == "{":
                parts = []
                while self.peek() not in ("}", None):
                    parts.append(self.take())
                self.take("}")
                if not parts or not all(p.isalnum() for p in parts):
                    raise _Unreadable("subscript")
                sub = "".join(parts)
                name = f"{token}_{{{sub}}}" if len(sub) > 1 else f"{token}_{sub}"
            elif sub.isalnum():
                name = f"{token}_{{{sub}}}" if len(sub) > 1 else f"{token}_{sub}"
            else:
                raise _Unreadable("subscript")
        return sympy.Symbol(name)

    def atom(self):
        import sympy

        token = self.take()
        if token == "(":
            value = self.expr()
            self.take(")")
            return value
        if token == "{":
            value = self.expr()
            self.take("}")
            return value
        if token[0].isdigit() or (len(token) == 1 and token.isalpha()):
            if len(token) == 1 and token.isalpha() and self.peek() == "(":
                raise _Unreadable("a call or a product: left to latex2sympy")
            return self.atom_simple(token)
        command = token[1:]
        if command == "pi":
            return sympy.pi
        if command in _GREEK:
            return sympy.Symbol(command)
        if command == "frac":
            return self.group() / self.group()
        if command == "sqrt":
            if self.peek() == "[":
                index = self.group("[", "]")
                return sympy.Pow(self.group(), 1 / index)
            return sympy.sqrt(self.group())
        if command in _FUNCTIONS and self.peek() in ("(", "{"):
            argument = self.group("(", ")") if self.peek() == "(" else self.group()
            return getattr(sympy, command)(argument)
        raise _Unreadable(token)


def fast_read(s: str):
    """sympy form of ``s`` when it lies in the plain subset, else None."""
    if "^^" in s or "e_" in s:
        return None
    tokens = []
    position = 0
    for m in _TOKEN_RE.finditer(s):
        if m.start() != position and s[position : m.start()].strip():
            return None
        tokens.append(m.group(1))
        position = m.end()
    if s[position:].strip() or not tokens:
        return None
    reader = _Reader(tokens)
    try:
        value = reader.expr()
    except (_Unreadable, ZeroDivisionError, TypeError, ValueError):
        return None
    except Exception:
        return None
    return value if reader.peek() is None else None
