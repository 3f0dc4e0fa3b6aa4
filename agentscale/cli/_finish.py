"""A Ctrl-C (or SIGTERM) that comes as a run finishes: the run is done, so its outputs are written.

Why: an eval or optimization signalled in its last moments was stored `done` while the command
said "interrupted" and exited 130; the summary, `--json` object, report and `--out` file were lost
(a script never learned the run id). Two windows: the cancel landed while the run's last synchronous
step stored it done, which asyncio turns into a cancelled task; or it landed after, while the outputs
were written, and escaped from there as a bare KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, Generic, TypeVar

from agentscale.cli._console import err

T = TypeVar("T")


class FinishedRun(Generic[T]):
    """Runs a command's main coroutine and keeps its result, for the command to show even when the
    Ctrl-C that came as the run ended makes `asyncio.run` raise KeyboardInterrupt (the cancel landed
    inside the run's last step); once the result is kept, the command is finishing a done run."""

    def __init__(self) -> None:
        self._results: list[T] = []

    @property
    def finished(self) -> bool:
        return bool(self._results)

    @property
    def result(self) -> T:
        (result,) = self._results
        return result

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, kept; a cancel that finds it still running cancels it and waits for it to
        unwind (the run stored interrupted), as before. `work` runs shielded in a task of its own: a
        cancel landing inside its last step would otherwise turn its result into a cancellation."""
        task = asyncio.ensure_future(work)
        try:
            self._results.append(await asyncio.shield(task))
        except asyncio.CancelledError:
            if not task.done() or task.cancelled():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            # it had ended: the interrupt came too late to stop it; its error, if it failed, is the news
            self._results.append(task.result())
        finishing_a_done_run()  # from now on: asyncio.run's teardown and the outputs are short work
        return self.result


def finishing_a_done_run() -> None:
    """From here to the command's end (asyncio.run's teardown, the report, summary and files: a
    second or two), the first Ctrl-C or SIGTERM is said and let pass, a second stops at once;
    `app.main` puts the handlers back as it returns (restored as the outputs ended, a signal landing
    before that return, on a busy machine, still ended in "error: interrupted"). Set inside
    `asyncio.run`, the handler stays: asyncio puts back only a SIGINT handler of its own. Only the
    main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    said: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if said:
            raise KeyboardInterrupt
        said.append(signum)
        again = "Ctrl-C" if signum == signal.SIGINT else "another SIGTERM"
        err.print(f"the run is done: writing its report and summary first ({again} stops now)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)
