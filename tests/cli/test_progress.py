"""The progress of long commands written as plain lines when stderr is no terminal (`cli/_progress`)."""

from __future__ import annotations

import re
import time

import pytest

from agentscale.cli._progress import _clock, progress_bar


def _seconds_left(line: str) -> int:
    found = re.search(r"≈ (\d+):(\d\d):(\d\d) left", line)
    assert found is not None, line
    hours, minutes, seconds = (int(part) for part in found.groups())
    return 3600 * hours + 60 * minutes + seconds


def test_an_evals_lines_say_the_time_left_from_the_pace_of_this_command(capsys: pytest.CaptureFixture[str]) -> None:
    """An eval of thousands of items said how many were done and for how long, never how long was
    left (the scale audit). The pace counts only what this command did: a resumed eval starts with
    the items its run had scored, done in no time here."""
    progress = progress_bar(eta=True)
    with progress:
        task = progress.add_task("q", total=10, completed=2, status="")  # a resume: 2 scored before
        time.sleep(1.0)
        progress.update(task, advance=1, status="1/3 correct")  # 1 item a second: 7 seconds left
        line = progress._line(progress.tasks[0])  # type: ignore[attr-defined]
        progress.update(task, advance=7, status="4/10 correct")
    assert line.startswith("q: 3/10 · 1/3 correct · 0:00:01 elapsed · ≈ ")
    assert 6 <= _seconds_left(line) <= 9  # not 2 s, the pace of 3 items a second counting the resumed 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("q: 10/10 · 4/10 correct") and "left" not in last  # the end: nothing left
    quiet = progress_bar()  # an optimization's: its stages are unlike, so no time left is guessed
    with quiet:
        quiet.add_task("search", total=8, status="")
        quiet.update(quiet.tasks[0].id, advance=1)
        assert "left" not in quiet._line(quiet.tasks[0])  # type: ignore[attr-defined]


def test_clocks_past_an_hour_keep_minutes_under_60() -> None:
    """An optimization's plain progress lines run for hours: 1 h 2 min 5 s is 1:02:05 (mutant G2 wrote
    1:62:05; the existing tests' clocks stay under an hour)."""
    assert _clock(3725) == "1:02:05"
    assert _clock(59.9) == "0:00:59"
    assert _clock(36000) == "10:00:00"


def test_the_last_line_is_written_once(capsys: pytest.CaptureFixture[str]) -> None:
    """An optimization's stage "done" was written when it changed, then again as the bar stopped; and
    again when a second had passed meanwhile (its clock moved: `--executor ray` closing its workers)."""
    progress = progress_bar()
    with progress:
        task = progress.add_task("search", total=3, status="")
        progress.update(task, description="done", completed=3, status="204 calls")
        time.sleep(1.1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" · ")[0] for line in lines] == ["search: 0/3", "done: 3/3"]
    still = progress_bar()
    with still:  # a line the end changes is still written at the end
        task = still.add_task("eval", total=2, status="")
        still.update(task, advance=2, status="2/2 correct")
    assert capsys.readouterr().err.splitlines()[-1].startswith("eval: 2/2 · 2/2 correct")


def test_the_terminal_bars_clock_and_spinner_go_on_once_its_count_is_full() -> None:
    """An optimization's bar counts its search iterations: at 4/4 Rich stopped its clock and its
    spinner, and the crowning race and test split (often the longest part) showed a still bar for
    minutes, which reads as a hang (the demo walk)."""
    from rich.progress import Progress

    from agentscale.cli._progress import _Elapsed, _Spinner

    progress = Progress(disable=True)
    task_id = progress.add_task("search", total=1)
    progress.update(task_id, completed=1)  # the last search iteration: the count is full
    time.sleep(1.2)
    task = progress.tasks[0]
    assert task.finished and str(_Elapsed().render(task)) == "0:00:01"
    spinner = _Spinner()
    assert str(spinner.render(task)).strip() != ""  # still spinning, not Rich's blank "finished" text
