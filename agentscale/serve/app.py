"""An OpenAI-compatible chat-completions endpoint in front of one graph.

Any OpenAI client can then use an optimized graph like a model: `base_url=http://host:port/v1`,
`model=<graph name>`. The last user message is the question; the graph's final answer is the reply
(streamed as server-sent events when `stream: true`: `_stream`). Errors are JSON in OpenAI's shape and never
carry a traceback; bearer keys are compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from agentscale.errors import QuestionError
from agentscale.graphs.result import RunResult
from agentscale.memory import HandbookNotFound
from agentscale.runtime.compile import checked_question
from agentscale.runtime.graph import Graph
from agentscale.serve import DEFAULT_MAX_BODY_BYTES
from agentscale.serve._access import AccessLog
from agentscale.serve._admission import Admission, stop
from agentscale.serve._guard import Guard
from agentscale.serve._replies import (
    NO_RETRY,
    ApiError,
    error_response,
    finish_reason_of,
    no_answer,
    run_of,
    stopping,
    unknown_model,
    usage_of,
)
from agentscale.serve._stream import RunStream, streamed_reply
from agentscale.storage import busy, database_trouble, sqlite_failure

log = logging.getLogger("agentscale.serve")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields we use; other OpenAI parameters (temperature, max_tokens, ...) are accepted and
    ignored: the graph's nodes set their own. `n` above 1 is refused: a graph gives one answer, and a
    client reading `choices[1]` would fail on a reply of one."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False  # OpenAI's clients may send null: not streamed; "yes" is no bool
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: usage as a last chunk
    n: int | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_answer(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("a graph gives one answer per request: n must be 1")
        return n

    @field_validator("tools", "tool_choice")
    @classmethod
    def _no_tool_calls(cls, asked: list[Any] | str | dict[str, Any] | None) -> list[Any] | str | dict[str, Any] | None:
        """Refused rather than ignored: an agent that needs a tool call got text and `finish_reason:
        stop` with a 200, and failed later without knowing why."""
        if asked not in (None, [], "none", "auto"):
            raise ValueError("tool calls are not supported: the graph answers in text")
        return asked

    @field_validator("response_format")
    @classmethod
    def _text_replies(cls, asked: dict[str, Any] | None) -> dict[str, Any] | None:
        if asked is not None and asked.get("type", "text") != "text":
            raise ValueError("the graph answers in text: response_format must be {'type': 'text'}")
        return asked


def question_of(request: ChatRequest) -> str:
    """The last user message's text (string content or the text parts of a content list), refused
    with a 400 before any call when it is no question: blank (an earlier turn's question was
    answered instead), with a part the graph cannot read (an image: answered from the text alone),
    or not Unicode text (half a surrogate pair failed inside the run, a 500 that OpenAI's clients
    retried twice)."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            text = message.content
        else:
            parts = message.content or []  # a text part's null text is no text (it was the question "None")
            unread = next((str(p.get("type")) for p in parts if p.get("type") != "text"), None)
            if unread is not None:  # answered from the text alone with a 200, as tools were before their 400
                raise ApiError(
                    400,
                    f"the graph reads text only: the last user message has a {unread!r} part",
                    code="unsupported_content",
                )
            text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
        try:
            return checked_question(text, "the last user message")
        except QuestionError as exc:
            raise ApiError(400, str(exc), code="no_user_message" if not text.strip() else "invalid_question") from None
    raise ApiError(400, "the request has no user message with text content", code="no_user_message")


async def _body_within(request: Request, max_bytes: int) -> bytes:
    """The request's body, refused as soon as it passes `max_bytes`: a chunked body (no
    Content-Length for the middleware to check) was read whole into memory before the check."""
    parts, size = [], 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > max_bytes:
                raise ApiError(413, f"request body over {max_bytes} bytes")
            parts.append(part)
    except ClientDisconnect:  # no graph ran: the log blamed the graph ("graph g failed: ClientDisconnect")
        raise ApiError(
            499, "the client closed the request before its body arrived", code="client_closed_request"
        ) from None
    return b"".join(parts)


def _problems(exc: ValidationError, most: int = 3) -> str:
    """What is wrong with a request body, every shape a field may take included: pydantic reports one
    error per shape of a union (a message's content: a string, or a list of parts), and the first
    alone named the wrong one ("messages.0.content.str: Input should be a valid string" for a list
    holding a bare string, whose part must be an object)."""
    errors = exc.errors()
    said = [f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in errors[:most]]
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(said) + more


def create_app(
    graph: Graph,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 32,
    max_waiting: int = 256,
    keep_alive_s: float = 10.0,
    body_timeout_s: float = 30.0,
    access_log: Callable[[str], None] | None = None,
) -> FastAPI:
    """A FastAPI app serving `graph` under the model name `graph.name`; a streamed reply sends an SSE
    comment every `keep_alive_s` while the graph runs; a body still arriving after `body_timeout_s`
    gets a 408 (a client sending a megabyte a byte at a time held its memory and connection for good,
    150 of them 160 MiB: a security review). `access_log` gets one line per request (`AccessLog`)."""
    app = FastAPI(title=f"agentscale: {graph.name}", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(max_concurrency, max_waiting)
    app.state.admission = admission  # the runs in flight, which `serve-graph` names when it stops

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = f"invalid request: {exc.errors()[0].get('msg', 'bad body')}"
        return error_response(ApiError(400, message))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})  # a 405's Allow
        return error_response(ApiError(exc.status_code, str(exc.detail), headers=headers))

    database_failed: list[str] = []  # the database's error, once one happened

    def _internal_error(exc: Exception) -> ApiError:
        """`x-should-retry: false`, as for a graph that gave no answer: OpenAI's clients retry a 5xx
        twice, and an error the server did not foresee comes back the same, each time paid. A
        failure of the database (a full disk, a read-only file) is said, and it stops the server
        taking requests: each went on paying for model calls it could not record, and got an
        unexplained 500. A lock held past the busy timeout by another process fails this request
        only (a 503 a client may retry): latched, it refused every later one until a restart."""
        if isinstance(exc, HandbookNotFound):  # checked at start: deleted since (a bare 500 said nothing)
            return _handbook_gone(exc)
        cause = sqlite_failure(exc)
        if cause is None:
            log.error("graph %s failed: %s: %s", graph.name, type(exc).__name__, exc)
            return ApiError(500, "internal error while running the graph", "server_error", headers=NO_RETRY)
        if busy(cause):
            log.error("graph %s: the database was held by another process: %s", graph.name, cause)
            return ApiError(
                503,
                f"the server's database was held by another process ({cause}); try again",
                "server_error",
                "storage_busy",
            )
        if not database_failed:
            log.error("graph %s: the database failed: %s; refusing every request from now on", graph.name, cause)
            database_failed.append(f"{cause}: {database_trouble(cause)}")
        return _storage_unavailable()

    def _handbook_gone(exc: HandbookNotFound) -> ApiError:
        """Before any model call: the handbook a graph's `memory:` names went from the database while
        the server ran (`handbook delete`, which cannot see served requests in flight). The message
        names it, not the database's path, which is the server's own business."""
        log.error("graph %s: %s", graph.name, exc)
        name = graph.spec.memory.handbook if graph.spec.memory is not None else "?"
        return ApiError(
            503,
            f"the graph's handbook {name!r} is no longer in the server's database (deleted while it served?); "
            "requests are answered again once it is back",
            "server_error",
            "handbook_unavailable",
            headers=NO_RETRY,
        )

    def _storage_unavailable() -> ApiError:
        return ApiError(
            503,
            f"the server's database failed ({database_failed[0]}); it takes no request until it is restarted",
            "server_error",
            "storage_unavailable",
            headers=NO_RETRY,
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(_internal_error(exc))

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    if access_log is not None:  # added last, so outermost: the Guard's refusals are logged too
        app.add_middleware(AccessLog, say=access_log)

    @app.api_route("/health", methods=["GET", "HEAD"])  # HEAD: what some load balancers' checks send
    async def health() -> JSONResponse:
        if database_failed:
            return JSONResponse({"status": "database failed", "graph": graph.name, "error": database_failed[0]}, 503)
        return JSONResponse({"status": "ok", "graph": graph.name})

    served_model = {"id": graph.name, "object": "model", "created": 0, "owned_by": "agentscale"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [served_model]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        """OpenAI's `models.retrieve`, which some tools call to check a model before using it."""
        if model_id != graph.name:
            raise unknown_model(model_id, graph.name)
        return served_model

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        """An unexpected error is logged in one line and answered as a 500 here: past a route, the
        app's handler answers it but Starlette raises it again, and the server printed a traceback
        for each (a body in Latin-1 did). A request the stopping server cancels gets a 503 (it got
        a text/plain 500 and a traceback in the log)."""
        try:
            return await answer(request)
        except ApiError:
            raise
        except Exception as exc:
            raise _internal_error(exc) from None
        except asyncio.CancelledError:  # the server stops: its graceful shutdown timed out on this request
            return error_response(stopping())  # its run is stopped (stored interrupted); a client may retry

    async def answer(request: Request) -> JSONResponse | StreamingResponse:
        if database_failed:  # before any model call: its cost could not be recorded
            raise _storage_unavailable()
        try:
            body = await asyncio.wait_for(_body_within(request, max_body_bytes), body_timeout_s)
        except TimeoutError:
            raise ApiError(
                408, f"the request body took over {body_timeout_s:g} s to arrive", code="body_timeout"
            ) from None
        try:
            data = json.loads(body or b"null")
        # not UTF-8, nested too deep, an integer over Python's 4,300 digits (a ValueError: a 500 before)
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not valid JSON in UTF-8", code="invalid_json") from None
        try:
            chat_request = ChatRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, f"invalid request: {_problems(exc)}") from None
        if chat_request.model != graph.name:
            raise unknown_model(chat_request.model, graph.name)
        question = question_of(chat_request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        run = admission.start(graph.arun(question))
        if chat_request.stream:
            include_usage = (chat_request.stream_options or {}).get("include_usage") is True
            events = streamed_reply(
                completion_id,
                graph.name,
                run,
                include_usage=include_usage,
                keep_alive_s=keep_alive_s,
                unexpected=_internal_error,
            )
            return RunStream(run, events, media_type="text/event-stream")
        result = await _unless_the_client_leaves(request, run)
        if result.answer is None:
            raise no_answer(result)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": graph.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.answer},
                        "finish_reason": finish_reason_of(result),
                    }
                ],
                "usage": usage_of(result),
                "agentscale": run_of(result),
            }
        )

    return app


async def _unless_the_client_leaves(request: Request, task: asyncio.Task[RunResult]) -> RunResult:
    """`task`'s result; cancelled (the run stored as interrupted) if the client disconnects first.

    Why: a client that timed out or gave up left its run going, paid to the end, and the OpenAI
    clients retry a timed-out request twice by default, so one question could pay three full runs
    while later requests queued behind them. The body has been read, so the next ASGI message is the
    disconnect."""
    leaving = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left = leaving.done()
        leaving.cancel()
        await stop(task)  # the client left, or this handler is cancelled (shutdown)
    if task.cancelled():  # the client left, or the stopping server ended its wait for a turn
        if left:
            raise ApiError(499, "the client closed the request; its run was stopped", code="client_closed_request")
        raise stopping()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
