"""What a coordinator graph's discussions did over an eval: how many rounds ran, how often the CEO
stopped early, its decisions fell back, or the budget ended one.

Why: comparing CEO settings (the point of a `coordinator:` graph) needs these beside the accuracy;
they were visible only item by item in `runs show`, so every user scripted them from the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DiscussionStats:
    """Over `questions` discussions: the rounds of workers run, the discussions the CEO stopped
    before `max_rounds`, the CEO decisions that fell back (no usable reply, a failed or refused
    call), and the discussions a budget ended."""

    questions: int
    rounds_run: int
    ceo_stops: int
    fallbacks: int
    budget_stops: int

    @property
    def mean_rounds(self) -> float:
        return self.rounds_run / self.questions if self.questions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "mean_rounds": round(self.mean_rounds, 3),
            "ceo_stops": self.ceo_stops,
            "fallbacks": self.fallbacks,
            "budget_stops": self.budget_stops,
        }

    def text(self) -> str:
        return (
            f"discussions: {self.mean_rounds:.2f} rounds per question; the CEO stopped {self.ceo_stops} of "
            f"{self.questions} early, {self.fallbacks} decision(s) fell back, a budget ended {self.budget_stops}"
        )


def discussion_stats(stored_rounds: Iterable[str | None]) -> DiscussionStats | None:
    """The statistics of the items' stored rounds (`runitem.rounds_json`); None when no item has any
    (not a coordinator graph)."""
    discussions = [json.loads(text) for text in stored_rounds if text is not None]
    if not discussions:
        return None
    decisions = [r["decision"] for rounds in discussions for r in rounds if r.get("decision")]
    return DiscussionStats(
        questions=len(discussions),
        rounds_run=sum(1 for rounds in discussions for r in rounds if r["ran"]),
        ceo_stops=sum(
            1 for rounds in discussions if rounds and rounds[-1].get("decision", {}).get("decision") == "stop"
        ),
        fallbacks=sum(1 for decision in decisions if decision.get("source") == "fallback"),
        budget_stops=sum(1 for rounds in discussions if any(r.get("stopped_reason") for r in rounds)),
    )
