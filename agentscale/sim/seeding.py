"""Deterministic randomness for the simulator: every draw is a hash of what it depends on.

The simulator never keeps random state. An item's difficulty, a model call's sampled answer and a
task's item bank are all functions of a seed and the inputs that define them, hashed with BLAKE2b.
So the same (seed, item, model, role, inputs, request seed) gives the same answer in any process, in
any order, with or without the response cache, and two processes never disagree about an item.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from agentscale.errors import AgentScaleError

SEED_ENV = "AGENTSCALE_SIM_SEED"
_SCALE = float(2**64)


def sim_seed() -> int:
    """The sim-wide seed: `AGENTSCALE_SIM_SEED` (default 0). It picks the item banks of sim tasks.
    Not an integer: an `AgentScaleError` (a one-line message from the CLI, not a traceback)."""
    raw = os.environ.get(SEED_ENV, "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise AgentScaleError(f"{SEED_ENV} must be an integer, got {raw!r}") from None


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts' text, identical across processes and Python versions."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(repr(part).encode("utf-8"))
        digest.update(b"\x1f")
    return int.from_bytes(digest.digest(), "little")


def unit_uniform(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by the parts (used for one sampled answer)."""
    return stable_hash(*parts) / _SCALE


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by the parts (used to draw one item's attributes)."""
    return np.random.default_rng(stable_hash(*parts))
