"""A streamed reply (`stream: true`) that starts as soon as the request is accepted.

Why: the reply was streamed only once the whole graph had run, so the first byte came as late as a
non-streamed reply's, and a proxy or client read timeout (nginx's 60 s) cut a long graph's stream
off. Now the role chunk goes out at once and an SSE comment every `keep_alive_s` while the graph
runs; then the answer in chunks of a few words, usage when `stream_options.include_usage` asks for it
(as OpenAI sends it: a last chunk without choices), and `[DONE]`. An error met after the stream began
is an `{"error": ...}` event, which OpenAI's clients raise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from agentscale.graphs.result import RunResult
from agentscale.serve._replies import ApiError, no_answer, usage_of


async def streamed_reply(
    completion_id: str,
    model: str,
    work: Callable[[], Coroutine[Any, Any, RunResult]],
    *,
    include_usage: bool,
    keep_alive_s: float,
    unexpected: Callable[[Exception], ApiError],
) -> AsyncIterator[bytes]:
    """Server-sent events for `work()` (the graph's run), started with the stream (a stream that never
    starts runs nothing). A client that disconnects cancels this generator (Starlette does), which
    stops the run."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def event(payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        return event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    running = asyncio.ensure_future(work())
    try:
        yield chunk({"role": "assistant", "content": ""})
        while not (await asyncio.wait({running}, timeout=keep_alive_s))[0]:
            yield b": the graph is still running\n\n"
        result = running.result()
        if result.answer is None:
            raise no_answer(result)
    except ApiError as exc:
        yield event(exc.body())
        return
    except Exception as exc:
        yield event(unexpected(exc).body())
        return
    finally:
        if not running.done():  # the client left, or the server is stopping
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    words = result.answer.split(" ")
    for start in range(0, len(words), 8):
        yield chunk({"content": " ".join(words[start : start + 8]) + (" " if start + 8 < len(words) else "")})
    yield chunk({}, "stop")
    if include_usage:
        yield event({**base, "choices": [], "usage": usage_of(result)})
    yield b"data: [DONE]\n\n"
