"""The gateway's response cache key, retry count, backoff cap and concurrency limits, against the
scripted OpenAI-compatible server over real HTTP and a real SQLite store."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentscale.errors import AgentScaleError, ModelCallError
from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.registry import ResolvedModel
from agentscale.storage.db import Store
from agentscale.testing import ScriptedServer
from agentscale.testing.scripted_server import Rule

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def _model(scripted: ScriptedServer, route: str = "hosted_vllm/scripted", **fields: object) -> ResolvedModel:
    return ResolvedModel("m", route, api_base=scripted.api_base, **fields)  # type: ignore[arg-type]


def _ask(model: ResolvedModel, text: str = "What is 2 + 2", **fields: object) -> CallRequest:
    return CallRequest(model, [{"role": "user", "content": text}], **fields)  # type: ignore[arg-type]


async def test_greedy_requests_share_one_cache_entry_whatever_their_sample_index(
    scripted: ScriptedServer, store: Store
) -> None:
    """At temperature 0 every sample is the same answer: a self-consistency node with 5 greedy
    samples paid 5 calls for one answer if the sample index went into the key."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    model = _model(scripted)
    first = await gateway.complete(_ask(model, temperature=0.0, sample_index=0))
    second = await gateway.complete(_ask(model, temperature=0.0, sample_index=3))
    assert not first.cached and second.cached
    assert len(scripted.completion_requests) == 1


async def test_a_json_schema_request_is_not_answered_from_a_free_text_entry(
    scripted: ScriptedServer, store: Store
) -> None:
    """A structured-output node asking what a free-text node asked before got the free-text reply
    from the cache (no JSON: a parse failure on every run) if the schema were not in the key."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    model = _model(scripted)
    await gateway.complete(_ask(model, temperature=0.0))
    structured = await gateway.complete(_ask(model, temperature=0.0, json_schema=SCHEMA))
    assert not structured.cached
    assert len(scripted.completion_requests) == 2
    assert scripted.completion_requests[1]["response_format"]["json_schema"]["schema"] == SCHEMA
    again = await gateway.complete(_ask(model, temperature=0.0, json_schema=SCHEMA))
    assert again.cached and again.completion == structured.completion


async def test_another_route_with_the_same_messages_is_a_cache_miss(scripted: ScriptedServer, store: Store) -> None:
    """Comparing two models on one task would replay the first model's answers as the second's
    (identical scores, zero cost) if the route were not part of the cache key."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    await gateway.complete(_ask(_model(scripted, "hosted_vllm/scripted"), temperature=0.0))
    other = await gateway.complete(_ask(_model(scripted, "hosted_vllm/other"), temperature=0.0))
    assert not other.cached
    assert [r["model"] for r in scripted.completion_requests] == ["scripted", "other"]


async def test_a_cache_hit_reports_no_attempt(scripted: ScriptedServer, store: Store) -> None:
    """Attempts count requests sent; a hit counted as one made traces claim calls that never happened."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    model = _model(scripted)
    paid = await gateway.complete(_ask(model, temperature=0.0))
    hit = await gateway.complete(_ask(model, temperature=0.0))
    assert (paid.attempts, paid.cached) == (1, False)
    assert (hit.attempts, hit.cached, hit.endpoint) == (0, True, "cache")


@pytest.mark.parametrize(("max_retries", "succeeds"), [(2, True), (1, False)])
async def test_max_retries_counts_retries_after_the_first_attempt(
    scripted: ScriptedServer, store: Store, max_retries: int, succeeds: bool
) -> None:
    """`max_retries: 2` means three attempts: two 503s then an answer must succeed; one retry fewer
    lost calls a user had configured to survive exactly that."""
    scripted.add_rule(Rule(status=503, times=2))
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=max_retries, backoff_s=0.01, max_backoff_s=0.02))
    request = _ask(_model(scripted), temperature=0.0)
    if succeeds:
        result = await gateway.complete(request)
        assert (result.completion, result.attempts) == ("Final answer: 4", 3)
    else:
        with pytest.raises(ModelCallError, match=r"after 2 attempt\(s\).*HTTP 503"):
            await gateway.complete(request)
    assert len(scripted.completion_requests) == max_retries + 1


async def test_the_backoff_never_exceeds_max_backoff(scripted: ScriptedServer, store: Store) -> None:
    """A long base backoff is capped by `max_backoff_s`: without the cap a retry slept 10 s or more."""
    scripted.add_rule(Rule(status=500, times=1))
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=1, backoff_s=10.0, max_backoff_s=0.05))
    started = time.perf_counter()
    result = await gateway.complete(_ask(_model(scripted), temperature=0.0))
    assert result.attempts == 2
    assert time.perf_counter() - started < 3.0


async def test_a_model_aliases_own_max_concurrency_bounds_its_calls(scripted: ScriptedServer, store: Store) -> None:
    """`max_concurrency: 1` on an alias (a small local server) must hold calls to one at a time;
    ignoring it sent the gateway's 16 at once and overloaded the server."""
    scripted.latency_s = 0.2
    gateway = Gateway(store, GatewaySettings(max_retries=0, max_concurrency=16))
    model = _model(scripted, max_concurrency=1)
    results = await asyncio.gather(*(gateway.complete(_ask(model, f"What is {i} + 1")) for i in range(3)))
    assert all(r.completion for r in results)
    assert scripted.peak_concurrency == 1


async def test_top_p_is_sent_when_set(scripted: ScriptedServer, store: Store) -> None:
    """A graph's `top_p` must reach the server; dropped, sampling ran with the server default."""
    gateway = Gateway(store, GatewaySettings(max_retries=0, cache=False))
    await gateway.complete(_ask(_model(scripted), top_p=0.5))
    await gateway.complete(_ask(_model(scripted)))
    sent = scripted.completion_requests
    assert sent[0]["top_p"] == 0.5 and "top_p" not in sent[1]


@pytest.mark.parametrize("value", ["of", "maybe"])
def test_an_unknown_agentscale_cache_value_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """`AGENTSCALE_CACHE=of` (a typo for off) kept the cache on without a word: a user meaning to
    re-sample got cached answers."""
    monkeypatch.setenv("AGENTSCALE_CACHE", value)
    with pytest.raises(AgentScaleError, match=f"AGENTSCALE_CACHE='{value}'"):
        GatewaySettings.from_env()


@pytest.mark.parametrize(("value", "cache"), [("off", False), ("NO", False), ("on", True), ("", True)])
def test_agentscale_cache_switches_the_cache(monkeypatch: pytest.MonkeyPatch, value: str, cache: bool) -> None:
    """`AGENTSCALE_CACHE=off` must turn the cache off (case and spaces aside), anything on-like keep it."""
    monkeypatch.setenv("AGENTSCALE_CACHE", f" {value} ")
    assert GatewaySettings.from_env().cache is cache
