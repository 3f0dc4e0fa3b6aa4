"""Multiple-choice scorer: an answer may be the option letter ("B", "(b)", "B.") or the option text.

Both sides are mapped to an option index first, so a reference given as text and an answer given as
a letter (or the other way round) still compare correctly. Text is tried before letters so an option
that itself starts with a letter ("A cat") is not misread as option A.
"""

from __future__ import annotations

import re
import string

from agentscale.tasks.base import Score, TaskItem
from agentscale.tasks.scorers.normalize import normalize_text

_LETTER = re.compile(
    r"\s*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?(?:\s*[:\-])?\s*)?"
    r"(?:\(([A-Za-z])\)|([A-Za-z])(?=$|[.):\s]))",
    re.IGNORECASE,
)


def _letter(text: str) -> str | None:
    match = _LETTER.match(text)
    if match is None:
        return None
    letter = (match.group(1) or match.group(2)).upper()
    rest = text[match.end() :].strip().lstrip(".):").strip()
    # "B" / "(B)" / "B." alone, or "B) <anything>" where the letter is clearly a label.
    if match.group(1) or not rest or text[match.end() : match.end() + 1] in ".):":
        return letter
    return None


def choice_index(text: str, choices: list[str] | None) -> int | None:
    """Index of the option ``text`` designates (by text, then by letter), or None."""
    if choices:
        wanted = normalize_text(text)
        for index, choice in enumerate(choices):
            if normalize_text(choice) == wanted:
                return index
    letter = _letter(text)
    if letter is None:
        return None
    index = string.ascii_uppercase.index(letter)
    if choices is not None and index >= len(choices):
        return None
    return index


def score_choice(answer: str | None, item: TaskItem) -> Score:
    """Correct when the answer designates the same option as the reference."""
    if answer is None or not answer.strip():
        return Score(False, "no answer")
    wanted = choice_index(item.reference, item.choices)
    if wanted is None:
        return Score(False, f"reference {item.reference!r} names no option")
    got = choice_index(answer, item.choices)
    label = string.ascii_uppercase[wanted]
    if got is None:
        return Score(False, f"answer {answer.strip()[:100]!r} names no option (expected {label})")
    if got == wanted:
        return Score(True, f"option {label}")
    return Score(False, f"expected option {label}, got {string.ascii_uppercase[got]}")
