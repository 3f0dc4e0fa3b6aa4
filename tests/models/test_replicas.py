"""One route served by two endpoints: two scripted OpenAI servers over real HTTP behind a litellm Router.

Nothing in agentscale is patched: the servers count what they receive, and one is stopped for real
(listening socket closed, open connections dropped) to check failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.errors import ModelCallError
from agentscale.graphs.spec import ModelSpec
from agentscale.models.gateway import CallRequest
from agentscale.models.litellm_loader import get_litellm
from agentscale.models.registry import resolve
from agentscale.models.replicas import COOLDOWN_S, shared_routers
from agentscale.testing import Rule, ScriptedServer


@pytest.fixture
def pair() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    """Two fresh servers (each test may stop one or both)."""
    first, second = ScriptedServer().start(), ScriptedServer().start()
    yield first, second
    for server in (first, second):
        server.stop()  # a second stop is harmless


@pytest.fixture
def fast_gateway(store: Store) -> Gateway:
    return Gateway(store, GatewaySettings(max_retries=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=10))


def _graph(servers: tuple[ScriptedServer, ...], gateway: Gateway, *, width: int = 1, extra: str = "") -> Graph:
    bases = ", ".join(f'"{s.api_base}"' for s in servers)
    nodes = "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(width))
    text = f"name: replicas\nmodels:\n  m: {{model: hosted_vllm/scripted, api_base: [{bases}]{extra}}}\nnodes:\n{nodes}"
    if width > 1:  # sampled: identical greedy requests in flight together would be one call (the gateway)
        text += "  - {id: v, role: vote}\nedges:\n  - " + ", ".join(f"s{i}" for i in range(width)) + " -> v\n"
        text += "defaults: {temperature: 0.7}\n"
    return Graph.from_yaml(text, gateway=gateway)


def _calls(server: ScriptedServer) -> int:
    return len(server.completion_requests)


async def test_concurrent_runs_spread_over_both_endpoints(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    for server in pair:
        server.latency_s = 0.1
    graph = _graph(pair, fast_gateway)
    results = await asyncio.gather(*(graph.arun(f"What is {i} + 1") for i in range(12)))
    assert [r.answer for r in results] == [str(i + 1) for i in range(12)]
    split = (_calls(pair[0]), _calls(pair[1]))
    assert sum(split) == 12 and min(split) >= 4, split  # least-busy: about even while calls overlap


async def test_one_call_at_a_time_goes_to_an_idle_endpoint(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    """With nothing in flight every endpoint is least busy; any may answer, and every answer is right."""
    graph = _graph(pair, fast_gateway)
    results = [await graph.arun(f"What is {i} + 1") for i in range(6)]
    assert [r.answer for r in results] == [str(i + 1) for i in range(6)]
    assert _calls(pair[0]) + _calls(pair[1]) == 6


async def test_concurrent_calls_go_to_the_least_busy_endpoint_within_its_limit(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    for server in pair:
        server.latency_s = 0.2
    graph = _graph(pair, fast_gateway, width=8, extra=", max_concurrency: 2")
    result = await graph.arun("What is 2 + 2")
    assert result.answer == "4"
    assert (_calls(pair[0]), _calls(pair[1])) == (4, 4)
    assert [s.peak_concurrency for s in pair] == [2, 2]  # both endpoints busy at once, each within its limit


async def test_a_stopped_endpoint_fails_over_and_spend_stays_exact(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway, store: Store
) -> None:
    first, second = pair
    graph = _graph(pair, fast_gateway)
    before = [await graph.arun(f"What is {i} + 2") for i in range(6)]
    first.stop()
    after_stop = time.perf_counter()
    after = [await graph.arun(f"What is {i} + 3") for i in range(10)]
    assert [r.answer for r in after] == [str(i + 3) for i in range(10)]
    assert all(r.trace[0].status == "ok" for r in before + after)
    assert time.perf_counter() - after_stop < 5  # the dead endpoint is cooled down, not retried per call
    served_before_stop = _calls(first)
    assert _calls(first) == served_before_stop and _calls(first) + _calls(second) == 16
    # One ledger row per answered call, with the tokens the servers reported; none for refused attempts.
    spends = [store.spend(r.run_id) for r in before + after]
    assert sum(int(s["calls"] or 0) for s in spends) == 16
    assert sum(int(s["completion_tokens"] or 0) for s in spends) == sum(
        r.usage.completion_tokens for r in before + after
    )


async def test_both_endpoints_down_is_a_clear_error(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    for server in pair:
        server.stop()
    spec = ModelSpec(model="hosted_vllm/scripted", api_base=tuple(s.api_base for s in pair))
    request = CallRequest(resolve("m", spec), [{"role": "user", "content": "What is 1 + 1"}])
    started = time.perf_counter()
    with pytest.raises(ModelCallError) as info:
        await fast_gateway.complete(request, node="s0")
    message = str(info.value)
    assert "node 's0'" in message and pair[0].api_base in message and pair[1].api_base in message
    assert "all 2 endpoints" in message and "cooling down" in message
    assert "Cannot connect" in message or "Connection" in message  # the underlying failure is named
    assert time.perf_counter() - started < COOLDOWN_S  # refused connections: no wait for the cooldown


async def test_a_retry_waits_for_cooled_endpoints_instead_of_being_refused(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    """A one-off 429 on both replicas put both in cooldown (5 s) and every retry of the gateway
    (backoff well under 5 s) was refused without reaching them: the call failed where a single
    endpoint would have answered on its retry."""
    for server in pair:
        server.add_rule(Rule(status=429, times=1))
    spec = ModelSpec(model="hosted_vllm/scripted", api_base=tuple(s.api_base for s in pair))
    request = CallRequest(resolve("m", spec), [{"role": "user", "content": "What is 1 + 1"}])
    started = time.perf_counter()
    result = await fast_gateway.complete(request, node="s0")
    assert result.completion and _calls(pair[0]) + _calls(pair[1]) == 3  # two 429s, then one answer
    assert time.perf_counter() - started >= COOLDOWN_S - 0.5  # it waited for the cooldown to end


async def test_replicas_share_cache_entries(pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway) -> None:
    first = await _graph(pair, fast_gateway).arun("What is 7 + 1")
    again = await _graph((pair[1],), fast_gateway).arun("What is 7 + 1")  # another endpoint set, same route
    assert first.usage.calls == 1 and again.usage.calls == 0 and again.usage.cached_calls == 1
    assert _calls(pair[0]) + _calls(pair[1]) == 1


async def test_a_router_per_endpoint_set_is_reused_across_event_loops(
    pair: tuple[ScriptedServer, ScriptedServer], store: Store
) -> None:
    routers = len(shared_routers()._entries)
    gateway = Gateway(store, GatewaySettings(cache=False))
    graph = _graph(pair, gateway)
    await graph.arun("What is 1 + 1")
    await asyncio.to_thread(graph.run, "What is 1 + 2")  # another thread, another event loop
    assert _calls(pair[0]) + _calls(pair[1]) == 2
    assert len(shared_routers()._entries) == routers + 1


async def test_gateways_share_a_set_s_router_and_add_one_litellm_callback(
    pair: tuple[ScriptedServer, ScriptedServer], store: Store
) -> None:
    """Each Router adds a least-busy handler to litellm's process-wide callback lists, which nothing
    removes: a Router per gateway (`agentscale.load` without `gateway=`) left one more per graph
    loaded, every call of the process walked them, and litellm stops taking callbacks at 100."""
    callbacks = len(get_litellm().callbacks)
    for i in range(3):
        await _graph(pair, Gateway(store, GatewaySettings(cache=False))).arun(f"What is {i} + 1")
    assert _calls(pair[0]) + _calls(pair[1]) == 3
    assert len(get_litellm().callbacks) == callbacks + 1


async def test_a_single_api_base_does_not_use_a_router(scripted: ScriptedServer, store: Store) -> None:
    routers = len(shared_routers()._entries)
    gateway = Gateway(store, GatewaySettings(cache=False))
    text = f'name: one\nmodels:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n'
    await Graph.from_yaml(text + "nodes:\n  - {id: a, role: assistant, model: m}\n", gateway=gateway).arun("hi")
    listed = f"name: one\nmodels:\n  m: {{model: hosted_vllm/scripted, api_base: [{scripted.api_base}]}}\n"
    await Graph.from_yaml(listed + "nodes:\n  - {id: a, role: assistant, model: m}\n", gateway=gateway).arun("hi")
    assert len(scripted.completion_requests) == 2
    assert len(shared_routers()._entries) == routers


async def test_a_replica_answer_names_the_endpoint_that_served_it(
    pair: tuple[ScriptedServer, ScriptedServer], fast_gateway: Gateway
) -> None:
    """Traces and `endpoint` say which replica answered: reported as the whole set, a slow or wrong
    replica could not be told from the healthy one."""
    spec = ModelSpec(model="hosted_vllm/scripted", api_base=tuple(s.api_base for s in pair))
    model = resolve("m", spec)
    for i in range(4):
        result = await fast_gateway.complete(CallRequest(model, [{"role": "user", "content": f"What is {i} + 1"}]))
        answered = [s for s in pair if any(f"What is {i} + 1" in str(r["messages"]) for r in s.completion_requests)]
        assert [s.api_base for s in answered] == [result.endpoint]


async def test_one_attempt_fails_over_to_another_endpoint_without_a_gateway_retry(store: Store) -> None:
    """Within one attempt the Router tries the next endpoint at once: with `max_retries: 0` (or a
    time budget leaving no room for a retry) a dead replica must not lose the call while another is up."""
    gateway = Gateway(store, GatewaySettings(max_retries=0, cache=False))
    for trial in range(5):  # fresh endpoint sets: no cooldown tells the Router which one is dead
        dead, alive = ScriptedServer().start(), ScriptedServer().start()
        try:
            dead.stop()
            spec = ModelSpec(model="hosted_vllm/scripted", api_base=(dead.api_base, alive.api_base))
            request = CallRequest(resolve("m", spec), [{"role": "user", "content": f"What is {trial} + 1"}])
            result = await gateway.complete(request)
            assert result.completion.endswith(f"Final answer: {trial + 1}")
            assert (result.attempts, result.endpoint) == (1, alive.api_base)
        finally:
            alive.stop()


async def test_endpoint_sets_with_different_keys_get_their_own_routers(
    pair: tuple[ScriptedServer, ScriptedServer], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Router holds its key: two aliases on the same replicas with different `api_key_env` sharing
    one Router sent the second alias's calls with the first alias's key (billed to another account,
    or refused)."""
    monkeypatch.setenv("AGENTSCALE_TEST_KEY_A", "key-a")
    monkeypatch.setenv("AGENTSCALE_TEST_KEY_B", "key-b")
    routers = len(shared_routers()._entries)
    gateway = Gateway(store, GatewaySettings(cache=False))
    bases = tuple(s.api_base for s in pair)
    envs = ("AGENTSCALE_TEST_KEY_A", "AGENTSCALE_TEST_KEY_B", "AGENTSCALE_TEST_KEY_A")
    for i, env in enumerate(envs):
        spec = ModelSpec(model="hosted_vllm/scripted", api_base=bases, api_key_env=env)
        await gateway.complete(CallRequest(resolve("m", spec), [{"role": "user", "content": f"What is {i} + 1"}]))
    sent = {r["messages"][-1]["content"]: r["_authorization"] for s in pair for r in s.completion_requests}
    assert sent == {"What is 0 + 1": "Bearer key-a", "What is 1 + 1": "Bearer key-b", "What is 2 + 1": "Bearer key-a"}
    assert len(shared_routers()._entries) == routers + 2  # one per key, reused by the third call
