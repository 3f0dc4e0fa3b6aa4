"""Answer extraction: turn a completion into the answer that is passed on, voted on and scored.

Role prompts ask for a closing "Final answer: ..." line; extractors prefer that marker and fall back
to format-specific heuristics, because small models often forget it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from agentscale.graphs.spec import AnswerFormat

# Completions are arbitrary text, often a small model's thousands of blanks or backticks, and these
# patterns run on the loop that runs the graph: no two unbounded runs that can match the same text
# side by side (such patterns backtracked for seconds: 28 s on 50,000 blanks, 1.9 s on 20,000).
# "Final answer: X" or "final answer is X"; a bare "a final answer." is prose, not a marker
_FINAL = re.compile(r"final\s+answer\s*(?:is\s*(?:[:：]\s*)?|[:：]\s*)(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?")
_CHOICE = re.compile(r"(?:^|[\s(\[*])([A-J])(?:[)\].:,*]|\s|$)")
# an info string holds no backtick (CommonMark), so a line of backticks cannot open a fence at each
_CODE_BLOCK = re.compile(r"```[ \t]*+([A-Za-z0-9_+-]*+)[^\n`]*+\n(.*?)```", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_EXPLICIT_CHOICE = re.compile(r"answer\s*(?:(?:is|:)\s*)?\(?([A-J])\b", re.IGNORECASE)
_CODE_LINE = re.compile(r"^[ \t]*(def|class|import|from)\s", re.MULTILINE)


def _final_marker(text: str) -> str | None:
    """Content after the last 'Final answer:' marker, or of the last \\boxed{...} (LaTeX unwrapped)."""
    matches = list(_FINAL.finditer(text))
    if matches:
        value = matches[-1].group(1).strip().strip("*").strip()
        if value:
            boxed_in_line = _BOXED.findall(value)
            return _unlatex(boxed_in_line[-1]) if boxed_in_line else value
    boxed = _BOXED.findall(text)
    if boxed:
        return _unlatex(boxed[-1])
    return None


_LATEX_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def _unlatex(value: str) -> str:
    """Plain text of a boxed answer: fractions as a/b, \\text{} unwrapped, $ and spacing commands gone."""
    value = _LATEX_FRACTION.sub(r"\1/\2", value)
    value = _LATEX_WRAPPER.sub(r"\1", value)
    for token in ("\\$", "\\%", "\\!", "\\,", "\\;", "^\\circ", "^{\\circ}", "$"):
        value = value.replace(token, "")
    return value.strip()


def extract_text(text: str) -> str | None:
    marked = _final_marker(text)
    if marked is not None:
        return marked
    stripped = text.strip()
    return stripped or None


def _clean_number(raw: str) -> str:
    value = raw.replace(",", "").replace(" ", "")
    if "/" in value:
        return value
    if re.fullmatch(r"[-+]?\d+\.0+", value):
        value = value.split(".")[0]
    return value.lstrip("+")


def extract_number(text: str) -> str | None:
    marked = _final_marker(text)
    for candidate in (marked, text):
        if candidate:
            numbers = _NUMBER.findall(candidate)
            if numbers:
                # After the marker the first number is the answer; in free text the last one is.
                return _clean_number(numbers[0] if candidate is marked else numbers[-1])
    return None


def extract_choice(text: str) -> str | None:
    marked = _final_marker(text)
    if marked:
        found = _CHOICE.search(" " + marked)
        if found:
            return found.group(1)
    explicit = _EXPLICIT_CHOICE.findall(text)
    if explicit:
        return explicit[-1].upper()
    found_all = _CHOICE.findall(text)
    return found_all[-1] if found_all else None


def extract_code(text: str) -> str | None:
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
        chosen = (python or [body for _, body in blocks])[-1]
        return chosen.rstrip() + "\n" if chosen.strip() else None
    stripped = text.strip()
    if _CODE_LINE.search(stripped):
        return stripped + "\n"
    return None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "text": extract_text,
    "number": extract_number,
    "choice": extract_choice,
    "code": extract_code,
}


def extract_answer(text: str, answer_format: AnswerFormat = "text") -> str | None:
    """The answer in `text` for the given format, or None when there is none."""
    return EXTRACTORS[answer_format](text)


def normalize_for_vote(answer: str, answer_format: AnswerFormat = "text") -> str:
    """A comparison key so that '42', '42.0' and ' 42 ' count as the same vote."""
    if answer_format == "number":
        cleaned = _clean_number(answer)
        try:
            value = float(cleaned) if "/" not in cleaned else _fraction(cleaned)
        except (ValueError, ZeroDivisionError):  # "1/0" is a vote for itself, not a failed vote
            return cleaned
        return repr(round(value, 9))
    if answer_format == "choice":
        return answer.strip().upper()[:1]
    if answer_format == "code":
        return "\n".join(line.rstrip() for line in answer.strip().splitlines() if line.strip())
    folded = unicodedata.normalize("NFKC", answer).casefold()
    return " ".join(re.sub(r"[^\w\s.-]", " ", folded).split()).strip(".")


def _fraction(text: str) -> float:
    numerator, denominator = text.split("/")
    return float(numerator) / float(denominator)
