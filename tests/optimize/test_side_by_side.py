"""Evaluations side by side: they overlap on the servers, the spend cap counts the ones in flight, and
trials are stored in the order they were asked for, whichever finishes first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentscale import Gateway, GatewaySettings, Store
from agentscale.optimize.pilot import single
from agentscale.optimize.runner import Optimization
from agentscale.optimize.trials import SpendCapReached
from agentscale.testing import Rule, ScriptedServer
from tests.optimize.test_runner import optimization, space_text


async def test_a_race_step_runs_its_graphs_at_once(tmp_path: Path, scripted: ScriptedServer, store: Store) -> None:
    """One item at a time per evaluation: only graphs evaluated side by side put two calls in flight."""
    scripted.latency_s = 0.05
    run = optimization(space_text(tmp_path, scripted.api_base), store, concurrency=1)
    await run.run()
    assert scripted.peak_concurrency >= 2


async def test_trials_are_stored_in_the_order_asked_and_the_cap_counts_those_in_flight(
    tmp_path: Path, scripted: ScriptedServer, store: Store
) -> None:
    scripted.add_rule(Rule(model="good", replies=["Final answer: 3"], latency_s=0.4))  # asked first, ends last
    scripted.add_rule(Rule(model="bad", replies=["Final answer: 0"], latency_s=0.0))
    run = optimization(space_text(tmp_path, scripted.api_base, optimizer=", max_spend: {calls: 10}"), store)
    items = run.train[:4]
    evaluator = run.evaluator
    slow, fast = single("good"), single("bad")
    first, second = await asyncio.gather(
        evaluator.evaluate(slow, items, kind="baseline", iteration=-1),
        evaluator.evaluate(fast, items, kind="baseline", iteration=-1),
    )
    assert first.candidate == slow and second.candidate == fast
    assert [t.seq for t in store.trials(run.run_id)] == [0, 1]
    assert [t.id for t in store.trials(run.run_id)] == sorted(t.id for t in store.trials(run.run_id))
    # 8 calls spent, 2 left: a 4-item evaluation is refused; so is a third 1-item one while two hold
    # their worst case (one call each), although their answers come from the cache and cost nothing
    with pytest.raises(SpendCapReached):
        await evaluator.evaluate(fast, items, kind="baseline", iteration=-1)
    fresh = run.train[4:5]  # not asked yet: the cache cannot answer it
    batch = [(slow, items[:1]), (fast, items[:1]), (fast, fresh)]
    results = await asyncio.gather(
        *(evaluator.evaluate(c, i, kind="baseline", iteration=-1) for c, i in batch), return_exceptions=True
    )
    assert [isinstance(r, SpendCapReached) for r in results] == [False, False, True]
    assert store.spend(run.run_id)["calls"] == 8
    # resumed, the same evaluations asked in the same order: every answer replayed and every refusal
    # repeated (replays hold no worst case: without the stored refusal the last one would now fit)
    again = Optimization.resume(run.run_id, Gateway(store, GatewaySettings(max_retries=0))).evaluator
    await again.evaluate(slow, items, kind="baseline", iteration=-1)
    await again.evaluate(fast, items, kind="baseline", iteration=-1)
    with pytest.raises(SpendCapReached):
        await again.evaluate(fast, items, kind="baseline", iteration=-1)
    replayed = await asyncio.gather(
        *(again.evaluate(c, i, kind="baseline", iteration=-1) for c, i in batch), return_exceptions=True
    )
    assert [isinstance(r, SpendCapReached) for r in replayed] == [False, False, True]
    assert again.replayed == 4 and again.evaluated == 0 and store.spend(run.run_id)["calls"] == 8
