"""Task items, scores and the `Task` container every source produces.

A task is a fixed, ordered tuple of items plus the scorer that judges an extracted answer against an
item's reference. Everything downstream (eval engine, optimizer, handbook) sees only this shape, so a
new benchmark is "write a function that returns a `Task`".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from agentscale.tasks import splits
from agentscale.tasks.errors import TaskError

AnswerFormat = Literal["text", "number", "choice", "code"]
"""Which answer extractor the core applies to a node's completion before scoring."""

ANSWER_FORMATS: tuple[str, ...] = get_args(AnswerFormat)


class TaskItem(BaseModel):
    """One question with its reference answer.

    Frozen so an item can be shared between concurrent evaluations without copies; a pydantic model
    so items round-trip through SQLite/JSON (``model_dump`` / ``model_validate``) when the core stores
    them. ``metadata`` carries what the scorer needs beyond the reference (tests, entry points,
    generator state); it must stay JSON-serialisable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    question: str
    reference: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    choices: list[str] | None = None


@dataclass(frozen=True)
class Score:
    """A scorer's verdict: binary correctness (what accuracy averages) and a short human reason."""

    correct: bool
    detail: str = ""


Scorer = Callable[[str | None, TaskItem], Score]
"""``scorer(extracted_answer, item) -> Score``. Must treat ``None``/empty answers as wrong and be
thread-safe: the eval engine may call it from worker threads."""


@dataclass(frozen=True)
class TaskInfo:
    """What ``agentscale tasks list`` shows for one task (sizes of configurable tasks are defaults)."""

    name: str
    size: int
    scorer: str
    answer_format: str
    description: str


@dataclass(frozen=True)
class TaskSplit:
    """Disjoint train/dev/test views of one task (each a `Task` with the same scorer)."""

    train: Task
    dev: Task
    test: Task


@dataclass(frozen=True)
class Task:
    """A named, scored list of items.

    ``answer_format`` picks the core's answer extractor; ``scorer`` judges the extracted answer;
    ``scorer_name`` is the label shown to users (``exact``, ``numeric``, ``rg:chain_sum``...).
    Item ids must be unique: splits and resumable evals key on them.
    """

    name: str
    description: str
    answer_format: AnswerFormat
    scorer: Scorer
    scorer_name: str
    items: tuple[TaskItem, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise TaskError(f"task {self.name!r}: answer_format {self.answer_format!r} is not one of {ANSWER_FORMATS}")
        index: dict[str, int] = {}
        for position, item in enumerate(self.items):
            if item.id in index:
                raise TaskError(f"task {self.name!r}: duplicate item id {item.id!r}")
            index[item.id] = position
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "_index", index)

    @property
    def size(self) -> int:
        """Number of items."""
        return len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def item(self, item_id: str) -> TaskItem:
        """The item with this id (the eval engine uses it to rebuild a run from stored ids)."""
        try:
            return self.items[self._index[item_id]]
        except KeyError:
            raise TaskError(f"task {self.name!r} has no item {item_id!r}") from None

    def score(self, answer: str | None, item: TaskItem) -> Score:
        """Score an extracted answer; an empty answer is wrong whatever the scorer would say."""
        if answer is None or not answer.strip():
            return Score(False, "no answer")
        return self.scorer(answer, item)

    def subset(self, items: Sequence[TaskItem], name: str | None = None) -> Task:
        """A task with the same scorer and format over ``items`` (for splits, samples, filters)."""
        return replace(self, name=name or self.name, items=tuple(items))

    def with_scorer(self, scorer: Scorer, scorer_name: str, answer_format: AnswerFormat) -> Task:
        """The same items judged by another scorer (``--scorer`` on the command line)."""
        return replace(self, scorer=scorer, scorer_name=scorer_name, answer_format=answer_format)

    def split(
        self,
        seed: int,
        *,
        train: int | float | None = None,
        dev: int | float | None = None,
        test: int | float | None = None,
    ) -> TaskSplit:
        """Deterministic disjoint train/dev/test subsets.

        Counts are ints, fractions are floats in [0, 1] (``train=0.2, test=0.8``); omitted parts are
        empty. The order comes from hashing ``(seed, item id)``, so the same seed always gives the
        same split, and it does not depend on the order items were loaded in.
        """
        counts = splits.split_counts(self.size, train=train, dev=dev, test=test, task_name=self.name)
        ordered = [self.items[i] for i in splits.permutation([it.id for it in self.items], seed, "split")]
        n_train, n_dev, n_test = counts
        return TaskSplit(
            train=self.subset(ordered[:n_train], f"{self.name}[train]"),
            dev=self.subset(ordered[n_train : n_train + n_dev], f"{self.name}[dev]"),
            test=self.subset(ordered[n_train + n_dev : n_train + n_dev + n_test], f"{self.name}[test]"),
        )

    def sample(self, n: int | None, seed: int) -> Task:
        """``n`` items drawn deterministically from ``seed`` (all items, shuffled, if ``n`` is None or
        exceeds the size). Uses its own hash salt, so it is independent of ``split`` with the same seed.
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise TaskError(f"task {self.name!r}: sample size must be a non-negative integer, got {n!r}")
        order = splits.permutation([it.id for it in self.items], seed, "sample")
        chosen = order if n is None else order[:n]
        return self.subset([self.items[i] for i in chosen])
