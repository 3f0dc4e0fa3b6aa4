"""What an eval's items' stored records say: discussion statistics, handbook use."""

from __future__ import annotations

import json

from agentscale.evaluate.item_records import DiscussionStats, HandbookUse, discussion_stats, handbook_use_of


def _round(index: int, ran: bool, decision: str, source: str = "ceo", stopped: str | None = None) -> dict[str, object]:
    return {"round": index, "ran": ran, "decision": {"decision": decision, "source": source}, "stopped_reason": stopped}


def test_rounds_stops_fallbacks_and_budget_stops_are_counted_per_discussion() -> None:
    stopped_by_the_ceo = [_round(1, True, "continue"), _round(2, False, "stop")]
    fallen_back = [_round(1, True, "continue", "fallback"), _round(2, True, "continue", "fallback")]
    cut_by_the_budget = [_round(1, True, "continue"), _round(2, False, "continue", stopped="budget max_tokens=9")]
    stored = [json.dumps(r) for r in (stopped_by_the_ceo, fallen_back, cut_by_the_budget)]
    stats = discussion_stats([*stored, None])  # None: an item without rounds (not stored as a discussion)
    assert stats == DiscussionStats(questions=3, rounds_run=4, ceo_stops=1, fallbacks=2, budget_stops=1)
    assert stats.to_dict()["mean_rounds"] == 1.333


def test_fallbacks_on_replies_that_never_parsed_name_structured_output() -> None:
    """SmolLM2 as CEO wrote no decision in 3 tries a round (288 s for one question); nothing at run
    time pointed to `structured_output: true`, which made all 8 of its decisions parse."""
    unparsed = _round(1, True, "continue", "fallback")
    unparsed["decision"]["notes"] = ["3 unusable CEO replies; last: no JSON object"]  # type: ignore[index]
    failed = _round(2, True, "continue", "fallback")
    failed["decision"]["notes"] = ["CEO call failed: HTTP 500"]  # type: ignore[index]
    stats = discussion_stats([json.dumps([unparsed, failed])])
    assert stats is not None and (stats.fallbacks, stats.unparsed) == (2, 1)
    assert (
        "2 decision(s) fell back (1 on replies that never parsed as a decision: coordinator.structured_output: true"
        in stats.text()
    )
    assert stats.to_dict()["unparsed_fallbacks"] == 1
    assert "structured_output" not in discussion_stats([json.dumps([failed])]).text()  # type: ignore[union-attr]


def test_decisions_asked_again_after_an_unusable_reply_are_counted() -> None:
    """A real 0.5B CEO's 8 retries each turned a stop into a paid round while the summary read "0
    decision(s) fell back" (the CEO walk on the real 0.5B): a retried decision is counted and said."""
    retried = _round(1, True, "continue")
    retried["ceo_replies"] = ["{bad", '{"decision": "continue"}']
    once = _round(2, True, "stop")
    once["ceo_replies"] = ['{"decision": "stop"}']
    fallen = _round(3, True, "continue", "fallback")
    fallen["ceo_replies"] = ["x", "y", "z"]  # a fallback is counted as one, not as a retry
    stats = discussion_stats([json.dumps([retried, once, fallen])])
    assert stats is not None and stats.retried == 1 and stats.to_dict()["retried_decisions"] == 1
    assert "1 asked again after an unusable reply" in stats.text()


def test_no_discussion_no_statistics() -> None:
    assert discussion_stats([None, None]) is None


def test_handbook_use_counts_questions_shown_behaviors_and_citing_one() -> None:
    stored = [
        json.dumps({"handbook": "math", "behaviors": ["behavior_a"], "cited": ["behavior_a"]}),
        json.dumps({"handbook": "math", "behaviors": ["behavior_a"], "cited": []}),
        json.dumps({"handbook": "math", "behaviors": [], "cited": []}),
        None,
    ]
    assert handbook_use_of(stored) == HandbookUse(shown=2, cited=1)
