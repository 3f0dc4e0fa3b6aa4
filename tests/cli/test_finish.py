"""A Ctrl-C's cancel that lands as a command's run returns keeps the run's result (cli/_finish.py)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale.cli._console import interrupted
from agentscale.cli._finish import FinishedRun
from agentscale.storage.db import Store


@pytest.fixture(autouse=True)
def _handlers_put_back() -> Iterator[None]:
    """A kept result sets the finishing handlers, which the CLI's main puts back as it returns."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_a_cancel_landing_in_the_runs_last_step_keeps_its_result() -> None:
    """asyncio turns a task cancelled inside its last step into a cancelled task: the run had been
    stored done, and the command said "interrupted" and lost its summary. The cancel here is the one
    a Ctrl-C's handler makes, on the command's main task, from inside the run's last step."""
    finish: FinishedRun[int] = FinishedRun()

    async def run(main: asyncio.Task[int]) -> int:
        await asyncio.sleep(0)
        main.cancel()  # as asyncio.run's SIGINT handler does, in the middle of this step
        return 42  # stored done by now

    async def command() -> int:
        main = asyncio.current_task()
        assert main is not None
        return await finish.run(run(main))  # type: ignore[arg-type]

    assert asyncio.run(command()) == 42
    assert finish.finished and finish.result == 42
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # finishing: a signal is said, let pass


def test_a_cancel_that_finds_the_run_going_stops_it_and_keeps_nothing() -> None:
    finish: FinishedRun[int] = FinishedRun()
    unwound: list[bool] = []

    async def run() -> int:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append(True)  # the run records itself interrupted here
        return 1

    async def command() -> int:
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().call_later(0.05, main.cancel)
        return await finish.run(run())

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(command())
    assert unwound == [True] and not finish.finished


def test_a_run_that_fails_as_the_cancel_lands_raises_its_error_not_an_interruption() -> None:
    """Its error was swallowed: the command said "interrupted" and gave a resume command for a run
    stored failed."""
    finish: FinishedRun[int] = FinishedRun()

    async def run(main: asyncio.Task[int]) -> int:
        await asyncio.sleep(0)
        main.cancel()
        raise ValueError("the run's own failure")

    async def command() -> int:
        main = asyncio.current_task()
        assert main is not None
        return await finish.run(run(main))  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="the run's own failure"):
        asyncio.run(command())
    assert not finish.finished


def test_a_build_signalled_as_it_ends_shows_its_report_not_an_interruption() -> None:
    """A Ctrl-C landing in a handbook build's last step: the build was stored done, the command said
    "interrupted; run the same command again", and running it again built every item a second time."""
    from types import SimpleNamespace

    from agentscale.cli.handbook import _with_progress

    report = SimpleNamespace(items=3, added=2, merged=1)

    async def build() -> SimpleNamespace:
        await asyncio.sleep(0)
        signal.raise_signal(signal.SIGINT)  # asyncio.run's handler cancels the command's main task
        return report  # stored done by now

    settings = SimpleNamespace(cache=True)
    builder = SimpleNamespace(
        on_item=None, run_id="r1", gateway=SimpleNamespace(settings=settings), handbook=SimpleNamespace(name="h")
    )
    assert _with_progress(build, builder, 3, "building", True) is report  # type: ignore[arg-type]


def test_a_second_ctrl_c_while_an_interruption_writes_its_report_is_said_and_the_third_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two quick Ctrl-Cs lost the report of what finished and the `--json` object naming the run: the
    second landed while the report was written ("error: interrupted" and nothing else)."""
    store = Store(tmp_path / "i.db")
    run = store.create_run("eval", graph_name="g", claim=False)
    interrupted(store, run.id, f"agentscale eval --resume {run.id}", json_output=True)
    assert json.loads(capsys.readouterr().out)["report"]
    try:
        signal.raise_signal(signal.SIGINT)  # the handler it set: said and let pass while outputs are written
    except KeyboardInterrupt:  # raised on, it would also stop pytest itself
        pytest.fail("a second Ctrl-C while the report is written stopped it")
    assert "writing the report of what finished first (Ctrl-C stops now)" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
