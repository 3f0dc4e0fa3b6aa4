"""Usage totals as an eval sums them, and what a result calls an error (`graphs/result.py`)."""

from __future__ import annotations

from agentscale.graphs.result import NodeTrace, RunResult, Usage


def _usage(**kwargs: float) -> Usage:
    return Usage(**kwargs)  # type: ignore[arg-type]


def test_usage_adds_every_figure_and_latencies_add_up() -> None:
    total = _usage(
        calls=2,
        cached_calls=1,
        prompt_tokens=10,
        completion_tokens=5,
        flops=1.0,
        usd=0.5,
        latency_s=2.0,
        critical_path_s=1.5,
    )
    total.add(
        _usage(
            calls=3,
            cached_calls=0,
            prompt_tokens=7,
            completion_tokens=4,
            flops=2.0,
            usd=0.25,
            latency_s=1.0,
            critical_path_s=1.0,
        )
    )
    assert total.to_dict() == {
        "calls": 5,
        "cached_calls": 1,
        "prompt_tokens": 17,
        "completion_tokens": 9,
        "flops": 3.0,
        "usd": 0.75,
        "latency_s": 3.0,
        "critical_path_s": 2.5,
    }
    assert total.tokens == 26


def test_an_unknown_cost_in_either_usage_makes_the_sum_unknown() -> None:
    """A model of unknown size or price: the total is None ("unknown"), not the known part alone."""
    total = _usage(flops=1.0, usd=0.5)
    total.add(_usage(flops=None, usd=None))
    assert (total.flops, total.usd) == (None, None)
    total.add(_usage(flops=2.0, usd=1.0))
    assert (total.flops, total.usd) == (None, None)


def test_own_hits_are_counted_as_calls_but_never_more_than_the_hits() -> None:
    usage = _usage(calls=3, cached_calls=2)
    usage.count_own_hits_as_calls(paid_by_run=10)  # the ledger says more than calls + hits: only the hits move
    assert (usage.calls, usage.cached_calls) == (5, 0)
    usage = _usage(calls=3, cached_calls=2)
    usage.count_own_hits_as_calls(paid_by_run=4)
    assert (usage.calls, usage.cached_calls) == (4, 1)
    usage = _usage(calls=3, cached_calls=2)
    usage.count_own_hits_as_calls(paid_by_run=1)
    assert (usage.calls, usage.cached_calls) == (3, 2)


def test_errors_name_failed_nodes_only() -> None:
    trace = [
        NodeTrace("a", "assistant", status="failed", error="HTTP 500"),
        NodeTrace("b", "assistant", status="skipped", error="budget: max_tokens reached"),
        NodeTrace("c", "vote"),
    ]
    result = RunResult("q", None, trace, Usage())
    assert result.errors == ["a: HTTP 500"]
