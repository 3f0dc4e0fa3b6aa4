"""Math scorer: symbolic equivalence with HuggingFace ``math-verify`` ("1/2" == "0.5" == "\\frac12").

Plain strings like ``2^(n-1)`` are wrapped in ``$...$`` before parsing: math-verify's expression
extractor would otherwise read only the leading ``2``, and "2" would then match ``2^(n-1)``. Answers
that read as prose ("The answer is 252") are parsed as-is so math-verify can find the number inside.
An item may list several accepted references in ``metadata['accepted']`` (the CHAMP loader does,
for "C(10, 5), or equivalently 252"); references that are prose ("No", "The sequence does not
exist") are compared as normalised text.

math-verify enforces its timeouts with ``SIGALRM``, which only works on the main thread; off the main
thread the timeouts are disabled and very long inputs are cut to ``MAX_ANSWER_CHARS`` instead.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from agentscale.tasks.base import Score, TaskItem
from agentscale.tasks.scorers.normalize import normalize_text, same_text
from agentscale.tasks.scorers.numeric import is_number, score_numeric

MAX_ANSWER_CHARS = 2000
_TIMEOUT_S = 5
_LATEX_MARKERS = ("$", "\\(", "\\[", "\\boxed")
_MATH_WORDS = frozenset(
    [
        "sqrt",
        "floor",
        "ceil",
        "sum",
        "prod",
        "mod",
        "log",
        "ln",
        "exp",
        "sin",
        "cos",
        "tan",
        "cot",
        "sec",
        "csc",
        "arcsin",
        "arccos",
        "arctan",
        "binom",
        "dbinom",
        "tbinom",
        "frac",
        "dfrac",
        "tfrac",
        "left",
        "right",
        "cdot",
        "times",
        "pi",
        "infty",
        "inf",
        "and",
        "or",
    ]
)
_WORD = re.compile(r"[A-Za-z]{3,}")
# a leading yes or no, not "no idea", "yes and no", "no one" (a reply starting so is no answer)
_YES_NO = re.compile(r"(yes|no)\b(?![ \t]+(?:idea|clue|and|or|one|longer)\b)")


def is_prose(text: str) -> bool:
    """True when ``text`` contains words that are not math function names (so it is not a formula)."""
    return any(word.lower() not in _MATH_WORDS for word in _WORD.findall(text.replace("\\", " ")))


class _TimeoutsOffNotice(logging.Filter):
    """Drops math-verify's warning that its timeouts are disabled: off the main thread they are, by
    design here (inputs are cut to MAX_ANSWER_CHARS instead), and the warning landed in the middle of
    every eval's output, once for parsing and once for verifying."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _module in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_module).addFilter(_TimeoutsOffNotice())


def _timeouts() -> int | None:
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


# a power whose exponent holds a power (9^{9^{9}}, 2^2^100) or has 5 digits or more (10^999999999999):
# sympy works the number out, and off the main thread nothing stops it (an eval hung for good)
_HUGE_POWER = re.compile(r"(?:\^|\*\*)[ \t]*+[{(]?[ \t]*+(?:[-+]?\d*[ \t]*+(?:\^|\*\*)|[-+]?\d{5})")


def _parse(text: str, *, wrap: bool) -> list[Any]:
    """What math-verify reads in `text`; nothing for a power too large to work out (only the text
    comparison can then match it)."""
    from math_verify import parse

    text = text[-MAX_ANSWER_CHARS:]
    if _HUGE_POWER.search(text):
        return []
    if wrap and not any(marker in text for marker in _LATEX_MARKERS):
        text = "$" + text.replace("**", "^") + "$"  # Python's power operator means nothing in LaTeX
    try:
        return list(parse(text, parsing_timeout=_timeouts()))
    except Exception:  # math-verify raises assorted sympy/latex errors on odd input
        return []


def _verify(gold: list[Any], pred: list[Any]) -> bool:
    from math_verify import verify

    if not gold or not pred:
        return False
    try:
        return bool(verify(gold, pred, timeout_seconds=_timeouts()))
    except Exception:
        return False


def _text_match(answer: str, reference: str) -> bool:
    if same_text(answer, reference):
        return True
    got, want = normalize_text(answer), normalize_text(reference)
    # "No" vs "No, it cannot": a bare yes/no reference is matched by the answer's leading yes/no.
    if want in ("yes", "no"):
        lead = _YES_NO.match(got)
        return lead is not None and lead.group(1) == want
    return False


def accepted_references(item: TaskItem) -> list[str]:
    """The reference strings an answer may match: ``metadata['accepted']`` or the reference."""
    accepted = item.metadata.get("accepted")
    if isinstance(accepted, list) and accepted and all(isinstance(a, str) for a in accepted):
        return list(accepted)
    return [item.reference]


# a formula, then prose after a bracket, a semicolon, ", " or ". ": "12 (because 2 + 10)", "12, not 13"
_LEAD = re.compile(r"[ \t]*+([^(;\n]+?)[ \t]*+(?:\(|;|,[ \t]|\.[ \t]|\n)")


def _leading_formula(answer: str) -> str | None:
    """The formula an answer of prose opens with, which is its answer: math-verify read the prose's
    last number ("12 (because 2+10)" was 2, "12, not 13" matched 13)."""
    if not is_prose(answer):
        return None
    lead = _LEAD.match(answer)
    if lead is None or is_prose(lead.group(1)) or not any(c.isdigit() for c in lead.group(1)):
        return None
    return lead.group(1)


# a one-letter name (n, k, x) outside a word or a LaTeX command; a leading `x =` names the answer
_VARIABLE = re.compile(r"(?<![A-Za-z\\])[A-Za-z](?![A-Za-z])")
_ASSIGNED = re.compile(r"^[ \t]*+[A-Za-z][ \t]*+=")


def _misread(reference: str, gold: list[Any]) -> bool:
    """Whether math-verify read a formula of a variable as a bare number: it cannot parse `floor(...)`
    or `sum_(i=1)^n` and returns the first number it meets, so "2" matched `2^floor(n/2)*floor(n/2)!`
    and "1" (or a reply cut before its answer, read as its first number) matched `sum_(k=1)^n 1/k`.
    A constant cannot equal an expression in n: such a reference is matched by its text only."""
    from sympy import Number

    return bool(gold) and isinstance(gold[0], Number) and _VARIABLE.search(_ASSIGNED.sub("", reference)) is not None


def score_math(answer: str | None, item: TaskItem) -> Score:
    """Correct when the answer is mathematically equivalent to (or textually equals) a reference."""
    if answer is None or not answer.strip():
        return Score(False, "no answer")
    answer = answer.strip()
    if is_number(answer):  # "1.5e3" was read as 1.5*E*3, and 1500 did not match it
        for reference in filter(is_number, accepted_references(item)):
            numeric = score_numeric(answer, item.model_copy(update={"reference": reference}))
            if numeric.correct:
                return numeric
    lead = _leading_formula(answer)
    pred = _parse(lead, wrap=True) if lead else _parse(answer, wrap=not is_prose(answer))
    if _text_match(answer, item.reference):
        return Score(True, "text match with the reference")
    for reference in accepted_references(item):
        if _text_match(answer, reference):
            return Score(True, f"text match with {reference!r}")
        if is_prose(reference):
            continue
        gold = _parse(reference, wrap=True)
        if not _misread(reference, gold) and _verify(gold, pred):
            return Score(True, f"equivalent to {reference!r}")
    shown = ", ".join(repr(str(p)) for p in pred[:1]) or "nothing parseable"
    return Score(False, f"expected {item.reference!r}, got {shown}")
