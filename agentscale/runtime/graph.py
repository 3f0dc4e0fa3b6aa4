"""The public Graph: load a YAML graph, run it on questions, compile it to LangGraph.

A Graph owns a gateway (cache, retries, store) so that many runs share one response cache and one
database handle; pass `store=None` to run without recording anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, get_args

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from agentscale.errors import AgentScaleError, EventLoopError, RunNotFound, SpecError, SpecIssue
from agentscale.graphs.io import decoded_text, dump_graph_spec, read_text
from agentscale.graphs.located import LocatedData, load_located
from agentscale.graphs.result import GraphEvent, RunResult
from agentscale.graphs.spec import AnswerFormat, GraphSpec
from agentscale.graphs.validate import graph_issues
from agentscale.models.budget import Spend
from agentscale.models.cost import estimate_prompt_tokens, price_is_known
from agentscale.models.endpoints import resolve_endpoint, starts_server
from agentscale.models.gateway import Gateway, GatewaySettings
from agentscale.models.litellm_loader import import_litellm
from agentscale.models.routes import checked_spec, route_issues
from agentscale.models.serving import install_signal_handlers
from agentscale.runtime.calls import RunValues, record_broken, spend_of
from agentscale.runtime.compile import OPTIONS_KEY, build_discussion_graph, build_state_graph, checked_question
from agentscale.runtime.discussion import (
    TeamPlan,
    limits_for,
    round_calls,
    run_discussion,
    smallest_round_tokens,
)
from agentscale.runtime.execute import (
    GraphRuntime,
    RunOptions,
    check_callback,
    close_context,
    completion_cap,
    open_context,
)
from agentscale.runtime.sync import CallerThreadEvents, run_sync
from agentscale.storage import storage_errors_said
from agentscale.storage.db import Store, new_run_id
from agentscale.storage.tables import utcnow
from agentscale.tracing.hooks import span


class _DefaultStore:
    """The `store=` default: ./.agentscale/agentscale.db, or $AGENTSCALE_DB (`None` records nothing)."""

    def __repr__(self) -> str:
        return "<the default store>"


_DEFAULT = _DefaultStore()


def _check_arguments(store: object, gateway: object, answer_format: object) -> None:
    """Arguments a run would only trip over after paying for calls: a path given as `store=` (an
    AttributeError at the first row), something else as `gateway=` (at the first run), an answer
    format no scorer reads (a KeyError at the answer)."""
    if store is not None and not isinstance(store, Store | _DefaultStore):
        raise TypeError(f"store= takes a Store or None, not {type(store).__name__}: use store=Store(path)")
    if gateway is not None and not isinstance(gateway, Gateway):
        raise TypeError(f"gateway= takes a Gateway or None, not {type(gateway).__name__}")
    formats = get_args(AnswerFormat)
    if answer_format is not None and answer_format not in formats:
        raise AgentScaleError(f"answer_format={answer_format!r}: use one of {', '.join(formats)}")


class Graph:
    """A validated collaboration graph bound to a gateway.

    >>> graph = Graph.from_yaml('''
    ... name: demo
    ... nodes:
    ...   - {id: a, role: assistant, model: openai/gpt-4o-mini}
    ... ''', store=None)
    >>> graph.name, graph.output
    ('demo', 'a')
    """

    def __init__(
        self,
        spec: GraphSpec,
        *,
        store: Store | _DefaultStore | None = _DEFAULT,
        gateway: Gateway | None = None,
        answer_format: AnswerFormat | None = None,
        source: str | None = None,
        stored: bool = False,
    ) -> None:
        """`stored`: a stored run's graph (resumed), or one built from a space validated as such:
        the whole-graph rules added since it was written are not applied (a resume failed on them)."""
        if not isinstance(spec, GraphSpec):  # a dict failed on "'dict' object has no attribute 'models'"
            raise TypeError(
                f"Graph takes a GraphSpec, not {type(spec).__name__}: use Graph.from_dict(data), "
                "Graph.from_yaml(text) or agentscale.load(path)"
            )
        issues = graph_issues(spec, stored=stored) or route_issues(spec)
        if issues:
            raise SpecError(issues, source)
        _check_arguments(store, gateway, answer_format)
        if gateway is not None and store is not _DEFAULT and store is not gateway.store:
            raise AgentScaleError("give store= or gateway=, not both: the gateway's store is the one that records")
        if gateway is None:
            resolved_store = Store() if isinstance(store, _DefaultStore) else store
            gateway = Gateway(resolved_store, GatewaySettings.from_env())
        self.spec = spec
        self.gateway = gateway
        self.runtime = GraphRuntime(spec, gateway, answer_format)
        self._compiled: CompiledStateGraph | None = None
        self._yaml: str | None = None
        self._endpoints_ready = False
        self._runs_found: set[str] = set()  # run ids given to `arun` that the store holds
        _check_budget_is_enforceable(self.runtime, source)

    @classmethod
    def from_yaml(
        cls,
        text: str | bytes,
        *,
        store: Store | _DefaultStore | None = _DEFAULT,
        gateway: Gateway | None = None,
        answer_format: AnswerFormat | None = None,
        source: str | None = None,
    ) -> Graph:
        """A graph from YAML text; a mistake raises SpecError naming its YAML path and line (also the
        checks made when the graph is built: budget caps the models cannot be priced for, a tester's
        answer format)."""
        if not isinstance(text, str | bytes):  # a Path or None failed deep inside the YAML reader
            raise TypeError(
                f"Graph.from_yaml takes YAML text, not {type(text).__name__}; read a file with agentscale.load(path)"
            )
        if isinstance(text, bytes):
            text = decoded_text(text, source)
        return cls._from_located(load_located(text, source), store, gateway, answer_format, source)

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        store: Store | _DefaultStore | None = _DEFAULT,
        gateway: Gateway | None = None,
        answer_format: AnswerFormat | None = None,
        source: str | None = None,
    ) -> Graph:
        """A graph from data shaped like the YAML (built in code); a mistake raises SpecError naming
        its path (`nodes[0].model`), as a file's would, where `GraphSpec.model_validate` raises
        pydantic's ValidationError."""
        return cls._from_located(LocatedData(data), store, gateway, answer_format, source)

    @classmethod
    def _from_located(
        cls,
        located: LocatedData,
        store: Store | _DefaultStore | None,
        gateway: Gateway | None,
        answer_format: AnswerFormat | None,
        source: str | None,
    ) -> Graph:
        """Parsed graph data as a graph: its routes checked at their lines, and the checks made when
        the graph is built placed at theirs (YAML text has lines; data built in code has paths only)."""
        spec = checked_spec(located, source)
        with located.locating(source):
            return cls(spec, store=store, gateway=gateway, answer_format=answer_format, source=source)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def output(self) -> str:
        return self.runtime.output

    @property
    def store(self) -> Store | None:
        return self.gateway.store

    def to_yaml(self) -> str:
        """The graph as YAML that `agentscale.load` reads back (what a run stores as its graph)."""
        if self._yaml is None:
            self._yaml = dump_graph_spec(self.spec)
        return self._yaml

    def compile(self) -> CompiledStateGraph:
        """A compiled LangGraph graph: input `{"question"}`, output `{"answer", "trace", "usage", ...}`
        (and `"rounds"` for a graph with a coordinator, which compiles to one `discussion` node)."""
        if self.spec.coordinator is not None:
            return build_discussion_graph(self.runtime, self._warm_up).compile()
        return build_state_graph(self.runtime, self._warm_up).compile()

    async def arun(
        self,
        question: str,
        *,
        run_id: str | None = None,
        item_key: str = "0",
        record: bool = True,
        on_event: Callable[[GraphEvent], None] | None = None,
    ) -> RunResult:
        """Answer one question. With a store and `record`, the run and its calls are saved. `on_event`
        is a plain function, called on this loop as each node starts and finishes (for async
        consumers: `astream`)."""
        checked_question(question)
        if not isinstance(record, bool):  # record="no" recorded
            raise TypeError(f"record takes True or False, not {record!r}")
        if isinstance(item_key, int) and not isinstance(item_key, bool):  # stored as its text, as always
            item_key = str(item_key)
        if not isinstance(item_key, str):  # None failed on the question's rows, after the calls were paid
            raise TypeError(f"item_key takes a string, not {type(item_key).__name__}")
        attributes = {"graph": self.name, "run_id": run_id, "item": item_key, "question": question}
        database = self.store.path if self.store else None
        with storage_errors_said(database, "recording the run"):
            # before the item's span: litellm's import and the servers' starts are the process's work,
            # done once (an eval's first items' spans lasted 6-11 s around 0.15-0.5 s of their own)
            await self._warm_up()
        with span("item", item_key, attributes) as traced:  # tracing (agentscale.tracing): a no-op when off
            with storage_errors_said(database, "recording the run"):
                result = await self._arun(question, run_id=run_id, item_key=item_key, record=record, on_event=on_event)
            traced.set({"run_id": result.run_id, "answer": result.answer, "stopped_reason": result.stopped_reason})
            traced.set(result.usage.to_dict())
            return result

    async def _arun(
        self,
        question: str,
        *,
        run_id: str | None,
        item_key: str,
        record: bool,
        on_event: Callable[[GraphEvent], None] | None,
    ) -> RunResult:
        store = self.store if record else None
        run_row: RunValues | None = None
        if store is not None and run_id is not None and run_id not in self._runs_found:
            if not store.has_run(run_id):  # its rows would fail at the end, after the calls were paid
                raise RunNotFound(f"no run {run_id!r} in {store.path}: leave run_id out and a new run is made")
            self._runs_found.add(run_id)
        if store is not None and run_id is not None and store.has_item(run_id, item_key):
            # a second row under one key: runs show and the report join calls to items by key, and
            # showed both questions' calls under each (the report: none under the first)
            raise AgentScaleError(f"run {run_id} already has an item {item_key!r}: give each question its own item_key")
        if store is not None and run_id is None:
            run_id = new_run_id()
            run_row = {
                "id": run_id,
                "kind": "run",
                "created": utcnow(),
                "graph_name": self.name,
                "graph_yaml": self.to_yaml(),
            }
        options = RunOptions(
            run_id=run_id if store is not None else None, item_key=item_key, run_row=run_row, on_event=on_event
        )
        if self.spec.coordinator is not None:  # a CEO steers rounds instead of one pass over the DAG
            return await run_discussion(self.runtime, question, options)
        key = uuid.uuid4().hex
        context = open_context(self.runtime, question, options, key)
        config: RunnableConfig = {"configurable": {OPTIONS_KEY: options}}
        try:
            await self._app().ainvoke({"question": question, "run_key": key}, config=config)
        except BaseException as exc:
            record_broken(store, run_row, exc, item_key, list(context.traces.values()), question)
            raise
        finally:
            close_context(key)
        result = context.result
        assert result is not None, "the graph finished without a result"
        return result

    async def astream(
        self, question: str, *, run_id: str | None = None, item_key: str = "0", record: bool = True
    ) -> AsyncGenerator[GraphEvent, None]:
        """Yield `node_started` and `node_finished` events as they happen, then one `final` event.

        >>> async def show(graph):  # doctest: +SKIP
        ...     async for event in graph.astream("What is 2 + 2?"):
        ...         print(event.kind, event.node_id)
        """
        queue: asyncio.Queue[GraphEvent] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.arun(question, run_id=run_id, item_key=item_key, record=record, on_event=queue.put_nowait)
        )
        getter: asyncio.Future[GraphEvent] | None = None
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield GraphEvent("final", result=task.result())
        finally:  # a consumer that stops early (a client gone, a timeout) leaves no task pending
            if getter is not None:
                getter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def run(
        self,
        question: str,
        *,
        run_id: str | None = None,
        item_key: str = "0",
        record: bool = True,
        on_event: Callable[[GraphEvent], None] | None = None,
    ) -> RunResult:
        """Synchronous :meth:`arun` (not callable from inside a running event loop). `on_event` is
        called in this thread, in order, while the run goes on in agentscale's loop."""
        if _loop_running():
            raise EventLoopError(
                "Graph.run cannot be called from a running event loop (a notebook, async code): "
                "use `await graph.arun(question)` instead"
            )
        # no loop running: agentscale's loop answers, whichever thread asks (outside the probe's
        # `except`: every error of the run read "no running event loop", then "During handling...")
        if any(starts_server(model.route) for model in self.runtime.callers.values()):
            install_signal_handlers()  # servers start in the loop's thread, where Python allows none
        if on_event is None:
            return run_sync(self.arun(question, run_id=run_id, item_key=item_key, record=record))
        check_callback(on_event, "on_event")
        events = CallerThreadEvents(on_event)
        result = run_sync(
            self.arun(question, run_id=run_id, item_key=item_key, record=record, on_event=events.put), events
        )
        if events.error is not None:  # on the run's last event: the run had ended (else it failed with it)
            if run_id is None and result.run_id is not None and self.store is not None:  # the run made here
                self.store.finish_broken_run(result.run_id, events.error)
            raise events.error
        return result

    async def _warm_up(self) -> None:
        """What takes seconds once, done before a question's clock starts (a time budget counted it,
        and the caller's event loop stalled on litellm's import): litellm's first import and local
        servers' starts (servers of different models start concurrently), once per graph; the
        handbook's embedding model and index (a missing handbook fails here)."""
        if self.runtime.callers and not self._endpoints_ready:
            await import_litellm()
            await self._prepare_endpoints()
            self._endpoints_ready = True
        if self.runtime.memory is not None:
            await asyncio.to_thread(self.runtime.memory.warm_up)

    async def _prepare_endpoints(self) -> None:
        """Start the models' servers (`local/` routes) before the run's clock, except where the
        response cache may answer instead: a re-run from the cache must not wait a minute per local
        model for servers it never calls. Those start at their first cache miss (the gateway
        resolves on every miss). A graph with a time budget starts every server first, so no
        question spends its seconds waiting for one."""
        served = {m.route: m for m in self.runtime.callers.values() if starts_server(m.route)}
        deferred = {route for route in served if self._cache_may_answer(route)}
        await asyncio.gather(*(resolve_endpoint(m) for route, m in served.items() if route not in deferred))

    def _cache_may_answer(self, route: str) -> bool:
        store, budget = self.gateway.store, self.spec.budget
        if not self.gateway.settings.cache or store is None or (budget is not None and budget.max_latency_s):
            return False
        return store.has_cached([route])

    def _app(self) -> CompiledStateGraph:
        """What `arun` invokes for a DAG: `compile()`'s graph less the `__prepare__` step, since `arun`
        opens the run itself (one LangGraph superstep less per question)."""
        if self._compiled is None:
            self._compiled = build_state_graph(self.runtime, prepare=False).compile()
        return self._compiled


def load(
    path: str | Path,
    *,
    store: Store | _DefaultStore | None = _DEFAULT,
    gateway: Gateway | None = None,
    answer_format: AnswerFormat | None = None,
) -> Graph:
    """Load and validate a graph file.

    `store=None` disables recording, `store=Store(path)` records elsewhere; `gateway=` shares one
    gateway (its store records); `answer_format` overrides the graph's.
    """
    if isinstance(path, str) and "\n" in path:  # "file not found", naming the whole YAML as the file
        raise TypeError("agentscale.load takes a file's path; this is YAML text: use Graph.from_yaml(text)")
    return Graph.from_yaml(read_text(path), store=store, gateway=gateway, answer_format=answer_format, source=str(path))


def _check_budget_is_enforceable(runtime: GraphRuntime, source: str | None) -> None:
    """A cap in FLOPs or USD needs every model's size or price; say which is missing, up front. A cap
    below the least any call reserves (its completion cap and its prompt without the question, before
    each call) refused every call: validate passed the graph and each run failed "would be exceeded"
    (`budget: {max_tokens: 120}` over calls of 100 tokens: the prompt made 178), as a space's search
    did before its own check (`optimize.problem`). A CEO may cut its workers' replies to `min_tokens`."""
    spec = runtime.spec
    budget = spec.budget
    if budget is None:
        return
    issues = []
    for user, model in runtime.callers.items():
        if budget.max_flops is not None and model.params_b is None:
            message = f"model {model.name!r} ({user}) has unknown size: set params_b"
            issues.append(SpecIssue("budget.max_flops", message))
        if budget.max_usd is not None and not price_is_known(model):
            issues.append(SpecIssue("budget.max_usd", f"model {model.name!r} ({user}) has unknown price: set price"))
    least = [_least_call(runtime, node_id) for node_id in runtime.models]
    if least:
        fix = "every call would be refused; raise it or lower max_tokens"
        cap, prompt, spend = min(least, key=lambda call: call[2].tokens)
        if budget.max_tokens is not None and budget.max_tokens < spend.tokens:
            message = (
                f"{budget.max_tokens} is below the smallest call's reservation (max_tokens {cap} and a prompt of "
                f"at least {prompt} tokens, reserved before each call): {fix}"
            )
            issues.append(SpecIssue("budget.max_tokens", message))
        elif budget.max_tokens is not None and spec.coordinator is not None:
            issue = _least_round_issue(runtime, budget.max_tokens)
            if issue is not None:
                issues.append(issue)
        flops = min((call[2].flops for call in least if call[2].flops), default=None)
        if budget.max_flops is not None and flops is not None and budget.max_flops < flops:
            message = f"{budget.max_flops:g} is below the smallest call's reservation ({flops:.3g} FLOPs): {fix}"
            issues.append(SpecIssue("budget.max_flops", message))
        usd = min((call[2].usd for call in least if call[2].usd is not None), default=None)
        if budget.max_usd is not None and usd is not None and budget.max_usd < usd:
            message = f"{budget.max_usd:g} is below the smallest call's reservation (${usd:.2g}): {fix}"
            issues.append(SpecIssue("budget.max_usd", message))
    if issues:
        raise SpecError(issues, source)


def _least_round_issue(runtime: GraphRuntime, max_tokens: int) -> SpecIssue | None:
    """A discussion's round needs its workers (at least `min_agents`) and its aggregator, each with
    its prompt and `min_tokens`: under less, no round runs and no call is made (a budget of 150
    tokens over 3 workers and a fuser passed validate, and each run ended "no answer")."""
    plan = TeamPlan(runtime)
    limits = limits_for(runtime, plan)
    calls, read = round_calls(runtime, plan, limits.min_agents)
    prompt = _least_call(runtime, plan.pool[0])[1] if plan.pool else 0
    needed = smallest_round_tokens(calls, read, prompt, limits.min_tokens)
    if max_tokens >= needed:
        return None
    workers = f"{limits.min_agents} worker" + ("s" if limits.min_agents > 1 else "")
    aggregator = f" and the aggregator {plan.aggregator!r}" if calls > limits.min_agents else ""
    replies = "the worker's reply" if limits.min_agents == 1 else f"the {workers}' replies"
    read_back = f", plus {replies} in the aggregator's prompt" if read else ""
    lower = "coordinator.min_agents or min_tokens" if limits.min_agents > 1 else "coordinator.min_tokens"
    message = (
        f"{max_tokens} is below the smallest round of the discussion ({needed} tokens: {workers}{aggregator}, "
        f"each a prompt of at least {prompt} tokens and a reply of min_tokens {limits.min_tokens}{read_back}): "
        f"no round would run; raise it or lower {lower}"
    )
    return SpecIssue("budget.max_tokens", message)


def _least_call(runtime: GraphRuntime, node_id: str) -> tuple[int, int, Spend]:
    """The least a call of `node_id` reserves: its completion cap (a CEO's `min_tokens` when lower),
    its role's prompt without the question, and what they cost."""
    spec, node = runtime.spec, runtime.nodes[node_id]
    cap = completion_cap(node, spec)
    if spec.coordinator is not None:
        cap = min(cap, spec.coordinator.min_tokens)
    messages = runtime.roles[node.role].messages("", [], runtime.answer_format)
    prompt = estimate_prompt_tokens(messages)
    return cap, prompt, spend_of(runtime.models[node_id], prompt, cap)


def _loop_running() -> bool:
    """Whether this thread runs an event loop (where a synchronous run would block it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
