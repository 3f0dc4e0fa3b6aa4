"""Scorers by name, as used by ``--scorer`` and a JSONL task's ``scorer`` option.

Every scorer is ``(extracted_answer, item) -> Score``; the name also fixes which answer extractor the
core runs first (``answer_format``).
"""

from __future__ import annotations

from agentscale.tasks.base import AnswerFormat, Scorer
from agentscale.tasks.errors import TaskScorerError
from agentscale.tasks.scorers.choice import score_choice
from agentscale.tasks.scorers.code_exec import build_program, code_scorer, score_code
from agentscale.tasks.scorers.exact import score_exact
from agentscale.tasks.scorers.mathverify import score_math
from agentscale.tasks.scorers.numeric import numeric_scorer, parse_number, score_numeric

SCORERS: dict[str, tuple[Scorer, AnswerFormat]] = {
    "exact": (score_exact, "text"),
    "numeric": (score_numeric, "number"),
    "choice": (score_choice, "choice"),
    "math": (score_math, "text"),
    "code": (score_code, "code"),
}


def get_scorer(name: str) -> tuple[Scorer, AnswerFormat]:
    """The scorer called ``name`` and the answer format it expects."""
    try:
        return SCORERS[name]
    except KeyError:
        raise TaskScorerError(f"unknown scorer {name!r}; valid scorers: {', '.join(SCORERS)}") from None


__all__ = [
    "SCORERS",
    "build_program",
    "code_scorer",
    "get_scorer",
    "numeric_scorer",
    "parse_number",
    "score_choice",
    "score_code",
    "score_exact",
    "score_math",
    "score_numeric",
]
