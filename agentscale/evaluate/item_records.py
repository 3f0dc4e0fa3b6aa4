"""What an eval's items' stored records say beyond their answers: what a coordinator graph's
discussions did (rounds run, the CEO's early stops, fallen-back decisions, budget stops), what a
`memory:` graph drew from its handbook (questions shown behaviors, questions citing one), and which
items ended early and which a retry asks again.

Why: comparing CEO settings or handbooks needs these beside the accuracy; they were visible only item
by item in `runs show`, and a handbook's retrieval could reach no question without a word. The eval's
summary, its HTML report and `runs show` read them from the same stored columns and say them in the
same words (the report once offered a retry that asked nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentscale.agents.coordinator import UNUSABLE_REPLIES
from agentscale.errors import BudgetExceeded
from agentscale.models.budget import is_overrun

if TYPE_CHECKING:
    from agentscale.storage.db import Store


@dataclass(frozen=True)
class HandbookUse:
    """Of an eval's scored questions, how many were `shown` behaviors and how many `cited` one."""

    shown: int
    cited: int

    def to_dict(self) -> dict[str, int]:
        return {"questions_shown_behaviors": self.shown, "questions_citing": self.cited}

    def text(self, questions: int) -> str:
        return f"behaviors shown to {self.shown} of {questions} questions, cited in {self.cited}"


def handbook_use_of(stored_uses: Iterable[str | None]) -> HandbookUse:
    """From the items' `runitem.handbook_json` (None: an item stored without it)."""
    uses = [json.loads(text) for text in stored_uses if text is not None]
    return HandbookUse(sum(1 for use in uses if use["behaviors"]), sum(1 for use in uses if use["cited"]))


@dataclass(frozen=True)
class DiscussionStats:
    """Over `questions` discussions: the rounds of workers run, the discussions the CEO stopped
    before `max_rounds`, the CEO decisions that fell back (no usable reply, a failed or refused
    call) in rounds that ran, and the discussions a budget ended (a CEO call the budget refused ends
    the discussion: it was counted as a fallback too)."""

    questions: int
    rounds_run: int
    ceo_stops: int
    fallbacks: int
    budget_stops: int
    unparsed: int = 0  # fallbacks after replies none of which parsed as a decision
    retried: int = 0  # decisions applied after a first reply that could not be used (asked again)

    @property
    def mean_rounds(self) -> float:
        return self.rounds_run / self.questions if self.questions else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "mean_rounds": round(self.mean_rounds, 3),
            "ceo_stops": self.ceo_stops,
            "fallbacks": self.fallbacks,
            "unparsed_fallbacks": self.unparsed,
            "retried_decisions": self.retried,
            "budget_stops": self.budget_stops,
        }

    def text(self) -> str:
        """One line; fallbacks on replies that never parsed name the fix: SmolLM2 as CEO wrote no
        decision in 3 tries a round, 288 s for one question, and `structured_output: true` made all 8
        of its decisions parse (a real-model walk), where nothing at run time pointed to it."""
        unparsed = (
            f" ({self.unparsed} on replies that never parsed as a decision: "
            "coordinator.structured_output: true makes a small CEO model write it in form)"
            if self.unparsed
            else ""
        )
        # a decision asked again after an unusable reply: invisible before, though a real 0.5B CEO's
        # 8 retries each turned a stop into a paid round (the CEO walk on the real 0.5B)
        retried = f", {self.retried} asked again after an unusable reply" if self.retried else ""
        return (
            f"{self.mean_rounds:.2f} rounds per question; the CEO stopped {self.ceo_stops} of "
            f"{self.questions} early, {self.fallbacks} decision(s) fell back{unparsed}{retried}, a budget ended "
            f"{self.budget_stops}"
        )


def discussion_stats(stored_rounds: Iterable[str | None]) -> DiscussionStats | None:
    """The statistics of the items' stored rounds (`runitem.rounds_json`); None when no item has any
    (not a coordinator graph)."""
    discussions = [json.loads(text) for text in stored_rounds if text is not None]
    if not discussions:
        return None
    applied = [r["decision"] for rounds in discussions for r in rounds if r.get("decision") and r["ran"]]
    return DiscussionStats(
        questions=len(discussions),
        rounds_run=sum(1 for rounds in discussions for r in rounds if r["ran"]),
        ceo_stops=sum(
            1 for rounds in discussions if rounds and rounds[-1].get("decision", {}).get("decision") == "stop"
        ),
        fallbacks=sum(1 for decision in applied if decision.get("source") == "fallback"),
        budget_stops=sum(1 for rounds in discussions if any(r.get("stopped_reason") for r in rounds)),
        unparsed=sum(
            1
            for decision in applied
            if decision.get("source") == "fallback"
            and str((decision.get("notes") or [""])[0]).startswith(UNUSABLE_REPLIES)
        ),
        retried=sum(
            1
            for rounds in discussions
            for r in rounds
            if r["ran"] and r.get("decision", {}).get("source") != "fallback" and len(r.get("ceo_replies") or []) > 1
        ),
    )


def cut_replies_note(cut: dict[str, str], items: int) -> str:
    """The warning for `cut` (item → how its first reply stopped at max_tokens) among `items`, as the
    eval's summary and its HTML report both say it: one sentence, so the two cannot drift apart."""
    first = next(iter(cut))
    return (
        f"{len(cut)} of {items} items had a reply stopped at its max_tokens, its answer maybe cut short "
        f"(first: {first}: {cut[first]}); raise the node's or the graph's max_tokens"
    )


def asked_again_on_retry(failed_call: bool, stopped_reason: str | None) -> bool:
    """Whether `eval --resume --retry-errors` asks an item again: one of its model calls failed, and
    no budget stopped it (a budget's refusal would stop it again). The eval's summary and its HTML
    report offer the retry by this one rule (the page offered it for budget-stopped items too, and
    the retry then asked nothing)."""
    return failed_call and not BudgetExceeded.said(stopped_reason)


def ended_early(stopped_reason: str | None) -> bool:
    """Whether an item's graph did not finish normally (a failed call, a budget cut) and was scored as
    it ended, which is usually wrong: every view of a run must say how many and why. A cap passed by
    the calls' actual usage alone is no cut: that graph ran to its end."""
    return bool(stopped_reason) and not is_overrun(stopped_reason)


def unfinished_note(unfinished: int, items: int, first_key: str, first_reason: str) -> str:
    """The line an eval's summary, its HTML report and `runs show` say of items that `ended_early`."""
    said = f"{unfinished} of {items} items did not finish and were scored as they ended"
    return f"{said}; first: {first_key}: {first_reason}"


def items_asked_again(store: Store, run_id: str, items: Iterable[tuple[str, str | None]]) -> int:
    """How many of a run's `items` (item key, stopped reason) `eval --resume --retry-errors` asks again."""
    failed = store.failed_calls_by_item(run_id)
    return sum(1 for key, stopped in items if asked_again_on_retry(key in failed, stopped))


def retry_note(store: Store, run_id: str, items: int) -> str:
    """What an eval's summary, its report and `runs show` offer for `items` that `asked_again_on_retry`."""
    again = store.command_line("eval", "--resume", run_id, "--retry-errors")
    return f"ask the {items} {'item' if items == 1 else 'items'} with failed calls again: {again}"
