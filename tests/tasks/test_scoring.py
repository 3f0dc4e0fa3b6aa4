"""Scoring from the event loop: the built-in comparisons inline, every other scorer in a worker thread."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from agentscale.tasks import Score, Scorer, Task, TaskItem
from agentscale.tasks.sandbox import SandboxLimits, run_python
from agentscale.tasks.scorers import score_choice, score_exact, score_math, score_numeric
from agentscale.tasks.scorers.code_exec import code_scorer
from agentscale.tasks.scoring import ascore

ITEM = TaskItem(id="x", question="What is 2 + 1?", reference="3", choices=["3", "4"])


class _CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what `asyncio.to_thread` hands it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _score_counting_threads(scorer: Scorer) -> tuple[Score, int]:
    """Score "3" with `scorer` from a running loop; how many jobs went to a worker thread."""
    task = Task("t", "d", "number", scorer, "custom", (ITEM,))
    executor = _CountingExecutor()

    async def main() -> Score:
        asyncio.get_running_loop().set_default_executor(executor)
        return await ascore(task, "3", ITEM)

    try:
        return asyncio.run(main()), executor.submitted
    finally:
        executor.shutdown()


@pytest.mark.parametrize("scorer", [score_exact, score_numeric, score_choice])
def test_the_builtin_comparisons_score_on_the_loop(scorer: Scorer) -> None:
    score, threaded = _score_counting_threads(scorer)
    assert score.correct and threaded == 0


def test_a_scorer_that_may_block_runs_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def slow_scorer(answer: str | None, item: TaskItem) -> Score:
        seen.append(threading.get_ident())
        return Score(answer == item.reference, "compared")

    for scorer in (slow_scorer, score_math):
        score, threaded = _score_counting_threads(scorer)
        assert score.correct and threaded == 1
    assert seen and seen[0] != loop_thread


@pytest.mark.parametrize("scorer", [score_numeric, score_math])
def test_an_empty_answer_is_wrong_either_way(scorer: Scorer) -> None:
    task = Task("t", "d", "number", scorer, "custom", (ITEM,))
    assert asyncio.run(ascore(task, "  ", ITEM)) == Score(False, "no answer")


def test_a_cancelled_score_kills_the_program_it_runs_at_once() -> None:
    """A thread cannot be interrupted and `asyncio.run` waits for its worker threads on the way out:
    an eval interrupted while code was being scored waited for every running program to reach its
    timeout (here 30 s of sleeping). The cancel now kills the program."""
    item = TaskItem(id="x", question="Write f.", reference="", metadata={"test": "assert f() == 1"})
    task = Task("t", "d", "code", code_scorer(SandboxLimits(timeout_s=30)), "code", (item,))
    answer = "import time\ntime.sleep(3600)\ndef f():\n    return 1\n"

    async def main() -> None:
        scoring = asyncio.create_task(ascore(task, answer, item))
        await asyncio.sleep(2)  # the program is sleeping by now
        scoring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await scoring

    started = time.monotonic()
    asyncio.run(main())  # returns once the default executor's threads are done
    assert time.monotonic() - started < 10


def test_a_score_cancelled_while_waiting_for_a_core_stops_waiting() -> None:
    """Every core busy (programs run one per core): a cancelled score stops waiting for one at once
    instead of waiting, then starting its program only to kill it."""
    item = TaskItem(id="x", question="Write f.", reference="", metadata={"test": "assert f() == 1"})
    task = Task("t", "d", "code", code_scorer(SandboxLimits(timeout_s=30)), "code", (item,))
    busy = "import time\ntime.sleep(4)\n"
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        occupying = [
            pool.submit(run_python, busy, limits=SandboxLimits(timeout_s=10)) for _ in range(pool._max_workers)
        ]
        time.sleep(1)  # every core taken

        async def main() -> None:
            scoring = asyncio.create_task(ascore(task, "def f():\n    return 1\n", item))
            await asyncio.sleep(0.5)
            scoring.cancel()
            with pytest.raises(asyncio.CancelledError):
                await scoring

        started = time.monotonic()
        asyncio.run(main())
        assert time.monotonic() - started < 2
        assert all(future.result().passed for future in occupying)
