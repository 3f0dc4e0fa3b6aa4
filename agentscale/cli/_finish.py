"""A Ctrl-C (or SIGTERM) that comes as a run finishes: the run is done, so its outputs are written.

Why: an eval or optimization signalled in its last moments was stored `done` while the command
said "interrupted" and exited 130; the summary, `--json` object, report and `--out` file were lost
(a script never learned the run id). Two windows: the cancel landed while the run's last synchronous
step stored it done, which asyncio turns into a cancelled task; or it landed after, while the outputs
were written, and escaped from there as a bare KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agentscale.cli._console import interrupted, outputs_first, print_json
from agentscale.errors import AgentScaleError, RunBusy
from agentscale.storage import damaged, database_trouble, sqlite_failure

if TYPE_CHECKING:
    from agentscale.storage.db import Store

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


@contextlib.contextmanager
def resumable(finish: FinishedRun[Any], store: Store, run_id: str, resume: str, *, json_output: bool) -> Iterator[None]:
    """Around the `asyncio.run` of an eval or optimization: a Ctrl-C before it finished says how to
    resume it (exit 130), one after lets the command show the finished run; a database that fails
    under it (a full disk) names the same resume command (the error named none, and the run id was
    only in the first line), with `json_output` also as one JSON object on stdout."""
    try:
        yield
    except KeyboardInterrupt:  # asyncio.run re-raises Ctrl-C once the run is cancelled (and marked interrupted)
        if not finish.finished:
            raise interrupted(store, run_id, resume, json_output=json_output) from None
    except RunBusy:  # another process runs it: nothing to resume here
        raise
    except Exception as exc:
        cause = sqlite_failure(exc)  # sqlite3's error, or a StorageError raised with it
        # neither the database's nor an error the run stored (a Ray outbox gone): this program's bug
        if finish.finished or (cause is None and not isinstance(exc, AgentScaleError)):
            raise
        if json_output:  # stdout stayed empty: a script never learned the run to resume
            print_json({"run_id": run_id, "status": "failed", "resume": resume, "error": str(cause or exc)})
        if cause is not None:
            raise AgentScaleError(database_failed(cause, resume)) from None
        raise AgentScaleError(f"{exc}\nwhat finished is kept; continue with: {resume}") from None


def database_failed(cause: sqlite3.DatabaseError, resume: str | None = None) -> str:
    """What to say when the database failed under a command: what it holds is kept."""
    if damaged(cause):
        return f"the database failed: {cause} ({database_trouble(cause)})"
    then = f"once fixed, continue with: {resume}" if resume else "fix that and run the command again"
    return f"the database failed: {cause} ({database_trouble(cause)}); what it holds is kept: {then}"


def finishing_a_done_run() -> None:
    """From here to the command's end (asyncio.run's teardown, the report, summary and files: a
    second or two), the first Ctrl-C or SIGTERM is said and let pass, a second stops at once
    (`outputs_first`)."""
    outputs_first("the run is done: writing its report and summary first")
