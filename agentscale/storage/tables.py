"""SQLite tables (sqlmodel): runs, per-item results, node calls, the response cache, the spend ledger,
optimization trials and the behavior handbook.

Rows are written as work completes, so a crash loses at most the calls in flight. No table has a
column for credentials: API keys stay in the environment.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from agentscale.storage.owner import owner_alive


def utcnow() -> datetime:
    return datetime.now(UTC)


# how a stored time is shown: every stored time is UTC, and without the zone a reader in New York took
# 07:59 for their own clock's (the reports audit)
SHOWN_TIME = "%Y-%m-%d %H:%M:%S UTC"


def as_utc(moment: datetime) -> datetime:
    """A stored time as UTC: SQLite gives back the naive datetimes it was given `utcnow()` as."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Run(SQLModel, table=True):
    """One CLI/API invocation: a run of a graph on questions, an eval, an optimization."""

    id: str = Field(primary_key=True)
    kind: str = Field(index=True)  # run | eval | optimize | ...
    status: str = "running"  # running | done | failed | interrupted | created (made, not started yet)
    created: datetime = Field(default_factory=utcnow, index=True)
    finished: datetime | None = None
    graph_name: str | None = None
    graph_yaml: str | None = None
    config_json: str = "{}"
    summary_json: str = "{}"
    error: str | None = None
    owner: str | None = None  # the process running it (storage/owner.py); None in older databases

    def process_gone(self) -> bool:
        """Marked running, but the process that ran it has ended without saying so (`kill -9`, an
        out-of-memory kill, a crash): nothing is running it, and a resume may continue it."""
        return self.status == "running" and owner_alive(self.owner) is False

    def in_progress(self) -> bool:
        """Marked running and not known to be dead: its report and `runs show` present its state so
        far, nothing of it as final (no crown yet)."""
        return self.status == "running" and not self.process_gone()

    def stopped_unfinished(self) -> bool:
        """Made but never started, interrupted, or running with its process gone: nothing runs it and
        it did not finish, so `runs show` and its report say how it goes on."""
        return self.status in ("created", "interrupted") or self.process_gone()

    def shown_status(self) -> str:
        """The status as `runs list` and `runs show` print it."""
        if self.status == "created":
            return "created (not started)"
        return "running (process gone)" if self.process_gone() else self.status

    def made_by(self) -> str:
        """The command that made the run, for errors that refuse it ("made by `agentscale eval`")."""
        command = "handbook build" if self.kind == "handbook" else self.kind
        return f"run {self.id} was made by `agentscale {command}`"


class RunItem(SQLModel, table=True):
    """One question answered within a run, with its final answer and usage."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    item_key: str = Field(index=True)
    question: str
    answer: str | None = None
    stopped_reason: str | None = None
    usage_json: str = "{}"
    reference: str | None = None  # evals: the item's reference answer
    correct: bool | None = None  # evals: the scorer's verdict (None until scored)
    detail: str | None = None  # evals: the scorer's reason
    rounds_json: str | None = None  # a discussion's rounds (a `coordinator:` graph): the CEO's decisions
    # a graph with `memory:`: {"handbook": name, "behaviors": shown, "cited": [...]}, so that scoring the
    # item after a resume, or asking it again, counts its citations once
    handbook_json: str | None = None
    created: datetime = Field(default_factory=utcnow)


class NodeCall(SQLModel, table=True):
    """One node execution inside a graph run: what it was asked, what it said, what it cost."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    item_key: str = Field(index=True)
    node_id: str
    role: str
    route: str | None = None
    endpoint: str | None = None
    status: str = "ok"  # ok | failed | skipped
    messages_json: str = "[]"
    completion: str | None = None
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float = 0.0
    usd: float | None = None
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    truncated: bool = False  # the reply ended at its max_tokens (finish_reason "length")
    started: datetime = Field(default_factory=utcnow)


class CacheEntry(SQLModel, table=True):
    """A cached model response, keyed by a hash of route, messages, sampling params and sample index."""

    key: str = Field(primary_key=True)
    route: str = Field(index=True)
    request_json: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float = 0.0  # of the original call: replayed so latency figures do not depend on the cache
    finish_reason: str | None = None  # of the original call (a replay of a cut reply says it was cut)
    created: datetime = Field(default_factory=utcnow)


class SpendEntry(SQLModel, table=True):
    """Money and tokens actually spent on real (uncached) model calls."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str | None = Field(default=None, index=True)
    item_key: str | None = None  # whose call: kept even when the item never finished (an interruption)
    route: str = Field(index=True)
    prompt_tokens: int
    completion_tokens: int
    flops: float
    usd: float | None = None
    created: datetime = Field(default_factory=utcnow)


REFUSED = "refused"  # the kind of a trial the spend cap refused (see Trial)


class Trial(SQLModel, table=True):
    """One evaluation of a candidate graph inside an optimization run, stored as it completes.

    `seq` orders evaluations; a resumed run replays the search and reuses stored trials by `seq`,
    which is why no evaluation is repeated or paid twice. An evaluation the spend cap refused is
    kept as kind `refused` (no items answered), so a resumed run refuses it again: evaluations
    side by side are admitted against each other's worst cases, which a replay no longer holds.
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    seq: int = Field(index=True)
    iteration: int
    kind: str  # search | crown | test | baseline | refused
    key: str
    candidate_json: str
    n_items: int
    correct: int
    accuracy: float
    compute: float
    latency_s: float
    tokens: int
    usd: float | None = None
    reward: float = 0.0
    created: datetime = Field(default_factory=utcnow)


# ------------------------------------------------------------------------------- behavior handbook
# Handbooks, behaviors and where each behavior came from (agentscale.memory reads and writes them). A
# behavior name is unique within its handbook; every proposal merged into a behavior (same name, or a
# near-duplicate instruction) leaves a `BehaviorSource` row, so merging never loses provenance.


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
    topic: str | None = None  # the proposal's topic: a behavior serves every topic it was proposed for
    similarity: float | None = None  # to the behavior it was merged into (1.0: same name); None: the first
    created: datetime = Field(default_factory=utcnow)
