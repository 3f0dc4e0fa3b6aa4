"""One run's model calls (`runtime/calls.ModelCalls`): the budget reserved before a call, settled
after it, against the scripted OpenAI server."""

from __future__ import annotations

import asyncio

from agentscale import Gateway
from agentscale.graphs.result import NodeTrace
from agentscale.graphs.spec import Budget, ModelSpec
from agentscale.models.gateway import CallRequest
from agentscale.models.registry import resolve
from agentscale.runtime.calls import ModelCalls
from agentscale.testing import Rule, ScriptedServer


async def test_a_failed_call_releases_its_reservation(scripted: ScriptedServer, gateway: Gateway) -> None:
    """A call that failed used nothing: its reservation goes back, so the run's next call fits the
    budget it held (a mutation audit: without the release, the next call was refused as over budget
    after one endpoint error, and no test noticed)."""
    scripted.add_rule(Rule(status=500, times=3))  # the first call's attempts (gateway fixture: 2 retries)
    model = resolve("m", ModelSpec(model="hosted_vllm/scripted", api_base=scripted.api_base))
    request = CallRequest(model, [{"role": "user", "content": "What is 1 + 1?"}], temperature=0.0, max_tokens=500)
    calls = ModelCalls(gateway, Budget(max_tokens=700))  # room for one call's reservation at a time
    first = NodeTrace("a", "assistant")
    assert await calls.call(first, request) is None and first.status == "failed"
    second = NodeTrace("b", "assistant")
    assert await calls.call(second, request) is not None, second.error
    assert second.status == "ok" and calls.stopped_reason is None


async def test_a_failed_call_says_how_long_it_took(scripted: ScriptedServer, gateway: Gateway) -> None:
    """A failed call's trace gave its latency as 0.0 s, though its attempts took their time (an audit
    saw a call clipped by a time cap read 0.0 after ≈ 0.3 s): the critical path and `runs show` then
    drew it as instant."""
    scripted.add_rule(Rule(status=400, latency_s=0.3))  # a 400 is not retried: one attempt
    model = resolve("m", ModelSpec(model="hosted_vllm/scripted", api_base=scripted.api_base))
    request = CallRequest(model, [{"role": "user", "content": "What is 1 + 1?"}], temperature=0.0, max_tokens=50)
    trace = NodeTrace("a", "assistant")
    assert await ModelCalls(gateway).call(trace, request) is None and trace.status == "failed"
    assert 0.3 <= trace.latency_s < 5.0


async def test_a_retried_call_says_how_long_it_took_in_all(scripted: ScriptedServer, gateway: Gateway) -> None:
    """A call answered at its second attempt gave the second attempt's latency alone (a provider-fault
    audit: an answer that came after 241 s of a hanging server read 0.02 s)."""
    scripted.add_rule(Rule(status=503, times=1, latency_s=0.4))
    model = resolve("m", ModelSpec(model="hosted_vllm/scripted", api_base=scripted.api_base))
    request = CallRequest(model, [{"role": "user", "content": "What is 3 + 1?"}], temperature=0.0, max_tokens=50)
    trace = NodeTrace("a", "assistant")
    result = await ModelCalls(gateway).call(trace, request)
    assert result is not None and result.attempts == 2 and 0.4 <= trace.latency_s < 5.0


async def test_a_failed_calls_latency_leaves_out_its_wait_for_the_endpoints_slot(
    scripted: ScriptedServer, gateway: Gateway
) -> None:
    """An answered call's latency runs from its first attempt; a failed one's ran from before its wait
    for the endpoint's slot, so a quick refusal behind a slow call read as slow as that call."""
    scripted.add_rule(Rule(pattern="slow", latency_s=1.0))
    scripted.add_rule(Rule(pattern="refused", status=400))  # not retried: one quick attempt
    model = resolve("m", ModelSpec(model="hosted_vllm/scripted", api_base=scripted.api_base, max_concurrency=1))

    def asking(text: str) -> CallRequest:
        return CallRequest(model, [{"role": "user", "content": text}], temperature=0.0, max_tokens=50)

    calls = ModelCalls(gateway)
    slow, refused = NodeTrace("a", "assistant"), NodeTrace("b", "assistant")
    answered, failed = await asyncio.gather(calls.call(slow, asking("slow")), calls.call(refused, asking("refused")))
    assert answered is not None and failed is None and refused.status == "failed"
    assert slow.latency_s >= 1.0 and refused.latency_s < 0.5, (slow.latency_s, refused.latency_s)


async def test_a_call_that_shared_a_failed_request_in_flight_takes_its_latency(
    scripted: ScriptedServer, gateway: Gateway
) -> None:
    """A node asking what another node's call was already asking waits for that call; when it failed,
    the second node's latency was the time since it asked, the first's wait for the slot included (a
    review of the slot-wait change)."""
    scripted.add_rule(Rule(pattern="slow", latency_s=1.0))
    scripted.add_rule(Rule(pattern="refused", status=400))
    model = resolve("m", ModelSpec(model="hosted_vllm/scripted", api_base=scripted.api_base, max_concurrency=1))

    def asking(text: str) -> CallRequest:
        return CallRequest(model, [{"role": "user", "content": text}], temperature=0.0, max_tokens=50)

    calls = ModelCalls(gateway)
    slow, first, second = NodeTrace("a", "assistant"), NodeTrace("b", "assistant"), NodeTrace("c", "assistant")
    await asyncio.gather(
        calls.call(slow, asking("slow")), calls.call(first, asking("refused")), calls.call(second, asking("refused"))
    )
    assert (first.status, second.status) == ("failed", "failed") and "in flight" in (second.error or "")
    assert slow.latency_s >= 1.0 and second.latency_s < 0.5, (slow.latency_s, second.latency_s)
