"""An optimization's test split as an eval's items (`agentscale eval GRAPH --split-of RUN`).

An optimization scores its crowned graph and the single calls on a test split drawn from its space
(`task.seed`, `train`, `dev`, `test`). `eval --n N --seed S` samples with another hash salt, so no
eval could measure a graph on those items: neither the crowned graph's figure again (another
release, a real model behind the same alias), nor a hand-written baseline beside it on the very
same questions. This module turns a stored optimization into the eval settings that draw them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from agentscale.errors import AgentScaleError
from agentscale.optimize.runner import space_with_its_task_file
from agentscale.storage.db import Store


@dataclass(frozen=True)
class OptimizationSplit:
    """What `EvalConfig` needs to evaluate on optimization `run_id`'s test split."""

    run_id: str
    task: str  # the task's name, or its file's absolute path
    scorer: str | None
    options: dict[str, Any]
    split: dict[str, int]  # `EvalConfig.split`


def split_of_optimization(
    store: Store, run_id: str, task_file: str | os.PathLike[str] | None = None
) -> OptimizationSplit:
    """The test split of the optimization `run_id` (an id or its start, as `runs list` shows it);
    `task_file`: where its task file is now, if it moved (the same bytes, checked by sha256). A task
    file edited since the optimization is refused: its test split would be other questions."""
    run = store.get_run(run_id)
    if run.kind != "optimize":
        raise AgentScaleError(f"--split-of takes an optimization's run id: {run.made_by()}")
    space, _ = space_with_its_task_file(run, task_file, "evaluate without --split-of")
    ref = space.task
    return OptimizationSplit(run.id, ref.spec, ref.scorer, ref.load_options(), ref.split_sizes())
