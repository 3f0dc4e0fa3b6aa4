"""serve-graph over real HTTP with the official OpenAI client: answers, streaming, auth, limits."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import uvicorn
from openai.types.chat import ChatCompletionChunk

from agentscale import Graph, Store
from agentscale.memory import Handbook
from agentscale.serve.app import create_app
from agentscale.testing import Rule, ScriptedServer
from tests.memory.conftest import seed_handbook

QUESTION = {"role": "user", "content": "What is 2 + 3?"}
BODY = (
    "name: served\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    "  - {id: v, role: vote}\nedges: ['a, b -> v']\nanswer_format: number\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(graph: Graph, **options: object) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(graph, **options), port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def _warmed(graph: Graph) -> Graph:
    """`graph` after one unrecorded run: a process's first run waits for litellm's import, and a run
    stopped before its first call leaves no row to check."""
    graph.run("What is 1 + 1?", record=False)
    return graph


def _streamed_sum(client: openai.OpenAI, *, include_usage: bool) -> list[ChatCompletionChunk]:
    """The chunks of "What is 2 + 3?" streamed, asking for the usage chunk or not."""
    return list(
        client.chat.completions.create(
            model="served",
            messages=[{"role": "user", "content": "What is 2 + 3?"}],
            stream=True,
            stream_options={"include_usage": include_usage},
        )
    )


@pytest.fixture
def served(make_graph) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from serve(make_graph(BODY))


@pytest.fixture
def served_with_key(make_graph) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from serve(make_graph(BODY), api_key="s3cret-key", max_body_bytes=2000)


def test_openai_client_non_streaming(served: str) -> None:
    client = openai.OpenAI(base_url=served, api_key="unused")
    assert [m.id for m in client.models.list().data] == ["served"]
    reply = client.chat.completions.create(
        model="served",
        messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is 17 + 25?"}],
    )
    assert reply.choices[0].message.content == "42"
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    later = [
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "What is 17 + 25?"},
    ]
    assert client.chat.completions.create(model="served", messages=later).choices[0].message.content == "42"


def test_openai_client_streaming(served: str) -> None:
    client = openai.OpenAI(base_url=served, api_key="unused")
    stream = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "What is 2 + 3?"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "5"
    assert chunks[-1].choices[0].finish_reason == "stop"
    # nginx buffers server-sent events unless told not to, holding back the keep-alive comments
    question = {"model": "served", "stream": True, "messages": [{"role": "user", "content": "What is 2 + 3?"}]}
    with httpx.stream("POST", served + "/chat/completions", json=question) as response:
        assert response.headers["x-accel-buffering"] == "no" and response.headers["cache-control"] == "no-cache"


def test_auth_required_and_refused(served_with_key: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served_with_key, api_key="wrong").models.list()
    good = openai.OpenAI(base_url=served_with_key, api_key="s3cret-key")
    assert good.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 1 + 1?"}])
    health = httpx.get(served_with_key.removesuffix("/v1") + "/health")
    assert health.status_code == 200  # health needs no key
    lower = httpx.get(served_with_key + "/models", headers={"Authorization": "bearer s3cret-key"})
    assert lower.status_code == 200  # the scheme's name is case-insensitive (RFC 7235)


def test_bad_requests_get_4xx_json(served_with_key: str) -> None:
    headers = {"Authorization": "Bearer s3cret-key"}
    url = served_with_key + "/chat/completions"
    cases = [
        (b"{not json", 400),
        (b'{"model": "served"}', 400),
        (b'{"model": "served", "messages": [{"role": "system", "content": "only system"}]}', 400),
        (b'{"model": "other", "messages": [{"role": "user", "content": "hi"}]}', 404),
        (b'{"model": "served", "messages": [{"role": "user", "content": "' + b"x" * 3000 + b'"}]}', 413),
    ]
    for body, status in cases:
        response = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        error = response.json()["error"]
        assert error["message"] and "Traceback" not in response.text
    # a list of parts holding a bare string: the message said only "should be a valid string"
    parts = {"model": "served", "messages": [{"role": "user", "content": ["hi"]}]}
    said = httpx.post(url, json=parts, headers=headers).json()["error"]["message"]
    assert "content.str: Input should be a valid string" in said and ".0: Input should be a valid dictionary" in said
    whole = httpx.post(url, json=[], headers=headers).json()["error"]["message"]
    assert whole.startswith("invalid request: body: ")  # the body itself, where an empty path said ": ..."


def _body_of(size: int) -> bytes:
    """A valid request body of exactly `size` bytes (the question padded with spaces)."""
    shell = b'{"model": "served", "messages": [{"role": "user", "content": "What is 1 + 1?%s"}]}'
    return shell % (b" " * (size - len(shell) + 2))


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(served_with_key: str) -> None:
    """The limit is the largest body taken, declared (Content-Length) or chunked: a limit read as
    "under" refused a client that sized its requests to the documented maximum."""
    headers = {"Authorization": "Bearer s3cret-key", "Content-Type": "application/json"}
    url = served_with_key + "/chat/completions"
    for size, status in ((2000, 200), (2001, 413)):
        body = _body_of(size)
        assert len(body) == size
        declared = httpx.post(url, content=body, headers=headers, timeout=60)
        chunked = httpx.post(url, content=iter([body[:1000], body[1000:]]), headers=headers, timeout=60)
        assert (declared.status_code, chunked.status_code) == (status, status), (size, chunked.text)
        assert "transfer-encoding" not in declared.request.headers
        assert chunked.request.headers["transfer-encoding"] == "chunked"


def test_a_chunked_body_is_refused_once_over_the_limit() -> None:
    """Without a Content-Length (chunked), the whole body was read into memory before the check: the
    app reads no further than the limit (counted on the ASGI messages it asks for)."""
    app = create_app(Graph.from_yaml(BODY.replace("model: m", "model: openai/x"), store=None), max_body_bytes=2000)
    asked = []

    async def receive() -> dict[str, object]:
        asked.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": len(asked) < 2000}

    replies: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        replies.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert replies[0]["status"] == 413
    assert len(asked) <= 3  # 2 MB were on offer


def test_openai_nulls_are_read_as_openai_reads_them(served: str) -> None:
    """`"stream": null` is not streamed (it was a 400); a text part whose text is null is no text (the
    graph answered the question "None")."""
    url = served + "/chat/completions"
    answered = httpx.post(  # the first request of the process waits for litellm's import: over httpx's 5 s when loaded
        url,
        json={"model": "served", "stream": None, "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
        timeout=60,
    )
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"] == "4"
    textless = [{"role": "user", "content": [{"type": "text", "text": None}]}]
    refused = httpx.post(url, json={"model": "served", "messages": textless})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "no_user_message"


def test_sixteen_concurrent_requests_are_all_answered(served: str, scripted: ScriptedServer) -> None:
    scripted.latency_s = 0.1
    client = openai.AsyncOpenAI(base_url=served, api_key="unused")

    async def ask(i: int) -> str | None:
        reply = await client.chat.completions.create(
            model="served", messages=[{"role": "user", "content": f"What is {i} + 100?"}]
        )
        return reply.choices[0].message.content

    async def all_of_them() -> list[str | None]:
        return await asyncio.gather(*(ask(i) for i in range(16)))

    answers = asyncio.run(all_of_them())
    assert answers == [str(i + 100) for i in range(16)]
    # served concurrently, not one by one: the upstream saw several requests at once (a wall-clock
    # bound failed on a loaded machine: 2.5 s for 16 x 0.1 s)
    assert scripted.peak_concurrency >= 4


def test_each_request_is_one_line_of_the_access_log(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """serve-graph said nothing per request: a server whose upstream failed answered every client a
    502 while its operator saw a silent terminal (the serve-graph walk)."""
    lines: list[str] = []
    for url in serve(make_graph(BODY), api_key="k", access_log=lines.append):
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        answered = client.chat.completions.create(
            model="served", messages=[{"role": "user", "content": "What is 2 + 3?"}]
        )
        run_id = answered.model_extra["agentscale"]["run_id"]  # type: ignore[index]
        _streamed_sum(client, include_usage=False)
        httpx.get(url.removesuffix("/v1") + "/health")  # a passing health check is no line
        httpx.get(url + "/models%1b[31m", headers={"Authorization": "Bearer wrong"})
        scripted.add_rule(Rule(status=500))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 4 + 4?"}])
        with pytest.raises(openai.APIError):  # another question: the cache holds 2 + 3's answer
            list(
                client.chat.completions.create(
                    model="served", messages=[{"role": "user", "content": "What is 6 + 6?"}], stream=True
                )
            )
    assert len(lines) == 5, lines
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ POST /v1/chat/completions 200 [\d.]+ s run {run_id}", lines[0])
    assert re.fullmatch(r"127\.0\.0\.1:\d+ POST /v1/chat/completions 200 stream [\d.]+ s run \w+", lines[1])
    assert re.fullmatch(r".* GET /v1/models \[31m 401 [\d.]+ s: missing or invalid API key", lines[2]), lines[2]
    assert " 502 " in lines[3] and ": the graph gave no answer (its model calls failed); run " in lines[3]
    # a stream that fails after its 200 ends in an error event: said (a review's B7: "200 stream 4.94 s")
    assert " 200 stream " in lines[4] and ": the graph gave no answer (its model calls failed)" in lines[4]


def test_an_error_the_server_did_not_foresee_is_a_500_line_and_a_failing_log_no_failed_request(
    make_graph, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Starlette answers an exception that escapes the app outside every middleware: the line said
    "no reply" for a client's 500 (a review's B8). A log writer that raises (stderr gone) must not
    turn an answered request into a traceback."""
    import agentscale.serve.app as served_app

    lines: list[str] = []

    def breaks(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    for url in serve(make_graph(BODY), access_log=lines.append):
        with monkeypatch.context() as patch:  # outside the chat route's own handling: /v1/models/{id}
            patch.setattr(served_app, "unknown_model", breaks)
            reply = httpx.get(url + "/models/another", timeout=20)
        assert reply.status_code == 500
    assert lines and " 500 (an error the server did not foresee" in lines[0], lines

    def gone(_: str) -> None:
        raise OSError("stderr closed")

    for url in serve(make_graph(BODY), access_log=gone):
        reply = httpx.post(url + "/chat/completions", json={"model": "served", "messages": [QUESTION]}, timeout=20)
        assert reply.status_code == 200


def test_a_question_left_unanswered_is_a_server_error_not_an_empty_answer(
    served: str, scripted: ScriptedServer
) -> None:
    """Every model call failing gave status 200 with content "" (and the upstream's address in the
    body): clients took it for an answer."""
    scripted.add_rule(Rule(status=500))
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 2 + 2?"}])
    assert info.value.status_code == 502
    assert "the graph gave no answer (its model calls failed)" in info.value.message
    assert scripted.api_base.split("//")[1] not in str(info.value.body)


@pytest.mark.parametrize(
    ("body", "question", "status", "why"),
    [
        (BODY, "What is 2 + 2?", 500, "no reply held an answer in its format"),
        (
            # room for one call and not for both (under one call's reservation it is refused at load)
            BODY.replace(
                "answer_format: number\n",
                "answer_format: number\ndefaults: {max_tokens: 8}\nbudget: {max_tokens: 100}\n",
            ),
            "What is 2 + 2?",
            500,
            "a budget stopped it first",
        ),
        (  # the cap cuts the calls in flight: failed calls, a budget's doing (it read 502 "model calls failed")
            BODY.replace("answer_format: number\n", "answer_format: number\nbudget: {max_latency_s: 0.5}\n"),
            "What is 2 + 2?",
            500,
            "a budget stopped it first",
        ),
    ],
    ids=["no answer in the format", "budget", "time budget"],
)
def test_an_unanswered_question_says_why(
    make_graph, store: Store, scripted: ScriptedServer, body: str, question: str, status: int, why: str
) -> None:  # type: ignore[no-untyped-def]
    """A reply with no number was blamed on a budget the graph did not have. The client, with its
    default retries, runs the graph once: it retried the 500 twice, three paid runs per request."""
    scripted.add_rule(Rule(replies=["I cannot say."], latency_s=3.0 if "max_latency_s" in body else None))
    for url in serve(make_graph(body)):
        client = openai.OpenAI(base_url=url, api_key="unused")
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="served", messages=[{"role": "user", "content": question}])
        assert info.value.status_code == status and f"the graph gave no answer ({why})" in info.value.message
        assert len(store.list_runs()) == 1


def test_a_client_that_leaves_stops_its_run(make_graph, store: Store, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """A client that timed out left its run going, paid to the end (and the OpenAI clients retry a
    timed-out request twice by default: three runs for one question). Its run stops when it leaves,
    stored as interrupted, and the server answers the next client at once."""
    graph = _warmed(make_graph(BODY))
    scripted.latency_s = 3.0
    for url in serve(graph):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                url + "/chat/completions",
                json={"model": "served", "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
                timeout=0.5,
            )
        deadline = time.time() + 2.0  # well before the run's 3 s calls could end
        while not (store.list_runs() and store.list_runs()[0].status != "running"):
            assert time.time() < deadline, "the run went on after its client left"
            time.sleep(0.05)
        (run,) = store.list_runs()
        assert run.status == "interrupted"


TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}


def test_what_a_graph_cannot_honour_or_read_is_a_400(served: str) -> None:
    """n > 1 gave one choice (a client reading choices[1] failed); a body not in UTF-8 or nested
    too deep was a 500 "internal error while running the graph" with a traceback in the server's
    log; "stream": "yes" was streamed."""
    url = served + "/chat/completions"
    question = [{"role": "user", "content": "What is 2 + 2?"}]
    cases = [
        (json.dumps({"model": "served", "n": 3, "messages": question}).encode(), "n must be 1"),
        (json.dumps({"model": "served", "n": 2, "messages": question}).encode(), "n must be 1"),
        (b'{"model": "served", "messages": [{"role": "user", "content": "caf\xe9?"}]}', "not valid JSON in UTF-8"),
        (b"[" * 100_000, "not valid JSON in UTF-8"),
        (json.dumps({"model": "served", "stream": "yes", "messages": question}).encode(), "request: stream: "),
        # an integer over Python's 4,300 digits, and half a surrogate pair: 500s, retried by OpenAI's clients
        (b'{"model": "served", "n": ' + b"1" * 5000 + b', "messages": []}', "not valid JSON in UTF-8"),
        (b'{"model": "served", "messages": [{"role": "user", "content": "What is 2 + 2? \\ud800"}]}', "not Unicode"),
        # a blank last turn answered the turn before it
        (json.dumps({"model": "served", "messages": [*question, {"role": "user", "content": " "}]}).encode(), "empty"),
        # an image beside the text was answered from the text alone, with a 200
        (
            json.dumps(
                {
                    "model": "served",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "What is in this picture?"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                            ],
                        }
                    ],
                }
            ).encode(),
            "the graph reads text only: the last user message has a 'image_url' part",
        ),
        # asked for tool calls or JSON, a client got text and finish_reason "stop"
        (json.dumps({"model": "served", "messages": question, "tools": [TOOL]}).encode(), "tool calls are not"),
        (json.dumps({"model": "served", "messages": question, "tool_choice": "required"}).encode(), "tool calls"),
        (
            json.dumps({"model": "served", "messages": question, "response_format": {"type": "json_object"}}).encode(),
            "text",
        ),
    ]
    for body, said in cases:
        # garbage of earlier tests (a cancelled call's never-awaited coroutine, whose warning pytest makes
        # an error) collected at the bottom of json's recursion into 100,000 brackets could not even be
        # reported ("RecursionError ... Failed to process unraisable exception", once in a full suite)
        gc.collect()
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and said in response.json()["error"]["message"], (body[:40], response.text)
    answered = httpx.post(url, json={"model": "served", "n": 1, "messages": question})
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"] == "4"
    plain = {"tools": [], "tool_choice": "auto", "response_format": {"type": "text"}}  # what some clients always send
    answered = httpx.post(url, json={"model": "served", "messages": question, **plain})
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"] == "4"


def test_a_wrong_method_says_which_methods_the_path_takes(served: str) -> None:
    """A 405 without `Allow` (the handler dropped the exception's headers), as HTTP requires it; a
    load balancer's HEAD on /health was one."""
    assert httpx.head(served.removesuffix("/v1") + "/health").status_code == 200
    response = httpx.get(served + "/chat/completions")
    assert response.status_code == 405 and response.headers["allow"] == "POST", response.headers
    assert response.json()["error"]["message"] == "Method Not Allowed"


def test_a_model_is_retrieved_by_its_id(served: str) -> None:
    """OpenAI's models.retrieve, which tools call to check a model before use, was a 404."""
    client = openai.OpenAI(base_url=served, api_key="unused")
    assert client.models.retrieve("served").id == "served"
    with pytest.raises(openai.NotFoundError, match="this server serves 'served'"):
        client.models.retrieve("gpt-4o")


def test_an_unexpected_error_is_one_log_line_and_a_500(  # type: ignore[no-untyped-def]
    make_graph, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The app's handler answered it, then Starlette raised it again: every such 500 printed an
    "Exception in ASGI application" traceback in the server's log."""
    graph = make_graph(BODY)
    runs = []

    async def breaks(question: str, **_: object) -> None:
        runs.append(question)
        raise RuntimeError("boom")

    graph.arun = breaks
    for url in serve(graph):
        client = openai.OpenAI(base_url=url, api_key="unused")  # OpenAI's two retries of a 5xx, unless told not to
        with pytest.raises(openai.InternalServerError, match="internal error while running the graph"):
            client.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 2 + 2?"}])
    assert len(runs) == 1  # x-should-retry: false (each retry ran the graph again)
    assert "graph served failed: RuntimeError: boom" in caplog.text
    printed = capfd.readouterr().err  # uvicorn's loggers print there, past caplog
    assert "Exception in ASGI application" not in printed and "Traceback" not in printed, printed


def test_a_streamed_reply_starts_before_the_graph_ends_and_keeps_the_connection_alive(  # type: ignore[no-untyped-def]
    make_graph, store: Store, scripted: ScriptedServer
) -> None:
    """The stream began once the whole graph had run: its first byte came as late as a JSON reply's,
    and a proxy's read timeout cut a long graph off. Now the role chunk comes at once, a comment
    every keep_alive_s while the graph runs, then the answer; usage only when asked, as OpenAI
    sends it (a last chunk without choices)."""
    scripted.latency_s = 1.5
    for url in serve(make_graph(BODY), keep_alive_s=0.2):
        asked = {"model": "served", "stream": True, "messages": [{"role": "user", "content": "What is 2 + 3?"}]}
        with httpx.stream("POST", url + "/chat/completions", json=asked, timeout=30) as response:
            lines = response.iter_lines()
            first = json.loads(next(line for line in lines if line).removeprefix("data: "))
            assert first["choices"][0]["delta"]["role"] == "assistant"
            assert [run.status for run in store.list_runs()] in ([], ["running"])  # the graph goes on
            rest = [line for line in lines if line]
        assert any(line.startswith(": ") for line in rest)  # kept alive while it ran
        events = [json.loads(line.removeprefix("data: ")) for line in rest if line.startswith("data: {")]
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "5"
        assert all("usage" not in e for e in events) and rest[-1] == "data: [DONE]"
        chunks = _streamed_sum(openai.OpenAI(base_url=url, api_key="unused"), include_usage=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "5"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("words", [7, 8, 16, 17])
def test_a_streamed_answer_is_the_answer_word_for_word(make_graph, scripted: ScriptedServer, words: int) -> None:  # type: ignore[no-untyped-def]
    """The answer goes out in chunks of 8 words, a space after every chunk but the last: joined, the
    chunks are the answer itself, with no space at its end when its word count is a multiple of 8."""
    answer = " ".join(f"w{i}" for i in range(words))
    scripted.add_rule(Rule(replies=[f"Final answer: {answer}"]))
    one_call = "name: served\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: text\n"
    for url in serve(make_graph(one_call)):
        client = openai.OpenAI(base_url=url, api_key="unused")
        asked = [{"role": "user", "content": "Say the words."}]
        chunks = list(client.chat.completions.create(model="served", messages=asked, stream=True))  # type: ignore[arg-type]
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == answer
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == -(-words // 8)
        (last,) = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
        assert last.model_extra and last.model_extra["agentscale"]["run_id"]  # which stored run answered
        assert last.model_extra["agentscale"]["simulated"] is False  # a real server's model answered


def test_a_stream_that_fails_after_it_began_ends_in_an_error_the_client_raises(  # type: ignore[no-untyped-def]
    served: str, scripted: ScriptedServer
) -> None:
    scripted.add_rule(Rule(status=500))
    client = openai.OpenAI(base_url=served, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="served", messages=[{"role": "user", "content": "What is 2 + 2?"}], stream=True
    )
    with pytest.raises(openai.APIError, match=r"the graph gave no answer \(its model calls failed\)"):
        list(stream)


def test_a_client_that_leaves_a_stream_stops_its_run(make_graph, store: Store, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    graph = _warmed(make_graph(BODY))
    scripted.latency_s = 3.0
    for url in serve(graph):
        asked = {"model": "served", "stream": True, "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
        with httpx.stream("POST", url + "/chat/completions", json=asked, timeout=30) as response:
            assert next(response.iter_lines()).startswith("data: ")  # the stream began; the client leaves
        deadline = time.time() + 2.0  # well before the run's 3 s calls could end
        while not (store.list_runs() and store.list_runs()[0].status != "running"):
            assert time.time() < deadline, "the run went on after its client left"
            time.sleep(0.05)
        assert store.list_runs()[0].status == "interrupted"


def test_a_request_still_running_when_the_server_stops_gets_a_503_and_its_run_is_kept(  # type: ignore[no-untyped-def]
    make_graph, store: Store, scripted: ScriptedServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """uvicorn cancels the requests still running once its graceful shutdown times out: the client
    got a text/plain 500 (a traceback in the server's log). Now a 503 in OpenAI's shape, which the
    clients retry, and the run is stored interrupted; a streamed one ends cut short, without a
    traceback either, and ends with the 503's error event (it was a cut connection)."""
    scripted.latency_s = 5.0
    port = _free_port()
    app = create_app(make_graph(BODY))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", timeout_graceful_shutdown=0.5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    replies: list[httpx.Response] = []
    asked = {"model": "served", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    client = threading.Thread(target=lambda: replies.append(httpx.post(url, json=asked, timeout=30)))
    client.start()

    events: list[str] = []

    def stream() -> None:
        streamed = {**asked, "stream": True, "messages": [{"role": "user", "content": "What is 3 + 3?"}]}
        with httpx.stream("POST", url, json=streamed, timeout=30) as response:
            events.extend(line for line in response.iter_lines() if line.startswith("data: "))

    streaming = threading.Thread(target=stream)
    streaming.start()
    deadline = time.time() + 10
    while len(scripted.completion_requests) < 4:  # both runs under way (a row is written as its run ends)
        assert time.time() < deadline, "the runs did not start"
        time.sleep(0.02)
    server.should_exit = True
    client.join(20)
    streaming.join(20)
    thread.join(20)
    (reply,) = replies
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "server_stopping", reply.text
    assert json.loads(events[-1].removeprefix("data: "))["error"]["code"] == "server_stopping", events
    assert [run.status for run in store.list_runs()] == ["interrupted"] * 2
    printed = capfd.readouterr().err
    assert "Traceback" not in printed and "Exception in ASGI application" not in printed, printed


def test_streamed_requests_over_the_waiting_limit_get_a_429_before_any_stream(  # type: ignore[no-untyped-def]
    make_graph, scripted: ScriptedServer
) -> None:
    """A streamed request was counted as waiting only once its run started, after its status 200: a
    burst over the limit got 200s refused inside the stream, which the OpenAI clients do not retry."""
    scripted.latency_s = 1.0
    for url in serve(make_graph(BODY), max_concurrency=1, max_waiting=2):

        async def one(client: httpx.AsyncClient, i: int, url: str = url) -> int:
            asked = {"model": "served", "stream": True, "messages": [{"role": "user", "content": f"What is {i} + 6?"}]}
            async with client.stream("POST", url + "/chat/completions", json=asked, timeout=60) as response:
                lines = [line async for line in response.aiter_lines()]
                assert response.status_code != 200 or not any('"error"' in line for line in lines), lines
                if response.status_code == 429:  # it had neither (a new user's walk)
                    assert response.headers["retry-after"] == "1"
                    assert json.loads("".join(lines))["error"]["code"] == "rate_limited"
                return response.status_code

        async def burst() -> list[int]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as client:
                return list(await asyncio.gather(*(one(client, i) for i in range(8))))

        statuses = asyncio.run(burst())
        # one running and two waiting at most (a request counts as waiting from its arrival, so on a
        # busy machine fewer may be let in); the rest refused before any stream, none inside one
        assert set(statuses) == {200, 429} and statuses.count(200) <= 3, statuses


def test_a_stream_left_between_two_keep_alives_stops_its_run(
    make_graph, store: Store, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """Left to the generator's `finally`, a run went on, paid to the end, when Starlette cancelled the
    stream while the generator sat at a `yield` (9 runs of 10 with keep-alives every 0.5 ms)."""
    graph = _warmed(make_graph(BODY))
    scripted.latency_s = 2.0
    for url in serve(graph, keep_alive_s=0.0005):
        for i in range(4):
            asked = {"model": "served", "stream": True, "messages": [{"role": "user", "content": f"What is {i} + 2?"}]}
            with httpx.stream("POST", url + "/chat/completions", json=asked, timeout=30) as response:
                started = time.time()
                for _ in response.iter_lines():
                    if time.time() - started > 0.2:
                        break
        deadline = time.time() + 10
        while len(store.list_runs()) < 4:
            assert time.time() < deadline, [run.status for run in store.list_runs()]
            time.sleep(0.05)
        assert [run.status for run in store.list_runs()] == ["interrupted"] * 4


def test_requests_that_fit_the_running_slots_are_never_refused(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """Counted as waiting until their task first ran, requests were refused with free slots: 6 at once
    with 8 slots and room for 1 waiting got 14 429s in 30."""
    scripted.latency_s = 0.3
    for url in serve(make_graph(BODY), max_concurrency=8, max_waiting=1):

        async def six(url: str = url) -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                asked = [
                    {"model": "served", "messages": [{"role": "user", "content": f"What is {i} + 1?"}]}
                    for i in range(6)
                ]
                replies = await asyncio.gather(*(client.post(url + "/chat/completions", json=a) for a in asked))
                return [reply.status_code for reply in replies]

        for _ in range(3):
            assert asyncio.run(six()) == [200] * 6


def test_a_failed_database_is_said_and_stops_the_server_paying_for_calls(
    make_graph, store: Store, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """The database failing under a served run (a full disk in the serving audit; here its item table
    gone) was an unexplained 500, `/health` stayed ok, and every later request still paid for model
    calls it could not record."""
    import sqlite3

    for url in serve(make_graph(BODY)):
        client = httpx.Client(base_url=url.removesuffix("/v1"), timeout=30)
        ask = {"model": "served", "messages": [{"role": "user", "content": "What is 17 + 25?"}]}
        assert client.post("/v1/chat/completions", json=ask).status_code == 200
        with sqlite3.connect(store.path) as connection:
            connection.execute("DROP TABLE runitem")
        failed = client.post("/v1/chat/completions", json=ask)
        assert failed.status_code == 503 and failed.headers["x-should-retry"] == "false"
        error = failed.json()["error"]
        assert error["code"] == "storage_unavailable" and "no such table: runitem" in error["message"]
        paid = len(scripted.completion_requests)
        again = client.post("/v1/chat/completions", json={**ask, "stream": True})
        assert again.status_code == 503 and len(scripted.completion_requests) == paid  # refused before any call
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "database failed"


def test_a_lock_held_past_the_busy_timeout_fails_one_request_not_the_server(
    tmp_path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """Another process holding the database past the busy timeout (45 s in the serve-graph walk)
    latched the server's "database failed": /health said so 15 s after the lock was gone, and every
    later request was refused until a restart. A lock passes; only the request it met fails, with a
    503 a client may retry. (The 30 s busy timeout shortened to keep the test short.)"""
    import sqlite3

    from agentscale import Gateway, GatewaySettings
    from agentscale.storage import _opening
    from tests.conftest import graph_yaml

    monkeypatch.setattr(_opening, "_BUSY_TIMEOUT_S", 0.3)
    store = Store(tmp_path / "held.db")
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, BODY), gateway=Gateway(store, GatewaySettings(max_retries=0)))
    for url in serve(graph):
        client = httpx.Client(base_url=url.removesuffix("/v1"), timeout=30)
        ask = {"model": "served", "messages": [{"role": "user", "content": "What is 17 + 25?"}]}
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the busy timeout
        held = client.post("/v1/chat/completions", json=ask)
        holder.execute("COMMIT")
        holder.close()
        assert held.status_code == 503 and held.json()["error"]["code"] == "storage_busy", held.text
        assert "x-should-retry" not in held.headers
        assert client.get("/health").json()["status"] == "ok"
        assert (
            client.post(
                "/v1/chat/completions", json={**ask, "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
            ).status_code
            == 200
        )


def test_a_trailing_assistant_turn_is_not_the_question(served: str, scripted: ScriptedServer) -> None:
    """(A mutation audit: a one-line change to `message.role != "user"` survived every test.) A user would see a
    conversation ending in an assistant turn (a prefill, or a client replaying history) answered as if the
    assistant's text were the question: the graph is asked "Let me work it out." and replies to that, while the
    docstring says the last user message is the question."""
    client = openai.OpenAI(base_url=served, api_key="unused")
    reply = client.chat.completions.create(
        model="served",
        messages=[
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "Let me work it out."},
        ],
    )
    assert reply.choices[0].message.content == "5"
    asked = [request["messages"][-1]["content"] for request in scripted.completion_requests]
    assert asked and all("What is 2 + 3?" in text and "work it out" not in text for text in asked)


def test_include_usage_false_sends_no_usage_chunk(served: str) -> None:
    """(A mutation audit: a one-line change to `.get("include_usage") is True` survived every test.) A client sending
    `stream_options={"include_usage": false}` (OpenAI's SDKs and proxies such as LiteLLM do) would get a last chunk
    with `choices: []` it did not ask for; code reading `chunk.choices[0]` on every chunk (the common streaming
    loop) fails with IndexError at the end of each reply."""
    client = openai.OpenAI(base_url=served, api_key="unused")
    chunks = _streamed_sum(client, include_usage=False)
    assert all(chunk.choices for chunk in chunks) and all(chunk.usage is None for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "5"
    asked = _streamed_sum(client, include_usage=True)
    assert asked[-1].choices == [] and asked[-1].usage is not None  # the chunk itself still comes when asked


def test_a_body_that_trickles_in_is_refused_after_its_time(make_graph) -> None:  # type: ignore[no-untyped-def]
    """A client sending its body a byte at a time held its connection and memory for good (150 of
    them: 160 MiB; a security review). Past `body_timeout_s` it gets a 408 and the connection ends."""
    for base in serve(make_graph(BODY), body_timeout_s=0.5):
        host, port = base.removeprefix("http://").removesuffix("/v1").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            connection.sendall((head + "Content-Length: 100\r\n\r\n{").encode())  # 1 byte of 100, then nothing
            reply = connection.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408") and "body_timeout" in reply


def test_an_answer_from_a_reply_cut_at_max_tokens_finishes_with_length(served: str, scripted: ScriptedServer) -> None:
    """A client reads finish_reason "length" as "maybe cut, ask with more tokens"; a graph whose
    answering replies stopped at max_tokens said "stop". The vote passes their answer on."""
    scripted.add_rule(Rule(pattern="What is 6 \\+", replies=["6 + 3 = 9 because"], finish_reason="length"))
    client = openai.OpenAI(base_url=served, api_key="unused")
    ask = {"model": "served", "messages": [{"role": "user", "content": "What is 6 + 3?"}]}
    reply = client.chat.completions.create(**ask)  # type: ignore[call-overload]
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("9", "length")
    chunks = list(client.chat.completions.create(**ask, stream=True))  # type: ignore[call-overload]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    whole = client.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 7 + 4?"}])
    assert whole.choices[0].finish_reason == "stop"
    # one whole reply giving the answer makes it whole (the vote's other input was cut; a review)
    scripted.add_rule(Rule(pattern="What is 5 \\+", replies=["5 + 3 = 8 because"], finish_reason="length", times=1))
    mixed = client.chat.completions.create(model="served", messages=[{"role": "user", "content": "What is 5 + 3?"}])
    assert (mixed.choices[0].message.content, mixed.choices[0].finish_reason) == ("8", "stop")


def test_a_handbook_deleted_while_served_is_named_in_a_503(make_graph, store: Store, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """serve-graph refuses a missing handbook at start, but `handbook delete` cannot see served
    requests in flight: every later request got a bare 500 ("internal error")."""
    seed_handbook(store, "math", [("behavior_carry_digits", "Add digits column by column from the right, carrying.")])
    graph = make_graph("name: served\nmemory: {handbook: math}\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    for url in serve(graph):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        question = [{"role": "user", "content": "What is 2 + 3?"}]
        assert client.chat.completions.create(model="served", messages=question).choices[0].message.content
        Handbook(store, "math", embedder=None).delete()
        asked = len(scripted.completion_requests)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="served", messages=question)
        assert refused.value.status_code == 503 and refused.value.code == "handbook_unavailable"
        assert "the graph's handbook 'math' is no longer in the server's database" in refused.value.message
        assert str(store.path) not in refused.value.message and len(scripted.completion_requests) == asked


def test_a_client_that_leaves_while_sending_its_body_is_not_a_graph_failure(  # type: ignore[no-untyped-def]
    served: str, scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's one error line of a long session blamed the graph ("graph served failed:
    ClientDisconnect") for a client that hung up mid-body; no graph had run."""
    host, port = served.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b'{"model":')
        time.sleep(0.3)
    time.sleep(0.5)  # the server reads the rest of the body, finds the client gone
    assert "failed" not in caplog.text and scripted.completion_requests == []
    assert httpx.get(served.removesuffix("/v1") + "/health").json()["status"] == "ok"
