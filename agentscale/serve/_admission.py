"""Graph runs in flight (at most `max_running`) and the requests waiting for a turn (at most
`max_waiting`; one more is refused with a 429 before any reply starts)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from agentscale.serve._replies import ApiError

T = TypeVar("T")


class Admission:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        self._running = asyncio.Semaphore(max_running)
        self._max_waiting = max_waiting
        self.waiting = 0

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """`work` as a task that waits for its turn, counted as waiting from now: a streamed reply's
        status 200 goes out before its run starts, and a request counted only once its task ran was
        let through, then refused inside a stream the clients do not retry. Raises the 429 here."""
        if self.waiting >= self._max_waiting:
            work.close()
            raise ApiError(429, "too many requests waiting; retry later", "rate_limit_error")
        self.waiting += 1
        left: list[bool] = []

        def leave(_: object = None) -> None:
            if not left:
                left.append(True)
                self.waiting -= 1

        async def in_turn() -> T:
            async with self._running:
                leave()
                return await work

        task = asyncio.ensure_future(in_turn())

        def settle(done: asyncio.Task[T]) -> None:
            leave()  # a task cancelled before its first step never reached `in_turn`
            work.close()  # nor `work`: closed, not left to warn that it was never awaited

        task.add_done_callback(settle)
        return task
