"""Simulated task items: difficulty, the right answer, plausible wrong answers and prompt lengths.

Each sim task (`math`, `mmlu`, `humaneval`) is a bank of items generated from the sim seed. An item
carries what the generative model needs and nothing a model could read off its question:

- `difficulty` on the logit scale (a call with skill θ is right with probability σ(θ − difficulty)).
  Difficulties follow Normal(0, sd) through a low-discrepancy sequence, so any prefix of a bank has
  almost exactly the population's difficulty distribution and calibration holds on small banks too.
- a small set of *distractors*: the plausible wrong answers. Every wrong answer a simulated model gives
  is one of them, so errors on an item are correlated across calls and majority voting saturates
  (it converges to the most popular answer, which on hard items is a distractor). `plausibility` says
  how often a wrong call lands on each distractor and how persuasive it is when another node shows
  it; each family tilts the plausibilities its own way (`family_weights`), so different families
  make partly different mistakes and mixing them pays off a little.
- token lengths: the question's prompt length and a typical completion length, with the task means
  of the Agent-REINFORCE cost code (MATH 202/275, MMLU 213/215, HumanEval 180/115). Harder items get
  longer completions.

The question text holds a tag such as `[sim:math#0042]` (or `[sim:math#0042@s7]` for sim seed 7) that
the simulated provider parses to find the item; the reference answer is an integer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from agentscale.sim.population import FAMILIES
from agentscale.sim.profiles import PROFILES, profile
from agentscale.sim.seeding import rng_for, stable_hash, unit_uniform

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_NORMAL = NormalDist()
TAG = re.compile(r"\[sim:(?P<task>[a-z_]+)#(?P<index>\d+)(?:@s(?P<seed>-?\d+))?\]")


DEFAULT_BANK_SIZE = 1000


@dataclass(frozen=True)
class SimItem:
    """One simulated question. Category 0 is the right answer, category k ≥ 1 is `distractors[k-1]`."""

    task: str
    index: int
    seed: int
    difficulty: float
    answer: int
    distractors: tuple[int, ...]
    plausibility: tuple[float, ...]
    family_weights: dict[str, tuple[float, ...]] = field(hash=False, compare=False)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tag(self) -> str:
        suffix = f"@s{self.seed}" if self.seed != 0 else ""
        return f"[sim:{self.task}#{self.index:04d}{suffix}]"

    @property
    def question(self) -> str:
        title = profile(self.task).title
        return f"{self.tag} Simulated {title}-style problem {self.index}. {profile(self.task).instruction}"

    def value(self, category: int) -> int:
        """The answer a node writes for an answer category."""
        return self.answer if category == 0 else self.distractors[category - 1]

    def category(self, text: str) -> int | None:
        """The category of an answer string, or None when it is neither right nor a known distractor."""
        number = _as_int(text)
        if number is None:
            return None
        if number == self.answer:
            return 0
        if number in self.distractors:
            return self.distractors.index(number) + 1
        return None


def _as_int(text: str) -> int | None:
    cleaned = text.strip().replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        found = re.findall(r"-?\d+(?:\.\d+)?", cleaned)
        if not found:
            return None
        value = float(found[-1])
    return int(value) if value.is_integer() else None


def _difficulty(task: str, seed: int, index: int) -> float:
    """Item `index`'s difficulty: a Weyl (golden-ratio) sequence pushed through the normal quantile."""
    offset = unit_uniform("bank-offset", task, seed)
    u = (offset + (index + 1) * _GOLDEN) % 1.0
    u = min(max(u, 1e-6), 1.0 - 1e-6)
    return profile(task).difficulty_sd * _NORMAL.inv_cdf(u)


def _answers(task: str, rng: np.random.Generator, k: int) -> tuple[int, tuple[int, ...]]:
    if task == "mmlu":
        answer = int(rng.integers(1, 5))
        others = [c for c in (1, 2, 3, 4) if c != answer]
        rng.shuffle(others)
        return answer, tuple(int(c) for c in others[:k])
    if task == "humaneval":
        answer = int(rng.integers(1000, 10000))
        offsets = [1, -1, 2, -2, 10, -10, 100, answer // 2 - answer]
    else:
        answer = int(rng.integers(2, 1000))
        offsets = [1, -1, 2, -2, answer, -(answer // 2), 10, -10, 3]
    chosen: list[int] = []
    for position in rng.permutation(len(offsets)):
        value = answer + offsets[int(position)]
        if value > 0 and value != answer and value not in chosen:
            chosen.append(value)
        if len(chosen) == k:
            break
    while len(chosen) < k:  # tiny answers: fall back to distinct larger numbers
        value = answer + 11 + len(chosen)
        if value not in chosen:
            chosen.append(value)
    return answer, tuple(chosen)


@lru_cache(maxsize=65536)
def make_item(task: str, seed: int, index: int) -> SimItem:
    """Item `index` of a sim task for a sim seed; independent of how many items a bank holds."""
    prof = profile(task)
    task = prof.key
    k = prof.n_distractors
    rng = rng_for("item", task, seed, index)
    answer, distractors = _answers(task, rng, k)
    weights = np.sort(rng.dirichlet(np.full(k, prof.distractor_concentration)))[::-1]
    weights = np.maximum(weights, 1e-4)
    weights /= weights.sum()
    family_weights = {}
    for family in FAMILIES:
        tilt = np.exp(prof.family_tilt * rng_for("family", task, seed, index, family).standard_normal(k))
        tilted = weights * tilt
        family_weights[family] = tuple(float(x) for x in tilted / tilted.sum())
    difficulty = _difficulty(task, seed, index)
    z_prompt, z_completion = rng.standard_normal(2)
    sd_p, sd_c, rho = 0.2, 0.25, 0.15
    prompt = prof.mean_prompt_tokens * math.exp(sd_p * z_prompt - sd_p**2 / 2)
    completion = prof.mean_completion_tokens * math.exp(
        sd_c * z_completion + rho * difficulty / prof.difficulty_sd - (sd_c**2 + rho**2) / 2
    )
    return SimItem(
        task=task,
        index=index,
        seed=seed,
        difficulty=difficulty,
        answer=answer,
        distractors=distractors,
        plausibility=tuple(float(x) for x in weights),
        family_weights=family_weights,
        prompt_tokens=max(8, round(prompt)),
        completion_tokens=max(8, round(completion)),
    )


class Tag(NamedTuple):
    """A parsed `[sim:task#NNNN@sS]` tag, in `make_item` argument order."""

    task: str
    seed: int
    number: int


def parse_tag(text: str) -> Tag | None:
    """The first sim tag in a text (`make_item(*tag)` builds its item), or None."""
    found = TAG.search(text)
    if found is None or found.group("task") not in PROFILES:
        return None
    return Tag(found.group("task"), int(found.group("seed") or 0), int(found.group("index")))


def item_for_text(text: str) -> SimItem:
    """The item a prompt is about: its tag, or (untagged questions) an item derived from its text.

    Untagged questions get a MATH-like item picked by hashing the question, so `agentscale run` on a
    sim graph answers any question deterministically; only tagged questions have a known reference.
    """
    parsed = parse_tag(text)
    if parsed is not None:
        return make_item(*parsed)
    return make_item("math", 0, 100_000 + stable_hash("untagged", text.strip()) % 1_000_000)


@dataclass(frozen=True)
class ItemBank:
    """Items of one task as arrays (one row per item), for vectorised ground-truth computation."""

    task: str
    items: tuple[SimItem, ...]
    difficulty: np.ndarray
    plausibility: np.ndarray  # [N, K]
    family_weights: dict[str, np.ndarray]  # family -> [N, K]
    prompt_tokens: np.ndarray  # [N]
    completion_tokens: np.ndarray  # [N]

    @property
    def size(self) -> int:
        return len(self.items)

    @classmethod
    def of(cls, items: Sequence[SimItem]) -> ItemBank:
        if not items:
            raise ValueError("an item bank needs at least one item")
        tasks = {item.task for item in items}
        if len(tasks) != 1:
            raise ValueError(f"items of one task expected, got {sorted(tasks)}")
        return cls(
            task=items[0].task,
            items=tuple(items),
            difficulty=np.array([i.difficulty for i in items]),
            plausibility=np.array([i.plausibility for i in items]),
            family_weights={f: np.array([i.family_weights[f] for i in items]) for f in FAMILIES},
            prompt_tokens=np.array([i.prompt_tokens for i in items], dtype=float),
            completion_tokens=np.array([i.completion_tokens for i in items], dtype=float),
        )


@cache
def bank(task: str, seed: int, size: int = DEFAULT_BANK_SIZE) -> ItemBank:
    """The first `size` items of a sim task for a seed."""
    key = profile(task).key
    return ItemBank.of([make_item(key, seed, index) for index in range(size)])
