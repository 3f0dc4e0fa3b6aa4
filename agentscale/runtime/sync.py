"""The synchronous entry points (`Graph.run`, a compiled graph's `invoke`) run their coroutines on one
event loop that agentscale keeps in a background thread.

Why not `asyncio.run` per call: litellm keeps process-wide state bound to the event loop that made
it (its logging worker's queue and tasks). Calls from several threads at once, each in a loop of its
own, broke it: every call printed "LoggingWorker error: ... is bound to a different event loop" and
"Task exception was never retrieved" tracebacks on stderr (≈ 15,000 lines for 120 runs from 8
threads), and each new loop left the gateway one more concurrency semaphore. One loop for all the
synchronous calls of a process keeps litellm on one loop (and its connections warm between calls).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from agentscale.errors import EventLoopError

T = TypeVar("T")
E = TypeVar("E")
_DONE = object()  # the run ended: no event follows


class CallerThreadEvents(Generic[E]):
    """Events a run on agentscale's loop emits (`put`, on the loop), handed to `callback` in the
    thread that waits for the run (`run_sync(..., events=)`), in order.

    Why: the loop serves every thread's synchronous runs, so a callback called on it (a slow one: a
    UI update, a write) stalled all of them (a run of 0.05 s in another thread took 6 s). A callback
    that raises gets no further event; its error (`error`) reaches the run at the run's next event
    (the run fails with it, as when the callback ran inside the run); after the last event the run
    has ended, and the caller deals with it. Ctrl-C or `sys.exit` in the callback stop the run at
    once (`run_sync` cancels it), as Ctrl-C while waiting does.
    """

    def __init__(self, callback: Callable[[E], object]) -> None:
        self.callback = callback
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def put(self, event: E) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(event)

    def pump(self, outcome: concurrent.futures.Future[Any]) -> None:
        """Call the callback with each event until the run ends."""
        outcome.add_done_callback(lambda _: self._queue.put(_DONE))
        while (event := self._queue.get()) is not _DONE:
            if self.error is None:
                try:
                    self.callback(event)  # type: ignore[arg-type]
                except Exception as exc:  # handed to the run at its next event
                    self.error = exc


class _LoopThread:
    """An event loop running in a daemon thread until it is stopped (at exit)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.closing = False  # set at exit: what is cancelled then is cancelled because Python exits
        self.thread = threading.Thread(target=self._serve, name="agentscale-loop", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        """A task that raises SystemExit or KeyboardInterrupt (an `on_event` callback calling
        `sys.exit`) ends `run_forever` with it; the task keeps the exception for its caller, so the loop
        goes on: had the thread died, its caller and every later run would have waited forever."""
        while True:
            try:
                self.loop.run_forever()
            except (SystemExit, KeyboardInterrupt):
                continue
            return


_lock = threading.Lock()
_runner: _LoopThread | None = None
_CANCELLED_AT_EXIT = (
    "the run was stopped because Python is exiting: at exit agentscale cancels what still runs on its event "
    "loop (a run in a daemon thread, which Python does not wait for; the run is stored as interrupted)",
)


def _forget_runner() -> None:
    """A forked child has the loop object but not its thread: it starts a loop of its own."""
    global _runner, _lock
    _runner, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_runner)


def _loop_thread() -> _LoopThread:
    global _runner
    with _lock:
        if _runner is None:
            _runner = _LoopThread()
            atexit.register(_close, _runner)
        return _runner


def _close(runner: _LoopThread) -> None:
    """At exit, cancel what still runs on the loop (litellm's logging worker, left behind when an
    `asyncio.run` elsewhere took it over) and stop it, as `asyncio.run` does with its own loop:
    Python printed "Task was destroyed but it is pending!" for each."""

    async def cancel_the_rest() -> None:
        rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    global _runner
    with _lock:
        if _runner is runner:  # a run after this (another exit hook's) starts a loop of its own
            _runner = None
    if runner.thread.is_alive():
        runner.closing = True
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), runner.loop).result(timeout=5)
        runner.loop.call_soon_threadsafe(runner.loop.stop)


def run_sync(coroutine: Coroutine[Any, Any, T], events: CallerThreadEvents[Any] | None = None) -> T:
    """Run `coroutine` to its end on agentscale's loop and return its result, from any thread (not
    from the loop's own). The caller's context variables go with it (a tracing span's parent).
    `events`: what the coroutine puts there is handed to their callback in this thread meanwhile.

    Ctrl-C in the waiting thread (or an exit in an `events` callback) cancels the coroutine and waits
    for it to unwind (an interrupted run records its row), then raises it, as `asyncio.run` does.
    """
    runner = _loop_thread()
    if threading.current_thread() is runner.thread:
        coroutine.close()
        raise EventLoopError("run_sync called from agentscale's own event loop: await the coroutine instead")
    context = contextvars.copy_context()
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    started: list[asyncio.Task[T]] = []

    def start() -> None:
        task = runner.loop.create_task(coroutine, context=context)
        started.append(task)
        task.add_done_callback(lambda done: _settle(outcome, done, runner))

    runner.loop.call_soon_threadsafe(start)
    try:
        if events is not None:
            events.pump(outcome)
        return outcome.result()
    except BaseException:
        if not outcome.done():  # Ctrl-C, or a callback's exit, while the run goes on: it stops first
            runner.loop.call_soon_threadsafe(lambda: started[0].cancel())  # queued after `start`: it has run
            with contextlib.suppress(BaseException):  # the cancellation, or what the unwinding raised
                outcome.result()
        raise  # the interrupt goes on


def _settle(outcome: concurrent.futures.Future[T], task: asyncio.Task[T], runner: _LoopThread) -> None:
    """The task's end, handed to the thread waiting for it. A run cancelled by the loop's closing at
    exit (a daemon thread's run, which Python does not wait for) says so: a bare CancelledError
    traceback named no cause."""
    if task.cancelled():
        why = _CANCELLED_AT_EXIT if runner.closing else ()
        outcome.set_exception(asyncio.CancelledError(*why))
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
