"""The same request asked again while its paid call is in flight waits for that answer (the response
cache would have given it a moment later), so evaluations run side by side pay no more than in turn."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from agentscale.errors import ModelCallError
from agentscale.graphs.spec import Budget
from agentscale.models.budget import CallTime, RunLedger
from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.registry import ResolvedModel
from agentscale.storage.db import Store
from agentscale.testing import ScriptedServer
from agentscale.testing.scripted_server import Rule


def _request(scripted: ScriptedServer, text: str, sample: int | None = None) -> CallRequest:
    model = ResolvedModel("m", "hosted_vllm/scripted", api_base=scripted.api_base)
    return CallRequest(model, [{"role": "user", "content": text}], temperature=0.8, sample_index=sample)


async def test_the_same_request_in_flight_is_paid_once(scripted: ScriptedServer, store: Store) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 7"], latency_s=0.4))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    asked = [_request(scripted, "7?", sample=0) for _ in range(3)] + [_request(scripted, "7?", sample=1)]
    results = await asyncio.gather(*(gateway.complete(r, run_id="r") for r in asked))
    assert len(scripted.completion_requests) == 2  # sample 0 once, sample 1 once
    assert [r.cached for r in results].count(False) == 2 and all(r.completion == "Final answer: 7" for r in results)
    assert store.spend("r")["calls"] == 2
    again = await gateway.complete(_request(scripted, "7?", sample=0), run_id="r")
    assert again.cached and len(scripted.completion_requests) == 2


async def test_without_the_cache_every_ask_is_a_call(scripted: ScriptedServer, store: Store) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 7"], latency_s=0.2))
    gateway = Gateway(store, GatewaySettings(max_retries=0, cache=False))
    results = await asyncio.gather(*(gateway.complete(_request(scripted, "7?", sample=0)) for _ in range(3)))
    assert len(scripted.completion_requests) == 3 and not any(r.cached for r in results)


async def test_a_failure_of_the_first_ask_is_shared_not_repeated(scripted: ScriptedServer, store: Store) -> None:
    """Retried callers one after another would each wait out the same failure (N x its timeout)."""
    scripted.add_rule(Rule(status=400, times=1, latency_s=0.3))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    results = await asyncio.gather(
        *(gateway.complete(_request(scripted, "7?", sample=0), node=f"n{i}") for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ModelCallError) for r in results)
    assert "same request in flight failed" in str(results[1]) and "node 'n1'" in str(results[1])
    assert len(scripted.completion_requests) == 1


async def test_when_the_first_asker_is_cancelled_the_waiting_ones_call_for_themselves(
    scripted: ScriptedServer, store: Store
) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 7"], latency_s=1.0))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    first = asyncio.create_task(gateway.complete(_request(scripted, "7?", sample=0)))
    while not scripted.completion_requests:  # fixed sleeps failed on a loaded machine (1 run in ~20)
        await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(gateway.complete(_request(scripted, "7?", sample=0))) for _ in range(2)]
    await asyncio.sleep(0.3)  # both find the first call in flight (it has 1 s to go)
    first.cancel()
    results = await asyncio.gather(*waiting)
    assert [r.completion for r in results] == ["Final answer: 7"] * 2
    assert [r.cached for r in results].count(False) == 1  # one of them paid, the other waited for it
    assert len(scripted.completion_requests) == 2  # the cancelled call, then one more


async def test_a_waiting_asker_keeps_its_own_time_limit(scripted: ScriptedServer, store: Store) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 7"], latency_s=0.6))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    first = asyncio.create_task(gateway.complete(_request(scripted, "7?", sample=0)))
    await asyncio.sleep(0.05)
    with pytest.raises(ModelCallError, match="waiting for the same request") as waited:
        await gateway.complete(_request(scripted, "7?", sample=0), clock=CallTime(RunLedger(Budget(max_latency_s=0.2))))
    assert waited.value.out_of_time  # its time budget ended it: the run says so, as for its own call
    assert (await first).completion == "Final answer: 7"


def test_each_event_loops_call_slots_go_with_it(store: Store, scripted: ScriptedServer) -> None:
    """Slots were kept by id(loop): one more entry per `asyncio.run` forever (a long-lived app grew
    without bound), and a new loop given a dead one's id reused its semaphore."""
    gateway = Gateway(store, GatewaySettings(max_retries=0, cache=False))
    request = _request(scripted, "1 + 1?")
    for _ in range(5):
        asyncio.run(gateway.complete(request))
    assert len(gateway._semaphores) == 1  # the last loop's, closed: dropped when the next comes


def test_loops_of_several_threads_share_one_gateway_safely(store: Store, scripted: ScriptedServer) -> None:
    """Dropping closed loops' slots iterated the table while other threads added to it: "dictionary
    changed size during iteration" and KeyError, with one gateway used from several threads."""
    gateway = Gateway(store, GatewaySettings())
    model = _request(scripted, "x").model
    errors: list[BaseException] = []

    async def take_a_slot() -> None:
        gateway._semaphore(model)

    def many() -> None:
        try:
            for _ in range(400):
                asyncio.run(take_a_slot())
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=many) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
