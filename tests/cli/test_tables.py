"""The one-line summaries the commands print under a trace table."""

from __future__ import annotations

from agentscale.cli._tables import round_lines

REFUSAL = "budget max_tokens=300 would be exceeded (projected 730)"


def test_a_round_the_budget_ended_says_so_once_and_not_run() -> None:
    """A refused round read "round 1: continue (fallback)" as if it ran, and gave the refusal twice:
    in the fallback's notes and again as the round's stopped reason."""
    refused = {
        "round": 1,
        "ran": False,
        "decision": {
            "decision": "continue",
            "source": "fallback",
            # its settings' clamp, moot for a round not run (a real 0.5B CEO walk read "cut to 1" on it)
            "notes": [f"CEO call refused: {REFUSAL}", "max_tokens 191 cut to 1"],
        },
        "stopped_reason": REFUSAL,
    }
    ran = {
        "round": 2,
        "ran": True,
        "answer": "42",
        "decision": {"decision": "continue", "source": "ceo", "agents": 2, "max_tokens": 64, "notes": []},
        "stopped_reason": "budget max_tokens=300 exceeded by the calls' actual usage",
    }
    alone = {**ran, "round": 3, "decision": {**ran["decision"], "agents": 1}, "stopped_reason": None}
    first, second, third = round_lines([refused, ran, alone])
    assert first == f"round 1: continue (fallback) · not run · CEO call refused: {REFUSAL}"
    assert second == (
        "round 2: continue (the CEO) · 2 agents, replies ≤ 64 tokens · answer 42 · "
        "budget max_tokens=300 exceeded by the calls' actual usage"
    )
    assert third == "round 3: continue (the CEO) · 1 agent, replies ≤ 64 tokens · answer 42"  # "1 agents"


def test_a_stop_the_guard_overrode_is_not_said_to_be_the_ceos_choice() -> None:
    """A 0.5B CEO said stop before any answer; the round ran on and read "round 1: continue (the CEO)"."""
    overridden = {
        "round": 1,
        "ran": True,
        "answer": "7",
        "requested": {"decision": "stop"},
        "decision": {
            "decision": "continue",
            "source": "ceo",
            "agents": 3,
            "max_tokens": 64,
            "notes": ["the CEO said stop, ignored: no answer yet"],
        },
    }
    (line,) = round_lines([overridden])
    assert line.startswith("round 1: continue (the CEO said stop, overridden) · 3 agents")
    fallback = {**overridden, "decision": {**overridden["decision"], "source": "fallback"}}  # type: ignore[dict-item]
    assert round_lines([fallback])[0].startswith("round 1: continue (fallback)")
