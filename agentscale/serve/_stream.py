"""A streamed reply (`stream: true`) that starts as soon as the request is accepted.

Why: the reply was streamed only once the whole graph had run, so the first byte came as late as a
non-streamed reply's, and a proxy or client read timeout (nginx's 60 s) cut a long graph's stream
off. Now the role chunk goes out at once and an SSE comment every `keep_alive_s` while the graph
runs; then the answer in chunks of a few words, usage when `stream_options.include_usage` asks for it
(as OpenAI sends it: a last chunk without choices), and `[DONE]`. An error met after the stream began
is an `{"error": ...}` event, which OpenAI's clients raise; so is the server's stop (a 503
`server_stopping` for a JSON request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from agentscale.graphs.result import RunResult
from agentscale.serve._admission import stop
from agentscale.serve._replies import ApiError, finish_reason_of, no_answer, run_of, stopping, usage_of


class RunStream(StreamingResponse):
    """A streamed reply tied to its run: when the response ends for any reason (the client left, the
    server stops) the run is stopped and waited for (stored interrupted). Left to the generator's
    `finally`, it was not when Starlette cancelled the stream while the generator sat at a `yield`:
    the run went on, paid to the end, holding its turn."""

    def __init__(self, run: asyncio.Task[RunResult], content: AsyncIterator[bytes], media_type: str) -> None:
        # unbuffered and uncached by proxies: nginx buffers server-sent events by default, holding back
        # the role chunk and the keep-alive comments that keep a long graph's connection open
        super().__init__(content, media_type=media_type, headers=_UNBUFFERED)
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:  # the server stops (its grace over): raised on, it was an
            # "Exception in ASGI application" traceback in the server's log; ended without a word, a
            # client read a cut connection, not the 503 a JSON request gets
            with contextlib.suppress(Exception):  # the connection may be gone already
                await send({"type": "http.response.body", "body": _sse(stopping().body()), "more_body": False})
        finally:
            await stop(self.run)


_UNBUFFERED = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"data: {json.dumps(payload)}\n\n".encode()


async def streamed_reply(
    completion_id: str,
    model: str,
    run: asyncio.Task[RunResult],
    *,
    include_usage: bool,
    keep_alive_s: float,
    unexpected: Callable[[Exception], ApiError],
) -> AsyncIterator[bytes]:
    """Server-sent events for `run` (the graph's run, a task already going)."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, str], finish_reason: str | None = None, **extra: Any) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    try:
        while not (await asyncio.wait({run}, timeout=keep_alive_s))[0]:
            yield b": the graph is still running\n\n"
        if run.cancelled():  # the stopping server ended its wait for a turn (a client that left ended the stream)
            raise stopping()
        result = run.result()
        if result.answer is None:
            raise no_answer(result)
    except ApiError as exc:  # a 429 cannot come here: it is refused before the stream starts
        yield _sse(exc.body())
        return
    except Exception as exc:
        yield _sse(unexpected(exc).body())
        return
    words = result.answer.split(" ")
    for start in range(0, len(words), 8):
        yield chunk({"content": " ".join(words[start : start + 8]) + (" " if start + 8 < len(words) else "")})
    # the stored run rides on the last chunk, as on a JSON reply: a streamed one named none
    yield chunk({}, finish_reason_of(result), agentscale=run_of(result))
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage_of(result)})
    yield b"data: [DONE]\n\n"
