"""HumanEval: all 164 canonical solutions pass in the sandbox, empty and wrong ones fail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from agentscale.tasks import Score, Task, load_task
from agentscale.tasks.errors import TaskOptionError

WORKERS = 4  # 2 cores: sandbox start-up is mostly waiting on exec/mount, so oversubscribe a bit


@pytest.fixture(scope="module")
def humaneval() -> Task:
    return load_task("humaneval")


def _score_all(task: Task, answers: list[str]) -> list[Score]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(task.score, answers, task.items))


def test_humaneval_has_164_problems(humaneval: Task) -> None:
    assert humaneval.size == 164
    assert humaneval.answer_format == "code"
    assert humaneval.items[0].id == "HumanEval/0"
    assert {"prompt", "test", "entry_point"} <= set(humaneval.items[0].metadata)


def test_all_canonical_solutions_pass_and_wrong_ones_fail(humaneval: Task) -> None:
    canonical = _score_all(humaneval, [item.reference for item in humaneval.items])
    failed = [(item.id, s.detail) for item, s in zip(humaneval.items, canonical, strict=True) if not s.correct]
    assert failed == []

    # A body that returns None (all problems) or its first argument (a quarter of them): no tests accept
    # either, so a harness that passed everything would be caught here.
    wrong = _score_all(humaneval, ["    return None\n"] * humaneval.size)
    assert [item.id for item, s in zip(humaneval.items, wrong, strict=True) if s.correct] == []
    every_fourth = humaneval.subset(humaneval.items[::4])
    echo = _score_all(every_fourth, ["    return locals()[next(iter(locals()))]\n"] * every_fourth.size)
    assert [item.id for item, s in zip(every_fourth.items, echo, strict=True) if s.correct] == []


def test_canonical_solutions_written_as_whole_functions_pass(humaneval: Task) -> None:
    # Models often repeat the signature: prompt + canonical body is a complete definition.
    items = humaneval.items[::8]
    results = _score_all(humaneval.subset(items), [item.question + item.reference for item in items])
    assert [item.id for item, s in zip(items, results, strict=True) if not s.correct] == []


def test_empty_answers_fail(humaneval: Task) -> None:
    item = humaneval.items[0]
    assert not humaneval.score("", item).correct
    assert not humaneval.score("    pass\n", item).correct


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), True, "abc"])
def test_a_timeout_that_cannot_be_is_refused(timeout: object) -> None:
    """0 or -1 timed every right answer out (0 of 164), nan ended the eval in scoring, "abc" raised."""
    with pytest.raises(TaskOptionError, match="timeout_s must be a number of seconds"):
        load_task("humaneval", options={"timeout_s": timeout})
