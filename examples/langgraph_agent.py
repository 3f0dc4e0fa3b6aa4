"""Embed an agentscale graph as the `reasoner` node of your own LangGraph agent.

    python examples/langgraph_agent.py [GRAPH.yaml]

The compiled graph reads `question` and writes `answer`, so it drops into any state with those keys.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

import agentscale


class AgentState(TypedDict, total=False):
    request: str
    question: str
    answer: str | None
    reply: str


def understand(state: AgentState) -> AgentState:
    """Turn the user's request into the question the reasoner answers."""
    return {"question": state["request"].strip().rstrip("?") + "?"}


def respond(state: AgentState) -> AgentState:
    return {"reply": f"The reasoner says: {state['answer']}"}


def build(graph_path: str):  # type: ignore[no-untyped-def]
    reasoner = agentscale.load(graph_path).compile()
    builder = StateGraph(AgentState)
    builder.add_node("understand", understand)
    builder.add_node("reasoner", reasoner)
    builder.add_node("respond", respond)
    builder.add_edge(START, "understand")
    builder.add_edge("understand", "reasoner")
    builder.add_edge("reasoner", "respond")
    builder.add_edge("respond", END)
    return builder.compile()


async def main(graph_path: str) -> None:
    agent = build(graph_path)
    state = await agent.ainvoke({"request": "What is 17 + 25"})
    print(state["reply"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "graphs/fan-in.yaml"))
