"""Graph runs in flight (at most `max_running`) and the requests waiting for a turn (at most
`max_waiting`; one more is refused with a 429 before any reply starts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from agentscale.serve._replies import ApiError

T = TypeVar("T")


class Admission:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        self._running = asyncio.Semaphore(max_running)
        self._capacity = max_running + max_waiting
        self.in_flight = 0  # running or waiting for a turn
        self._waiting: set[asyncio.Task[Any]] = set()  # not yet given a turn
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def stop_waiting(self) -> None:
        """Stop the requests still waiting for a turn, from any thread (the server's stop signal):
        they waited the graceful stop out for their 503 (32 s in the serve-graph walk), or started
        runs the grace might cut once their calls were paid. Each gets its 503 `server_stopping` now
        (a client may retry elsewhere); they never ran, so no run is stored for them."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_waiting)

    def _cancel_waiting(self) -> None:
        for task in list(self._waiting):
            task.cancel()

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """`work` as a task that waits for its turn, counted from now: a streamed reply's status 200
        goes out before its run starts, and a request counted only once its task ran was let through,
        then refused inside a stream the clients do not retry. Raises the 429 here, when as many runs
        as `max_running` go on and `max_waiting` more wait (counting those waiting only once their
        task had run refused requests while slots were free)."""
        if self.in_flight >= self._capacity:
            work.close()
            # a code and a Retry-After, as the OpenAI API's own 429s carry (clients' backoff reads both)
            headers = {"Retry-After": "1"}
            raise ApiError(429, "too many requests waiting; retry later", "rate_limit_error", "rate_limited", headers)
        self.in_flight += 1
        self._loop = asyncio.get_running_loop()

        async def in_turn() -> T:
            async with self._running:
                self._waiting.discard(task)
                return await work

        def settle(_: asyncio.Task[T]) -> None:
            self.in_flight -= 1
            self._waiting.discard(task)
            work.close()  # a task cancelled before its first step never awaited `work`: closed, not warned of

        task = asyncio.ensure_future(in_turn())
        self._waiting.add(task)
        task.add_done_callback(settle)
        return task


async def stop(run: asyncio.Task[Any]) -> None:
    """Cancel `run` if it still goes and wait for it to unwind (its row stored interrupted). A second
    cancel of the waiting caller (the server's loop closing after its shutdown cancelled the request)
    ends the wait: raised from here it was an "Exception in ASGI application" traceback."""
    if not run.done():
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(run, return_exceptions=True)
