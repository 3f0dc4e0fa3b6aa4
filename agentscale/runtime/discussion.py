"""Running a graph that has a `coordinator:` as a multi-round discussion steered by a CEO model.

Each round: the CEO decides (continue/stop, how many agents, a direction, a token budget; see
:mod:`agentscale.agents.coordinator`), the round's worker nodes run, the aggregator (the graph's
output node when it has inputs) merges them, and an optional evaluator judges the round's answer.

The graph's nodes are the *pool and template* of the team (docs/coordinator.md):

- the **aggregator** is the output node when it has predecessors (fuser, verifier, vote, critic...);
  it runs in every round over its own inputs that run and the workers no other worker of the round
  reads (copies among them);
- the **pool** is every other model node, in topological order; a round with ``n`` agents runs the
  first ``n`` of them, and when ``n`` exceeds the pool it cycles through it again, adding copies
  (``r2.s1#2``) with the same role, model and predecessors;
- edges are kept between the nodes that run; a node whose predecessors all sit out, and every
  source node from round 2 on, sees the current best answer instead (refinement).

One :class:`~agentscale.runtime.calls.ModelCalls` — one budget ledger, one set of sample slots —
covers the whole run (CEO, workers, aggregator, evaluator); every call goes through it and the
gateway (cache, retries, spend ledger). Node ids in the trace are ``r<round>.<node>``,
``r<round>.ceo`` and ``r<round>.evaluator``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from agentscale.agents.coordinator import (
    MAX_ATTEMPTS,
    UNUSABLE_REPLIES,
    VERDICT_SCHEMA,
    Decision,
    DecisionParseError,
    Limits,
    RawDecision,
    Verdict,
    ceo_messages,
    clamp,
    decision_schema,
    evaluator_messages,
    fallback,
    parse_decision,
    parse_verdict,
    retry_messages,
)
from agentscale.agents.roles import Candidate, majority_vote
from agentscale.agents.tester import passes_stated_examples
from agentscale.errors import BudgetExceeded
from agentscale.graphs.result import GraphEvent, NodeTrace, RoundRecord, RunResult, Usage
from agentscale.graphs.spec import ROLES_NEEDING_INPUTS, Coordinator, NodeSpec
from agentscale.models.cost import estimate_prompt_tokens
from agentscale.models.gateway import DEFAULT_TEMPERATURE, CallRequest
from agentscale.models.registry import ResolvedModel
from agentscale.runtime.calls import ModelCalls, calls_usage, record_broken, record_result
from agentscale.runtime.execute import (
    GraphRuntime,
    RunOptions,
    answer_model_free,
    completion_cap,
    first_set,
    modelled_finish,
    node_span,
    traced_fields,
    usable_candidates,
    why_no_inputs,
)

CEO_MAX_TOKENS = 256  # completion budget of one CEO call (a JSON object)
EVALUATOR_MAX_TOKENS = 256
CEO_TEMPERATURE = 0.0  # retries change the prompt (correction message), so greedy decoding is fine
FEEDBACK_EXCERPT_CHARS = 400  # how much of each critique the next CEO call reads
SOLUTION_HEAD_CHARS, SOLUTION_TAIL_CHARS = 1000, 2000  # a long solution shown to the CEO/evaluator: its ends
# roles whose text the next CEO call reads besides their answer: reviews, and the tester's record of
# which candidate passed how many of the question's stated examples (an execution check the CEO
# cannot do itself)
REVIEW_LABELS = {"critic": "critique", "verifier": "critique", "tester": "examples run"}


@dataclass(frozen=True)
class _Share:
    """A round's calls' completion budget under a token cap, and what the round needs at the least."""

    tokens: int  # each call's max_tokens
    cap: int  # the budget's max_tokens
    smallest_round: int  # the round's calls, each with its prompt and `min_tokens`


@dataclass(frozen=True)
class Slot:
    """One node execution in a round: its trace id, its template node and the slots it reads."""

    id: str
    node: NodeSpec
    predecessors: tuple[str, ...]


class TeamPlan:
    """How the graph's nodes become a team: the pool of workers and the per-round aggregator."""

    def __init__(self, runtime: GraphRuntime) -> None:
        topology = runtime.topology
        output = runtime.output
        self.runtime = runtime
        self.aggregator: str | None = output if topology.predecessors[output] else None
        self.pool: list[str] = [
            n for n in topology.order if n != self.aggregator and runtime.roles[runtime.nodes[n].role].calls_model
        ]
        # model-free nodes (a vote inside the graph) ride along when one of their inputs runs
        self.passive: list[str] = [
            n for n in topology.order if n != self.aggregator and not runtime.roles[runtime.nodes[n].role].calls_model
        ]

    def slots(self, round_index: int, agents: int) -> tuple[list[Slot], Slot | None]:
        """The round's worker slots (topological order, copies last) and its aggregator slot."""
        runtime = self.runtime
        preds = runtime.topology.predecessors
        prefix = f"r{round_index}."
        chosen = set(self.pool[: min(agents, len(self.pool))])
        for node_id in runtime.topology.order:  # keep votes whose inputs run (in order: chains work)
            if node_id in self.passive and any(p in chosen for p in preds[node_id]):
                chosen.add(node_id)
        slots = [
            Slot(prefix + n, runtime.nodes[n], tuple(prefix + p for p in preds[n] if p in chosen))
            for n in runtime.topology.order
            if n in chosen
        ]
        for extra in range(len(self.pool), agents):  # cycle through the pool for larger teams
            template = self.pool[extra % len(self.pool)]
            copy = extra // len(self.pool) + 1
            slots.append(
                Slot(
                    f"{prefix}{template}#{copy}",
                    runtime.nodes[template],
                    tuple(prefix + p for p in preds[template] if p in chosen),
                )
            )
        aggregator = None
        if self.aggregator is not None:  # its own inputs that run, and what no other node reads (copies)
            read = {p for s in slots for p in s.predecessors}
            wired = {prefix + p for p in preds[self.aggregator]}
            inputs = tuple(s.id for s in slots if s.id not in read or s.id in wired)
            aggregator = Slot(prefix + self.aggregator, runtime.nodes[self.aggregator], inputs)
        return slots, aggregator


def limits_for(runtime: GraphRuntime, plan: TeamPlan) -> Limits:
    """The coordinator's ranges, resolved against the graph (defaults: the graph as written)."""
    coordinator = runtime.spec.coordinator
    assert coordinator is not None
    calling = [*plan.pool, *([plan.aggregator] if plan.aggregator else [])]
    graph_tokens = max(completion_cap(runtime.nodes[n], runtime.spec) for n in calling)
    max_tokens = coordinator.max_tokens or graph_tokens
    budget = runtime.spec.budget
    if budget is not None and budget.max_tokens is not None:
        max_tokens = min(max_tokens, budget.max_tokens)
    max_agents = coordinator.max_agents or max(len(plan.pool), coordinator.min_agents)
    return Limits(
        min_agents=min(coordinator.min_agents, max_agents),
        max_agents=max_agents,
        min_tokens=min(coordinator.min_tokens, max_tokens),
        max_tokens=max_tokens,
    )


def round_calls(runtime: GraphRuntime, plan: TeamPlan, agents: int) -> tuple[int, int]:
    """A round's model calls with `agents` workers, and how many worker replies its aggregator reads
    in its prompt (all of them when the aggregator calls a model, else none)."""
    aggregator = plan.aggregator
    aggregates = bool(aggregator and runtime.roles[runtime.nodes[aggregator].role].calls_model)
    return agents + aggregates, agents if aggregates else 0


def smallest_round_tokens(calls: int, read: int, prompt: int, min_tokens: int) -> int:
    """The tokens a round needs at the least: each call its prompt and `min_tokens`, the aggregator's
    prompt also every worker's reply at `min_tokens`. Below it a round's replies are cut under the
    floor, so the round does not run."""
    return calls * (prompt + min_tokens) + read * min_tokens


async def run_discussion(runtime: GraphRuntime, question: str, options: RunOptions) -> RunResult:
    """Answer `question` with `runtime`'s graph run as rounds under its coordinator."""
    discussion = Discussion(runtime, question, options)
    try:
        return await discussion.run()
    except BaseException as exc:
        traces = discussion.finished_traces()
        record_broken(runtime.gateway.store, options.run_row, exc, options.item_key, traces, question)
        raise


class Discussion:
    """The state of one question's discussion."""

    def __init__(self, runtime: GraphRuntime, question: str, options: RunOptions) -> None:
        coordinator = runtime.spec.coordinator
        if coordinator is None:
            raise ValueError("run_discussion needs a graph with a coordinator")
        self.runtime = runtime
        self.coordinator: Coordinator = coordinator
        self.question = question
        self.options = options
        self.calls = ModelCalls(runtime.gateway, runtime.spec.budget, options.run_id, options.item_key)  # one ledger
        self.plan = TeamPlan(runtime)
        self.limits = limits_for(runtime, self.plan)
        self.ceo_model = runtime.callers["coordinator.model"]
        self.evaluator_model = runtime.callers.get("coordinator.evaluator")
        self.traces: list[NodeTrace] = []
        self._round_done: dict[str, NodeTrace] = {}  # the round's slots that have finished, by id
        self.rounds: list[RoundRecord] = []
        self.stopped_reason: str | None = None
        self.best: str | None = None
        self.best_solution: str | None = None  # the text of the reply that gave `best` (what the CEO reads)
        self._round_solution: str | None = None
        self._finished = 0
        self._started = time.perf_counter()
        self._critical_path = 0.0
        # the budget refused (or its time cap ended) a worker's or the aggregator's call: a round was
        # cut short. A refusal of the CEO's or the evaluator's call ends the discussion between two
        # rounds, its documented end (an eval under a budget said "4 of 4 items did not finish" with
        # every answer right)
        self._round_cut = False
        self._retrieved: list[Any] = []  # the handbook's behaviors for this question (`memory:`)
        self._behaviors: str | None = None  # their prompt block

    # -- the loop ---------------------------------------------------------------------------------

    def finished_traces(self) -> list[NodeTrace]:
        """Every call that has finished, those of a round stopped midway too (a round's traces join
        `traces` when the whole round is done): what a stopped run keeps (`record_broken`)."""
        kept = {id(trace) for trace in self.traces}
        return [*self.traces, *(t for t in self._round_done.values() if id(t) not in kept)]

    async def run(self) -> RunResult:
        memory = self.runtime.memory
        if memory is not None:
            self._retrieved = await asyncio.to_thread(memory.retrieve, self.question)
            self._behaviors = memory.block(self._retrieved) or None
        limits = self.limits
        current = Decision(  # the graph as written, within the configured ranges
            "continue",
            min(max(len(self.plan.pool), limits.min_agents), limits.max_agents),
            "",
            min(max(self._default_tokens(), limits.min_tokens), limits.max_tokens),
            "initial",
        )
        feedback: str | None = None
        for index in range(1, self.coordinator.max_rounds + 1):
            record = RoundRecord(index)
            self.rounds.append(record)
            first_trace, path_before = len(self.traces), self._critical_path
            decision, refused = await self._decide(record, current, feedback)
            # with no answer yet, a refusal (the CEO's call, the next round) still lets a round run
            # whose replies can have min_tokens; one cut below answers nothing (round 1 under a
            # budget of 300 tokens ran replies of 1 token) and only pays its prompts
            cut_below_the_floor = decision.max_tokens < self.limits.min_tokens
            if refused is not None and (self.best is not None or cut_below_the_floor):
                record.stopped_reason = self.stopped_reason = refused
                record.decision = decision.to_dict()
                record.usage = self._round_usage(first_trace, path_before)
                break
            record.decision = decision.to_dict()
            if decision.decision == "stop":
                record.usage = self._round_usage(first_trace, path_before)
                break
            current = decision
            await self._round(record, decision)
            record.ran = True
            if record.answer is not None:
                self.best, self.best_solution = record.answer, self._round_solution
            if self.stopped_reason is not None:  # a call was refused by the budget: end with the best
                record.stopped_reason = self.stopped_reason
                record.usage = self._round_usage(first_trace, path_before)
                break
            if index < self.coordinator.max_rounds:
                feedback = await self._feedback(record)
            record.usage = self._round_usage(first_trace, path_before)
        return self._finish()

    async def _stop_refused(self) -> str | None:
        """Why the CEO may not stop yet, or None: there is no answer yet, or (`stop_guard:
        stated_examples`, code answers) the answer fails an example the question states."""
        if self.best is None:
            return "the CEO said stop, ignored: no answer yet"
        guarded = self.coordinator.stop_guard == "stated_examples"  # code answers (checked by GraphRuntime)
        if guarded and await passes_stated_examples(self.question, self.best) is False:
            return "the CEO said stop, refused: the answer fails an example the question states"
        return None

    async def _decide(
        self, record: RoundRecord, current: Decision, feedback: str | None
    ) -> tuple[Decision, str | None]:
        """Ask the CEO (up to MAX_ATTEMPTS replies); returns the applied decision and a budget refusal."""
        messages = ceo_messages(
            self.question, self.best_solution, feedback, self._resources(record.index), current, self.limits
        )
        error = "no reply"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            read: list[RawDecision | DecisionParseError] = []
            trace = await self._call(
                f"r{record.index}.ceo",
                "ceo",
                self.ceo_model,
                messages,
                CEO_TEMPERATURE,
                CEO_MAX_TOKENS,
                None,
                json_schema=decision_schema(self.limits) if self.coordinator.structured_output else None,
                read=partial(_read_decision, attempt=attempt, into=read),
            )
            if trace.status == "skipped":  # the budget cannot pay for the CEO
                record.ceo_error = trace.error
                reason = f"CEO call refused: {trace.error}"
                return self._fallen_back(current, reason, record.index, messages, trace.error)
            if trace.status == "failed":
                record.ceo_error = trace.error
                reason = f"CEO call failed: {trace.error}"
                return self._fallen_back(current, reason, record.index, messages, None)
            reply = trace.completion or ""
            record.ceo_replies.append(reply)
            (raw,) = read
            if isinstance(raw, DecisionParseError):
                error = str(raw)
                if attempt < MAX_ATTEMPTS:
                    messages = retry_messages(messages, reply, error, self.limits)
                continue
            record.requested = raw.model_dump()
            if raw.decision == "stop":
                refusal = await self._stop_refused()
                if refusal is None:  # the CEO stopped: whether another round would fit is moot
                    return clamp(raw, self.limits, current), None
                # continue as before, fitted to the budget left like any decision (kept at the current
                # max_tokens, the round's replies overran their share); no direction: it argued for stopping
                raw = RawDecision(decision="continue", agents=current.agents, max_tokens=current.max_tokens)
                fitted, refused = self._fitted(raw, current, record.index, estimate_prompt_tokens(messages))
                return replace(fitted, notes=(*fitted.notes, refusal)), refused
            return self._fitted(raw, current, record.index, estimate_prompt_tokens(messages))
        record.ceo_error = error
        reason = f"{UNUSABLE_REPLIES}; last: {error}"
        return self._fallen_back(current, reason, record.index, messages, None)

    def _fallen_back(
        self, current: Decision, reason: str, index: int, messages: list[dict[str, str]], refused: str | None
    ) -> tuple[Decision, str | None]:
        """The fallback (continue as before) fitted to the budget left as a CEO's decision would be:
        it kept the current max_tokens, so with no answer yet (round 1) a team's replies could each
        take more than their share and the round's last calls were refused."""
        decision = fallback(current, reason)
        raw = RawDecision(decision="continue", agents=decision.agents, max_tokens=decision.max_tokens)
        fitted, refusal = self._fitted(raw, current, index, estimate_prompt_tokens(messages))
        return replace(fitted, source="fallback", notes=(reason, *fitted.notes)), refused or refusal

    async def _round(self, record: RoundRecord, decision: Decision) -> None:
        slots, aggregator = self.plan.slots(record.index, decision.agents)
        inputs = [Candidate("best", self.best)] if self.best else []
        tasks: dict[str, asyncio.Task[NodeTrace]] = {}
        done: dict[str, NodeTrace] = {}
        depth: dict[str, int] = {}  # a slot's step: its calls and its round's others of one depth side by side
        for slot in [*slots, *([aggregator] if aggregator is not None else [])]:  # in topological order
            depth[slot.id] = 1 + max((depth[p] for p in slot.predecessors), default=-1)

        async def run_slot(slot: Slot, is_source_fallback: bool) -> NodeTrace:
            if slot.predecessors:
                await asyncio.gather(*(tasks[p] for p in slot.predecessors))
            if slot.predecessors:
                candidates = usable_candidates([done[p] for p in slot.predecessors])
            else:
                candidates = list(inputs) if is_source_fallback else []
            inputs_done = [done[p] for p in slot.predecessors]
            trace = await self._node(slot, candidates, decision, inputs_done, (record.index, depth[slot.id]))
            done[slot.id] = trace  # before the event: a callback that raises on it leaves the call kept
            self._emit(GraphEvent("node_finished", slot.id, slot.node.role, trace=trace))
            return trace

        for slot in slots:
            tasks[slot.id] = asyncio.ensure_future(run_slot(slot, True))
        self._round_done = done
        try:
            workers = list(await asyncio.gather(*tasks.values()))
        except BaseException:  # one slot failed (a callback's error): gather leaves the others running
            await _cancel_and_wait(tasks.values())
            raise
        self.traces.extend(workers)
        record.nodes = [s.id for s in slots]
        record.answers = {t.node_id: t.answer for t in workers}
        # the round's critical path counts every node's own time (a tester's sandbox runs too); the
        # modelled clock of `finished_at_s` leaves model-free nodes out, for ties only
        latencies = {t.node_id: t.latency_s for t in workers}
        finish_at: dict[str, float] = {}
        for slot in slots:  # slots are in topological order
            finish_at[slot.id] = latencies[slot.id] + max((finish_at[p] for p in slot.predecessors), default=0.0)
        path = max(finish_at.values(), default=0.0)
        answer: str | None = None
        if aggregator is not None:
            tasks[aggregator.id] = asyncio.ensure_future(run_slot(aggregator, False))
            final = await tasks[aggregator.id]
            self.traces.append(final)
            record.nodes.append(aggregator.id)
            record.answers[final.node_id] = final.answer
            path += final.latency_s
            if final.status == "ok" and final.answer:
                answer = final.answer
            frontier = [done[p] for p in aggregator.predecessors]
        else:
            read = {p for s in slots for p in s.predecessors}
            frontier = [done[s.id] for s in slots if s.id not in read]
        if answer is None:
            answer = majority_vote(usable_candidates(frontier), self.runtime.answer_format)
        self._critical_path += path
        record.answer = answer
        drafts = [final] if aggregator is not None and self.runtime.roles[final.role].kind == "generate" else []
        self._round_solution = solution_text(answer, [*drafts, *frontier])

    async def _feedback(self, record: RoundRecord) -> str | None:
        """The evaluator's advice on the round's answer, else the round's answers and critiques."""
        if self.evaluator_model is not None and record.answer is not None:
            verdicts: list[Verdict] = []
            trace = await self._call(
                f"r{record.index}.evaluator",
                "evaluator",
                self.evaluator_model,
                evaluator_messages(self.question, self._round_solution or record.answer),
                CEO_TEMPERATURE,
                EVALUATOR_MAX_TOKENS,
                None,
                json_schema=VERDICT_SCHEMA if self.coordinator.structured_output else None,
                read=partial(_read_verdict, into=verdicts),
            )
            if verdicts:
                (verdict,) = verdicts
                record.evaluator = {"correct": verdict.correct, "advice": verdict.advice}
                judged = {True: "correct", False: "incorrect", None: "unclear"}[verdict.correct]
                return f"Evaluator: the solution is {judged}. Advice: {verdict.advice or 'none'}"
            record.evaluator = {"error": trace.error}
        lines = []
        for node_id in record.nodes:
            trace = next(t for t in self.traces if t.node_id == node_id)
            if trace.status != "ok":
                lines.append(f"- {node_id} ({trace.role}): {trace.status}")
                continue
            line = f"- {node_id} ({trace.role}) answered: {trace.answer}"
            label = REVIEW_LABELS.get(trace.role)
            if label is not None and trace.completion:
                excerpt = " ".join(trace.completion.split())[:FEEDBACK_EXCERPT_CHARS]
                line += f"\n  {label}: {excerpt}"
            lines.append(line)
        return "\n".join(lines) or None

    # -- calls ------------------------------------------------------------------------------------

    async def _node(
        self, slot: Slot, candidates: list[Candidate], decision: Decision, inputs: list[NodeTrace], step: Hashable
    ) -> NodeTrace:
        """Run one slot; `inputs` are its predecessors' traces (for the modelled clock); `step` the
        ledger's (`ModelCalls.call`)."""
        runtime = self.runtime
        node = slot.node
        role = runtime.roles[node.role]
        fmt = runtime.answer_format
        self._emit(GraphEvent("node_started", slot.id, node.role))
        if not candidates and self._needs_inputs(node):
            trace = NodeTrace(slot.id, node.role, model=node.model, status="skipped", error=why_no_inputs(inputs))
        elif not role.calls_model:
            trace = NodeTrace(slot.id, node.role)
            with node_span(slot.id, node.role, None, self.options.run_id) as traced:
                await answer_model_free(trace, role, self.question, candidates, fmt)
                traced.set(traced_fields(trace))
        else:
            defaults = runtime.spec.defaults
            model = runtime.models[node.id]
            messages = role.messages(
                self.question,
                candidates,
                fmt,
                direction=decision.direction or None,
                behaviors=self._behaviors,
                answer_style=model.answer_style,
            )
            temperature = first_set(node.temperature, defaults.temperature, DEFAULT_TEMPERATURE)
            top_p = node.top_p if node.top_p is not None else defaults.top_p

            def answer(trace: NodeTrace) -> None:
                trace.answer = role.answer(trace.completion or "", candidates, fmt)

            trace = await self._call(
                slot.id,
                node.role,
                model,
                messages,
                temperature,
                decision.max_tokens,
                top_p,
                model_alias=node.model,
                read=answer,
                step=step,
            )
        self._finish_trace(trace)
        trace.finished_at_s = modelled_finish(trace, inputs)
        return trace

    async def _call(
        self,
        trace_id: str,
        role: str,
        model: ResolvedModel,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        top_p: float | None,
        *,
        model_alias: str | None = None,
        json_schema: dict[str, Any] | None = None,
        read: Callable[[NodeTrace], None] | None = None,
        step: Hashable | None = None,
    ) -> NodeTrace:
        """One gateway call under the run's ledger, traced as a node span (workers, CEO and evaluator
        alike); a refusal by the budget ends the discussion. The CEO's and evaluator's calls are stream
        events of their own (workers' are the round's): a stream showed nothing while the CEO thought.
        `read` reads an answered call's reply into its trace inside the span, so the span and the
        node_finished event carry its answer, or why it was unusable (the CEO's unusable replies
        were three identical spans, status OK, the error set once they had closed)."""
        steering = role in ("ceo", "evaluator")  # workers are added and announced by the round, in slot order
        if steering:
            self._emit(GraphEvent("node_started", trace_id, role))
        trace = NodeTrace(trace_id, role, model=model_alias or model.name, route=model.route, messages=messages)
        request = CallRequest(
            model=model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            json_schema=json_schema,
        )
        with node_span(trace_id, role, trace.model, self.options.run_id) as traced:
            stopped_before = self.calls.stopped_reason
            if await self.calls.call(trace, request, step=step) is None:
                # refused, or ended by the run's time cap (which the ledger then names)
                stopped = trace.status == "skipped" or self.calls.stopped_reason != stopped_before
                self._round_cut = self._round_cut or (stopped and not steering)
                self.stopped_reason = self.stopped_reason or self.calls.stopped_reason
            if read is not None and trace.status == "ok":
                read(trace)
            traced.set(traced_fields(trace))
        if steering:
            self._finish_trace(trace)
            self.traces.append(trace)
            if trace.status != "skipped":
                self._critical_path += trace.latency_s
            self._emit(GraphEvent("node_finished", trace_id, role, trace=trace))
        return trace

    def _needs_inputs(self, node: NodeSpec) -> bool:
        custom = self.runtime.spec.roles.get(node.role)
        return node.role in ROLES_NEEDING_INPUTS or (custom is not None and custom.requires_inputs)

    def _finish_trace(self, trace: NodeTrace) -> None:
        self._finished += 1
        trace.finish_order = self._finished

    def _emit(self, event: GraphEvent) -> None:
        if self.options.on_event is not None:
            self.options.on_event(event)

    # -- resources --------------------------------------------------------------------------------

    def _default_tokens(self) -> int:
        return max(completion_cap(self.runtime.nodes[n], self.runtime.spec) for n in self.plan.pool)

    def _fitted(
        self, raw: RawDecision, current: Decision, index: int, ceo_prompt_tokens: int
    ) -> tuple[Decision, str | None]:
        """The CEO's decision clamped to the graph's ranges and to the budget left: each call's share
        of the tokens (`_token_share`); below `min_tokens` a share, a smaller team (down to
        `min_agents`); when not even that fits, the applied decision and the refusal that ends the
        discussion with its best answer (a round of replies cut to a token or two answers nothing and
        pays every prompt)."""
        wanted = clamp(raw, self.limits, current)
        agents, share = wanted.agents, self._token_share(wanted, index, ceo_prompt_tokens)
        floor = self.limits.min_tokens
        while share is not None and share.tokens < floor and agents > self.limits.min_agents:
            agents -= 1
            share = self._token_share(replace(wanted, agents=agents), index, ceo_prompt_tokens)
        if share is None:
            return wanted, None
        fitted = raw if agents == wanted.agents else raw.model_copy(update={"agents": agents})
        decision = clamp(fitted, self.limits, current, token_cap=share.tokens)
        if agents != wanted.agents:
            cut = f"agents {wanted.agents} cut to {agents} (the budget left)"
            decision = replace(decision, notes=(*decision.notes, cut))
        if share.tokens >= floor:
            return decision, None
        return decision, str(
            BudgetExceeded("max_tokens", share.cap, self.calls.ledger.spent.tokens + share.smallest_round)
        )

    def _token_share(self, wanted: Decision, index: int, ceo_prompt_tokens: int) -> _Share | None:
        """The completion budget each model call of the coming round can have so that the round fits
        in the tokens the budget has left: its workers and aggregator, each reserving its prompt (the
        first worker's, as it would be written now) besides its completion, the aggregator's prompt
        also every worker's reply (counted once, workers writing near their cap left the output
        node refused: 4 code replies of 206 tokens under a 213 share, a fuser projected at 2,543 of
        2,500 tokens, and the discussion ended with half the budget unused), and, with rounds to come
        and room for another round, the evaluator (its prompt holds a solution, so one more such call
        plus its own reply) and the next CEO call (a prompt like this one plus its reply). Cut against
        what one call could take, a team of 3 × 300 under 1,400 tokens left ran 2 workers and ended
        the discussion with 70% of the budget unused."""
        budget = self.runtime.spec.budget
        if budget is None or budget.max_tokens is None:
            return None
        runtime = self.runtime
        calls, read = round_calls(runtime, self.plan, wanted.agents)
        first = runtime.nodes[self.plan.pool[0]] if self.plan.pool else None
        prompt = 0
        if first is not None:
            inputs = [Candidate("best", self.best)] if self.best else []
            messages = runtime.roles[first.role].messages(
                self.question,
                inputs,
                runtime.answer_format,
                direction=wanted.direction or None,
                behaviors=self._behaviors,
            )
            prompt = estimate_prompt_tokens(messages)
        left = budget.max_tokens - self.calls.ledger.spent.tokens
        steering, evaluated = 0, 0
        if index < self.coordinator.max_rounds:
            steering = ceo_prompt_tokens + CEO_MAX_TOKENS
            if self.evaluator_model is not None:
                steering, evaluated = steering + EVALUATOR_MAX_TOKENS, 1
        smallest_round = smallest_round_tokens(calls, read, prompt, self.limits.min_tokens)
        if left - steering < smallest_round + evaluated * (prompt + self.limits.min_tokens):
            steering, evaluated = 0, 0  # no room for another round: this one may use what is left
        # each call's prompt and reply, plus the workers' replies again in the aggregator's prompt
        share = (left - steering - (calls + evaluated) * prompt) // (calls + evaluated + read)
        return _Share(share, budget.max_tokens, smallest_round)

    def _resources(self, index: int) -> str:
        spent = self.calls.ledger.spent
        budget = self.runtime.spec.budget
        lines = []

        def line(name: str, used: float | None, cap: float | None, fmt: str) -> str:
            used_text = "unknown" if used is None else format(used, fmt)
            if cap is None:
                return f"- {name}: {used_text} used (no cap)"
            left = None if used is None else max(cap - used, 0)
            left_text = "unknown" if left is None else format(left, fmt)
            return f"- {name}: {used_text} used of {format(cap, fmt)}, {left_text} left"

        lines.append(line("tokens", spent.tokens, budget.max_tokens if budget else None, "d"))
        flops = spent.flops if all(m.params_b is not None for m in self._models()) else None  # not 0: unknown
        lines.append(line("FLOPs", flops, budget.max_flops if budget else None, ".3g"))
        lines.append(line("USD", spent.usd, budget.max_usd if budget else None, ".4f"))
        done = index - 1
        total = self.coordinator.max_rounds
        lines.append(f"- rounds: {done} done of {total}, {total - done} left (this decision is for round {index})")
        return "\n".join(lines)

    def _models(self) -> list[ResolvedModel]:
        """Every model the discussion may call: its nodes', the CEO and the evaluator."""
        steering = [self.ceo_model, *([self.evaluator_model] if self.evaluator_model else [])]
        return [*self.runtime.models.values(), *steering]

    def _round_usage(self, first_trace: int, path_before: float) -> Usage:
        """A round's usage: its calls (from `first_trace` on), and the critical path it added (its CEO,
        team and evaluator; every round said 0.0 where the run's total summed them)."""
        usage = self._usage(self.traces[first_trace:])
        usage.critical_path_s = self._critical_path - path_before
        return usage

    def _why_no_answer(self) -> str | None:
        """With no answer and a call failed, the first failed call: what a DAG run's failed output
        says. Without it a discussion whose every call failed (a server down) was an item that
        finished, so an eval of it exited 0, stored `done`, as a measurement of the graph."""
        if self.best is not None:
            return None
        failed = next((trace for trace in self.traces if trace.status == "failed"), None)
        return None if failed is None else f"no round answered; {failed.node_id} failed: {failed.error}"

    def _usage(self, traces: list[NodeTrace], *, total: bool = False) -> Usage:
        usage = calls_usage(traces)
        if total:
            usage.latency_s = time.perf_counter() - self._started
            usage.critical_path_s = self._critical_path
        return usage

    # -- the result -------------------------------------------------------------------------------

    def _finish(self) -> RunResult:
        usage = self._usage(self.traces, total=True)
        run_id = self.options.run_id
        if self.best is not None and not self._round_cut:  # the rounds' records keep a refusal; a cap passed is said
            self.stopped_reason = self.calls.ledger.overrun()
        else:  # a cap passed by actual usage, else why no round answered
            self.stopped_reason = self.stopped_reason or self.calls.stopped_reason or self._why_no_answer()
        result = RunResult(
            self.question, self.best, list(self.traces), usage, run_id, self.stopped_reason, rounds=self.rounds
        )
        store = self.runtime.gateway.store
        memory = self.runtime.memory
        if memory is not None:  # say which behaviors were shown and cited (and count them), as a DAG run does
            result = memory.finish(result, self._retrieved, record=store is not None and run_id is not None)
        if store is not None and run_id is not None:
            record_result(store, result, self.options.item_key, self.options.run_row)
        return result


async def _cancel_and_wait(tasks: Iterable[asyncio.Task[NodeTrace]]) -> None:
    """Cancel `tasks` and wait until each has ended: none goes on paying for a call, or calling the
    run's `on_event`, after the run has raised."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def solution_text(answer: str | None, traces: list[NodeTrace]) -> str | None:
    r"""The round's solution as the CEO and the evaluator read it: the reply that gave `answer`
    (its reasoning, not only the extracted answer: MAS-TTS's evaluator judges the solution and
    advises on its steps), ends kept when long; the answer itself when no reply holds it (a
    verifier's or a vote's pick is the text of the worker it picked).

    >>> t = NodeTrace("r1.s1", "assistant", status="ok", completion="6 x 7 = 42\nFinal answer: 42", answer="42")
    >>> solution_text("42", [t])
    '6 x 7 = 42\nFinal answer: 42'
    >>> solution_text("41", [t])
    '41'
    >>> long = NodeTrace("r1.s2", "assistant", completion="a" * 1500 + "b" * 1984 + "\nFinal answer: 9", answer="9")
    >>> text = solution_text("9", [long])  # 3,500 characters: the first 1,000 and the last 2,000
    >>> text.startswith("a" * 1000 + "\n[... 500 characters left out ...]\nbbb"), text.endswith("Final answer: 9")
    (True, True)
    """
    if answer is None:
        return None
    for trace in traces:
        if trace.status == "ok" and trace.answer == answer and trace.completion:
            text = trace.completion.strip()
            if len(text) <= SOLUTION_HEAD_CHARS + SOLUTION_TAIL_CHARS:
                return text
            left_out = len(text) - SOLUTION_HEAD_CHARS - SOLUTION_TAIL_CHARS
            return (
                f"{text[:SOLUTION_HEAD_CHARS]}\n[... {left_out} characters left out ...]\n{text[-SOLUTION_TAIL_CHARS:]}"
            )
    return answer


def _read_decision(trace: NodeTrace, *, attempt: int, into: list[RawDecision | DecisionParseError]) -> None:
    """The CEO's decision into its trace (inside its span: the decision, or which attempt was unusable
    and why) and into `into`, the parsed decision or the parse error."""
    try:
        decided = parse_decision(trace.completion or "")
    except DecisionParseError as exc:
        trace.error = f"attempt {attempt}: {exc}"
        into.append(exc)
        return
    trace.answer = decided.decision
    into.append(decided)


def _read_verdict(trace: NodeTrace, *, into: list[Verdict]) -> None:
    """The evaluator's verdict into `into` and its advice into its trace (inside its span)."""
    verdict = parse_verdict(trace.completion or "")
    trace.answer = verdict.advice
    into.append(verdict)
