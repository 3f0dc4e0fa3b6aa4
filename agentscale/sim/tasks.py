"""Sim tasks `sim:math`, `sim:mmlu`, `sim:humaneval` as ordinary `Task`s.

Each item's question carries the tag the simulated provider parses (`[sim:math#0042]`), its
reference is an integer and it is scored numerically, so `agentscale eval GRAPH --task sim:math`
runs the normal evaluation path end to end. Scores on these tasks are *simulated*: they say how a
graph fares in the simulated population, never how any real model performs.

Importing this module registers the `sim:` prefix with the task registry; `register` does the same
for the registry's plugin entry point.
"""

from __future__ import annotations

from agentscale.sim.items import DEFAULT_BANK_SIZE, SimItem, make_item
from agentscale.sim.profiles import PROFILES, profile
from agentscale.sim.seeding import sim_seed
from agentscale.tasks import Task, TaskError, TaskInfo, TaskItem, register_prefix
from agentscale.tasks.errors import TaskOptionError, check_generated_size
from agentscale.tasks.scorers.numeric import score_numeric

PREFIX = "sim"


def _description(key: str) -> str:
    prof = PROFILES[key]
    return (
        f"simulated {prof.title}-style items for the sim/ population (scores are simulated, never model accuracy; "
        f"mean prompt/completion {prof.mean_prompt_tokens:.0f}/{prof.mean_completion_tokens:.0f} tokens)"
    )


def task_item(item: SimItem) -> TaskItem:
    return TaskItem(
        id=f"sim:{item.task}:{item.seed}:{item.index}",
        question=item.question,
        reference=str(item.answer),
        metadata={"simulated": True, "sim_task": item.task, "index": item.index, "seed": item.seed},
    )


def load_sim_task(name: str, *, size: int = DEFAULT_BANK_SIZE, seed: int | None = None) -> Task:
    """Items 0..size-1 of sim task `name` (`math`, `mmlu`, `humaneval`) for a sim seed.

    `seed` defaults to `AGENTSCALE_SIM_SEED` (0). Items do not depend on `size`: a larger bank only
    adds items, so splits of different bank sizes overlap.
    """
    key = name.removeprefix(f"{PREFIX}:")
    if key not in PROFILES:
        raise TaskError(f"unknown sim task 'sim:{key}'; valid: {', '.join(f'sim:{k}' for k in PROFILES)}")
    check_generated_size(f"sim:{key}", size)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):  # its items' tags need one
        raise TaskOptionError(f"task 'sim:{key}': seed must be an integer, got {seed!r}")
    seed = sim_seed() if seed is None else seed
    items = [task_item(make_item(key, seed, index)) for index in range(size)]
    return Task(
        name=f"{PREFIX}:{key}",
        description=_description(key),
        answer_format="number",
        scorer=score_numeric,
        scorer_name="numeric",
        items=tuple(items),
    )


def sim_task_infos() -> list[TaskInfo]:
    return [TaskInfo(f"{PREFIX}:{k}", DEFAULT_BANK_SIZE, "numeric", "number", _description(k)) for k in PROFILES]


def register() -> None:
    """Register the `sim:` prefix with the task registry (idempotent)."""
    register_prefix(PREFIX, load_sim_task, sim_task_infos)


def mean_lengths(task: str) -> tuple[float, float]:
    """The task's mean prompt and completion tokens (the `compute` unit's reference lengths)."""
    prof = profile(task)
    return prof.mean_prompt_tokens, prof.mean_completion_tokens


register()
