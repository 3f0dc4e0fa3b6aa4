"""The optimizer's progress, re-read while a stage runs.

The runner reports at stage boundaries and after each search round, but on real models one stage
lasts an hour (the crowning race, the test split): a status whose call count stands still that long
reads as a hang. While a run goes on, the last report is sent again every few seconds with the
calls paid so far read afresh from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

REFRESH_S = 5.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What `Optimization.run(on_progress=)` receives: the `stage` (as `optimize` shows it), the
    search's `iteration` of `iterations`, the graphs the search scored (`evaluations`: not the
    singles' race, crowning or test split, which `OptimizeResult.evaluations` counts), the best
    reward and minibatch accuracy so far, and the model calls paid (`spent_calls`)."""

    iteration: int
    iterations: int
    evaluations: int
    best_reward: float | None
    best_accuracy: float | None
    spent_calls: int
    stage: str


class ProgressReporter:
    """Sends `Progress` to a callback (or nowhere), and again every `refresh_s` inside `refreshing()`."""

    def __init__(
        self,
        on_progress: Callable[[Progress], None] | None,
        spent_calls: Callable[[], int],
        refresh_s: float | None = None,
    ):
        self._on_progress = on_progress
        self._spent_calls = spent_calls
        self._refresh_s = REFRESH_S if refresh_s is None else refresh_s
        self._last: Progress | None = None

    def report(self, progress: Progress) -> None:
        self._last = progress
        if self._on_progress is not None:
            self._on_progress(progress)

    def restage(self, stage: str | None = None) -> None:
        """The last report again with the calls re-read, under a new stage name if given (e.g. the
        step a race is on)."""
        if self._last is not None:
            self.report(replace(self._last, stage=stage or self._last.stage, spent_calls=self.spent_calls()))

    def spent_calls(self) -> int:
        return self._spent_calls() if self._on_progress is not None else 0

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        if self._on_progress is None:
            yield
            return
        ticker = asyncio.create_task(self._refresh())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _refresh(self) -> None:
        """A refresh that fails (a busy database, a callback's error) is skipped, never raised: the
        status is a courtesy, and an hour of the run must not fail or lose its `interrupted` state
        for it."""
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                self.restage()
            except Exception as exc:
                _log.debug("progress refresh skipped: %s", exc)
