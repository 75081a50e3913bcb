"""Final-answer extraction from a response: ``\\boxed{}`` or the r1 ``<answer>`` tags, by the paper's rules or
leniently.

``answer_format="paper"`` (the default) follows the paper's reward code (``understand_r1_zero/math_grader.py``):

* r1: the response must contain the literal ``</think> <answer>`` (one space) and a ``</answer>``; the answer is
  the text after the LAST ``<answer>`` with every ``</answer>`` removed; a ``\\boxed`` inside it must be a
  well-formed ``\\boxed{...}`` (its content is the answer).
* boxed: the LAST ``\\boxed`` of the response must open ``\\boxed{`` and close; ``\\fbox`` and ``\\boxed 5`` do
  not count.

``answer_format="lenient"`` accepts any whitespace (or none) between ``</think>`` and ``<answer>``, requires the
answer block to follow ``</think>``, and reads ``\\boxed 5`` and ``\\fbox{5}`` too.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from ..templates import Template, get_template
from .limits import MAX_ANSWER_CHARS, MAX_RESPONSE_CHARS

logger = logging.getLogger(__name__)

AnswerFormat = Literal["paper", "lenient"]
ANSWER_FORMATS: tuple[str, ...] = ("paper", "lenient")


def check_answer_format(answer_format: str) -> str:
    """``answer_format`` itself, or one clear error naming the accepted values."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    return answer_format


def _clean_response(response: Any) -> str:
    if not isinstance(response, str):
        response = "" if response is None else str(response)
    if len(response) > MAX_RESPONSE_CHARS:
        response = response[-MAX_RESPONSE_CHARS:]
    return response.replace("\x00", "")


def _braced(text: str, i: int) -> str | None:
    """Content of the brace group opening at ``text[i] == '{'`` (None if unclosed or too long)."""
    depth, j, end_limit = 0, i, min(len(text), i + MAX_ANSWER_CHARS + 2)
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
    return None


def last_boxed(text: str, lenient: bool = False) -> str | None:
    """Content of the LAST ``\\boxed{...}`` in ``text``; lenient also reads ``\\fbox{...}`` and ``\\boxed 5``."""
    start = text.rfind("\\boxed")
    if lenient:
        start = max(start, text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (6 if text.startswith("\\boxed", start) else 5)
    n = len(text)
    if lenient and i < n and text[i] == " ":  # "\boxed 5": the next whitespace-delimited token
        m = re.match(r" +([^\s$]+)", text[i:])
        return m.group(1)[:MAX_ANSWER_CHARS] if m else None
    if i >= n or text[i] != "{":
        return None
    return _braced(text, i)


_BOX_SEPARATOR_RE = re.compile(
    r"(?:\s|,|;|\.|\$|\\[()\[\]]|\\q?quad|\\[,;!]|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b)*"
)


def gold_boxed(text: str) -> str | None:
    """The answer of a gold written as a solution: its last ``\\boxed{...}``, joined with the boxes right
    before it when only separators stand between them (``\\boxed{1}, \\boxed{2}`` -> ``1,2``)."""
    boxes, start = [], text.find("\\boxed{")
    while start >= 0 and len(boxes) < 64:
        content = _braced(text, start + 6)
        if content is None:
            break
        end = start + 7 + len(content) + 1
        boxes.append((start, end, content.strip()))
        start = text.find("\\boxed{", end)
    if not boxes:
        return None
    group = [boxes[-1]]
    for previous in reversed(boxes[:-1]):
        if not _BOX_SEPARATOR_RE.fullmatch(text[previous[1] : group[0][0]]):
            break
        group.insert(0, previous)
    return ",".join(c for _, _, c in group if c) or None


def _extract_r1_paper(text: str) -> str | None:
    if "</think> <answer>" not in text or "</answer>" not in text:
        return None
    answer = text.split("<answer>")[-1].replace("</answer>", "")
    if "\\boxed" in answer:
        answer = last_boxed(answer)
    return answer


def _extract_r1_lenient(text: str) -> str | None:
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    if open_ < 0 or not text[:open_].rstrip().endswith("</think>"):
        return None
    answer = text[open_ + len("<answer>") : close]
    if "\\boxed" in answer or "\\fbox" in answer:
        answer = last_boxed(answer, lenient=True)
    return answer


def extract_answer(
    response: str, template: str | Template = "qwen_math", answer_format: str = "paper"
) -> str | None:
    """Return the final answer written in ``response`` under ``template``'s answer format, or None."""
    fmt = get_template(template).answer_format
    lenient = check_answer_format(answer_format) == "lenient"
    try:
        text = _clean_response(response)
        if fmt == "r1":
            answer = _extract_r1_lenient(text) if lenient else _extract_r1_paper(text)
        else:
            answer = last_boxed(text, lenient=lenient)
    except Exception:  # extraction must never raise
        logger.debug("answer extraction failed", exc_info=True)
        return None
    if answer is None:
        return None
    answer = answer.strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
