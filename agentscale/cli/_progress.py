"""The progress bar of long commands (`run --input`, `eval`, `optimize`, `handbook build`), declared once.

On a terminal it is Rich's live bar. When stderr is not a terminal (a log file, `nohup`, a CI job), a
live bar shows nothing until the end, and an optimization on local models runs for hours: there the
same progress is written as plain lines: at the start, when the stage changes, once a minute, at the end.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from agentscale.cli._console import err

LOG_EVERY_S = 60.0  # a plain progress line this often (stage changes and the end are written at once)


def progress_bar(*, status: bool = True, quiet: bool = False, eta: bool = False, unit: str = "") -> Progress:
    """Spinner, description, bar, done/total, a status text, elapsed time; on stderr, erased when done.

    With `status`, each task's `status` field is shown after the count (pass `status=` to `add_task` and
    `update`). `quiet` (`--json`) hides the live bar; a stderr that is not a terminal gets plain lines
    instead of the bar whether or not `quiet` (stdout, where `--json` writes, stays untouched). `eta`:
    the time left too, from the pace so far; for commands whose steps are alike (an eval's items, a
    batch's questions), not an optimization's stages (its crowning would read "0:00 left" for an hour).
    `unit` names what the count counts when the description speaks of something else: an
    optimization's "crowning: 4 graphs on items 33-48 of 64" stood beside a bare "8/8" of iterations.
    """
    if not err.is_terminal:
        return _LoggedProgress(status=status, eta=eta, unit=unit)
    columns: list[ProgressColumn] = [
        _Spinner(),
        TextColumn("{task.description}"),
        BarColumn(),
        *([TextColumn(unit, markup=False)] if unit else []),
        MofNCompleteColumn(),
    ]
    if status:
        columns.append(TextColumn("{task.fields[status]}"))
    columns.append(_Elapsed())
    if eta:  # two bare clocks side by side read as one knows not what
        columns += [TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left")]
    # stdout is the commands' output (answers, --json): Rich's default sent what was written to it
    # while the bar was live through the bar's console, to stderr
    return Progress(*columns, console=err, transient=True, disable=quiet, redirect_stdout=False)


class _Spinner(SpinnerColumn):
    """Spinning while the bar is live, its count at its total or not: an optimization counts its search
    iterations, and its crowning race and test split (often the longest part) showed a still bar."""

    def render(self, task: Task) -> RenderableType:
        return self.spinner.render(task.get_time())


class _Elapsed(TimeElapsedColumn):
    """The time since the start, ticking on once the count reaches its total (Rich stops the clock
    there): after an optimization's last search iteration it stood still for minutes, and a frozen
    figure reads as a hang (the demo walk)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        return Text(
            "-:--:--" if elapsed is None else str(timedelta(seconds=max(0, int(elapsed)))), style="progress.elapsed"
        )


class _LoggedProgress(Progress):
    """Rich's task bookkeeping without its live display; progress goes out as plain stderr lines."""

    def __init__(self, *, status: bool, eta: bool, unit: str = "") -> None:
        super().__init__(console=err, disable=True)
        self._status = status
        self._eta = eta
        self._unit = f"{unit} " if unit else ""
        self._started_at: dict[TaskID, float] = {}  # what was done when the task was added (a resume's part)
        self._logged: dict[TaskID, tuple[float, str, str]] = {}  # last line's time, stage and text (no clock)
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        """Also a line a minute while nothing reports (an optimization's crowning can run for an hour
        between two updates)."""
        super().start()
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="progress-lines", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stopping.wait(LOG_EVERY_S):
            for task_id in list(self._logged):
                self._log(task_id)

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._started_at[task_id] = float(kwargs.get("completed", 0))
        self._log(task_id)  # a first line at once: what follows may be minutes of server start-up
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def stop(self) -> None:
        self._stopping.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        for task_id in list(self._logged):
            self._log(task_id, force=True)
        super().stop()

    def _log(self, task_id: TaskID, *, force: bool = False) -> None:
        """A line when the stage changes or a minute has passed; `force` (the end): unless the last
        line said the same (an optimization's "done" line was written twice)."""
        task = next(t for t in self.tasks if t.id == task_id)
        last_at, last_stage, last_line = self._logged.get(task_id, (float("-inf"), "", ""))
        now = time.monotonic()
        if not force and task.description == last_stage and now - last_at < LOG_EVERY_S:
            return
        line = self._line(task)
        said = self._line(task, clock=False)  # the end repeated the last line a second later (Ray closing)
        if force and said == last_line:
            return
        self._logged[task_id] = (now, task.description, said)
        err.print(line, markup=False)

    def _line(self, task: Task, *, clock: bool = True) -> str:
        done = _count(task.completed) + (f"/{_count(task.total)}" if task.total is not None else "")
        description = Text.from_markup(task.description).plain  # descriptions and statuses are markup
        status = Text.from_markup(str(task.fields.get("status", ""))).plain if self._status else ""
        times = (f"{_clock(task.elapsed or 0.0)} elapsed", self._left(task)) if clock else ()
        return " · ".join(part for part in (f"{description}: {self._unit}{done}", status, *times) if part)

    def _left(self, task: Task) -> str:
        """About how long the rest takes at the pace of the steps done in this command so far."""
        done_here = task.completed - self._started_at.get(task.id, 0.0)
        if not self._eta or task.total is None or done_here <= 0 or task.completed >= task.total:
            return ""
        return f"≈ {_clock((task.elapsed or 0.0) / done_here * (task.total - task.completed))} left"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"
