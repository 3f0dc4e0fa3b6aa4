"""What a graph run returns: the answer, a per-node trace and usage totals."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from agentscale.graphs.simulated import is_simulated


@dataclass
class NodeTrace:
    """One node's execution. `status` is ok, failed (call error) or skipped (budget, no inputs)."""

    node_id: str
    role: str
    model: str | None = None
    route: str | None = None
    status: str = "ok"
    messages: list[dict[str, str]] = field(default_factory=list)
    completion: str | None = None
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float | None = 0.0
    usd: float | None = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    truncated: bool = False  # the reply stopped at its max_tokens (finish_reason "length"): maybe cut mid-answer
    finish_order: int = 0  # the order nodes actually finished in this process
    # when the node finished on the run's modelled clock: its latest predecessor's finish plus its own call's
    # latency (a cache hit carries the original call's), so "ties go to the first finished" picks the same
    # answer when the run is replayed from the cache, where every call returns at once
    finished_at_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: asdict() deep-copies the messages, and this runs for every node of every run
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["messages"] = [dict(m) for m in self.messages]
        return data


@dataclass
class Usage:
    """Resources of a run. Cached calls count like real ones (the graph's cost does not depend on the
    cache); `calls` counts real model calls and `cached_calls` the ones answered from the cache.
    `flops`/`usd` are None when a model's size or price is unknown."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float | None = 0.0
    usd: float | None = 0.0
    latency_s: float = 0.0
    critical_path_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count_own_hits_as_calls(self, paid_by_run: int) -> None:
        """Count as calls the cache hits that were this run's own paid calls (`paid_by_run`: the calls
        the run's ledger holds for this item). An item answered again after a kill -9 finds in the
        cache what its first attempt paid: an eval read "339 calls (+21 cache hits)" where the
        ledger held 360 and an uninterrupted run says 360, no hits."""
        own = min(max(paid_by_run - self.calls, 0), self.cached_calls)
        self.calls += own
        self.cached_calls -= own

    def add(self, other: Usage) -> None:
        """Accumulate another run's usage (latencies add up: runs are sequential in a sum)."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.flops = None if self.flops is None or other.flops is None else self.flops + other.flops
        self.usd = None if self.usd is None or other.usd is None else self.usd + other.usd
        self.latency_s += other.latency_s
        self.critical_path_s += other.critical_path_s


@dataclass
class RoundRecord:
    """One CEO decision and the round it led to (`ran` False: the CEO stopped, or the budget did)."""

    index: int
    ran: bool = False
    ceo_replies: list[str] = field(default_factory=list)
    ceo_error: str | None = None
    requested: dict[str, Any] | None = None  # the CEO's parsed decision, before clamping
    decision: dict[str, Any] = field(default_factory=dict)  # what was applied
    nodes: list[str] = field(default_factory=list)
    answers: dict[str, str | None] = field(default_factory=dict)
    answer: str | None = None
    evaluator: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    stopped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.index,
            "ran": self.ran,
            "ceo_replies": list(self.ceo_replies),
            "ceo_error": self.ceo_error,
            "requested": self.requested,
            "decision": self.decision,
            "nodes": list(self.nodes),
            "answers": dict(self.answers),
            "answer": self.answer,
            "evaluator": self.evaluator,
            "usage": self.usage.to_dict(),
            "stopped_reason": self.stopped_reason,
        }


@dataclass
class RunResult:
    """The answer to one question plus how it was reached.

    One type for every graph; the optional fields are set by what the graph has: `rounds` by a
    `coordinator:` (the discussion's rounds, None otherwise), `handbook`, `behaviors` and `cited` by a
    `memory:` (the handbook's name, the behaviors retrieved best first, those cited by name in any
    node's completion; `handbook` None otherwise). Both can be set on one result."""

    question: str
    answer: str | None
    trace: list[NodeTrace]
    usage: Usage
    run_id: str | None = None
    stopped_reason: str | None = None
    rounds: list[RoundRecord] | None = None
    handbook: str | None = None
    behaviors: list[str] = field(default_factory=list)
    cited: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{t.node_id}: {t.error}" for t in self.trace if t.status == "failed" and t.error]

    @property
    def why_no_answer(self) -> str | None:
        """Why the question got no answer (None when it got one): the budget's stop, else the first
        node failure, else replies that held none in the graph's `answer_format` (a one-node graph
        said nothing then: no stop, no error)."""
        if self.answer is not None:
            return None
        unanswered = "no reply held an answer in the graph's format"
        return self.stopped_reason or (self.errors[0] if self.errors else unanswered)

    @property
    def simulated(self) -> bool:
        """Whether `sim/` models answered (their answers say how a search behaves, never how a real
        model answers): every JSON output of agentscale says so, and this one lacked it."""
        return is_simulated(node.route for node in self.trace)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (what `run --json` prints): the trace as a list of node dicts, with
        `rounds` and `memory` only when the graph has a coordinator or a handbook."""
        trace = [node.to_dict() for node in self.trace]
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "question": self.question,
            "answer": self.answer,
            "stopped_reason": self.stopped_reason,
            "usage": self.usage.to_dict(),
            "trace": trace,
            "simulated": self.simulated,
        }
        if self.rounds is not None:
            data["rounds"] = [r.to_dict() for r in self.rounds]
        if self.handbook is not None:
            data["memory"] = self.memory_use()
        return data

    def memory_use(self) -> dict[str, Any]:
        """What a `memory:` graph drew on: the handbook, the behaviors shown, those cited (as stored
        with an item and printed by `run --json`)."""
        return {"handbook": self.handbook, "behaviors": self.behaviors, "cited": self.cited}


@dataclass
class GraphEvent:
    """A streamed event: `node_started`, `node_finished` (with its trace) or `final` (with the result)."""

    kind: str
    node_id: str | None = None
    role: str | None = None
    trace: NodeTrace | None = None
    result: RunResult | None = None
