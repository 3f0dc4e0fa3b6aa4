"""Exact-match scorer on normalised text (case, whitespace and edge punctuation ignored)."""

from __future__ import annotations

from agentscale.tasks.base import Score, TaskItem
from agentscale.tasks.scorers.normalize import normalize_text, same_text


def score_exact(answer: str | None, item: TaskItem) -> Score:
    """Correct when the normalised answer equals the normalised reference."""
    if answer is None or not answer.strip():
        return Score(False, "no answer")
    if same_text(answer, item.reference):
        return Score(True, "exact match")
    got, want = normalize_text(answer), normalize_text(item.reference)
    return Score(False, f"expected {want!r}, got {got[:200]!r}")
