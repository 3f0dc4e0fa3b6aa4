"""An OpenAI-compatible chat-completions endpoint in front of one graph.

Any OpenAI client can then use an optimized graph like a model: `base_url=http://host:port/v1`,
`model=<graph name>`. The last user message is the question; the graph's final answer is the reply
(streamed as server-sent events when `stream: true`). Errors are JSON in OpenAI's shape and never
carry a traceback; bearer keys are compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentscale.errors import BudgetExceeded
from agentscale.graphs.result import RunResult
from agentscale.runtime.graph import Graph

log = logging.getLogger("agentscale.serve")


class ApiError(Exception):
    """An error answered as `{"error": {...}}` with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


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
    n: int | None = None

    @field_validator("n")
    @classmethod
    def _one_answer(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("a graph gives one answer per request: n must be 1")
        return n


def _error_body(status: int, message: str, kind: str, code: str | None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": code}})


def question_of(request: ChatRequest) -> str:
    """The last user message's text (string content or the text parts of a content list)."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            text = message.content
        else:
            parts = message.content or []  # a text part's null text is no text (it was the question "None")
            text = "\n".join(p["text"] for p in parts if p.get("type") == "text" and isinstance(p.get("text"), str))
        if text.strip():
            return text
    raise ApiError(400, "the request has no user message with text content", code="no_user_message")


async def _body_within(request: Request, max_bytes: int) -> bytes:
    """The request's body, refused as soon as it passes `max_bytes`: a chunked body (no
    Content-Length for the middleware to check) was read whole into memory before the check."""
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > max_bytes:
            raise ApiError(413, f"request body over {max_bytes} bytes")
        parts.append(part)
    return b"".join(parts)


def _usage(result: RunResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def create_app(
    graph: Graph,
    *,
    api_key: str | None = None,
    max_body_bytes: int = 1_000_000,
    max_concurrency: int = 32,
    max_waiting: int = 256,
) -> FastAPI:
    """A FastAPI app serving `graph` under the model name `graph.name`."""
    app = FastAPI(title=f"agentscale: {graph.name}", docs_url=None, redoc_url=None, openapi_url=None)
    running = asyncio.Semaphore(max_concurrency)
    waiting = 0

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_body(exc.status, exc.message, exc.kind, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = f"invalid request: {exc.errors()[0].get('msg', 'bad body')}"
        return _error_body(400, message, "invalid_request_error", None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_body(exc.status_code, str(exc.detail), "invalid_request_error", None)

    def _internal_error(exc: Exception) -> ApiError:
        log.error("graph %s failed: %s: %s", graph.name, type(exc).__name__, exc)
        return ApiError(500, "internal error while running the graph", "server_error")

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        error = _internal_error(exc)
        return _error_body(error.status, error.message, error.kind, error.code)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        if api_key is not None and request.url.path.startswith("/v1/"):
            header = request.headers.get("authorization", "")
            offered = header[7:] if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(offered.encode(), api_key.encode()):
                return _error_body(401, "missing or invalid API key", "authentication_error", "invalid_api_key")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return _error_body(413, f"request body over {max_body_bytes} bytes", "invalid_request_error", None)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "graph": graph.name}

    served_model = {"id": graph.name, "object": "model", "created": 0, "owned_by": "agentscale"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [served_model]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        """OpenAI's `models.retrieve`, which some tools call to check a model before using it."""
        if model_id != graph.name:
            raise _unknown_model(model_id, graph.name)
        return served_model

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        """An unexpected error is logged in one line and answered as a 500 here: past a route, the
        app's handler answers it but Starlette raises it again, and the server printed a traceback
        for each (a body in Latin-1 did)."""
        try:
            return await answer(request)
        except ApiError:
            raise
        except Exception as exc:
            raise _internal_error(exc) from None

    async def answer(request: Request) -> JSONResponse | StreamingResponse:
        body = await _body_within(request, max_body_bytes)
        try:
            chat_request = ChatRequest.model_validate(json.loads(body or b"null"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # not UTF-8, nested too deep
            raise ApiError(400, "the body is not valid JSON in UTF-8", code="invalid_json") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, f"invalid request at {where}: {first['msg']}") from None
        if chat_request.model != graph.name:
            raise _unknown_model(chat_request.model, graph.name)
        question = question_of(chat_request)

        async def admitted_run() -> RunResult:
            nonlocal waiting
            if waiting >= max_waiting:
                raise ApiError(429, "too many requests waiting; retry later", "rate_limit_error")
            waiting += 1
            admitted = False
            try:
                async with running:
                    waiting, admitted = waiting - 1, True
                    return await graph.arun(question)
            finally:
                if not admitted:
                    waiting -= 1

        result = await _unless_the_client_leaves(request, admitted_run())
        if result.answer is None:
            raise _no_answer(result)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        answer = result.answer
        if chat_request.stream:
            return StreamingResponse(_sse(completion_id, graph.name, answer, result), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": graph.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": _usage(result),
                "agentscale": {"run_id": result.run_id, "stopped_reason": result.stopped_reason},
            }
        )

    return app


def _unknown_model(asked: str, served: str) -> ApiError:
    return ApiError(404, f"model {asked!r} not found; this server serves {served!r}", code="model_not_found")


async def _unless_the_client_leaves(request: Request, work: Coroutine[Any, Any, RunResult]) -> RunResult:
    """`work`'s result; cancelled (the run stored as interrupted) if the client disconnects first.

    Why: a client that timed out or gave up left its run going, paid to the end, and the OpenAI
    clients retry a timed-out request twice by default, so one question could pay three full runs
    while later requests queued behind them. The body has been read, so the next ASGI message is the
    disconnect."""
    task = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        if not task.done():  # the client left, or this handler is cancelled (shutdown)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ApiError(499, "the client closed the request; its run was stopped", code="client_closed_request")
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _no_answer(result: RunResult) -> ApiError:
    """A question the graph left unanswered is an error, not an empty answer (a client could not tell
    them apart: status 200, content ""). 502 when model calls failed, else 500: a budget stopped it,
    or no reply held an answer in the graph's format. The message names the run (when the server
    records runs), not the node errors: those carry the upstream endpoints' addresses."""
    failed = any(trace.status == "failed" for trace in result.trace)
    if failed:
        why = "its model calls failed"
    elif BudgetExceeded.said(result.stopped_reason):
        why = "a budget stopped it first"
    else:
        why = "no reply held an answer in its format"
    where = f"; run {result.run_id} on the server holds the details" if result.run_id else ""
    return ApiError(502 if failed else 500, f"the graph gave no answer ({why}){where}", "server_error", "no_answer")


async def _sse(completion_id: str, model: str, answer: str, result: RunResult) -> AsyncIterator[bytes]:
    """The final answer as chat.completion.chunk events (a few words per chunk), then usage and [DONE]."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    yield f"data: {json.dumps(first)}\n\n".encode()
    words = answer.split(" ")
    for start in range(0, len(words), 8):
        piece = " ".join(words[start : start + 8]) + (" " if start + 8 < len(words) else "")
        chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": _usage(result)}
    yield f"data: {json.dumps(last)}\n\n".encode()
    yield b"data: [DONE]\n\n"
