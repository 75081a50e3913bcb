"""Structured answers: splitting tuples, intervals, sets, lists and matrices into elements."""

from __future__ import annotations

import re


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
