"""The gateway's response cache key, retry count, backoff cap, concurrency limits and spend ledger rows, against the
scripted OpenAI-compatible server over real HTTP and a real SQLite store."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlmodel import select

from agentscale.errors import AgentScaleError, ModelCallError
from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.registry import ResolvedModel
from agentscale.storage.db import Store
from agentscale.storage.tables import SpendEntry
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


async def test_cache_off_asks_again_what_an_earlier_run_cached(scripted: ScriptedServer, store: Store) -> None:
    """`AGENTSCALE_CACHE=off` (cache=False) is how a user gets fresh answers from a database an
    earlier run filled: a hit read from it anyway replayed the old answer and paid nothing."""
    scripted.add_rule(Rule(replies=["Final answer: 4", "Final answer: 5"]))
    model = _model(scripted)
    first = await Gateway(store, GatewaySettings(max_retries=0)).complete(_ask(model, temperature=0.0))
    fresh = await Gateway(store, GatewaySettings(max_retries=0, cache=False)).complete(_ask(model, temperature=0.0))
    assert (first.cached, fresh.cached) == (False, False)
    assert fresh.completion == "Final answer: 5"
    assert len(scripted.completion_requests) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"temperature": 0.0}, {"temperature": 0.7}),  # greedy vs sampled slot 0
        ({"temperature": 0.0, "max_tokens": 16}, {"temperature": 0.0, "max_tokens": 4096}),
        ({"temperature": 0.0}, {"temperature": 0.0, "top_p": 0.5}),
    ],
    ids=["temperature", "max_tokens", "top_p"],
)
async def test_each_sampling_parameter_is_in_the_cache_key(
    scripted: ScriptedServer, store: Store, first: dict[str, object], second: dict[str, object]
) -> None:
    """A node asking with another temperature, max_tokens or top_p must not get another node's cached
    reply: a 16-token answer replayed for a 4096-token request came back cut short, and a greedy
    answer replayed as a sample made every sampled slot the same."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    model = _model(scripted)
    await gateway.complete(_ask(model, **first))
    other = await gateway.complete(_ask(model, **second))
    assert not other.cached
    assert len(scripted.completion_requests) == 2


async def test_the_ledger_row_prices_prompt_and_completion_tokens_at_their_own_rates(
    scripted: ScriptedServer, store: Store
) -> None:
    """The scripted server counts words: 5 prompt tokens ("What is 2 + 2") and 3 completion tokens
    ("Final answer: 4"). Output tokens cost 3x input here, as with most hosted models; prices swapped
    (or one rate used for both) misreported every run's cost and let the spend cap pass or stop early."""
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    model = _model(scripted, input_per_mtok=1.0, output_per_mtok=3.0, params_b=1.0)
    result = await gateway.complete(_ask(model, temperature=0.0), run_id="r1", item_key="q1")
    assert (result.prompt_tokens, result.completion_tokens) == (5, 3)
    spend = store.spend("r1")
    assert (spend["calls"], spend["prompt_tokens"], spend["completion_tokens"]) == (1, 5, 3)
    assert spend["usd"] == pytest.approx((5 * 1.0 + 3 * 3.0) / 1e6)
    with store.session() as session:
        (row,) = session.exec(select(SpendEntry)).all()
    assert (row.run_id, row.item_key, row.route) == ("r1", "q1", "hosted_vllm/scripted")
    assert row.flops > 0


async def test_a_calls_latency_counts_its_failed_attempts_and_the_cache_replays_it(
    scripted: ScriptedServer, store: Store
) -> None:
    """A call that waited out a 503 and a backoff took that time: its latency (what a latency cap and
    a replay from the cache go by) counted only the last attempt, so a replayed run ran nodes its
    live run had not had the time for."""
    scripted.add_rule(Rule(status=503, times=1))
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(max_retries=1, backoff_s=0.4, max_backoff_s=0.4))
    model = _model(scripted)
    paid = await gateway.complete(_ask(model, temperature=0.0))
    assert paid.attempts == 2
    assert paid.latency_s >= 0.2  # the backoff alone sleeps 0.2-0.4 s
    hit = await gateway.complete(_ask(model, temperature=0.0))
    assert hit.cached and hit.latency_s == pytest.approx(paid.latency_s)


def test_cache_keys_of_requests_without_a_schema_are_unchanged() -> None:
    """Pinned: the key of a request without `json_schema` leaves the schema out entirely (the
    comment at `_compute_cache_key`), and never depends on the endpoint or the key."""
    here = ResolvedModel("m", "hosted_vllm/scripted", api_base="http://x/v1")
    there = ResolvedModel("other-alias", "hosted_vllm/scripted", api_base="http://y/v1", api_key_env="K")
    messages = [{"role": "user", "content": "What is 2 + 2"}]
    greedy = "08a01e565326fc55c9e9ab854876605f2d31057afa4d4451dd7948c5b9b19983"
    assert CallRequest(here, messages, temperature=0.0).cache_key() == greedy
    assert CallRequest(there, messages, temperature=0.0).cache_key() == greedy
    sampled = CallRequest(here, messages, temperature=0.7, sample_index=2, top_p=0.9, max_tokens=64)
    assert sampled.cache_key() == "9ff376ea5a3c50ca92370e5993413e09810dfeb7c6e34fb85c8e5e06f01a18ed"


async def test_two_servers_of_one_provider_each_get_their_own_call_slots(
    scripted: ScriptedServer, store: Store
) -> None:
    """Two vLLM servers behind `hosted_vllm/` aliases, `max_concurrency: 1` each, serve a call each at
    once; slots keyed by the provider prefix made them share one (half the throughput, and a slow
    server held up the other's calls). Two names of the scripted server stand for the two servers."""
    scripted.latency_s = 0.3
    gateway = Gateway(store, GatewaySettings(max_retries=0))
    first = ResolvedModel("a", "hosted_vllm/scripted", api_base=scripted.api_base, max_concurrency=1)
    second = ResolvedModel(
        "b", "hosted_vllm/scripted", api_base=scripted.api_base.replace("127.0.0.1", "localhost"), max_concurrency=1
    )
    results = await asyncio.gather(
        gateway.complete(CallRequest(first, [{"role": "user", "content": "What is 1 + 1"}])),
        gateway.complete(CallRequest(second, [{"role": "user", "content": "What is 2 + 2"}])),
    )
    assert all(r.completion for r in results)
    assert scripted.peak_concurrency == 2


def test_paid_calls_the_database_refused_are_kept_and_answer_the_question_asked_again(
    tmp_path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """Another process held the database's write lock past the busy timeout while an app's question
    ran (the Python API walk's B2, 70 s): `Graph.run` raised sqlite3's own OperationalError, no
    AgentScaleError, and the paid calls were in neither the ledger nor the cache, so the same question
    asked once the lock was gone paid them again. (The 30 s busy timeout shortened.)"""
    import sqlite3

    from agentscale import Graph, StorageError
    from agentscale.storage import _opening
    from tests.conftest import graph_yaml

    monkeypatch.setattr(_opening, "_BUSY_TIMEOUT_S", 0.3)
    scripted.add_rule(Rule(replies=["Final answer: 10"]))
    store = Store(tmp_path / "held.db")
    nodes = "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(3))
    body = f"name: held\nnodes:\n{nodes}  - {{id: vote, role: vote}}\nedges:\n  - s0, s1, s2 -> vote\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=Gateway(store, GatewaySettings(max_retries=0)))
    graph.run("What is 1 + 1?")
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the busy timeout
    try:
        with pytest.raises(StorageError, match="busy timeout") as raised:
            graph.run("What is 5 + 5?")
        # still held: a question the cache answers, asked without recording, is answered (readers are not
        # kept out; trying the kept rows first failed it on the lock: the review's B3)
        cached = graph.run("What is 1 + 1?", record=False)
        assert cached.answer == "10" and cached.usage.calls == 0 and cached.usage.cached_calls == 3
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert isinstance(raised.value, AgentScaleError) and "keeps" in str(raised.value)
    asked = len(scripted.completion_requests)

    # the refused call answers from the cache; siblings the failure cancelled in flight are asked again
    again = graph.run("What is 5 + 5?")
    assert again.answer == "10" and again.usage.cached_calls >= 1
    assert again.usage.calls + again.usage.cached_calls == 3
    assert len(scripted.completion_requests) == asked + again.usage.calls
    with store.session() as session:
        assert len(session.exec(select(SpendEntry)).all()) == 6  # the first question's 3, this one's 3


def test_a_question_answered_from_the_cache_whose_rows_the_database_refuses_raises_storage_error(
    tmp_path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """The question's own rows (run, calls, item) are written at its end: refused there, sqlite3's
    error reached the app as it was, no AgentScaleError."""
    import sqlite3

    from agentscale import Graph, StorageError
    from agentscale.storage import _opening
    from tests.conftest import graph_yaml

    monkeypatch.setattr(_opening, "_BUSY_TIMEOUT_S", 0.3)
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    store = Store(tmp_path / "held.db")
    body = "name: held\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=Gateway(store, GatewaySettings(max_retries=0)))
    assert graph.run("What is 2 + 2?").usage.calls == 1
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="recording the run"):
            graph.run("What is 2 + 2?")  # answered from the cache, which a reader still reads
    finally:
        holder.execute("COMMIT")
        holder.close()


async def test_an_evaluation_run_from_python_under_a_held_database_raises_storage_error(
    tmp_path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """`Evaluation.run` with the write lock held by another process raised sqlite3's own
    OperationalError, no AgentScaleError (the review's B4); marking the run failed waited out the
    same lock again."""
    import json
    import sqlite3

    from agentscale import EvalConfig, Evaluation, Graph, StorageError
    from agentscale.storage import _opening
    from tests.conftest import graph_yaml

    monkeypatch.setattr(_opening, "_BUSY_TIMEOUT_S", 0.3)
    store = Store(tmp_path / "held.db")
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"id": "a", "question": "What is 2 + 2?", "answer": "4"}) + "\n")
    body = "name: held\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=Gateway(store, GatewaySettings(max_retries=0)))
    evaluation = Evaluation(graph, EvalConfig(task=str(task)))
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="while evaluating: database is locked"):
            await evaluation.run()
    finally:
        holder.execute("COMMIT")
        holder.close()
