"""SQLite tables of the behavior handbook: handbooks, behaviors and where each behavior came from.

They share `SQLModel.metadata` with the runtime's tables, so `Store` creates them with the rest
(`agentscale.storage.tables` imports this module at its end). A behavior name is unique within its
handbook; every proposal merged into a behavior (same name, or a near-duplicate instruction) leaves a
`BehaviorSource` row, so merging never loses provenance.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class HandbookRow(SQLModel, table=True):
    """A named collection of behaviors. `revision` changes whenever its behaviors' text changes
    (insert, merge, prune, import), so retrieval indexes know when to rebuild; counters do not bump it."""

    __tablename__ = "handbook"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    revision: int = 0
    created: datetime = Field(default_factory=utcnow)


class BehaviorRow(SQLModel, table=True):
    """One behavior: a `behavior_snake_case` name and a one-line instruction, with usage counters.

    `embedding` is a float32 vector (little-endian bytes) from `embedding_model`, or None when the
    handbook was built without the `embed` extra (retrieval then uses BM25).
    """

    __tablename__ = "behavior"
    __table_args__ = (UniqueConstraint("handbook_id", "name", name="uq_behavior_handbook_name"),)

    id: int | None = Field(default=None, primary_key=True)
    handbook_id: int = Field(index=True, foreign_key="handbook.id")
    name: str
    instruction: str
    topic: str | None = Field(default=None, index=True)
    embedding: bytes | None = None
    embedding_model: str | None = None
    source_run: str | None = None  # the first proposal's run and item (all of them: BehaviorSource)
    source_item: str | None = None
    created: datetime = Field(default_factory=utcnow)
    merged: int = 0  # later proposals merged into this behavior
    times_retrieved: int = 0  # questions whose prompt contained it
    times_cited: int = 0  # questions whose answer cited it by name
    times_cited_correct: int = 0  # scored questions (evals) that cited it and were answered correctly
    times_cited_wrong: int = 0  # scored questions that cited it and were answered wrongly


class BehaviorSource(SQLModel, table=True):
    """One proposal of a behavior: which run and item it came from, as proposed (before merging)."""

    __tablename__ = "behaviorsource"

    id: int | None = Field(default=None, primary_key=True)
    behavior_id: int = Field(index=True, foreign_key="behavior.id")
    run_id: str | None = None
    item_id: str | None = None
    proposed_name: str
    instruction: str
    similarity: float | None = None  # to the behavior it was merged into (1.0: same name); None: the first
    created: datetime = Field(default_factory=utcnow)
