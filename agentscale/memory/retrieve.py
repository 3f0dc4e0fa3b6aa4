"""Finding the behaviors relevant to a question: embedding cosine top-k, or BM25 without the extra.

An index holds a handbook's behaviors in memory and is rebuilt only when the handbook (its creation
time) or its `revision` changes (one tiny query per retrieval checks it), so retrieval once per
question costs a query embedding (~10 ms on CPU) or a BM25 pass, not a table scan. With embeddings,
behaviors stored without one (built before the extra was installed) are embedded and saved on the
first retrieval.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from agentscale.memory.embed import BM25, behavior_text, from_blob, tokens
from agentscale.memory.handbook import Handbook
from agentscale.storage.tables import BehaviorRow


@dataclass(frozen=True)
class Retrieved:
    """A behavior retrieved for a query, with its score (cosine, or BM25) and the method used."""

    name: str
    instruction: str
    topic: str | None
    score: float
    method: str  # "embedding" | "bm25"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "instruction": self.instruction,
            "topic": self.topic,
            "score": round(self.score, 4),
            "method": self.method,
        }


class _Index:
    def __init__(self, handbook: Handbook, rows: list[BehaviorRow], revision: tuple[str, int] | None) -> None:
        self.revision = revision
        self.rows = rows
        topics = handbook.topics()
        # per row, every topic it serves (lower case → as filed): a behavior merged across topics serves each
        self.topics = [{t.lower(): t for t in topics.get(r.id or 0, [])} for r in rows]
        embedder = handbook.embedder
        vectors = [from_blob(r.embedding) for r in rows if r.embedding is not None]
        self.matrix: np.ndarray | None = None
        complete = len(vectors) == len(rows) and all(r.embedding_model == getattr(embedder, "name", None) for r in rows)
        if embedder is not None and rows and complete:
            self.matrix = np.vstack(vectors)
        self.bm25 = BM25([tokens(behavior_text(r.name, r.instruction) + " " + (r.topic or "")) for r in rows])


class Retriever:
    """Top-k behaviors of one handbook for a query; thread-safe, index cached per handbook revision."""

    def __init__(self, handbook: Handbook) -> None:
        self.handbook = handbook
        self._index: _Index | None = None
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        return "embedding" if self.handbook.embedder is not None else "bm25"

    def _current(self) -> _Index:
        revision = self.handbook.revision()
        with self._lock:
            if self._index is None or self._index.revision != revision or revision is None:
                self.handbook.require()
                self.handbook.ensure_embeddings()
                self._index = _Index(self.handbook, self.handbook.behaviors(), revision)
            return self._index

    def search(self, query: str, k: int = 5, *, topic: str | None = None) -> list[Retrieved]:
        """The `k` behaviors most similar to `query`, best first; `topic` keeps only that topic.

        With embeddings every behavior has a score, so exactly `k` come back (fewer if the handbook
        is smaller); with BM25 only behaviors sharing at least one word with the query do.
        """
        if isinstance(k, bool) or not isinstance(k, int):  # "3" failed deep inside, comparing it to 0
            raise TypeError(f"k takes a whole number, not {type(k).__name__}")
        index = self._current()
        if not index.rows or k < 1:
            return []
        wanted = topic.lower() if topic is not None else None
        mask = np.array([wanted is None or wanted in served for served in index.topics], dtype=bool)
        embedder = self.handbook.embedder
        if index.matrix is not None and embedder is not None:
            query_vector = embedder.encode([query])[0]
            scores = index.matrix @ query_vector
            method = "embedding"
            eligible = mask
        else:
            scores = index.bm25.scores(tokens(query))
            method = "bm25"
            eligible = mask & (scores > 0)
        candidates = np.flatnonzero(eligible)
        # stable: equal scores keep handbook order (older behaviors first)
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
        return [
            Retrieved(
                index.rows[i].name,
                index.rows[i].instruction,
                index.rows[i].topic if wanted is None else index.topics[i][wanted],
                float(scores[i]),
                method,
            )
            for i in order
        ]
