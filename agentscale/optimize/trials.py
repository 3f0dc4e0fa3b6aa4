"""Evaluating candidates inside an optimization run: stored as they complete, replayed on resume,
and refused before they could break the run's spend cap.

Evaluations are numbered (`seq`) in the order the search asks for them. The search is deterministic
given its seed and what it observes, so a resumed run asks for the same evaluations in the same
order; those already stored are returned from the database (no call, no cost), and the run continues
exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from agentscale.errors import AgentScaleError
from agentscale.evaluate.engine import evaluate_items, first_unanswered
from agentscale.executors import Executor, LocalExecutor
from agentscale.graphs.spec import DEFAULT_MAX_TOKENS
from agentscale.models.cost import call_usd, estimate_prompt_tokens, known_total, usd_text
from agentscale.models.gateway import Gateway
from agentscale.models.registry import ResolvedModel
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice
from agentscale.optimize.objective import Observation, pooled, run_front, scalarize
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.space import SpaceSpec
from agentscale.runtime.graph import Graph
from agentscale.storage.db import Store
from agentscale.storage.tables import REFUSED, NodeCall, RunItem, SpendEntry, Trial
from agentscale.tasks import Task, TaskItem
from agentscale.tracing.hooks import span

# a call's prompt beyond its question and inputs: its role's instructions and answer format (the
# longest, in agents/prompts/roles.yaml, ≈ 500 characters) and the messages' own tokens
ROLE_PROMPT_ALLOWANCE = 256


class SpendCapReached(AgentScaleError):
    """The next evaluation could cross the run's `max_spend`; the search stops before it."""


def candidate_to_json(candidate: CandidateGraph) -> str:
    data: dict[str, object] = {"nodes": [[n.role, n.model] for n in candidate.nodes], "edges": sorted(candidate.edges)}
    if candidate.ceo is not None:
        data["ceo"] = [candidate.ceo.model, candidate.ceo.max_rounds]
    return json.dumps(data)


def candidate_from_json(text: str) -> CandidateGraph:
    data = json.loads(text)
    ceo = CeoChoice(*data["ceo"]) if data.get("ceo") else None
    return CandidateGraph(
        tuple(NodeChoice(role, model) for role, model in data["nodes"]),
        frozenset(tuple(e) for e in data["edges"]),
        ceo,
    )


TRAIN_KINDS = ("baseline", "search", "crown")  # evaluations on the train split (the test split's are "test")
AGENT_KEY = "optimizer-agent"  # node id and item key of the feedback agent's calls in the run's rows


def trial_observation(trial: Trial, verdicts: dict[str, bool], candidate: CandidateGraph | None = None) -> Observation:
    """A stored evaluation as the optimizer sees it; `candidate` saves re-reading its graph's JSON."""
    return Observation(
        candidate or candidate_from_json(trial.candidate_json),
        trial.accuracy,
        trial.compute,
        trial.latency_s,
        trial.n_items,
        trial.reward,
        trial.usd,
        verdicts,
    )


def _trial_seq(item_key: str) -> int | None:
    """The evaluation an item key belongs to: its items are recorded as `t<seq>:<item id>`."""
    prefix = item_key.partition(":")[0]
    return int(prefix[1:]) if prefix.startswith("t") and prefix[1:].isdigit() else None


def stored_verdicts(store: Store, run_id: str) -> dict[int, dict[str, bool]]:
    """Per evaluation (trial seq), each scored item's verdict, keyed by item id."""
    items = RunItem.__table__.c  # type: ignore[attr-defined]
    query = select(items.item_key, items.correct).where(items.run_id == run_id, items.correct.is_not(None))
    verdicts: dict[int, dict[str, bool]] = {}
    with store.engine.connect() as connection:
        for key, correct in connection.execute(query):
            seq = _trial_seq(key)
            if seq is not None:
                verdicts.setdefault(seq, {})[key.partition(":")[2]] = bool(correct)
    return verdicts


def failed_calls_by_trial(store: Store, run_id: str) -> dict[int, dict[str, str]]:
    """Per evaluation (trial seq), its items whose model calls failed after the gateway's retries,
    with the first failure ('node: error'): scored as they ended, they lower that graph's score."""
    return _by_trial(store.failed_calls_by_item(run_id))


def budget_stops_by_trial(store: Store, run_id: str) -> dict[int, dict[str, str]]:
    """Per evaluation (trial seq), its items that a budget cap stopped or was passed by, with why."""
    return _by_trial(store.budget_stops_by_item(run_id))


def _by_trial(by_item_key: dict[str, str]) -> dict[int, dict[str, str]]:
    """Item keys `t<seq>:<item id>` grouped by evaluation: seq -> item id -> the value."""
    grouped: dict[int, dict[str, str]] = {}
    for key, value in by_item_key.items():
        seq = _trial_seq(key)
        if seq is not None:
            grouped.setdefault(seq, {})[key.partition(":")[2]] = value
    return grouped


def _cut_seqs(store: Store, run_id: str, stored_seqs: Collection[int]) -> set[int]:
    """The evaluations an interruption cut: items stored under their seq, no trial row."""
    items = RunItem.__table__.c  # type: ignore[attr-defined]
    with store.engine.connect() as connection:
        keys = connection.execute(select(items.item_key).where(items.run_id == run_id)).scalars()
        return {seq for key in keys if (seq := _trial_seq(key)) is not None and seq not in stored_seqs}


def stored_front(store: Store, run_id: str, space: SpaceSpec, recorded: Sequence[str] | None) -> list[Observation]:
    """The run's Pareto front read back from its stored train evaluations, as the runner computes it
    (an interrupted run, which has no summary, gets the front of what it evaluated)."""
    return trials_front(store.trials(run_id), stored_verdicts(store, run_id), space, recorded=recorded)


def trials_front(
    trials: list[Trial],
    verdicts: dict[int, dict[str, bool]],
    space: SpaceSpec,
    candidates: dict[int, CandidateGraph] | None = None,
    *,
    recorded: Sequence[str] | None = None,
) -> list[Observation]:
    """The Pareto front of a run's train evaluations, from trials and verdicts already read
    (`candidates` by seq saves parsing each graph again). `recorded`: the front's graphs (described)
    as a finished run's summary lists them, which stand: a run of an earlier release kept points
    today's rule leaves out, and its summary, `front-N.yaml` files and their test scores hold them."""
    train = [t for t in trials if t.kind in TRAIN_KINDS]
    known = candidates or {}
    observations = [trial_observation(t, verdicts.get(t.seq, {}), known.get(t.seq)) for t in train]
    if recorded:
        graphs = {graph.candidate.describe(): graph for graph in pooled(observations, space.objective.accuracy)}
        if all(description in graphs for description in recorded):
            return [graphs[description] for description in recorded]
    return run_front(observations, space.objective, minibatch=space.optimizer.minibatch)


def recorded_front(summary: dict[str, Any]) -> list[str] | None:
    """The front's graphs (described) a finished run's summary lists, if it lists one."""
    points = summary.get("pareto")
    return [str(point.get("graph")) for point in points] if isinstance(points, list) and points else None


@dataclass
class TrialEvaluator:
    run_id: str
    space: SpaceSpec
    problem: SearchProblem
    task: Task
    gateway: Gateway
    concurrency: int = 8
    method: str | None = None  # names the pilot's stage in trace spans (`stage_of`)
    seq: int = 0
    replayed: int = 0
    evaluated: int = 0
    latency_ref: float = 1.0
    executor: Executor = field(default_factory=LocalExecutor)  # where each item's graph runs
    # worst-case spend of the evaluations in flight, and the last evaluation asked for: both let
    # evaluations run side by side while the spend cap and the order of stored trials hold
    _in_flight: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _tail: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    # graphs (canonical key) whose every evaluation in this process stopped on every item with no model
    # call answered, with the first item's reason: a model that is down, or a key that is missing,
    # scores 0 there, which a run must say rather than rank. One evaluation answered is enough to
    # leave: a brief outage over one race step is the failed-calls warning's, not a dead model
    unanswered: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _answered: set[str] = field(default_factory=set, init=False, repr=False)
    capped: str | None = field(default=None, init=False)  # why the spend cap refused an evaluation, once it has

    @property
    def store(self) -> Store:
        assert self.gateway.store is not None
        return self.gateway.store

    def __post_init__(self) -> None:
        self._read_stored()

    def _read_stored(self) -> None:
        # answered and refused evaluations alike, read once: a resumed run replays both
        self._stored = {trial.seq: trial for trial in self.store.trials(self.run_id, with_refused=True)}
        self._stored_verdicts: dict[int, dict[str, bool]] | None = None  # read on the first replay
        self._cut = _cut_seqs(self.store, self.run_id, self._stored)  # read only: the run may be another's yet

    def forget_from(self, seq: int) -> None:
        """Drop the stored evaluations from `seq` on (a resume that asks again the items whose calls
        failed): the search replays those before and asks the rest again, each step as it went the
        first time until a score differs, and the calls that answered come from the cache. Only
        once the run is claimed. What they paid stays in the ledger under their stage (`RETIRED`):
        the evaluations asked again may be numbered otherwise, and a test split's calls were counted
        as an interruption's."""
        kinds = {trial.seq: f"{trial.kind}@{trial.iteration}" for trial in self._stored.values()}
        _retire_spend(self.store, self.run_id, seq, kinds)
        self.store.drop_trials(self.run_id, seq)
        self._read_stored()

    def _verdicts(self, seq: int) -> dict[str, bool]:
        if self._stored_verdicts is None:
            self._stored_verdicts = stored_verdicts(self.store, self.run_id)
        return self._stored_verdicts.get(seq, {})

    def graph(self, candidate: CandidateGraph, name: str = "candidate") -> Graph:
        spec = self.space.graph_spec(candidate, name)  # of a validated space (a resumed run's: as stored)
        return Graph(spec, gateway=self.gateway, answer_format=self.task.answer_format, stored=True)

    async def evaluate(
        self, candidate: CandidateGraph, items: list[TaskItem], *, kind: str, iteration: int
    ) -> Observation:
        """Score `candidate` on `items` as evaluation number `seq` (taken before the first await, so
        evaluations started side by side are numbered in the order they were asked for). Rewards
        and stored trials follow that order too: the latency reference a reward uses is the one the
        same evaluations in turn would have seen, and a resumed run replays them the same way."""
        seq = self.seq
        self.seq += 1
        previous, own = self._tail, asyncio.get_running_loop().create_future()
        self._tail = own
        try:
            return await self._evaluate(seq, candidate, items, kind=kind, iteration=iteration, previous=previous)
        finally:
            own.set_result(None)  # those after it await it through shield: their cancelling cannot touch it

    async def _evaluate(
        self,
        seq: int,
        candidate: CandidateGraph,
        items: list[TaskItem],
        *,
        kind: str,
        iteration: int,
        previous: asyncio.Future[None] | None,
    ) -> Observation:
        stored = self._stored.get(seq)
        if stored is not None:
            if stored.key != candidate.canonical_key or stored.n_items != len(items):
                raise AgentScaleError(
                    f"cannot resume run {self.run_id}: evaluation {seq} differs from the stored one "
                    f"(another graph, or {stored.n_items} items stored against {len(items)} now; "
                    "was the space file or agentscale changed?)"
                )
            if stored.kind == REFUSED:
                self.capped = "the spend cap refused this evaluation when the run first asked for it"
                raise SpendCapReached(self.capped)
            if previous is not None:
                await asyncio.shield(previous)
            self.latency_ref = max(self.latency_ref, stored.latency_s)
            self.replayed += 1
            return trial_observation(stored, self._verdicts(seq), candidate)
        if seq in self._cut:
            # an interruption cut this evaluation: its item rows go, or the rerun stored them twice
            # (a refusal now, beside its trial). Asked again, not reused: the graph asked now may not
            # be the one cut (another release's order, an LLM agent's proposal); the response cache
            # answers what was paid
            self.store.drop_items(self.run_id, f"t{seq}:")
            self._cut.discard(seq)
        try:
            reserved = self._reserve(candidate, items)
        except SpendCapReached as refused:
            self.capped = str(refused)
            self._store_refusal(seq, candidate, len(items), iteration)
            raise
        # a trace groups the evaluation's item spans under what it was for (tracing: a no-op when off)
        attributes = {"run_id": self.run_id, "trial": seq, "stage": stage_of(kind, iteration, self.method)}
        attributes |= {"iteration": iteration, "graph": candidate.canonical_key, "items": len(items)}
        try:
            with span("evaluation", f"t{seq}", attributes) as traced:
                results = await evaluate_items(
                    self.graph(candidate),
                    self.task,
                    items,
                    run_id=self.run_id,
                    concurrency=self.concurrency,
                    item_prefix=f"t{seq}:",  # read back by _trial_seq
                    executor=self.executor,
                )
                correct = sum(r.correct for r in results)
                traced.set({"correct": correct})
        finally:
            self.release(reserved)
        if previous is not None:
            await asyncio.shield(previous)
        first = first_unanswered(results)
        key = candidate.canonical_key
        if first is None or not first.stopped_reason:
            self._answered.add(key)
            self.unanswered.pop(key, None)
        elif key not in self._answered:
            self.unanswered.setdefault(key, first.stopped_reason)
        latency = sum(r.usage.critical_path_s for r in results) / max(1, len(results))
        trial = self._trial(
            seq,
            candidate,
            iteration,
            kind,
            n_items=len(results),
            correct=correct,
            latency_s=latency,
            tokens=sum(r.usage.tokens for r in results),
            usd=known_total(r.usage.usd for r in results),
        )
        self.latency_ref = max(self.latency_ref, latency)
        trial.reward = self.reward(trial.accuracy, trial.compute, trial.latency_s)
        self.store.add(trial)
        self.evaluated += 1
        return trial_observation(trial, {r.item_id: r.correct for r in results}, candidate)

    def _store_refusal(self, seq: int, candidate: CandidateGraph, items: int, iteration: int) -> None:
        """Keep the refusal, so a resumed run refuses this evaluation again (see `Trial`)."""
        self.store.add(self._trial(seq, candidate, iteration, REFUSED, n_items=items))

    def _trial(
        self,
        seq: int,
        candidate: CandidateGraph,
        iteration: int,
        kind: str,
        *,
        n_items: int,
        correct: int = 0,
        latency_s: float = 0.0,
        tokens: int = 0,
        usd: float | None = None,
    ) -> Trial:
        return Trial(
            run_id=self.run_id,
            seq=seq,
            iteration=iteration,
            kind=kind,
            key=candidate.canonical_key,
            candidate_json=candidate_to_json(candidate),
            n_items=n_items,
            correct=correct,
            accuracy=correct / max(1, n_items),
            compute=self.problem.compute(candidate),
            latency_s=latency_s,
            tokens=tokens,
            usd=usd,
        )

    def reward(self, accuracy: float, compute: float, latency: float) -> float:
        return scalarize(self.space.objective, accuracy, compute, latency, self.problem.budget, self.latency_ref)

    # spend cap -------------------------------------------------------------------------------
    def _reserve(self, candidate: CandidateGraph, items: Sequence[TaskItem]) -> dict[str, float]:
        """Refuse an evaluation that could cross `max_spend` (raise `SpendCapReached`), counting what
        the run has spent and the worst case of the evaluations still in flight beside it; else
        hold this one's worst case in `_in_flight` until it finishes (the caller releases it)."""
        if not self._capped_spend():  # no cap: no worst case to work out, item by item, per evaluation
            return {}
        max_tokens = self.space.defaults.max_tokens or DEFAULT_MAX_TOKENS
        tokens = sum(candidate.worst_case_tokens(self._prompt_tokens(item), max_tokens) for item in items)
        aliases = [n.model for n in candidate.nodes if n.model] + ([candidate.ceo.model] if candidate.ceo else [])
        models = [self.problem.models[alias] for alias in aliases]
        return self._hold(len(items) * candidate.worst_case_calls(), tokens, models)

    def reserve_agent_call(
        self, model: ResolvedModel, messages: list[dict[str, str]], max_tokens: int
    ) -> dict[str, float]:
        """Hold the feedback agent's call against `max_spend` as an evaluation is held (`release` it
        after the call), or raise `SpendCapReached`: once the cap has refused an evaluation, no search
        step follows that could use the agent's proposal. Unchecked, the agent's calls crossed a
        6,000-token cap by 579 tokens, made after the cap had stopped the search (the budget audit)."""
        if self.capped is not None:
            raise SpendCapReached(f"{self.capped}; the search has stopped")
        return self._hold(1, estimate_prompt_tokens(messages) + max_tokens, [model])

    def release(self, held: dict[str, float]) -> None:
        for unit, amount in held.items():
            self._in_flight[unit] -= amount

    def _hold(self, calls: int, tokens: int, models: Sequence[ResolvedModel]) -> dict[str, float]:
        """Hold `calls` and `tokens` (and their USD at the dearest of `models`) in `_in_flight`, or
        raise `SpendCapReached` when what the run spent, what is held and these could cross a cap."""
        if not self._capped_spend():
            return {}
        cap = self.space.optimizer.max_spend
        spent = self.store.spend(self.run_id)
        held = self._in_flight
        projected = {"calls": float(calls), "tokens": float(tokens)}
        if cap.calls is not None and spent["calls"] + held.get("calls", 0) + projected["calls"] > cap.calls:
            raise SpendCapReached(f"max_spend.calls={cap.calls} would be crossed ({spent['calls']} spent)")
        if cap.tokens is not None and spent["tokens"] + held.get("tokens", 0) + projected["tokens"] > cap.tokens:
            raise SpendCapReached(f"max_spend.tokens={cap.tokens} would be crossed ({spent['tokens']} spent)")
        if cap.usd is not None:
            usd = spent["usd"]
            prices = [_usd_per_token(model) for model in models]
            known = [p for p in prices if p is not None]
            if usd is None or len(known) < len(prices):
                raise SpendCapReached("max_spend.usd is set but a model's price is unknown: set price in the space")
            projected["usd"] = projected["tokens"] * max(known, default=0.0)
            if usd + held.get("usd", 0.0) + projected["usd"] > cap.usd:
                raise SpendCapReached(f"max_spend.usd={cap.usd} would be crossed ({usd_text(usd)} spent)")
        for unit, amount in projected.items():
            held[unit] = held.get(unit, 0.0) + amount
        return projected

    def _capped_spend(self) -> bool:
        cap = self.space.optimizer.max_spend
        return cap.tokens is not None or cap.calls is not None or cap.usd is not None

    def _prompt_tokens(self, item: TaskItem) -> float:
        """The most a call's prompt on `item` is counted at: twice the task's mean length, or the item's
        own question (3 characters a token) with a role's instructions when that is longer. The mean
        alone is a guess for a task file (200 tokens): items of 1,500 words crossed a 2,000-token cap
        by 55% (the budget audit)."""
        own = estimate_prompt_tokens([{"content": item.question}]) + ROLE_PROMPT_ALLOWANCE
        return max(2 * self.problem.mean_prompt_tokens, own)


def _usd_per_token(model: ResolvedModel) -> float | None:
    both = call_usd(model, 1_000_000, 1_000_000)
    return None if both is None else both / 1_000_000


@dataclass(frozen=True)
class TrialCall:
    """A model call a trial's graph made (paid, or answered by the response cache)."""

    seq: int | None  # None: the optimizer agent's
    item_key: str
    cached: bool
    tokens: int
    usd: float | None
    truncated: bool  # the reply stopped at its max_tokens


def cut_replies(store: Store, run_id: str) -> tuple[int, int]:
    """(replies stopped at their max_tokens, replies) of a run's evaluations: a cut reply is scored on
    whatever it ended with, so a search ranks graphs partly on the cut, and it said nothing of it
    (48 of 96 replies of a real 0.5B model's search; eval of the crowned graph said so)."""
    replies = list(trial_calls(store, run_id))
    return sum(call.truncated for call in replies), len(replies)


def trial_calls(store: Store, run_id: str, *, with_agent: bool = False) -> Iterator[TrialCall]:
    """A run's model calls that belong to trials (node calls under item keys `t<seq>:<item>`), for
    the spend per stage in `--json` and the report; `with_agent` adds the optimizer agent's, which
    belong to none (seq None)."""
    calls = NodeCall.__table__.c  # type: ignore[attr-defined]
    columns = (calls.item_key, calls.cached, calls.prompt_tokens, calls.completion_tokens, calls.usd, calls.truncated)
    query = select(*columns).where(calls.run_id == run_id, calls.route.is_not(None), calls.status == "ok")
    with store.engine.connect() as connection:
        for key, cached, prompt_tokens, completion_tokens, usd, truncated in connection.execute(query):
            seq = _trial_seq(key)
            if seq is not None or (with_agent and key == AGENT_KEY):
                yield TrialCall(seq, key, cached, prompt_tokens + completion_tokens, usd, bool(truncated))


@dataclass
class PaidCalls:
    """Paid model calls (cache hits are not calls), their tokens and USD (None once a price is unknown)."""

    calls: int = 0
    tokens: int = 0
    usd: float | None = 0.0

    def add(self, tokens: int, usd: float | None) -> None:
        self.merge(PaidCalls(1, tokens, usd))

    def merge(self, other: PaidCalls) -> None:
        self.calls += other.calls
        self.tokens += other.tokens
        self.usd = known_total([self.usd, other.usd])


RETIRED = "retired:"  # a ledger key `retired:<kind>@<iteration>:t<seq>:<item>`: a call of an evaluation asked again


def _retire_spend(store: Store, run_id: str, from_seq: int, kinds: dict[int, str]) -> None:
    """Key the ledger rows of the evaluations about to be dropped (from `from_seq` on) by their kind
    and iteration (`kinds`: `search@0`, so a pilot's stay the pilot's), not their seq: every such
    row, an evaluation cut short included (its kind unknown: counted as a cut one is, under search),
    whether or not it stored an item (a cut test split's calls went to the crowning evaluation that
    took its number)."""
    spend = SpendEntry.__table__.c  # type: ignore[attr-defined]
    with store.engine.begin() as connection:
        keys = connection.execute(select(spend.item_key).where(spend.run_id == run_id).distinct()).scalars()
        seqs = {seq for key in keys if key is not None and (seq := _trial_seq(key)) is not None and seq >= from_seq}
        for seq in seqs:
            kind = kinds.get(seq, "")
            connection.execute(
                update(SpendEntry.__table__)  # type: ignore[attr-defined]
                .where(spend.run_id == run_id, spend.item_key.startswith(f"t{seq}:"))
                .values(item_key=f"{RETIRED}{kind}:" + spend.item_key)
            )


@dataclass
class RunPaid:
    """A run's paid calls by whom they were for: each trial (by seq, stored or not), the feedback
    agent, and the rest (ledger rows of a release whose ledger did not name items); `total` is the
    whole ledger's."""

    trials: dict[int, PaidCalls]
    agent: PaidCalls
    unknown: PaidCalls
    total: PaidCalls
    retired: dict[str, PaidCalls] = field(default_factory=dict)  # by kind@iteration: evaluations asked again


def run_paid(store: Store, run_id: str) -> RunPaid:
    """Where a run's paid calls went, from the spend ledger, whose rows name their item: a call of an
    item cut short by an interruption counts with its trial, though the item's rows were never
    written. A trial's own node calls count instead when they are more (a run stored by a release
    whose ledger did not name items); what the ledger holds beyond the trials and the agent is
    unknown."""
    total, agent = PaidCalls(), PaidCalls()
    ledger: dict[int, PaidCalls] = {}
    retired: dict[str, PaidCalls] = {}
    spend = SpendEntry.__table__.c  # type: ignore[attr-defined]
    query = select(spend.item_key, spend.prompt_tokens, spend.completion_tokens, spend.usd).where(
        spend.run_id == run_id
    )
    with store.engine.connect() as connection:
        for key, prompt_tokens, completion_tokens, usd in connection.execute(query):
            total.add(prompt_tokens + completion_tokens, usd)
            seq = None if key is None else _trial_seq(key)
            if key == AGENT_KEY:
                agent.add(prompt_tokens + completion_tokens, usd)
            elif key is not None and key.startswith(RETIRED):
                kind = key[len(RETIRED) :].partition(":")[0]
                retired.setdefault(kind, PaidCalls()).add(prompt_tokens + completion_tokens, usd)
            elif seq is not None:
                ledger.setdefault(seq, PaidCalls()).add(prompt_tokens + completion_tokens, usd)
    nodes: dict[int, PaidCalls] = {}
    agent_nodes = PaidCalls()
    for call in trial_calls(store, run_id, with_agent=True):
        if not call.cached:
            owner = agent_nodes if call.seq is None else nodes.setdefault(call.seq, PaidCalls())
            owner.add(call.tokens, call.usd)
    agent = _more(agent, agent_nodes)
    trials = {seq: _more(ledger.get(seq, PaidCalls()), nodes.get(seq, PaidCalls())) for seq in ledger.keys() | nodes}
    accounted = [agent, *trials.values(), *retired.values()]
    usd = None if total.usd is None or any(p.usd is None for p in accounted) else total.usd
    unknown = PaidCalls(
        max(0, total.calls - sum(p.calls for p in accounted)),
        max(0, total.tokens - sum(p.tokens for p in accounted)),
        None if usd is None else max(0.0, usd - sum(p.usd or 0.0 for p in accounted)),
    )
    return RunPaid(trials, agent, unknown, total, retired)


def _more(stored: PaidCalls, recorded: PaidCalls) -> PaidCalls:
    """The ledger's count of someone's calls, unless their node calls hold more (an older ledger)."""
    return stored if stored.calls >= recorded.calls else recorded


_STAGE_OF_KIND = {"baseline": "single calls", "search": "search", "crown": "crowning", "test": "test"}
STAGES = ("single calls", "pilot", "search", "crowning", "test")
"""An optimization's stages in the order it runs them (the pilot is Agent-REINFORCE's alone)."""


def stage_of(kind: str, iteration: int, method: str | None) -> str:
    """What an evaluation was for, by its trial's kind: the single calls raced on the train split
    ("baseline"), Agent-REINFORCE's pilot (its iteration 0: the models alone), the search, the
    crowning race, the test split."""
    if kind == "search" and iteration == 0 and method == "agent-reinforce":
        return "pilot"
    return _STAGE_OF_KIND.get(kind, "search")


def calls_by_stage(store: Store, run_id: str, method: str | None) -> dict[str, int]:
    """A run's paid model calls by stage (`usage.calls_by_stage`, `STAGES`; the pilot's only for
    Agent-REINFORCE), counted per trial (`run_paid`), so calls made before a resume, or by items an
    interruption cut short, stay with their own stage. The rest counts under search: the optimizer
    agent's calls, which belong to no trial, and those of an evaluation cut short and not resumed (it
    has no stored kind)."""
    paid = run_paid(store, run_id)
    stages = {stage: 0 for stage in STAGES if stage != "pilot" or method == "agent-reinforce"}
    for trial in store.trials(run_id):
        stages[stage_of(trial.kind, trial.iteration, method)] += paid.trials.get(trial.seq, PaidCalls()).calls
    for retired, spent in paid.retired.items():  # evaluations asked again (`--retry-errors`): their first try
        kind, _, iteration = retired.partition("@")  # an earlier release's keys name the kind alone
        stages[stage_of(kind, int(iteration or -1), method)] += spent.calls
    stages["search"] += max(0, paid.total.calls - sum(stages.values()))  # the ledger, read once
    return stages
