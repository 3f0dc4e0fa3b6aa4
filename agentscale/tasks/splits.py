"""Seeded, order-independent item orderings and split sizes.

Items are ordered by ``sha256(salt:seed:id)`` rather than by shuffling a list with ``random``: the
result is identical across Python versions and platforms, and an item's rank depends only on its own
id, so reloading the same items in another order (or from another machine) gives the same split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from agentscale.tasks.errors import TaskError


def _rank(salt: str, seed: int, item_id: str) -> bytes:
    return hashlib.sha256(f"{salt}:{seed}:{item_id}".encode()).digest()


def permutation(ids: Sequence[str], seed: int, salt: str) -> list[int]:
    """Indices of ``ids`` in seeded order (ties, impossible for distinct ids, fall back to id)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TaskError(f"seed must be an integer, got {seed!r}")
    return sorted(range(len(ids)), key=lambda i: (_rank(salt, seed, ids[i]), ids[i]))


def _as_target(name: str, value: int | float | None, size: int, task_name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TaskError(f"task {task_name!r}: {name} must be a count or a fraction, got {value!r}")
    if value < 0:
        raise TaskError(f"task {task_name!r}: {name} must not be negative, got {value!r}")
    if isinstance(value, float):
        if value > 1.0:
            raise TaskError(
                f"task {task_name!r}: {name}={value!r} is a float above 1; give a count as an int "
                "or a fraction in [0, 1]"
            )
        return value * size
    return float(value)


def split_counts(
    size: int,
    *,
    train: int | float | None,
    dev: int | float | None,
    test: int | float | None,
    task_name: str = "task",
) -> tuple[int, int, int]:
    """Item counts for train/dev/test from counts (int) or fractions (float).

    Boundaries are rounded cumulatively so fractions that sum to 1 cover every item exactly once.
    """
    targets = [_as_target(n, v, size, task_name) for n, v in (("train", train), ("dev", dev), ("test", test))]
    total = sum(targets)
    if total > size + 1e-9:
        asked = ", ".join(f"{n}={v!r}" for n, v in (("train", train), ("dev", dev), ("test", test)) if v)
        raise TaskError(f"task {task_name!r} has {size} items; cannot split into {asked}")
    bounds = [0]
    running = 0.0
    for target in targets:
        running += target
        bounds.append(min(size, round(running)))
    return bounds[1] - bounds[0], bounds[2] - bounds[1], bounds[3] - bounds[2]
