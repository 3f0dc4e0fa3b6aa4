"""Framework overhead of agentscale against the scripted server (figures, not a test).

(a) per call: a 1-node graph vs calling litellm directly with the same request (goal: < 10% and
    < 2 ms added per call);
(b) a width-16 graph vs one call when the server sleeps 200 ms (goal: ratio < 1.5);
(c) a cached re-run of the width-16 graph (goal: no model calls, < 5 ms per node).

Run: .venv/bin/python benchmarks/overhead.py [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _servers import scripted_server

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.models.litellm_loader import get_litellm


def _graph(api_base: str, width: int, store: Store, cache: bool) -> Graph:
    nodes = "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(width))
    text = f'name: w{width}\nmodels:\n  m: {{model: hosted_vllm/bench, api_base: "{api_base}"}}\n'
    text += "defaults: {temperature: 0.7, max_tokens: 32}\nnodes:\n" + nodes
    if width > 1:
        sources = ", ".join(f"s{i}" for i in range(width))
        text += f"  - {{id: v, role: vote}}\nedges:\n  - {sources} -> v\n"
    return Graph.from_yaml(text, gateway=Gateway(store, GatewaySettings(cache=cache)))


async def _direct_call_seconds(api_base: str, messages: list[dict[str, str]], calls: int) -> list[float]:
    litellm = get_litellm()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await litellm.acompletion(
            model="hosted_vllm/bench", api_base=api_base, messages=messages, temperature=0.7, max_tokens=32
        )
        times.append(time.perf_counter() - started)
    return times


async def _graph_seconds(graph: Graph, questions: list[str]) -> list[float]:
    times = []
    for question in questions:
        started = time.perf_counter()
        await graph.arun(question)
        times.append(time.perf_counter() - started)
    return times


async def measure(calls: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, scripted_server(0.0) as fast, scripted_server(0.2) as slow:
        store = Store(Path(tmp) / "bench.db")
        one = _graph(fast, 1, store, cache=False)
        questions = [f"What is {i} + 1?" for i in range(calls)]
        messages = one.runtime.roles["assistant"].messages(questions[0], [], "text")
        await _direct_call_seconds(fast, messages, 5)  # warm both paths
        await _graph_seconds(one, questions[:5])
        # interleave the two so machine noise hits both alike
        direct, framework = [], []
        for start in range(0, calls, 20):
            direct += await _direct_call_seconds(fast, messages, 20)
            framework += await _graph_seconds(one, questions[start : start + 20])
        figures["direct_call_ms"] = statistics.median(direct) * 1000
        figures["graph_call_ms"] = statistics.median(framework) * 1000
        figures["overhead_ms"] = figures["graph_call_ms"] - figures["direct_call_ms"]
        figures["overhead_ratio"] = figures["graph_call_ms"] / figures["direct_call_ms"]

        single_slow = await _direct_call_seconds(slow, messages, 3)
        wide = _graph(slow, 16, store, cache=True)
        started = time.perf_counter()
        first = await wide.arun("What is 2 + 2?")
        figures["width16_s"] = time.perf_counter() - started
        figures["one_call_s"] = statistics.median(single_slow)
        figures["width16_ratio"] = figures["width16_s"] / figures["one_call_s"]
        figures["width16_calls"] = first.usage.calls

        rerun_times = []
        for _ in range(5):
            started = time.perf_counter()
            again = await wide.arun("What is 2 + 2?")
            rerun_times.append(time.perf_counter() - started)
            assert again.usage.calls == 0, "cached re-run made model calls"
        figures["cached_rerun_calls"] = again.usage.calls
        figures["cached_ms_per_node"] = statistics.median(rerun_times) * 1000 / 17
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per path in (a)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.calls))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"(a) per call, median of {args.calls}: litellm direct {figures['direct_call_ms']:.2f} ms, "
        f"1-node graph {figures['graph_call_ms']:.2f} ms -> +{figures['overhead_ms']:.2f} ms "
        f"({(figures['overhead_ratio'] - 1) * 100:.1f}% added; goal < 10% and < 2 ms)"
    )
    print(
        f"(b) server sleeps 200 ms: one call {figures['one_call_s']:.3f} s, width-16 graph "
        f"{figures['width16_s']:.3f} s ({figures['width16_calls']:.0f} calls) -> ratio {figures['width16_ratio']:.2f} "
        "(goal < 1.5)"
    )
    print(
        f"(c) cached re-run of the width-16 graph: {figures['cached_rerun_calls']:.0f} model calls, "
        f"{figures['cached_ms_per_node']:.2f} ms per node (goal: 0 calls, < 5 ms per node)"
    )


if __name__ == "__main__":
    main()
