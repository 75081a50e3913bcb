"""Final-answer extraction from a response (``\\boxed{}`` or the r1 ``<answer>`` tags)."""

from __future__ import annotations

import logging
import re
from typing import Any

from ..templates import Template, get_template
from .limits import MAX_ANSWER_CHARS, MAX_RESPONSE_CHARS

logger = logging.getLogger(__name__)

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
