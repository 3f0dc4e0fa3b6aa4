"""Compilation of a graph into a LangGraph StateGraph.

The StateGraph mirrors the DAG node for node (so `get_graph()`, streaming of node updates and
embedding as a subgraph all show the user's graph). One bookkeeping node precedes it: `__prepare__`
starts the run's node tasks (see :mod:`agentscale.runtime.execute`); the output node also collects
the answer and usage (one LangGraph step less than a separate finishing node). The state reads
`question` and writes `answer`, so a parent graph with those keys can add the compiled graph as a
node directly.

A graph with a `coordinator:` compiles to a single `discussion` node instead: its rounds, and which
nodes run in each, are decided by the CEO at run time, so they cannot be laid out in advance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph

from agentscale.errors import QuestionError
from agentscale.graphs.result import NodeTrace
from agentscale.runtime.discussion import run_discussion
from agentscale.runtime.execute import (
    GraphRuntime,
    RunContext,
    RunOptions,
    close_context,
    failure_for,
    get_context,
    has_context,
    open_compiled_context,
)
from agentscale.runtime.sync import run_sync

PREPARE = "__prepare__"
DISCUSSION = "discussion"
OPTIONS_KEY = "agentscale"


def _merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class InputState(TypedDict, total=False):
    question: str
    run_key: str


class OutputState(TypedDict, total=False):
    answer: str | None
    trace: Annotated[dict[str, dict[str, Any]], _merge]
    usage: dict[str, Any]
    stopped_reason: str | None
    run_key: str
    rounds: list[dict[str, Any]]  # discussions only: one record per CEO decision


class GraphState(InputState, OutputState, total=False):
    """Full state: the question, the run's key, per-node traces and the final result."""


StepFunction = Callable[[GraphState, RunnableConfig | None], dict[str, Any]]
AsyncStepFunction = Callable[[GraphState, RunnableConfig | None], Awaitable[dict[str, Any]]]


class _Step(Runnable[GraphState, dict[str, Any]]):
    """One LangGraph node of agentscale's: a synchronous (`invoke`) and an asynchronous (`ainvoke`)
    function of the state and config, called directly.

    LangGraph runs a plain function node the same way (no callback run of its own); a
    `RunnableLambda` would open a callback run and inspect the function signatures again at every
    call, about half of LangGraph's per-question cost for a one-node graph (docs/benchmarks.md).
    """

    def __init__(self, name: str, func: StepFunction, afunc: AsyncStepFunction) -> None:
        self.name = name
        self._func = func
        self._afunc = afunc

    def invoke(self, input: GraphState, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._func(input, config)

    async def ainvoke(self, input: GraphState, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return await self._afunc(input, config)


def _options(config: RunnableConfig | None) -> RunOptions:
    configurable = (config or {}).get("configurable", {})
    options = configurable.get(OPTIONS_KEY)
    return options if isinstance(options, RunOptions) else RunOptions()


def _question(state: GraphState) -> str:
    return checked_question(state.get("question"), "the graph's input state needs a 'question'")


def checked_question(question: object, what: str = "a question") -> str:
    """A question to answer: a string with some text (None or a number failed deep in the run, an
    empty string paid for calls that had nothing to answer) that is Unicode (half a surrogate pair,
    "\\ud800", was paid for, then failed to be stored)."""
    if not isinstance(question, str):
        raise QuestionError(f"{what}: a string, got {type(question).__name__}")
    if not question.strip():
        raise QuestionError(f"{what}: the question is empty")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QuestionError(f"{what}: not Unicode text (an unpaired surrogate at character {exc.start + 1})") from None
    return question


WarmUp = Callable[[], Awaitable[None]]
"""What a graph does once before a question's clock starts (litellm's import, local servers)."""


async def _no_warm_up() -> None:
    return None


def build_state_graph(runtime: GraphRuntime, warm_up: WarmUp = _no_warm_up, *, prepare: bool = True) -> StateGraph:
    """A StateGraph for `runtime`'s DAG (not yet compiled); usable with `ainvoke` and `invoke`.

    `prepare=False` leaves out the `__prepare__` step, for a caller that opens the run itself and
    passes its `run_key` in the input (`Graph.arun`): one LangGraph superstep less per question.
    """
    builder = StateGraph(GraphState, input_schema=InputState, output_schema=OutputState)

    def start(state: GraphState, config: RunnableConfig | None) -> str:
        """A new run for this invocation, under the input's `run_key` unless a live run has it: a
        parent's state carries the key of an earlier invocation along, and two that overlapped under
        one key (a fan-out of `Send`s, two threads) joined one run, answering one's question for both
        or failing on "run context vanished"."""
        key = state.get("run_key")
        free = key is not None and not has_context(key)
        return open_compiled_context(runtime, _question(state), _options(config), key if free else None).key

    async def prepare_async(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        _question(state)
        await warm_up()
        return {"run_key": start(state, config)}

    def prepare_sync(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        """Synchronous callers (`invoke`): run the whole DAG here, on agentscale's event loop
        (`runtime/sync`); the node steps that follow only read the finished tasks."""

        async def run_all() -> str:
            _question(state)
            await warm_up()
            key = start(state, config)
            try:
                await asyncio.gather(*get_context(key).tasks.values())
            except BaseException:
                close_context(key)
                raise
            return key

        return {"run_key": run_sync(run_all())}

    first = START
    if prepare:
        builder.add_node(PREPARE, _Step(PREPARE, prepare_sync, prepare_async))
        builder.add_edge(START, PREPARE)
        first = PREPARE

    for node_id in runtime.topology.order:
        builder.add_node(node_id, _node_runnable(runtime, warm_up, node_id, is_output=node_id == runtime.output))
        predecessors = list(runtime.topology.predecessors[node_id])
        if predecessors:
            builder.add_edge(predecessors if len(predecessors) > 1 else predecessors[0], node_id)
        else:
            builder.add_edge(first, node_id)
    builder.add_edge(runtime.output, END)
    return builder


def _by_id(traces: list[NodeTrace]) -> dict[str, dict[str, Any]]:
    """A discussion's traces keyed by id, a repeated id (the CEO's second and third attempts at a
    usable decision: `r1.ceo#2`, `r1.ceo#3`) numbered: keyed by id alone, the last attempt replaced
    the others, and the trace no longer added up to the run's usage."""
    keyed: dict[str, dict[str, Any]] = {}
    for trace in traces:
        key, repeat = trace.node_id, 1
        while key in keyed:
            repeat += 1
            key = f"{trace.node_id}#{repeat}"
        keyed[key] = trace.to_dict()
    return keyed


def build_discussion_graph(runtime: GraphRuntime, warm_up: WarmUp = _no_warm_up) -> StateGraph:
    """A StateGraph whose one node runs `runtime`'s graph as a CEO-steered discussion."""

    async def discuss(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        question = _question(state)
        await warm_up()
        result = await run_discussion(runtime, question, _options(config))
        return {
            "answer": result.answer,
            "trace": _by_id(result.trace),
            "usage": result.usage.to_dict(),
            "stopped_reason": result.stopped_reason,
            "rounds": [record.to_dict() for record in result.rounds or []],
        }

    def discuss_sync(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        return run_sync(discuss(state, config))

    builder = StateGraph(GraphState, input_schema=InputState, output_schema=OutputState)
    builder.add_node(DISCUSSION, _Step(DISCUSSION, discuss_sync, discuss))
    builder.add_edge(START, DISCUSSION)
    builder.add_edge(DISCUSSION, END)
    return builder


def _node_runnable(runtime: GraphRuntime, warm_up: WarmUp, node_id: str, *, is_output: bool) -> _Step:
    """The LangGraph node: await this node's task; the output node also finishes the run.

    A run whose key this process does not know (a checkpointed parent graph resuming it after a
    restart, or after its caller gave up) starts again under that key: its finished calls come back
    from the response cache. A run a node's error stopped raises that error in its other steps."""

    async def running(key: str, state: GraphState, config: RunnableConfig | None) -> RunContext:
        failure = failure_for(key, node_id)
        if failure is not None:
            raise failure
        if not has_context(key):
            await warm_up()
            if not has_context(key):  # another step of the same superstep may have restarted it meanwhile
                open_compiled_context(runtime, _question(state), _options(config), key)
        return get_context(key)

    def update_for(key: str, trace: NodeTrace) -> dict[str, Any]:
        update: dict[str, Any] = {"trace": {node_id: trace.to_dict()}}
        if is_output:
            context = close_context(key)
            assert context is not None, "run context vanished"
            result = context.finish()
            context.result = result
            update.update(answer=result.answer, usage=result.usage.to_dict(), stopped_reason=result.stopped_reason)
        return update

    async def run_node(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        key = state["run_key"]
        try:
            trace = await (await running(key, state, config)).node(node_id)
        except BaseException as exc:  # the caller gave up (a timeout) or the node broke: stop the run's other tasks
            close_context(key, exc, node_id)
            raise
        return update_for(key, trace)

    def read_node(state: GraphState, config: RunnableConfig | None) -> dict[str, Any]:
        """Synchronous callers: `__prepare__` ran the DAG; a resumed run's node runs here."""
        key = state["run_key"]
        task = get_context(key).tasks[node_id] if has_context(key) else None
        if task is not None and task.done():
            return update_for(key, task.result())
        return run_sync(run_node(state, config))

    return _Step(node_id, read_node, run_node)
