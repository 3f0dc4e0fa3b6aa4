"""`Graph.compile()` is a real LangGraph graph: it mirrors the DAG and embeds as a subgraph."""

from __future__ import annotations

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from agentscale import Graph

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
