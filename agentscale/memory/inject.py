"""A graph's `memory:` at run time: retrieve once per question, show the behaviors to every node,
find which ones the answers cited, and count it all.

:class:`GraphMemory` is the runtime's `memory:` plug-in (registered with
:func:`agentscale.runtime.plugins.register_memory` when this module is imported). The executor
(`agentscale/runtime/execute.py`) asks it for a question's behaviors once, before any node calls a
model, fills the `{behaviors}` placeholder of the role prompts with :func:`behavior_block`, and has it
fill the run's result's memory fields (`handbook`, `behaviors`, `cited`: what was retrieved and cited).
Recorded runs add one to `times_retrieved`/`times_cited`; the eval engine adds the scorer's verdict
(`times_cited_correct`/`times_cited_wrong`) with :func:`record_outcome`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

import yaml

from agentscale.errors import AgentScaleError
from agentscale.graphs.result import NodeTrace, RunResult
from agentscale.graphs.spec import GraphSpec, Memory
from agentscale.memory.extract import find_citations
from agentscale.memory.handbook import Handbook, check_handbook_name
from agentscale.memory.retrieve import Retrieved, Retriever
from agentscale.runtime.plugins import register_memory
from agentscale.storage.db import Store
from agentscale.storage.tables import RunItem


@cache
def prompt(name: str) -> dict[str, Any]:
    """A prompt file of `agentscale/memory/prompts/` (package data)."""
    text = resources.files("agentscale.memory").joinpath(f"prompts/{name}.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def fill(template: str, values: dict[str, str]) -> str:
    """Replace `{key}` for the given keys only; other braces (JSON, code) are left as they are."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def behavior_block(behaviors: list[Retrieved]) -> str:
    """The text put in front of a node's question: the behaviors, and the request to cite them."""
    if not behaviors:
        return ""
    texts = prompt("inject")
    lines = "\n".join(fill(texts["line"], {"name": b.name, "instruction": b.instruction}) for b in behaviors)
    return fill(texts["block"], {"behaviors": lines})


class GraphMemory:
    """The handbook side of one graph: retrieval (cached index) and usage counting."""

    def __init__(self, store: Store | None, memory: Memory) -> None:
        self.store = store
        self.name = memory.handbook
        self.top_k = memory.top_k
        self.topic = memory.topic
        self._retriever: Retriever | None = None
        self._warm = False

    def retriever(self) -> Retriever:
        if self.store is None:
            raise AgentScaleError(f"memory: handbook {self.name!r} needs a database; this graph runs without one")
        if self._retriever is None:
            book = Handbook(self.store, self.name)
            if self.topic is not None:
                book.check_topic(self.topic, "memory.topic")
            self._retriever = Retriever(book)
        return self._retriever

    def warm_up(self) -> None:
        """Load the embedding model and the index now (keeps seconds of loading out of a run's latency)."""
        if not self._warm:
            self.retriever().search("warm-up", 1)
            self._warm = True

    def retrieve(self, question: str) -> list[Retrieved]:
        """The question's top-k behaviors (blocking: database and embedding model; run it in a thread)."""
        return self.retriever().search(question, self.top_k, topic=self.topic)

    def block(self, behaviors: list[Retrieved]) -> str:
        return behavior_block(behaviors)

    def finish(self, result: RunResult, retrieved: list[Retrieved], record: bool) -> RunResult:
        """The run's result with what was retrieved and cited; count both if the run is recorded."""
        names = [b.name for b in retrieved]
        cited = cited_in(result.trace, set(names), behavior_block(retrieved))
        if record and self.store is not None and names:
            Handbook(self.store, self.name, embedder=None).record_use(names, cited)
        return replace(result, handbook=self.name, behaviors=names, cited=cited)


register_memory(GraphMemory, replace=False)


def cited_in(trace: list[NodeTrace], known: set[str], block: str) -> list[str]:
    """Names from `known` cited in the completions of the nodes that were shown them (`block` in
    their prompt). A discussion's CEO, which is not shown them, may repeat a name from a critique
    in its direction; a verifier or a custom role without `{behaviors}` may happen on one: neither is
    a use of the behavior."""
    shown = [t.completion for t in trace if t.status == "ok" and any(block in m["content"] for m in t.messages)]
    return find_citations(shown, known)


def stored_use(item: RunItem) -> dict[str, Any] | None:
    """What an item's graph drew on from a handbook, as `record_result` stored it (None: no `memory:`)."""
    return None if item.handbook_json is None else json.loads(item.handbook_json)


def record_outcome(store: Store, use: Mapping[str, Any] | None, correct: bool) -> None:
    """After scoring: count the behaviors a question cited (`use`: `RunResult.memory_use()`, or
    `stored_use` of its item when scored after a resume) as cited in a correct (or wrong) answer."""
    if use is not None and use["handbook"] is not None and use["cited"]:
        Handbook(store, use["handbook"], embedder=None).record_outcome(use["cited"], correct)


def take_back_use(store: Store, item: RunItem) -> None:
    """Undo what an item counted in its handbook (retrievals, citations, and their outcome once it was
    scored) before it is asked again: the new attempt counts anew."""
    use = stored_use(item)
    if use is not None and use["handbook"] is not None and use["behaviors"]:
        Handbook(store, use["handbook"], embedder=None).take_back(use["behaviors"], use["cited"], item.correct)


def with_handbook(spec: GraphSpec, handbook: str) -> GraphSpec:
    """`spec` with `memory: {handbook: ...}` (its `top_k` and `topic` kept when it already had memory)."""
    kept = spec.memory.model_dump(exclude={"handbook"}) if spec.memory is not None else {}
    return spec.model_copy(update={"memory": Memory(handbook=check_handbook_name(handbook), **kept)})
