"""The near-miss JSON small models write, mended where the parser stops.

Real Qwen2.5-Coder-0.5B replies put LaTeX in JSON strings (`"the answer is \\(-2\\)"`): `\\(` starts
no JSON escape, and the whole object was lost — 5 of 12 handbook extraction replies, and a CEO's
decision and an evaluator's verdict in a discussion (the CEO walk on the real 0.5B: the verdict
read "unclear" with the raw JSON as its advice, and a retry of the decision turned a stop into two
more rounds). Such a backslash is taken as a backslash; valid escapes keep their JSON meaning.
"""

from __future__ import annotations

import json
from typing import Any

MAX_REPAIRS = 20  # mends in one reply at most: past that it is no near miss
# json's messages for a backslash that starts no escape: how far past the backslash it points
_BAD_ESCAPES = {"Invalid \\escape": 0, "Invalid \\uXXXX escape": 1}


def escape_mended(text: str, error: json.JSONDecodeError) -> str | None:
    """`text` with the backslash `error` refused escaped, or None when `error` is no bad escape."""
    if error.msg not in _BAD_ESCAPES:
        return None
    at = error.pos - _BAD_ESCAPES[error.msg]
    return text[:at] + "\\" + text[at:]


def decode_mending_escapes(text: str, start: int) -> tuple[Any, int]:
    """`json.JSONDecoder().raw_decode(text, start)`, its bad escapes mended; the end is the one in
    `text` (each mend adds a character before it)."""
    decoder = json.JSONDecoder()
    mended = text
    for _ in range(MAX_REPAIRS):
        try:
            value, end = decoder.raw_decode(mended, start)
            return value, end - (len(mended) - len(text))
        except json.JSONDecodeError as exc:
            again = escape_mended(mended, exc)
            if again is None:
                raise
            mended = again
    value, end = decoder.raw_decode(mended, start)
    return value, end - (len(mended) - len(text))


def open_brackets(text: str) -> tuple[list[str], bool, bool]:
    """What `text`, read as the start of JSON, leaves open at its end: the brackets still open (in
    order), whether a string is, and whether a closing bracket closed nothing (the text is broken
    there, not cut). Strings are skipped, escapes within them too."""
    opened: list[str] = []
    in_string = escaped = underflow = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            opened.append(char)
        elif char in "]}":
            if opened:
                opened.pop()
            else:
                underflow = True
    return opened, in_string, underflow
