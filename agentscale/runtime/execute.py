"""Running one question through a graph: each node starts as soon as its own predecessors finish.

LangGraph's Pregel loop advances in supersteps, so a fast branch would wait at each step's barrier
for a slow sibling it does not depend on. To keep LangGraph as the runtime (state, subgraphs,
streaming) *and* start every node as early as the DAG allows, the first LangGraph step launches one
asyncio task per node here; each task awaits its predecessors' tasks, and the LangGraph node of the
same name simply awaits its task.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from agentscale.agents.roles import Candidate, Role, answer_without_model, majority_vote, resolve_roles
from agentscale.errors import AgentScaleError, SpecError, SpecIssue
from agentscale.graphs.result import GraphEvent, NodeTrace, RunResult, Usage
from agentscale.graphs.spec import CODE_ONLY_ROLES, DEFAULT_MAX_TOKENS, AnswerFormat, GraphSpec, NodeSpec
from agentscale.graphs.topology import Topology
from agentscale.models.gateway import DEFAULT_TEMPERATURE, CallRequest, Gateway
from agentscale.models.registry import ResolvedModel, resolve
from agentscale.runtime.calls import ModelCalls, RunValues, calls_usage, record_result
from agentscale.runtime.plugins import RunMemory, graph_memory
from agentscale.tracing.hooks import SpanHandle, span

TRACED_FIELDS = (
    "status",
    "route",
    "error",
    "answer",
    "cached",
    "usd",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
)
"""What a node's span reports when tracing is on (`answer` only with content capture)."""


def node_span(node_id: str, role: str, model: str | None, run_id: str | None) -> AbstractContextManager[SpanHandle]:
    """The tracing span around one node's work, in a DAG or a discussion round (a no-op when off)."""
    return span("node", node_id, {"node": node_id, "role": role, "model": model, "run_id": run_id})


def traced_fields(trace: NodeTrace) -> dict[str, Any]:
    """What a finished node adds to its span."""
    return {key: getattr(trace, key) for key in TRACED_FIELDS}


async def answer_model_free(
    trace: NodeTrace, role: Role, question: str, candidates: list[Candidate], fmt: AnswerFormat
) -> None:
    """A vote's or tester's answer (and the tester's report) into `trace`, with the time it took."""
    started = time.perf_counter()
    trace.answer, trace.completion = await answer_without_model(role, question, candidates, fmt)
    trace.latency_s = time.perf_counter() - started


@dataclass(frozen=True)
class RunOptions:
    """Per-invocation settings; `run_id` set means node calls and the answer are recorded."""

    run_id: str | None = None
    item_key: str = "0"
    run_row: RunValues | None = None  # a run to insert with this question's rows (single-question runs)
    on_event: Callable[[GraphEvent], None] | None = None  # streaming: node started / finished

    def __post_init__(self) -> None:  # also given by a caller of compile() (its config's RunOptions)
        if self.on_event is not None:
            check_callback(self.on_event, "on_event")


_ASYNC_HINTS = {"on_event": "; to handle events in async code, iterate `async for event in graph.astream(question)`"}


def check_callback(callback: object, name: str) -> None:
    """A callback (`on_event`, `on_item`, `on_progress`) that cannot be called failed at its first
    call, after the run was stored and calls paid for; an `async def` one was never awaited, its
    events lost behind a RuntimeWarning. Both are refused before anything runs."""
    if not callable(callback):
        raise TypeError(f"{name} takes a function, not {type(callback).__name__}")
    if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(type(callback).__call__):
        raise TypeError(f"{name} takes a plain function (it is called, not awaited){_ASYNC_HINTS.get(name, '')}")


class GraphRuntime:
    """Everything about a graph that does not change between questions."""

    def __init__(self, spec: GraphSpec, gateway: Gateway, answer_format: AnswerFormat | None = None) -> None:
        self.spec = spec
        self.gateway = gateway
        runs_programs = [  # what would run answers as programs, so needs code answers
            ("answer_format", f"node {n.id!r} is a tester, which runs its inputs as programs")
            for n in spec.nodes
            if n.role in CODE_ONLY_ROLES
        ][:1]
        if spec.coordinator is not None and spec.coordinator.stop_guard == "stated_examples":
            runs_programs.append(("coordinator.stop_guard", "'stated_examples' runs the answer as a program"))
        # Unsaid, a graph that runs its answers as programs answers in code: it loads without the task
        # that will say so (an eval, `load` then `Evaluation`), and a task that answers otherwise is refused.
        self.answer_format: AnswerFormat = answer_format or spec.answer_format or ("code" if runs_programs else "text")
        if runs_programs and self.answer_format != "code":
            if answer_format is not None and answer_format != spec.answer_format:  # the caller's, not the file's
                raise AgentScaleError(
                    f"answers in {answer_format!r} were asked for (--answer-format, or the task's answers), but "
                    f"{runs_programs[0][1]}: it needs code answers"
                )
            fix = f"set `answer_format: code` or evaluate on a code task (answers here are {self.answer_format!r})"
            raise SpecError([SpecIssue(path, f"{what}: {fix}") for path, what in runs_programs])
        self.topology = Topology.build([n.id for n in spec.nodes], spec.edge_pairs())
        self.output = spec.output or self.topology.sinks[0]
        self.levels = self.topology.levels()
        # each node's inputs in topological order: inputs that finish at the same modelled time are taken
        # in it (as the simulator's ground truth takes them), whatever order the edges list them in
        position = {node_id: index for index, node_id in enumerate(self.topology.order)}
        self.inputs_in_order = {
            node_id: tuple(sorted(predecessors, key=position.__getitem__))
            for node_id, predecessors in self.topology.predecessors.items()
        }
        self.roles: dict[str, Role] = resolve_roles(spec.roles)
        self.nodes: dict[str, NodeSpec] = {n.id: n for n in spec.nodes}
        self.models: dict[str, ResolvedModel] = {
            n.id: resolve(n.model, spec.models.get(n.model)) for n in spec.nodes if n.model is not None
        }
        # every model a run may call, by who calls it: the nodes, and a coordinator's CEO and evaluator
        # (servers to start before the clock, caps to price, routes a cache probe looks up)
        self.callers: dict[str, ResolvedModel] = {f"node {node!r}": model for node, model in self.models.items()}
        if spec.coordinator is not None:
            for field, alias in (("model", spec.coordinator.model), ("evaluator", spec.coordinator.evaluator)):
                if alias:
                    self.callers[f"coordinator.{field}"] = resolve(alias, spec.models.get(alias))
        # `memory:`: behaviors retrieved once per question and shown to every node that calls a model
        self.memory: RunMemory[Any] | None = (
            graph_memory(gateway.store, spec.memory) if spec.memory is not None else None
        )

    def start(self, question: str, options: RunOptions) -> RunContext:
        context = RunContext(self, question, options)
        context.start()
        return context


class RunContext:
    """The state of one question's run: node tasks, traces, its model calls (sample slots, budget ledger)."""

    def __init__(self, runtime: GraphRuntime, question: str, options: RunOptions) -> None:
        self.runtime = runtime
        self.question = question
        self.options = options
        self.calls = ModelCalls(runtime.gateway, runtime.spec.budget, options.run_id, options.item_key)
        self.traces: dict[str, NodeTrace] = {}
        self.tasks: dict[str, asyncio.Task[NodeTrace]] = {}
        self.stopped_reason: str | None = None  # the budget's refusal, else why the output did not answer
        self.result: RunResult | None = None
        self.key = ""
        self._finished = 0
        self._started = time.perf_counter()
        self._recall: asyncio.Future[list[Any]] | None = None
        self.behaviors: list[Any] = []
        self.expiry: asyncio.TimerHandle | None = None  # a compiled graph's drop of an unclosed run

    def start(self) -> None:
        if self.runtime.memory is not None:
            self._recall = asyncio.ensure_future(asyncio.to_thread(self.runtime.memory.retrieve, self.question))
        for node_id in self.runtime.topology.order:
            self.tasks[node_id] = asyncio.ensure_future(self._run_node(node_id))

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        if self._recall is not None:
            self._recall.cancel()

    async def _behavior_block(self) -> str | None:
        """The handbook behaviors for this question: retrieved once, when the run starts; nodes share it."""
        memory = self.runtime.memory
        if memory is None or self._recall is None:
            return None
        self.behaviors = await asyncio.shield(self._recall)
        return memory.block(self.behaviors) or None

    async def node(self, node_id: str) -> NodeTrace:
        return await self.tasks[node_id]

    async def _run_node(self, node_id: str) -> NodeTrace:
        predecessors = self.runtime.topology.predecessors[node_id]
        if predecessors:
            await asyncio.gather(*(self.tasks[p] for p in predecessors))
        node = self.runtime.nodes[node_id]
        self._emit(GraphEvent("node_started", node_id, node.role))
        with node_span(node_id, node.role, node.model, self.options.run_id) as traced:
            trace = await self._execute(node, predecessors)
            traced.set(traced_fields(trace))
        self._finished += 1
        trace.finish_order = self._finished
        trace.finished_at_s = modelled_finish(trace, [self.traces[p] for p in predecessors])
        self.traces[node_id] = trace
        self._emit(GraphEvent("node_finished", node_id, node.role, trace=trace))
        return trace

    def _emit(self, event: GraphEvent) -> None:
        if self.options.on_event is not None:
            self.options.on_event(event)

    def _candidates(self, node_id: str) -> list[Candidate]:
        return usable_candidates([self.traces[p] for p in self.runtime.inputs_in_order[node_id]])

    async def _execute(self, node: NodeSpec, predecessors: tuple[str, ...]) -> NodeTrace:
        runtime = self.runtime
        role = runtime.roles[node.role]
        fmt = runtime.answer_format
        trace = NodeTrace(node.id, node.role, model=node.model)
        candidates = self._candidates(node.id)
        if predecessors and not candidates:
            trace.status, trace.error = "skipped", why_no_inputs([self.traces[p] for p in predecessors])
            return trace
        if not role.calls_model:
            await answer_model_free(trace, role, self.question, candidates, fmt)
            return trace

        model = runtime.models[node.id]
        defaults = runtime.spec.defaults
        messages = role.messages(
            self.question, candidates, fmt, behaviors=await self._behavior_block(), answer_style=model.answer_style
        )
        request = CallRequest(
            model=model,
            messages=messages,
            temperature=first_set(node.temperature, defaults.temperature, DEFAULT_TEMPERATURE),
            max_tokens=completion_cap(node, runtime.spec),
            top_p=node.top_p if node.top_p is not None else defaults.top_p,
        )
        starts_at = max((self.traces[p].finished_at_s for p in predecessors), default=0.0)
        # a level's nodes run side by side (LangGraph's superstep): they count each other at their worst case
        result = await self.calls.call(trace, request, starts_at, runtime.levels[node.id])
        if result is None:
            self.stopped_reason = self.stopped_reason or self.calls.stopped_reason
            return trace
        trace.answer = role.answer(result.completion, candidates, fmt)
        return trace

    def finish(self) -> RunResult:
        """Collect the answer (the output's, else the best so far), usage, and record the item."""
        runtime = self.runtime
        traces = [self.traces[n] for n in runtime.topology.order if n in self.traces]
        output = self.traces.get(runtime.output)
        answer = output.answer if output is not None and output.status == "ok" else None
        if answer is None:
            answer = self._best_so_far(traces)
            if self.stopped_reason is None and output is not None and output.status != "ok":
                self.stopped_reason = f"output node {runtime.output!r} {output.status}: {output.error}"
        self.stopped_reason = self.stopped_reason or self.calls.stopped_reason  # a cap passed by actual usage
        usage = self._usage(traces)
        result = RunResult(self.question, answer, traces, usage, self.options.run_id, self.stopped_reason)
        store = runtime.gateway.store
        run_id = self.options.run_id
        if runtime.memory is not None:  # say which behaviors were shown and cited (and count them)
            result = runtime.memory.finish(result, self.behaviors, record=store is not None and run_id is not None)
        if store is not None and run_id is not None:
            record_result(store, result, self.options.item_key, self.options.run_row)
        return result

    def _best_so_far(self, traces: list[NodeTrace]) -> str | None:
        """Majority over the answered nodes closest to the output (ties: first finished)."""
        answered = [t for t in traces if t.status == "ok" and t.answer]
        if not answered:
            return None
        deepest = max(self.runtime.levels[t.node_id] for t in answered)
        closest = sorted((t for t in answered if self.runtime.levels[t.node_id] == deepest), key=_finishing_key)
        return majority_vote([Candidate(t.node_id, t.answer or "") for t in closest], self.runtime.answer_format)

    def _usage(self, traces: list[NodeTrace]) -> Usage:
        usage = calls_usage(traces)
        usage.latency_s = time.perf_counter() - self._started
        usage.critical_path_s, _ = self.runtime.topology.critical_path({t.node_id: t.latency_s for t in traces})
        return usage


def modelled_finish(trace: NodeTrace, predecessors: list[NodeTrace]) -> float:
    """The node's finish on the modelled clock: the latest predecessor's finish plus its own call's
    latency. A node without a model call adds nothing: a tester's sandbox runs take wall time that a
    replay would not reproduce (the simulator's truth counts them as instant too)."""
    own = trace.latency_s if trace.model is not None else 0.0
    return own + max((p.finished_at_s for p in predecessors), default=0.0)


def _finishing_key(trace: NodeTrace) -> float:
    """Sort key of the modelled finishing order; sorts are stable, so traces that finish at the same
    modelled time keep the order they are listed in (a node's predecessors and the graph's nodes, both
    in topological order), not the order they came back in: two calls of one simulated model take the
    same modelled time, and the wall-clock order between them changed a vote's answer from one run to
    the next and between a live run and its replay. Not the order the edges list them in either: the
    simulator's ground truth cannot see that order, and `b, a -> v` measured 47.0% where the truth
    said 67.7% (and `a, b -> v` measured 67.7%)."""
    return trace.finished_at_s


def usable_candidates(traces: list[NodeTrace]) -> list[Candidate]:
    """Answered traces as inputs for a successor, in modelled finishing order (ties in votes go to the first).

    The modelled clock, not the order the calls came back, so that a run replayed from the cache (every
    call returns at once) breaks ties as the live run did; at the same modelled time, the order listed."""
    usable = sorted((t for t in traces if t.status == "ok" and t.answer), key=_finishing_key)
    return [Candidate(t.node_id, t.answer or "") for t in usable]


_NO_INPUTS = "no usable answers from predecessors"


def why_no_inputs(inputs: list[NodeTrace]) -> str:
    """Why a node had no answer to work on, naming the first failed input's error: an eval whose
    server was down said only "output node 'fuse' skipped: no usable answers from predecessors",
    and the connection error that was the cause stayed in the trace. A chain names it once."""
    failed = next((t for t in inputs if t.error), None)
    if failed is None or failed.error is None:  # they answered, but nothing an answer could be read from
        return _NO_INPUTS
    error = failed.error
    if error.startswith(_NO_INPUTS):  # its own inputs' cause, already named
        return error
    named = error.startswith(f"node {failed.node_id!r}")  # a failed call's error names its node
    return f"{_NO_INPUTS} ({'' if named else f'{failed.node_id} {failed.status}: '}{error})"


_Number = TypeVar("_Number", int, float)


def first_set(node_value: _Number | None, default_value: _Number | None, fallback: _Number) -> _Number:
    """The node's setting, else the graph's `defaults:`, else agentscale's default."""
    if node_value is not None:
        return node_value
    return default_value if default_value is not None else fallback


def completion_cap(node: NodeSpec, spec: GraphSpec) -> int:
    """A node's `max_tokens`: its own, else the graph's `defaults:`, else agentscale's (what each call
    asks for and reserves in a token budget)."""
    return first_set(node.max_tokens, spec.defaults.max_tokens, DEFAULT_MAX_TOKENS)


_ACTIVE: dict[str, RunContext] = {}
# the error that stopped a run, by key: (error, the node whose step raised it, when), for the other
# node steps LangGraph starts in the same superstep (they raised a KeyError of the key, which
# LangGraph reported instead of the error 2 times of 10); bounded in number and in time, since a
# checkpointed parent may resume the run later (`failure_for`)
_FAILED: OrderedDict[str, tuple[Exception, str, float]] = OrderedDict()
_FAILED_KEPT = 64
_SIBLINGS_WITHIN_S = 2.0  # a superstep's steps start together: later, a step is a resume's


def open_context(runtime: GraphRuntime, question: str, options: RunOptions, key: str | None = None) -> RunContext:
    """Start a run and register it under a key that travels in the LangGraph state."""
    context = runtime.start(question, options)
    context.key = key or uuid.uuid4().hex
    _ACTIVE[context.key] = context
    return context


# how long a compiled graph's run stays registered once its nodes are done, for an output step
# that has not come (a consumer that stopped reading its stream), and how many such runs at most:
# beyond, the oldest goes first (an app whose clients disconnect mid-stream kept each one's run,
# ≈30 KB for one node, for the hour)
_ABANDONED_AFTER_S = 3600.0
_ABANDONED_KEPT = 256
_WAITING: OrderedDict[str, RunContext] = OrderedDict()


def open_compiled_context(runtime: GraphRuntime, question: str, options: RunOptions, key: str | None) -> RunContext:
    """:func:`open_context` for a compiled graph, whose output step closes the run: a caller that
    stops streaming before that step (a `break` out of `astream`) left it registered for good. An
    hour after its nodes are done, a run not closed is dropped (an output step that still comes
    later starts it again under its key: the response cache answers its calls); so are runs of event
    loops that have closed."""
    _drop_runs_of_closed_loops()
    context = open_context(runtime, question, options, key)

    def drop_later(task: asyncio.Task[NodeTrace]) -> None:
        if _ACTIVE.get(context.key) is context:  # not closed already (a failure cancels the tasks)
            context.expiry = task.get_loop().call_later(_ABANDONED_AFTER_S, _drop, context)
            _WAITING[context.key] = context
            while len(_WAITING) > _ABANDONED_KEPT:
                _drop(next(iter(_WAITING.values())))

    context.tasks[runtime.output].add_done_callback(drop_later)
    return context


def _drop(context: RunContext) -> None:
    if _ACTIVE.get(context.key) is context:
        del _ACTIVE[context.key]
    _forget_waiting(context)


def _forget_waiting(context: RunContext) -> None:
    if _WAITING.get(context.key) is context:
        del _WAITING[context.key]
        if context.expiry is not None:
            context.expiry.cancel()


def _drop_runs_of_closed_loops() -> None:
    for context in list(_ACTIVE.values()):
        task = next(iter(context.tasks.values()), None)
        if task is not None and task.get_loop().is_closed():
            _drop(context)


def has_context(key: str) -> bool:
    return key in _ACTIVE


def failure_for(key: str, node_id: str) -> Exception | None:
    """The error another node's step of the same superstep must raise for the run under `key`, or
    None: a step of the node that failed, or one coming later, belongs to a resume of the run."""
    stopped = _FAILED.get(key)
    if stopped is None:
        return None
    error, failed_node, when = stopped
    if node_id != failed_node and time.monotonic() - when < _SIBLINGS_WITHIN_S:
        return error
    del _FAILED[key]
    return None


def get_context(key: str) -> RunContext:
    return _ACTIVE[key]


def close_context(key: str, error: BaseException | None = None, node_id: str = "") -> RunContext | None:
    """Stop the run under `key` (its node tasks cancelled); `error`, when it is what stopped the run
    (not a cancellation) in `node_id`'s step, is what the superstep's other steps raise."""
    context = _ACTIVE.pop(key, None)
    if context is not None:
        context.cancel()
        _forget_waiting(context)  # closed: nothing to drop later (it kept every run an hour)
        if isinstance(error, Exception):
            _FAILED[key] = (error, node_id, time.monotonic())
            while len(_FAILED) > _FAILED_KEPT:
                _FAILED.popitem(last=False)
    return context
