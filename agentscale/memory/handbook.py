"""A handbook in the database: insert with deduplication, read, count uses, prune, export and import.

Every write that reads before it writes (insert with dedup, import, prune) runs in a `BEGIN IMMEDIATE`
transaction: SQLite then hands the write lock to one process at a time (the others wait, up to the
store's 30 s busy timeout), so two processes building the same handbook cannot both insert the same
name or miss each other's near-duplicates. Embeddings are computed before the lock is taken.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, func, select, update
from sqlmodel import col
from sqlmodel import select as orm_select

from agentscale.errors import AgentScaleError, SpecError
from agentscale.graphs.spec import Memory, handbook_name_ok
from agentscale.memory.embed import Embedder, behavior_text, default_embedder, from_blob, to_blob, tokens
from agentscale.memory.extract import (
    MAX_INSTRUCTION_CHARS,
    MAX_NAME_CHARS,
    MIN_INSTRUCTION_CHARS,
    Proposal,
    normalize_name,
    one_line,
)
from agentscale.storage import SQLITE_MAX_INTEGER
from agentscale.storage.db import Store
from agentscale.storage.tables import BehaviorRow, BehaviorSource, HandbookRow, Run, RunItem, as_utc, utcnow

EMBEDDING_THRESHOLD = 0.85  # MiniLM cosine at or above which two behaviors are the same
LEXICAL_THRESHOLD = 0.6  # bag-of-words cosine used instead when either side has no embedding
# the instructions' bag-of-words cosine below which one name holds two behaviors: a 0.5B curator gave
# 11 of 13 proposals the extract prompt's example name, and unrelated behaviors merged under it; in a
# second build two unrelated ones still shared 0.205 and 0.219 (common words), a related pair 0.729
SAME_NAME_THRESHOLD = 0.3
DEFAULT_MIN_ACCURACY = 0.5  # prune --unhelpful: citing answers right less often than this remove a behavior
EXPORT_FORMAT = "agentscale-handbook"

_HANDBOOK = HandbookRow.__table__  # type: ignore[attr-defined]
_BEHAVIOR = BehaviorRow.__table__  # type: ignore[attr-defined]
_SOURCE = BehaviorSource.__table__  # type: ignore[attr-defined]


class HandbookNotFound(AgentScaleError):
    """A handbook name that is not in the database."""


@dataclass
class InsertReport:
    """What happened to a batch of proposals."""

    added: list[str] = field(default_factory=list)
    merged: list[tuple[str, str, float]] = field(default_factory=list)  # (proposed, kept, similarity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "merged": [{"proposed": p, "into": k, "similarity": round(s, 4)} for p, k, s in self.merged],
        }


def check_handbook_name(name: str) -> str:
    if not isinstance(name, str):  # None failed on `.strip`, an AttributeError
        raise TypeError(f"a handbook's name is a string, not {type(name).__name__}")
    if not handbook_name_ok(name):
        raise AgentScaleError(f"bad handbook name {name.strip()!r}: give 1-100 characters without spaces")
    return name.strip()


@contextmanager
def write_lock(store: Store) -> Iterator[Connection]:
    """A connection inside `BEGIN IMMEDIATE` (the database's write lock), committed on success."""
    with store.engine.connect() as connection:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def list_handbooks(store: Store) -> list[dict[str, Any]]:
    """Every handbook with its number of behaviors, oldest first."""
    with store.engine.connect() as connection:
        grouped = connection.execute(select(_BEHAVIOR.c.handbook_id, func.count()).group_by(_BEHAVIOR.c.handbook_id))
        counts: dict[int, int] = {int(row[0]): int(row[1]) for row in grouped}
        rows = connection.execute(select(_HANDBOOK).order_by(_HANDBOOK.c.id)).all()
    return [
        {"handbook": row.name, "behaviors": counts.get(row.id, 0), "created": row.created, "revision": row.revision}
        for row in rows
    ]


def check_usable(store: Store, memory: Memory) -> None:
    """Refuse a graph's `memory:` whose handbook is missing, holds no behavior, or has no behavior of
    its topic, before anything runs: an eval left a failed run per attempt, and a served graph answered
    every request with an unexplained 500 while /health said ok."""
    book = Handbook(store, memory.handbook, embedder=None)
    book.require()
    if not book.behaviors():  # it retrieved nothing, and the run was still labelled with it
        raise AgentScaleError(
            f"handbook {memory.handbook!r} holds no behavior (a build that failed or learned "
            "nothing leaves it empty): build it again, or evaluate without it"
        )
    if memory.topic is not None:
        book.check_topic(memory.topic, "memory.topic")


class Handbook:
    """One named handbook in a store. Creating the object touches nothing; reads of a handbook that
    does not exist raise :class:`HandbookNotFound`, writes create it."""

    def __init__(self, store: Store, name: str, *, embedder: Embedder | Literal["default"] | None = "default") -> None:
        self.store = store
        self.name = check_handbook_name(name)
        self._embedder: Embedder | None = default_embedder() if embedder == "default" else embedder

    @property
    def embedder(self) -> Embedder | None:
        return self._embedder

    # reading --------------------------------------------------------------------------------
    def row(self) -> HandbookRow | None:
        with self.store.session() as session:
            return session.exec(orm_select(HandbookRow).where(col(HandbookRow.name) == self.name)).first()

    def exists(self) -> bool:
        return self.row() is not None

    def require(self) -> HandbookRow:
        row = self.row()
        if row is None:
            names = [book["handbook"] for book in list_handbooks(self.store)]
            close = difflib.get_close_matches(self.name, names, n=1)  # `maths` for `math` said only "build one"
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HandbookNotFound(
                f"no handbook {self.name!r} in {self.store.path}{hint}; "
                f"build one with: agentscale handbook build --handbook {self.name} ..."
            )
        return row

    def revision(self) -> tuple[str, int] | None:
        """(when the handbook was made, its revision), None when there is none: what a cached index
        is valid for. The revision alone was not: a handbook deleted and made again under its name
        (SQLite gives it the freed row id too) starts over, and one import brought it back to the
        number an index of the deleted one had kept."""
        query = select(_HANDBOOK.c.created, _HANDBOOK.c.revision).where(_HANDBOOK.c.name == self.name)
        with self.store.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (str(row[0]), int(row[1]))

    def behaviors(self, topic: str | None = None) -> list[BehaviorRow]:
        """All behaviors (optionally those serving one topic, case-insensitive: see `topics`), oldest first."""
        handbook = self.require()
        with self.store.session() as session:
            query = orm_select(BehaviorRow).where(col(BehaviorRow.handbook_id) == handbook.id)
            rows = list(session.exec(query.order_by(col(BehaviorRow.id))).all())
        if topic is None:
            return rows
        # compared in Python: SQLite's lower() folds ASCII only ('Ärger' listed nothing, search found it)
        serving = {b for b, topics in self.topics().items() if topic.lower() in {t.lower() for t in topics}}
        return [row for row in rows if row.id in serving]

    def topics(self) -> dict[int, list[str]]:
        """Each behavior's topics by id, first filed first: its own, then those of proposals merged into it.

        Deduplication ignores topics (one behavior proposed while building for two tasks is one
        behavior), so a behavior serves every topic it was proposed for: a build of topic B whose
        behaviors all merged into topic A's must still give `memory: {topic: B}` its behaviors."""
        handbook = self.require()
        with self.store.engine.connect() as connection:
            own = connection.execute(
                select(_BEHAVIOR.c.id, _BEHAVIOR.c.topic)
                .where(_BEHAVIOR.c.handbook_id == handbook.id)
                .order_by(_BEHAVIOR.c.id)
            ).all()
            proposed = connection.execute(
                select(_SOURCE.c.behavior_id, _SOURCE.c.topic)
                .join(_BEHAVIOR, _BEHAVIOR.c.id == _SOURCE.c.behavior_id)
                .where(_BEHAVIOR.c.handbook_id == handbook.id, _SOURCE.c.topic.is_not(None))
                .order_by(_SOURCE.c.id)
            ).all()
        found: dict[int, list[str]] = {int(behavior_id): [] for behavior_id, _ in own}
        for behavior_id, topic in [*own, *proposed]:
            listed = found.setdefault(int(behavior_id), [])
            if topic and topic.lower() not in {t.lower() for t in listed}:
                listed.append(topic)
        return found

    def check_topic(self, topic: str, where: str) -> None:
        """A topic no behavior serves would select nothing, for every question: an error naming the known ones."""
        known = {t.lower(): t for topics in self.topics().values() for t in topics}
        if topic.lower() not in known:
            listed = ", ".join(repr(known[t]) for t in sorted(known)) or "none"
            raise AgentScaleError(
                f"{where} {topic!r}: handbook {self.name!r} has no behaviors of it (its topics: {listed})"
            )

    def get(self, name: str) -> BehaviorRow:
        handbook = self.require()
        normalized = normalize_name(name) or name
        with self.store.session() as session:
            query = orm_select(BehaviorRow).where(
                col(BehaviorRow.handbook_id) == handbook.id, col(BehaviorRow.name) == normalized
            )
            row = session.exec(query).first()
        if row is None:
            raise AgentScaleError(f"handbook {self.name!r} has no behavior {normalized!r}")
        return row

    def learned_questions(self) -> set[str]:
        """The questions this handbook's behaviors were learned from (their builds' item rows): an eval
        on those questions measures the handbook on what taught it. Compared as text, not by item id:
        two reasoning-gym generator seeds share some questions under different ids (7 of 200 on
        rg:gsm_symbolic). Behaviors imported from another database name rows this one lacks: they
        count as learned from nothing here."""
        handbook = self.require()
        with self.store.session() as session:
            query = (
                orm_select(RunItem.question)
                .join(BehaviorSource, (col(BehaviorSource.run_id) == col(RunItem.run_id)))
                .join(BehaviorRow, col(BehaviorRow.id) == col(BehaviorSource.behavior_id))
                .where(
                    col(BehaviorRow.handbook_id) == handbook.id, col(RunItem.item_key) == col(BehaviorSource.item_id)
                )
                .distinct()
            )
            return set(session.exec(query).all())

    def sources(self, behavior: BehaviorRow) -> list[BehaviorSource]:
        with self.store.session() as session:
            query = orm_select(BehaviorSource).where(col(BehaviorSource.behavior_id) == behavior.id)
            return list(session.exec(query.order_by(col(BehaviorSource.id))).all())

    # writing --------------------------------------------------------------------------------
    def _ensure(self, connection: Connection) -> int:
        """The handbook's id, creating it (inside the caller's write transaction) if needed."""
        found = connection.execute(select(_HANDBOOK.c.id).where(_HANDBOOK.c.name == self.name)).scalar()
        if found is not None:
            return int(found)
        result = connection.execute(_HANDBOOK.insert().values(name=self.name, revision=0, created=utcnow()))
        return _inserted_id(result)

    def create(self) -> None:
        with write_lock(self.store) as connection:
            self._ensure(connection)

    def embed(self, texts: list[str]) -> np.ndarray | None:
        return None if self._embedder is None or not texts else self._embedder.encode(texts)

    def add(
        self,
        proposals: Sequence[Proposal],
        *,
        counters: Sequence[dict[str, int]] | None = None,
        created: Sequence[datetime | None] | None = None,
        sources: Sequence[Sequence[dict[str, Any]]] | None = None,
        dedup_batch: bool = True,
    ) -> InsertReport:
        """Insert proposals, merging each into an existing behavior with the same normalised name and an
        instruction alike (`SAME_NAME_THRESHOLD`; else it is added under a free name) or a
        near-duplicate instruction (embedding cosine ≥ 0.85, else bag-of-words cosine ≥ 0.6).

        A merge keeps the existing name and instruction, adds a provenance row and (on import) adds the
        proposal's counters. On import `sources` gives each proposal's exported provenance, written in
        place of the one row a proposal makes, whether it is added or merged. Proposals within one
        batch are deduplicated against each other too, unless `dedup_batch` is false (imports:
        behaviors that coexisted in the exported handbook stay apart, apart from equal names).
        """
        report = InsertReport()
        if not proposals:  # the handbook is made all the same, as a build with nothing to add makes it
            self.create()
            return report
        vectors = self.embed([behavior_text(p.name, p.instruction) for p in proposals])
        model = self._embedder.name if self._embedder is not None and vectors is not None else None
        with write_lock(self.store) as connection:
            handbook_id = self._ensure(connection)
            existing = _Existing.load(connection, handbook_id, model)
            for index, proposal in enumerate(proposals):
                vector = vectors[index] if vectors is not None else None
                extra = counters[index] if counters is not None else {}
                exported = sources[index] if sources is not None else ()
                match = existing.match(proposal, vector)
                if match is not None:
                    behavior_id, kept, similarity = match
                    _merge_into(connection, behavior_id, proposal, similarity, extra, exported)
                    report.merged.append((proposal.name, kept, similarity))
                    continue
                when = (created[index] if created is not None else None) or utcnow()
                name = existing.free_name(proposal.name)  # its provenance keeps the name proposed
                values = {
                    "handbook_id": handbook_id,
                    "name": name,
                    "instruction": proposal.instruction,
                    "topic": proposal.topic,
                    "embedding": to_blob(vector) if vector is not None else None,
                    "embedding_model": model if vector is not None else None,
                    "source_run": proposal.run_id,
                    "source_item": proposal.item_id,
                    "created": when,
                    "merged": extra.get("merged", 0),
                    **{k: extra.get(k, 0) for k in COUNTERS},
                }
                behavior_id = _inserted_id(connection.execute(_BEHAVIOR.insert().values(**values)))
                _record_source(connection, behavior_id, proposal, None, when, exported)
                existing.append(behavior_id, replace(proposal, name=name), vector, near=dedup_batch)
                report.added.append(name)
            _bump(connection, handbook_id)
        return report

    def ensure_embeddings(self) -> int:
        """Embed behaviors stored without an embedding of the current model; returns how many."""
        if self._embedder is None:
            return 0
        rows = [
            r
            for r in self.behaviors()
            if r.embedding is None or r.embedding_model != self._embedder.name  # built without the extra
        ]
        if not rows:
            return 0
        vectors = self._embedder.encode([behavior_text(r.name, r.instruction) for r in rows])
        with self.store.engine.begin() as connection:
            for row, vector in zip(rows, vectors, strict=True):
                connection.execute(
                    update(_BEHAVIOR)
                    .where(_BEHAVIOR.c.id == row.id)
                    .values(embedding=to_blob(vector), embedding_model=self._embedder.name)
                )
        return len(rows)

    # usage counters ---------------------------------------------------------------------------
    def record_use(self, retrieved: Iterable[str], cited: Iterable[str]) -> None:
        """One question's prompt held `retrieved`, its answers cited `cited` (names)."""
        self._increment("times_retrieved", list(retrieved))
        self._increment("times_cited", list(cited))

    def record_outcome(self, cited: Iterable[str], correct: bool) -> None:
        """A scored question cited `cited`; count the citations as in a correct or a wrong answer."""
        self._increment("times_cited_correct" if correct else "times_cited_wrong", list(cited))

    def take_back(self, retrieved: Iterable[str], cited: Iterable[str], correct: bool | None) -> None:
        """Undo one question's `record_use` (and its `record_outcome`, when it was scored `correct` or
        not): the question is asked again (`eval --resume --retry-errors`) and counts anew then; its
        first attempt's retrievals and citations were counted twice before."""
        self._increment("times_retrieved", list(retrieved), by=-1)
        self._increment("times_cited", list(cited), by=-1)
        if correct is not None:
            self._increment("times_cited_correct" if correct else "times_cited_wrong", list(cited), by=-1)

    def _increment(self, column: str, names: list[str], *, by: int = 1) -> None:
        if not names:
            return
        with self.store.engine.begin() as connection:
            handbook_id = connection.execute(select(_HANDBOOK.c.id).where(_HANDBOOK.c.name == self.name)).scalar()
            if handbook_id is None:
                return
            connection.execute(
                update(_BEHAVIOR)
                .where(_BEHAVIOR.c.handbook_id == handbook_id, _BEHAVIOR.c.name.in_(names))
                .values({column: func.max(_BEHAVIOR.c[column] + by, 0)})
            )

    # pruning ----------------------------------------------------------------------------------
    def prune(
        self,
        *,
        min_uses: int | None = None,
        unhelpful: bool = False,
        min_accuracy: float = DEFAULT_MIN_ACCURACY,
        dry_run: bool = False,
    ) -> list[BehaviorRow]:
        """Remove behaviors that did not earn their place; returns the removed (or, dry run, removable) ones.

        - `unhelpful`: among behaviors cited in at least `min_uses` (default 1) scored answers, those
          whose answers were correct less often than `min_accuracy`.
        - `min_uses` alone: behaviors retrieved at least `min_uses` times but cited fewer than `min_uses`
          times (behaviors that have not yet been retrieved that often are kept: no evidence yet).
        """
        if min_uses is None and not unhelpful:
            raise AgentScaleError("say what to prune: --min-uses N and/or --unhelpful")
        uses = min_uses if min_uses is not None else 1
        if uses < 1:
            raise AgentScaleError("min_uses (--min-uses) must be at least 1")
        if dry_run:
            return [b for b in self.behaviors() if _prunable(b, uses, unhelpful, min_accuracy)]
        self.refuse_while_in_use("prune")
        with write_lock(self.store) as connection:  # judged on the counters no eval can change meanwhile
            doomed = [b for b in self.behaviors() if _prunable(b, uses, unhelpful, min_accuracy)]
            if not doomed:
                return doomed
            ids = [b.id for b in doomed]
            connection.execute(_SOURCE.delete().where(_SOURCE.c.behavior_id.in_(ids)))
            connection.execute(_BEHAVIOR.delete().where(_BEHAVIOR.c.id.in_(ids)))
            _bump(connection, self._ensure(connection))
        return doomed

    def refuse_while_in_use(self, doing: str) -> None:
        """Refuse to change the handbook while a live run draws on it or builds it: an eval's items
        would be measured against different handbooks (a prune to empty mid-eval left 22 of 40
        items with no behavior, exit 0), and a delete failed it mid-run. Served requests write
        their run when they finish, so a server is not seen here (its requests then get a 503)."""
        using = [run for run in self.store.runs_in_progress() if _draws_on(run, self.name)]
        if using:
            raise AgentScaleError(
                f"handbook {self.name!r} is in use by run {using[0].id} ({using[0].kind}, still running): "
                f"let it finish or stop it, then {doing}"
            )

    def delete(self) -> int:
        """Remove the handbook and all its behaviors; returns how many behaviors were removed. Refused
        while a live run draws on it or builds it (an eval failed mid-run, stored failed, with no
        resume command: the handbook it retrieves from was gone)."""
        handbook = self.require()
        self.refuse_while_in_use("delete")
        with write_lock(self.store) as connection:
            ids = select(_BEHAVIOR.c.id).where(_BEHAVIOR.c.handbook_id == handbook.id)
            connection.execute(_SOURCE.delete().where(_SOURCE.c.behavior_id.in_(ids)))
            removed = connection.execute(_BEHAVIOR.delete().where(_BEHAVIOR.c.handbook_id == handbook.id)).rowcount
            connection.execute(_HANDBOOK.delete().where(_HANDBOOK.c.id == handbook.id))
        return int(removed or 0)

    # export / import --------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """A JSON-ready document: every behavior with counters and provenance (embeddings are not
        exported: they are recomputed on import when the embed extra is installed)."""
        behaviors = []
        topics = self.topics()
        for row in self.behaviors():
            behaviors.append(
                {
                    **behavior_record(row, topics.get(row.id or 0, [])),
                    "sources": [source_record(s) for s in self.sources(row)],
                }
            )
        return {"format": EXPORT_FORMAT, "version": 1, "handbook": self.name, "behaviors": behaviors}


COUNTERS = ("times_retrieved", "times_cited", "times_cited_correct", "times_cited_wrong")


def behavior_record(row: BehaviorRow, topics: list[str]) -> dict[str, Any]:
    """A behavior as JSON: text, first topic and every topic it serves, first provenance, merge count
    and counters."""
    return {
        "name": row.name,
        "instruction": row.instruction,
        "topic": row.topic,
        "topics": topics,
        "source_run": row.source_run,
        "source_item": row.source_item,
        "created": row.created.isoformat(),
        "merged": row.merged,
        **{k: getattr(row, k) for k in COUNTERS},
    }


def source_record(source: BehaviorSource) -> dict[str, Any]:
    """One proposal merged into a behavior, as JSON (`handbook show --json` and exports)."""
    return {
        "run_id": source.run_id,
        "item_id": source.item_id,
        "proposed_name": source.proposed_name,
        "instruction": source.instruction,
        "topic": source.topic,
        "similarity": source.similarity,
        "created": source.created.isoformat(),
    }


def import_handbook(
    store: Store, document: Any, name: str | None = None, *, embedder: Embedder | Literal["default"] | None = "default"
) -> InsertReport:
    """Load an exported handbook (into `name`, default the exported name), deduplicating as on build.

    Behaviors new to the handbook keep their counters, creation time and full provenance; behaviors
    that merge into an existing one add their provenance to it, and their counters when that evidence
    is new to it (`_merge_into`).
    """
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise AgentScaleError(f'not an agentscale handbook export (expected "format": "{EXPORT_FORMAT}")')
    version = document.get("version")
    if isinstance(version, bool) or version != 1:  # `true` passed: True == 1
        raise AgentScaleError(f"unsupported handbook export version {version!r}")
    target = name or document.get("handbook")
    if not isinstance(target, str):
        raise AgentScaleError("the export names no handbook; give --handbook NAME")
    entries = document.get("behaviors")
    if not isinstance(entries, list):
        raise AgentScaleError("the export has no 'behaviors' list")
    proposals, counters, created, sources = [], [], [], []
    for position, entry in enumerate(entries):  # every entry checked before anything is written
        where = f"behaviors[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise AgentScaleError(f"{where}: needs a string 'name'")
        if not isinstance(entry.get("instruction"), str) or not entry["instruction"].strip():  # "" was stored
            raise AgentScaleError(f"{where}: needs a string 'instruction', not empty")
        instruction = one_line(entry["instruction"])
        _check_length(instruction, where)
        normalized = normalize_name(entry["name"])
        if normalized is None:
            raise AgentScaleError(f"{where}: bad name {entry['name']!r}")
        for key in ("source_run", "source_item", "topic"):
            _expect(entry, key, str, where, "a string")
        proposals.append(
            Proposal(
                normalized,
                instruction,
                run_id=entry.get("source_run"),
                item_id=entry.get("source_item"),
                topic=entry.get("topic"),
            )
        )
        counted = {key: _count(entry, key, where) for key in (*COUNTERS, "merged")}
        _check_counts(counted, where)
        counters.append(counted)
        created.append(_time(entry, where))
        sources.append(_sources(entry, where))
    book = Handbook(store, target, embedder=embedder)
    book.refuse_while_in_use("import")
    _refuse_a_repeated_import(book, sources)
    return book.add(proposals, counters=counters, created=created, sources=sources, dedup_batch=False)


def _check_length(instruction: str, where: str) -> None:
    """An imported instruction within the lengths a build keeps: an import stored a 5-character one
    and one of 115,999 characters, which went into every node's prompt (20,077 tokens a call)."""
    if not MIN_INSTRUCTION_CHARS <= len(instruction) <= MAX_INSTRUCTION_CHARS:
        raise AgentScaleError(
            f"{where}: an instruction of {len(instruction):,} characters; a build keeps "
            f"{MIN_INSTRUCTION_CHARS}-{MAX_INSTRUCTION_CHARS} (every retrieval puts it in a prompt)"
        )


def _refuse_a_repeated_import(book: Handbook, sources: list[list[dict[str, Any]]]) -> None:
    """An export whose every provenance row the handbook already holds (the same run, item, proposed
    name and time) was imported before: a merge adds counters, so a second import counted every
    citation twice (26 read 52) and pruning then judged on inflated evidence."""
    exported = {
        (s.get("run_id"), s.get("item_id"), s.get("proposed_name"), s.get("created")) for e in sources for s in e
    }
    if not exported or not book.exists():
        return
    held = {(s.run_id, s.item_id, s.proposed_name, s.created) for b in book.behaviors() for s in book.sources(b)}
    if exported <= held:
        raise AgentScaleError(
            f"handbook {book.name!r} already holds every behavior source of this export (imported before?): "
            "importing it again would add its counters a second time; import into another handbook"
        )


def _expect(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, what: str) -> None:
    """An optional field of an exported entry: absent, null, or of `kind` (a bool is no number)."""
    value = entry.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise AgentScaleError(f"{where}.{key}: must be {what}, got {value!r}")


def _count(entry: dict[str, Any], key: str, where: str) -> int:
    _expect(entry, key, int, where, "a whole number")
    count = int(entry.get(key) or 0)
    if count < 0:
        raise AgentScaleError(f"{where}.{key}: a count cannot be negative, got {count}")
    if count > SQLITE_MAX_INTEGER:  # SQLite's integers end there (a 31-digit count was an OverflowError traceback)
        raise AgentScaleError(f"{where}.{key}: a count above {SQLITE_MAX_INTEGER:,} cannot be stored, got {count}")
    return count


def _check_counts(counted: dict[str, int], where: str) -> None:
    """A behavior is cited only where it was retrieved, and each citation scored once at most: counts
    that say otherwise (cited 1, correct 5 and wrong 7) were stored, and prune judged on them."""
    if counted["times_cited"] > counted["times_retrieved"]:
        raise AgentScaleError(f"{where}: times_cited ({counted['times_cited']}) above times_retrieved")
    scored = counted["times_cited_correct"] + counted["times_cited_wrong"]
    if scored > counted["times_cited"]:
        raise AgentScaleError(f"{where}: times_cited_correct + times_cited_wrong ({scored}) above times_cited")


def _time(entry: dict[str, Any], where: str) -> datetime | None:
    """An exported time; one written without a zone (`2026-12-05T23:00:00`, by hand) is read as UTC,
    the zone of every time agentscale stores (it was a SQLAlchemy traceback)."""
    _expect(entry, "created", str, where, "an ISO time")
    value = entry.get("created")
    try:
        parsed = None if value is None else datetime.fromisoformat(value)
    except ValueError:
        raise AgentScaleError(f"{where}.created: must be an ISO time, got {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed is not None and parsed.tzinfo is None else parsed


def _sources(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """An entry's exported provenance, each source's fields checked (import writes them as given)."""
    _expect(entry, "sources", list, where, "a list")
    checked = []
    for index, source in enumerate(entry.get("sources") or []):
        at = f"{where}.sources[{index}]"
        if not isinstance(source, dict):
            raise AgentScaleError(f"{at}: must be an object, got {source!r}")
        for key in ("run_id", "item_id", "proposed_name", "instruction", "topic"):
            _expect(source, key, str, at, "a string")
        _expect(source, "similarity", (int, float), at, "a number")
        if isinstance(source.get("similarity"), float) and not math.isfinite(source["similarity"]):
            raise AgentScaleError(f"{at}.similarity: must be a finite number, got {source['similarity']!r}")
        checked.append({**source, "created": _time(source, at)})  # parsed here, written as such
    return checked


def _draws_on(run: Run, handbook: str) -> bool:
    """Whether `run` reads or writes `handbook`: an eval given --handbook or a build (its config), or
    a graph with `memory:` (its stored graph)."""
    from agentscale.memory.build_inputs import run_graph  # what delete alone needs: not on import

    if json.loads(run.config_json or "{}").get("handbook") == handbook:
        return True
    try:
        graph = run_graph(run)
    except SpecError:  # not ours to judge here: a stored graph is read where it runs
        return False
    return graph is not None and graph.memory is not None and graph.memory.handbook == handbook


def _prunable(behavior: BehaviorRow, uses: int, unhelpful: bool, min_accuracy: float) -> bool:
    if unhelpful:
        scored = behavior.times_cited_correct + behavior.times_cited_wrong
        return scored >= uses and behavior.times_cited_correct / scored < min_accuracy
    return behavior.times_retrieved >= uses and behavior.times_cited < uses


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _bump(connection: Connection, handbook_id: int) -> None:
    connection.execute(update(_HANDBOOK).where(_HANDBOOK.c.id == handbook_id).values(revision=_HANDBOOK.c.revision + 1))


def _record_source(
    connection: Connection,
    behavior_id: int,
    proposal: Proposal,
    similarity: float | None,
    when: datetime,
    exported: Sequence[dict[str, Any]] = (),
) -> None:
    """Provenance: which run and item proposed this behavior, under which name and topic, how similar.

    An imported behavior brings its exported provenance instead, every source as it was; its first
    (similarity None) takes this insert's similarity, since merged here it is no longer the first.
    Sources exported before they carried a topic take the behavior's."""
    rows = [
        {
            "behavior_id": behavior_id,
            "run_id": source.get("run_id"),
            "item_id": source.get("item_id"),
            "proposed_name": str(source.get("proposed_name") or proposal.name),
            "instruction": str(source.get("instruction") or proposal.instruction),
            "topic": source.get("topic", proposal.topic),  # absent: an export from before sources had topics
            "similarity": similarity if source.get("similarity") is None else source["similarity"],
            "created": source.get("created") or when,
        }
        for source in exported or [{"run_id": proposal.run_id, "item_id": proposal.item_id, "created": when}]
    ]
    connection.execute(_SOURCE.insert(), rows)


def _merge_into(
    connection: Connection,
    behavior_id: int,
    proposal: Proposal,
    similarity: float,
    extra: dict[str, int],
    exported: Sequence[dict[str, Any]],
) -> None:
    """Merge a proposal (a build's) or an imported behavior into `behavior_id`. An import's counters
    are added only when its evidence is new to this behavior (none of its sources held): an export
    that shares sources with it (a newer export of the same handbook, a backup restoring one pruned
    behavior) or that has none (written by hand) takes the larger of each count, since its counts
    already hold what is here; adding them doubled every counter (21 citations read 42) and pruning
    judged on that."""
    held = _held_sources(connection, behavior_id)
    fresh = [source for source in exported if _source_key(source) not in held]
    if exported and not fresh:
        return  # every source held: this behavior's evidence is here already
    counted = any(extra.get(key) for key in COUNTERS)
    # a hand-written behavior (no sources) imported again: its one synthesized source is held already
    again = not exported and counted and any(key[:3] == (None, None, proposal.name) for key in held)
    if not again:
        _record_source(connection, behavior_id, proposal, similarity, utcnow(), fresh)
    if not counted or (exported and len(fresh) == len(exported)):  # a build's proposal, or new evidence
        values: dict[str, Any] = {"merged": _BEHAVIOR.c.merged + 1 + extra.get("merged", 0)}
        values |= {key: _BEHAVIOR.c[key] + extra[key] for key in COUNTERS if extra.get(key)}
    else:
        values = {key: func.max(_BEHAVIOR.c[key], extra.get(key, 0)) for key in COUNTERS}
        rows = select(func.count()).where(_SOURCE.c.behavior_id == behavior_id).scalar_subquery()
        values["merged"] = rows - 1  # every merge leaves one provenance row
    connection.execute(update(_BEHAVIOR).where(_BEHAVIOR.c.id == behavior_id).values(values))


def _source_key(source: dict[str, Any]) -> tuple[Any, ...]:
    """What tells one proposal of a behavior from another: its run, item, proposed name and time."""
    created = source.get("created")
    return (source.get("run_id"), source.get("item_id"), source.get("proposed_name"), created and as_utc(created))


def _held_sources(connection: Connection, behavior_id: int) -> set[tuple[Any, ...]]:
    """The behavior's provenance keys (`_source_key`; SQLite gives its times back without their zone)."""
    columns = (_SOURCE.c.run_id, _SOURCE.c.item_id, _SOURCE.c.proposed_name, _SOURCE.c.created)
    rows = connection.execute(select(*columns).where(_SOURCE.c.behavior_id == behavior_id)).all()
    return {(run, item, name, created and as_utc(created)) for run, item, name, created in rows}


class _Existing:
    """The handbook's behaviors as seen inside an insert transaction, for duplicate checks."""

    def __init__(self, model: str | None) -> None:
        self.model = model
        self.by_name: dict[str, tuple[int, Counter[str], float]] = {}  # id, instruction's words, their norm
        self.near: list[tuple[int, str, Counter[str], float, np.ndarray | None]] = []  # near-dup candidates

    @classmethod
    def load(cls, connection: Connection, handbook_id: int, model: str | None) -> _Existing:
        existing = cls(model)
        rows = connection.execute(
            select(
                _BEHAVIOR.c.id,
                _BEHAVIOR.c.name,
                _BEHAVIOR.c.instruction,
                _BEHAVIOR.c.embedding,
                _BEHAVIOR.c.embedding_model,
            ).where(_BEHAVIOR.c.handbook_id == handbook_id)
        ).all()
        for row in rows:
            vector = from_blob(row.embedding) if row.embedding is not None and row.embedding_model == model else None
            existing.append(int(row.id), Proposal(row.name, row.instruction), vector)
        return existing

    def append(self, behavior_id: int, proposal: Proposal, vector: np.ndarray | None, *, near: bool = True) -> None:
        said = Counter(tokens(proposal.instruction))
        self.by_name[proposal.name] = (behavior_id, said, _norm(said))
        if near:
            bag = Counter(tokens(behavior_text(proposal.name, proposal.instruction)))
            self.near.append((behavior_id, proposal.name, bag, _norm(bag), vector))

    def match(self, proposal: Proposal, vector: np.ndarray | None) -> tuple[int, str, float] | None:
        """(id, name, similarity) of the behavior this proposal duplicates, if any: one of its name whose
        instruction it resembles at all (`SAME_NAME_THRESHOLD`), else a near-duplicate of another name."""
        named = self.by_name.get(proposal.name)
        if named is not None:
            behavior_id, said, said_norm = named
            ours = Counter(tokens(proposal.instruction))
            similarity = _cosine(ours, _norm(ours), said, said_norm)
            if similarity >= SAME_NAME_THRESHOLD:
                return behavior_id, proposal.name, similarity
        bag = Counter(tokens(behavior_text(proposal.name, proposal.instruction)))
        norm = _norm(bag)
        best: tuple[int, str, float] | None = None
        for behavior_id, name, other_bag, other_norm, other in self.near:
            if vector is not None and other is not None:
                similarity, threshold = float(np.dot(vector, other)), EMBEDDING_THRESHOLD
            else:
                similarity, threshold = _cosine(bag, norm, other_bag, other_norm), LEXICAL_THRESHOLD
            if similarity >= threshold and (best is None or similarity > best[2]):
                best = (behavior_id, name, similarity)
        return best

    def free_name(self, name: str) -> str:
        """`name`, or the first of `name_2`, `name_3`, ... that no behavior has (kept within the
        names' length): for a proposal whose name another, unrelated behavior holds."""
        if name not in self.by_name:
            return name
        suffix = 2
        while True:
            tail = f"_{suffix}"
            candidate = name[: MAX_NAME_CHARS - len(tail)].rstrip("_") + tail
            if candidate not in self.by_name:
                return candidate
            suffix += 1


def _cosine(bag: Counter[str], norm: float, other: Counter[str], other_norm: float) -> float:
    """Of two bags of words; rounded, so that one text against itself is 1.0, not 0.9999999999999999."""
    dot = sum(count * other[t] for t, count in bag.items() if t in other)
    return round(dot / (norm * other_norm), 9) if norm and other_norm else 0.0


def _norm(bag: Counter[str]) -> float:
    return math.sqrt(sum(v * v for v in bag.values()))


def dump_export(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
