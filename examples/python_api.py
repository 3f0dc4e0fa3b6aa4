"""Call a graph from Python: one answer, then the same question streamed node by node.

python examples/python_api.py [GRAPH.yaml] [QUESTION]
"""

from __future__ import annotations

import asyncio
import sys

import agentscale


async def main(path: str, question: str) -> None:
    graph = agentscale.load(path)
    result = await graph.arun(question)
    print(f"answer: {result.answer}")
    print(f"calls: {result.usage.calls} (+{result.usage.cached_calls} cached), tokens: {result.usage.tokens}")
    async for event in graph.astream(question):
        if event.kind == "node_finished" and event.trace is not None:
            print(f"  {event.node_id} ({event.role}) -> {event.trace.answer}")
        elif event.kind == "final" and event.result is not None:
            print(f"final: {event.result.answer}")


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "graphs/fan-in.yaml",
            sys.argv[2] if len(sys.argv) > 2 else "What is 17 + 25?",
        )
    )
