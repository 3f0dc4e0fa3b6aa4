"""Replies a server sends whole but not as expected, and what a refusal asks: read over real HTTP from
the scripted server (`Rule.body`, `Rule.headers`), nothing patched."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from agentscale import GatewaySettings, Graph, Store
from agentscale.models._reply import MAX_RETRY_AFTER_S, server_asked_wait_s
from agentscale.models.gateway import Gateway
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml

ONE_NODE = "name: n\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"
NO_CHOICES = {"id": "x", "object": "chat.completion", "created": 0, "model": "scripted", "choices": []}


def _reply(
    content: str | None, *, usage: bool = True, tokens: tuple[int, int] = (0, 0), finish: str = "stop"
) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)}
    return body


def test_a_reply_without_choices_is_retried_and_then_a_failed_node(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """`choices: []` raised IndexError out of the gateway: a traceback that ended the run (and an
    eval's every item in flight) instead of one failed call."""
    scripted.add_rule(Rule(body=NO_CHOICES, times=1))
    graph: Graph = make_graph(ONE_NODE)
    assert graph.run("What is 2 + 2?").answer == "4"
    assert len(scripted.completion_requests) == 2  # the malformed reply, then its retry

    scripted.reset()
    scripted.add_rule(Rule(body=NO_CHOICES))
    result = graph.run("What is 3 + 3?")
    (node,) = result.trace
    assert result.answer is None and node.status == "failed" and "no choice" in (node.error or "")
    assert len(scripted.completion_requests) == 3  # 1 + the gateway fixture's 2 retries


def test_an_empty_reply_is_asked_again_not_replayed_from_the_cache(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """An empty or null completion was cached: after the server recovered, a re-run replayed the
    empty reply (0 calls, no answer) without asking it."""
    graph: Graph = make_graph(ONE_NODE)
    for empty in ("", None):
        scripted.reset()
        scripted.add_rule(Rule(body=_reply(empty), times=1))
        empty_reply = graph.run(f"What is 4 + {len(str(empty))}?")
        (node,) = empty_reply.trace
        assert empty_reply.answer is None and node.status == "failed"  # so --retry-errors asks it again
        assert node.error == "the model returned no text" and empty_reply.usage.calls == 1  # it was paid
        assert node.completion_tokens == 0  # usage zeros: no text, so no completion token to estimate
        recovered = graph.run(f"What is 4 + {len(str(empty))}?")
        assert recovered.answer is not None and recovered.usage.cached_calls == 0
        assert len(scripted.completion_requests) == 2


def test_a_reply_cut_at_max_tokens_before_any_text_says_so(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """A reasoning model that spends max_tokens before it answers sends `content: null` with
    `finish_reason: length`: the node was `ok` with no answer, and nothing said why."""
    scripted.add_rule(Rule(body=_reply(None, tokens=(20, 512), finish="length")))
    result = make_graph(ONE_NODE).run("What is 6 + 6?")
    (node,) = result.trace
    assert node.status == "failed" and "no text: it reached max_tokens first" in (node.error or "")
    assert "max_tokens" in str(result.errors) and result.usage.completion_tokens == 512


def test_an_unreadable_reply_is_named_as_such_with_its_cause(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """litellm puts a traceback in the message of a reply its types refuse: the node's error was
    "connection failed: ... Invalid response object Traceback (most recent call last):" and no more
    (content sent as a list of parts, a provider-fault audit)."""
    listed = _reply(None)
    listed["choices"][0]["message"]["content"] = [{"type": "text", "text": "4"}]  # type: ignore[index]
    scripted.add_rule(Rule(body=listed))
    (node,) = make_graph(ONE_NODE).run("What is 2 + 5?").trace
    error = node.error or ""
    assert node.status == "failed" and "the reply could not be read: " in error and "connection failed" not in error
    assert "Invalid response object: ValidationError: " in error and "Traceback" not in error


def test_a_refused_connection_names_the_host_without_the_client_object(gateway: Gateway) -> None:
    """aiohttp's message carried "ssl:<ssl.SSLContext object at 0x7f...>" into the node's error."""
    with ScriptedServer() as gone:
        api_base = gone.api_base
    (node,) = Graph.from_yaml(graph_yaml(api_base, ONE_NODE), gateway=gateway).run("What is 1 + 1?").trace
    assert node.status == "failed" and "connection failed: " in (node.error or "") and "ssl:<" not in (node.error or "")


def test_a_reply_cut_at_max_tokens_is_marked_live_stored_and_replayed(
    make_graph, scripted: ScriptedServer, store: Store
) -> None:  # type: ignore[no-untyped-def]
    """`finish_reason: length` was dropped: a reply cut mid-sentence at max_tokens read as a whole one,
    in the trace, in the database and in its cache replay (a provider-fault audit)."""
    scripted.add_rule(Rule(body=_reply("6 + 6 = 12, so first I", tokens=(20, 64), finish="length")))
    graph: Graph = make_graph(ONE_NODE)
    for cached in (False, True):
        result = graph.run("What is 6 + 6?")
        (node,) = result.trace
        assert (node.status, node.truncated, node.cached) == ("ok", True, cached)
        (stored,) = store.node_calls(result.run_id)
        assert stored.truncated
    scripted.reset()
    (whole,) = graph.run("What is 7 + 7?").trace
    assert whole.status == "ok" and not whole.truncated


def test_a_reply_without_usage_is_counted_by_estimate(make_graph, scripted: ScriptedServer, store: Store) -> None:  # type: ignore[no-untyped-def]
    """litellm reads a missing `usage` as zeros: such calls cost 0 tokens and 0 USD under every cap."""
    graph: Graph = make_graph(ONE_NODE)
    for usage in (False, True):  # left out, and reported as zeros
        scripted.reset()
        scripted.add_rule(Rule(body=_reply("2 + 2 = 4, so the sum is four.\nFinal answer: 4", usage=usage)))
        result = graph.run(f"What is 2 + 2? ({usage})")
        assert result.answer == "4"
        assert result.usage.prompt_tokens > 5 and result.usage.completion_tokens > 5
        assert store.spend(result.run_id)["prompt_tokens"] == result.usage.prompt_tokens
    scripted.reset()  # a reply of under four characters is still at least one token (a mutation audit)
    scripted.add_rule(Rule(body=_reply("4", usage=False)))
    assert graph.run("What is 2 + 2? (short)").usage.completion_tokens == 1


def test_a_negative_token_count_is_estimated_not_subtracted(make_graph, scripted: ScriptedServer, store: Store) -> None:  # type: ignore[no-untyped-def]
    """A reply with `prompt_tokens: -100000` was taken as sent: the run's spend read $-99.85 and its
    next calls passed a token cap that a sane count would have stopped (a provider-fault audit)."""
    graph: Graph = make_graph(ONE_NODE)
    scripted.add_rule(Rule(body=_reply("2 + 2 = 4.\nFinal answer: 4", tokens=(-100000, -5))))
    result = graph.run("What is 2 + 2?")
    assert result.answer == "4"
    assert result.usage.prompt_tokens > 5 and result.usage.completion_tokens > 0
    assert store.spend(result.run_id)["prompt_tokens"] == result.usage.prompt_tokens


async def test_a_retry_after_header_is_waited_for(scripted: ScriptedServer, gateway: Gateway) -> None:
    """The retry came after the gateway's own backoff (here 10-20 ms), inside the 1 s the server asked for."""
    scripted.add_rule(Rule(status=429, times=1, headers={"Retry-After": "1"}))
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, ONE_NODE), gateway=gateway)
    started = time.perf_counter()
    assert (await graph.arun("What is 5 + 5?")).answer == "10"
    first, second = (r["_received"] for r in scripted.completion_requests)
    assert second - first >= 0.95 and time.perf_counter() - started >= 0.95


def test_scripted_rule_headers_go_with_replies_too(scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 1"], headers={"X-Test": "yes"}))
    reply = httpx.post(f"{scripted.api_base}/chat/completions", json={"model": "m", "messages": []}, timeout=10)
    assert reply.headers["X-Test"] == "yes" and reply.json()["choices"][0]["message"]["content"] == "Final answer: 1"


def test_a_missing_api_key_fails_at_once_without_a_request(
    scripted: ScriptedServer, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm reports the client's "Missing credentials" as HTTP 500: it was retried with backoff
    (8 s at the default settings) although no request ever left."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    text = f'models:\n  m: {{model: openai/scripted, api_base: "{scripted.api_base}"}}\n' + ONE_NODE
    (node,) = Graph.from_yaml(text, gateway=gateway).run("What is 1 + 1?").trace
    assert node.status == "failed" and "after 1 attempt(s): no request was sent: " in (node.error or "")
    assert "Missing credentials" in (node.error or "") and "HTTP 500" not in (node.error or "")
    assert scripted.completion_requests == []


def test_a_refused_connection_and_a_timeout_are_not_called_http_statuses(scripted: ScriptedServer) -> None:
    """No HTTP reply came, yet the node's error read "HTTP 500: ... Cannot connect to host" and
    "HTTP 408: litellm.Timeout" (litellm's made-up statuses; the Python API review)."""
    import socket

    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = Graph.from_yaml(
        graph_yaml(f"http://127.0.0.1:{closed}/v1", ONE_NODE), store=None, gateway=Gateway(None, _quick())
    )
    node = refused.run("What is 1 + 1?").trace[0]
    assert "connection failed: " in (node.error or "") and "HTTP 500" not in (node.error or ""), node.error
    scripted.add_rule(Rule(replies=["Final answer: 2"], latency_s=5))
    slow = Graph.from_yaml(
        graph_yaml(scripted.api_base, ONE_NODE), store=None, gateway=Gateway(None, _quick(timeout_s=0.5))
    )
    node = slow.run("What is 1 + 1?").trace[0]
    assert "timed out: " in (node.error or "") and "HTTP 408" not in (node.error or ""), node.error


def _quick(**settings: float) -> GatewaySettings:
    return GatewaySettings(max_retries=0, cache=False, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3600", MAX_RETRY_AFTER_S),  # an hour's wait made an eval look hung
        ("a day ahead", MAX_RETRY_AFTER_S),  # HTTP dates: written when the test runs (ids must not change)
        ("a day ago", 0.0),
        ("2.5", 2.5),
        ("soon", None),
    ],
)
def test_a_servers_retry_after_is_capped(header: str, expected: float | None) -> None:
    dates = {"a day ahead": 86_400, "a day ago": -86_400}
    value = email.utils.formatdate(time.time() + dates[header], usegmt=True) if header in dates else header

    class Refusal(Exception):
        litellm_response_headers = httpx.Headers({"Retry-After": value})

    assert server_asked_wait_s(Refusal()) == expected


def test_a_reply_holding_half_a_surrogate_pair_is_paid_recorded_and_read(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """JSON may carry "\\ud800", which no UTF-8 text holds: the paid call's ledger and cache rows
    failed to be written, so the call was in no ledger and the run failed. It is read with U+FFFD."""
    scripted.add_rule(Rule(body=_reply("Half \ud800 a pair.\nFinal answer: 4")))
    graph: Graph = make_graph(ONE_NODE)
    result = graph.run("What is 2 + 2?")
    assert result.answer == "4" and "Half \ufffd a pair." in result.trace[0].completion
    assert graph.store.spend(result.run_id)["calls"] == 1
    assert graph.run("What is 2 + 2?").usage.cached_calls == 1  # its cache entry was written too
