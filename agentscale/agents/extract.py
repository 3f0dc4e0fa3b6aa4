"""Answer extraction: turn a completion into the answer that is passed on, voted on and scored.

Role prompts ask for a closing "Final answer: ..." line; extractors prefer that marker and fall back
to format-specific heuristics, because small models often forget it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from agentscale.graphs.spec import AnswerFormat
from agentscale.tasks.scorers.numeric import plain_numbers

# Completions are arbitrary text, often a small model's thousands of blanks or backticks, and these
# patterns run on the loop that runs the graph: no two unbounded runs that can match the same text
# side by side (such patterns backtracked for seconds: 28 s on 50,000 blanks, 1.9 s on 20,000).
# "Final answer: X" or "final answer is X" (X on the marker's line, else the paragraph below it);
# a bare "a final answer." is prose, not a marker
_FINAL = re.compile(r"final\s+answer[ \t]*(?:is[ \t]*(?:[:：][ \t]*)?|[:：][ \t]*)([^\n]*)", re.IGNORECASE)
# what may precede a marker on its line for it to be one ("**Final answer:**", "So the final answer is"),
# rather than prose about it ("This final answer is consistent with ...")
_MARKER_LEADS = frozenset(["", "the", "my", "our", "so", "thus", "therefore", "hence", "and"]) | {
    f"{lead} the" for lead in ("so", "thus", "therefore", "hence", "and")
}
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?%?")
_CHOICE = re.compile(r"(?:^|[\s(\[*])([A-J])(?:[)\].:,*]|\s|$)")
# an info string holds no backtick (CommonMark), so a line of backticks cannot open a fence at each
_CODE_BLOCK = re.compile(r"```[ \t]*+([A-Za-z0-9_+-]*+)[^\n`]*+\n(.*?)```", re.DOTALL)
# "answer is b", "answer: (C)"; not "to answer a question" (no "is" or colon: prose)
_EXPLICIT_CHOICE = re.compile(r"(?i:answer)\s*(?:(?i:is)\b\s*(?::\s*)?|:\s*)\(?([A-Ja-j])\b")
# a capital letter followed by a lower-case word reads as a word ("I believe", "A and B are") not an option
_PROSE_AFTER = re.compile(r"[ \t]+[a-z]")
_CODE_LINE = re.compile(r"^[ \t]*(def|class|import|from)\s", re.MULTILINE)
_DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]", re.MULTILINE)


def _final_marker(text: str) -> str | None:
    r"""Content after the last 'Final answer:' marker, or of the last \boxed{...} (LaTeX unwrapped).

    A marker that starts its line wins over one inside prose after it, and an answer that starts on
    the line below its marker is that paragraph (a grid, a list: its first row alone was taken).

    >>> _final_marker("Final answer: 252\nThis final answer is consistent with the count above.")
    '252'
    >>> _final_marker("Final answer:\n1 2\n3 4\n\nRotated once.")
    '1 2\n3 4'
    """
    matches = list(_FINAL.finditer(text))
    if matches:
        match = ([m for m in matches if _starts_line(text, m.start())] or matches)[-1]
        value = match.group(1).strip() or _paragraph_after(text, match.end())
        value = value.strip().strip("*").strip()
        if value:
            boxed_in_line = boxed_contents(value)
            return _unlatex(boxed_in_line[-1]) if boxed_in_line else value
    boxed = boxed_contents(text)
    if boxed:
        return _unlatex(boxed[-1])
    return None


def _starts_line(text: str, start: int) -> bool:
    prefix = text[text.rfind("\n", 0, start) + 1 : start]
    lead = " ".join(prefix.replace(",", " ").split()).strip("*#>_- ").lower()
    return lead in _MARKER_LEADS


def _paragraph_after(text: str, position: int) -> str:
    """The lines from `position` up to the first blank one."""
    lines = []
    for line in text[position:].lstrip("\r\n").splitlines():
        if not line.strip():
            break
        lines.append(line.rstrip())
    return "\n".join(lines)


def boxed_contents(text: str) -> list[str]:
    r"""What every \boxed{...} holds, braces nested to any depth (`\boxed{2^{10}}`, a JSON object),
    in order of the boxes; found in one pass, so a reply of unclosed boxes costs no more than its length.

    >>> boxed_contents(r'\boxed{\frac{1}{2^{3}}} and \boxed{{"a": 1}}')
    ['\\frac{1}{2^{3}}', '{"a": 1}']
    """
    found: list[tuple[int, str]] = []
    opened: list[tuple[int, bool]] = []  # (position of "{", whether it opens a box)
    for index, char in enumerate(text):
        if char == "{":
            opened.append((index, text.endswith("\\boxed", 0, index)))
        elif char == "}" and opened:
            start, is_box = opened.pop()
            if is_box:
                found.append((start, text[start + 1 : index]))
    return [content for _, content in sorted(found)]


_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def _unlatex(value: str) -> str:
    """Plain text of a boxed answer: fractions as a/b, \\text{} unwrapped, $ and spacing commands gone."""
    value = plain_numbers(value)
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
    if marked and "=" in marked:  # "x = 3, so 2x = 6", "3 + 4 = 7": the result, after the last "="
        result = marked.rsplit("=", 1)[1]
        marked = result if _NUMBER.search(plain_numbers(result)) else marked
    for candidate in (marked, text):
        if candidate:
            numbers = _NUMBER.findall(plain_numbers(candidate))
            if numbers:
                # After the marker the first number is the answer; in free text the last one is.
                return _clean_number(numbers[0] if candidate is marked else numbers[-1])
    return None


def extract_choice(text: str) -> str | None:
    """The option letter: after the marker, the first letter that reads as an option (in "I believe
    it is C" or "A and B are wrong; C", the words "I" and "A" are not); else the last explicit
    "answer is X"; else the last letter standing alone in the text."""
    marked = _final_marker(text)
    if marked:
        padded = " " + marked
        found = list(_CHOICE.finditer(padded))
        options = [m for m in found if not _PROSE_AFTER.match(padded, m.end(1))]
        if options or found:
            return (options or found)[0].group(1)
    explicit = _EXPLICIT_CHOICE.findall(text)
    if explicit:
        return explicit[-1].upper()
    found_all = _CHOICE.findall(text)
    return found_all[-1] if found_all else None


def extract_code(text: str) -> str | None:
    """The code of a reply: its last fenced block that defines something (a usage example or a test
    call after the solution replaced it), else its last block; without fences, the text from its
    first line of code on (prose before it was a SyntaxError)."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
        pool = python or [body for _, body in blocks]
        chosen = ([body for body in pool if _DEFINITION.search(body)] or pool)[-1]
        return chosen.rstrip() + "\n" if chosen.strip() else None
    first_code = _CODE_LINE.search(text)
    if first_code:
        return text[first_code.start() :].strip() + "\n"
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
