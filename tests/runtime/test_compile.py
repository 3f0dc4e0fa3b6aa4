"""`Graph.compile()` is a real LangGraph graph: it mirrors the DAG and embeds as a subgraph; a graph
with a coordinator compiles to its discussion."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from agentscale import AgentScaleError, Graph, QuestionError
from agentscale.graphs.validate import load_spec_text
from agentscale.models.gateway import Gateway
from agentscale.storage.db import Store

BODY = (
    "name: sub\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    "  - {id: v, role: vote}\nedges: ['a, b -> v']\nanswer_format: number\n"
)


def test_compiled_graph_mirrors_the_dag(make_graph) -> None:
    app = make_graph(BODY).compile()
    drawn = app.get_graph()
    names = set(drawn.nodes)
    assert {"a", "b", "v", "__prepare__"} <= names
    edges = {(e.source, e.target) for e in drawn.edges}
    assert ("a", "v") in edges and ("b", "v") in edges


async def test_compiled_graph_runs_standalone(make_graph) -> None:
    out = await make_graph(BODY).compile().ainvoke({"question": "What is 8 + 9?"})
    assert out["answer"] == "17"
    assert set(out["trace"]) == {"a", "b", "v"}
    assert out["usage"]["calls"] == 2


async def test_a_cancelled_invocation_stops_its_run(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """A caller's timeout must not leave the run going on in the background (its next call unsent)."""
    from agentscale.models.litellm_loader import get_litellm
    from agentscale.testing import Rule

    get_litellm()  # imported already, as by the suite's earlier tests: its seconds would outlast the 0.2 s

    scripted.add_rule(Rule(pattern="FIRST", replies=["Final answer: 1"], latency_s=0.6))
    scripted.add_rule(Rule(replies=["Final answer: 2"]))
    app = make_graph(
        "name: chain\nroles:\n  first: {system: go, user: 'FIRST {question}'}\nnodes:\n"
        "  - {id: a, role: first, model: m}\n  - {id: b, role: critic, model: m}\nedges: ['a -> b']\n"
    ).compile()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(app.ainvoke({"question": "q"}), timeout=0.2)
    await asyncio.sleep(1.0)  # a's answer is back by now: b would have been asked if the run went on
    assert len(scripted.completion_requests) == 1


async def test_compiled_graph_as_subgraph_of_a_user_graph(make_graph) -> None:
    graph: Graph = make_graph(BODY)

    class Parent(TypedDict, total=False):
        question: str
        answer: str | None
        shouted: str

    def ask(state: Parent) -> Parent:
        return {"question": "What is 20 + 1?"}

    def shout(state: Parent) -> Parent:
        return {"shouted": f"ANSWER: {state['answer']}"}

    builder = StateGraph(Parent)
    builder.add_node("ask", ask)
    builder.add_node("reasoner", graph.compile())
    builder.add_node("shout", shout)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "reasoner")
    builder.add_edge("reasoner", "shout")
    builder.add_edge("shout", END)
    result = await builder.compile().ainvoke({})
    assert result["shouted"] == "ANSWER: 21"


def test_stream_updates_name_each_node(make_graph) -> None:
    import asyncio

    async def collect() -> list[str]:
        seen = []
        async for update in make_graph(BODY).compile().astream({"question": "What is 1 + 2?"}, stream_mode="updates"):
            seen.extend(update)
        return seen

    seen = asyncio.run(collect())
    assert seen[0] == "__prepare__" and seen[-1] == "v"  # the output node finishes the run
    assert {"a", "b", "v"} <= set(seen)


def test_compiled_graph_supports_synchronous_invoke(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    out = make_graph(BODY).compile().invoke({"question": "What is 30 + 12?"})
    assert out["answer"] == "42" and set(out["trace"]) == {"a", "b", "v"}
    assert len(scripted.completion_requests) == 2


DISCUSSION = """\
name: discussion
models: {w: {model: sim/llama-3b}, ceo: {model: sim/llama-70b}}
nodes:
  - {id: s1, role: assistant, model: w}
  - {id: s2, role: assistant, model: w}
  - {id: f, role: fuser, model: w}
edges: ["s1, s2 -> f"]
coordinator: {model: ceo, max_rounds: 2}
"""


def test_a_coordinator_graph_compiles_to_its_discussion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    graph = Graph(load_spec_text(DISCUSSION, "d.yaml"), gateway=Gateway(store=Store(tmp_path / "d.db")))
    app = graph.compile()
    assert "discussion" in app.get_graph().nodes
    question = "[sim:math#0007] Solve problem 7."
    out = app.invoke({"question": question})
    expected = asyncio.run(graph.arun(question, record=False))  # replayed from the response cache
    assert out["answer"] == expected.answer is not None
    assert [r["decision"]["source"] for r in out["rounds"]] == ["ceo"] * len(out["rounds"])
    assert "r1.ceo" in out["trace"] and "r1.f" in out["trace"] and out["usage"]["calls"] >= 4
    again = asyncio.run(app.ainvoke({"question": question}))["rounds"]
    assert [r["decision"] for r in again] == [r["decision"] for r in out["rounds"]]
    assert again[0]["usage"]["cached_calls"] > 0  # the same discussion, replayed


async def test_a_question_that_is_not_one_is_refused_before_any_call(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """None failed with KeyError of an internal run id, 123 with "'int' object has no attribute
    'strip'", and an empty question paid for two calls; compile().invoke refused only the empty one.
    Then the refusals were TypeError and ValueError, which an app catching AgentScaleError missed."""
    graph = make_graph(BODY)
    for question, error, message in [
        (None, QuestionError, "a string, got NoneType"),
        (123, QuestionError, "a string, got int"),
        ("  ", QuestionError, "the question is empty"),  # an AgentScaleError: apps catch one base class
        # paid for, then a UnicodeEncodeError when stored (an API fuzzer's)
        ("What is 1 + 1? \ud800", QuestionError, r"not Unicode text \(an unpaired surrogate at character 16\)"),
    ]:
        with pytest.raises(error, match=message):
            await graph.arun(question)
        with pytest.raises(error, match=message):
            await graph.compile().ainvoke({"question": question})
    assert scripted.completion_requests == []


async def test_run_inside_an_event_loop_says_to_await_arun(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """An app catching agentscale's errors (AgentScaleError) missed this one, a bare RuntimeError."""
    with pytest.raises(AgentScaleError, match=r"use `await graph.arun\(question\)`") as raised:
        make_graph(BODY).run("What is 8 + 9?")
    assert isinstance(raised.value, RuntimeError)
    assert scripted.completion_requests == []


async def test_a_discussion_streams_its_ceos_calls_too() -> None:
    """`astream` announced the workers' calls only: a stream showed nothing while the CEO decided."""
    graph = Graph(load_spec_text(DISCUSSION, "d.yaml"), store=None)
    events = [event async for event in graph.astream("[sim:math#0007] Solve problem 7.")]
    finished = {event.node_id for event in events if event.kind == "node_finished"}
    started = {event.node_id for event in events if event.kind == "node_started"}
    result = events[-1].result
    assert result is not None and {trace.node_id for trace in result.trace} == finished == started
    assert "r1.ceo" in finished


def test_a_nodes_error_is_raised_every_time_not_a_run_key(make_graph) -> None:  # type: ignore[no-untyped-def]
    """A failing node closed the run; a sibling step LangGraph started afterwards looked the run up by
    its key and raised KeyError('<hex key>'), which LangGraph reported instead (2 runs of 10)."""
    graph = make_graph(BODY)

    def broken(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "node_started" and event.node_id == "a":
            raise ValueError("bug in my callback")

    for index in range(20):
        with pytest.raises(ValueError, match="bug in my callback"):
            graph.run(f"What is {index} + 1?", on_event=broken)


class _Parent(TypedDict, total=False):
    question: str
    answer: str | None


async def test_invocations_that_overlap_under_one_run_key_answer_their_own_questions(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """A parent's state carries the `run_key` of an earlier invocation along (a fan-out of `Send`s
    copies it into each): two invocations that overlapped under one key joined one run, and one
    answered the other's question (9101 for "9100 + 2") or failed on "run context vanished"."""
    from agentscale.testing import Rule

    scripted.add_rule(Rule(pattern=r"9100 \+ 1", replies=["Final answer: 9101"], latency_s=0.3))
    scripted.add_rule(Rule(pattern=r"9100 \+ 2", replies=["Final answer: 9102"], latency_s=0.3))
    app = make_graph(BODY).compile()

    async def ask(i: int) -> dict[str, Any]:
        await asyncio.sleep(0.1 * i)  # the second starts while the first waits for its replies
        return await app.ainvoke({"question": f"What is 9100 + {i}?", "run_key": "shared"})

    first, second = await asyncio.gather(ask(1), ask(2))
    assert (first["answer"], second["answer"]) == ("9101", "9102")
    for i, out in ((1, first), (2, second)):  # the second's trace was the first's calls
        assert f"What is 9100 + {i}?" in out["trace"]["a"]["messages"][-1]["content"]
    assert first["run_key"] != second["run_key"]


async def test_a_checkpointed_parent_resumes_the_compiled_graph(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """The subgraph's state holds a key to a run of this process: a parent resuming it after its
    caller gave up (or in another process) failed with KeyError of that key. The run starts again
    under it, and what had been answered comes from the response cache."""
    from langgraph.checkpoint.memory import MemorySaver

    from agentscale.testing import Rule

    scripted.add_rule(Rule(replies=["Final answer: 10"], latency_s=0.6))
    builder = StateGraph(_Parent)
    builder.add_node("agents", make_graph(BODY).compile())
    builder.add_edge(START, "agents")
    builder.add_edge("agents", END)
    app = builder.compile(checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(app.ainvoke({"question": "What is 5 + 5?"}, config), 0.3)
    assert (await app.aget_state(config)).next == ("agents",)
    assert (await app.ainvoke(None, config))["answer"] == "10"


async def test_a_stream_left_before_its_end_does_not_keep_its_run(make_graph, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A `break` out of a compiled graph's stream before its output step left the run registered
    (with its traces) for the life of the process; it is dropped once its nodes are done."""
    from agentscale.runtime import execute

    monkeypatch.setattr(execute, "_ABANDONED_AFTER_S", 0.05)
    stream = make_graph(BODY).compile().astream({"question": "What is 1 + 1?"}, stream_mode="updates")
    async for update in stream:
        key = update["__prepare__"]["run_key"]
        break
    await stream.aclose()
    assert execute.has_context(key)
    await asyncio.sleep(0.5)
    assert not execute.has_context(key)


async def test_streams_left_before_their_end_are_kept_in_bounded_number(make_graph, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each stream left before its output step kept its run for the hour: an app whose clients
    disconnect mid-stream held one per disconnect. Beyond a bound, the oldest go first."""
    from agentscale.runtime import execute

    monkeypatch.setattr(execute, "_ABANDONED_KEPT", 2)
    app = make_graph(BODY).compile()
    keys = []
    for index in range(4):
        stream = app.astream({"question": f"What is {index} + 1?"}, stream_mode="updates")
        async for update in stream:
            keys.append(update["__prepare__"]["run_key"])
            break
        await stream.aclose()
        for _ in range(100):  # until its nodes are done, when it starts waiting for its output step
            if keys[-1] in execute._WAITING:
                break
            await asyncio.sleep(0.01)
    assert [execute.has_context(key) for key in keys] == [False, False, True, True]


def test_a_compiled_graph_warms_up_before_its_first_question(make_graph) -> None:  # type: ignore[no-untyped-def]
    """litellm's import and local servers' starts ran inside the first question's clock (a 3 s time
    budget refused it; the caller's event loop stalled 2.7 s), as `Graph.arun` never let them."""
    graph = make_graph(BODY)
    graph.compile().invoke({"question": "What is 1 + 1?"})
    assert graph._endpoints_ready


async def test_a_checkpointed_parent_resumes_after_a_nodes_error(make_graph, scripted) -> None:  # type: ignore[no-untyped-def]
    """The run's error was kept for its other steps, and a resume in the same process raised it again
    without running the node (until 64 other failures pushed it out)."""
    from langgraph.checkpoint.memory import MemorySaver

    from agentscale.runtime.compile import OPTIONS_KEY
    from agentscale.runtime.execute import RunOptions

    failures = []

    def once(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "node_started" and event.node_id == "v" and not failures:
            failures.append(event)
            raise RuntimeError("transient")

    builder = StateGraph(_Parent)
    builder.add_node("agents", make_graph(BODY).compile())
    builder.add_edge(START, "agents")
    builder.add_edge("agents", END)
    app = builder.compile(checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "t2", OPTIONS_KEY: RunOptions(on_event=once)}}
    with pytest.raises(RuntimeError, match="transient"):
        await app.ainvoke({"question": "What is 5 + 5?"}, config)
    assert (await app.ainvoke(None, config))["answer"] == "10"


async def test_finished_compiled_runs_are_not_kept(make_graph) -> None:  # type: ignore[no-untyped-def]
    """Every finished run (its traces and completions) was held for the expiry meant for abandoned
    streams: 200 runs, 15.8 MB."""
    import gc

    from agentscale.runtime.execute import RunContext

    app = make_graph(BODY).compile()
    questions = [f"What is {index} + 2000?" for index in range(5)]
    for question in questions:
        await app.ainvoke({"question": question})
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, RunContext) and o.question in questions]


def test_runs_of_a_closed_event_loop_are_dropped(make_graph) -> None:  # type: ignore[no-untyped-def]
    """A stream left in an `asyncio.run` that then ended kept its run for good (no timer fires there)."""
    from agentscale.runtime import execute

    app = make_graph(BODY).compile()

    async def leave() -> str:
        stream = app.astream({"question": "What is 1 + 1?"}, stream_mode="updates")
        async for update in stream:
            await stream.aclose()
            return str(update["__prepare__"]["run_key"])
        raise AssertionError("no update")

    left = asyncio.run(leave())
    assert execute.has_context(left)
    asyncio.run(app.ainvoke({"question": "What is 2 + 2?"}))
    assert not execute.has_context(left)
