"""Framework overhead of agentscale against the scripted server (figures, not a test).

(a) per call: a 1-node graph vs calling litellm directly with the same request, interleaved in
    blocks of 20 (goal: <= 2 ms added per call, median of 200); also against litellm direct with its
    logging pipeline skipped as the gateway skips it when no litellm callback is installed, so the
    share of the difference that comes from litellm doing less is in plain sight;
(b) a width-16 graph vs one call when the server sleeps 200 ms (goal: ratio <= 1.4);
(c) a cached re-run of the width-16 graph (goal: no model calls).

Besides wall-clock medians it prints this process's CPU time per call (`time.process_time`; the
server runs in its own process): on a shared, loaded machine wall time mostly measures the
neighbours, CPU time what agentscale itself spends. `--profile` runs the 1-node graph path under
cProfile instead and prints where its CPU time goes. `--canned` measures agentscale's own CPU per
question with litellm replaced by a canned reply (no HTTP): the least of 7 blocks, which a loaded
machine disturbs least. `--interleave` takes agentscale out: a bare one-node LangGraph graph around
the same litellm call, against litellm alone, a no-op LangGraph graph alone, and litellm followed by
the no-op graph (not nested), to tell LangGraph's own cost from what alternating it with litellm adds.
`--first-call` prints the latency fresh processes record for their first three calls (litellm's own
first-use imports inside the first one are timed as the model's).

Run: .venv/bin/python benchmarks/overhead.py [--calls 200] [--json] [--profile] [--canned] [--interleave]
     [--first-call [PROCESSES]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _canned import can_litellm
from _servers import scripted_server

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.models.litellm_loader import get_litellm, skipping_unread_work


def _graph(api_base: str, width: int, store: Store | None, cache: bool) -> Graph:
    nodes = "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(width))
    text = f'name: w{width}\nmodels:\n  m: {{model: hosted_vllm/bench, api_base: "{api_base}"}}\n'
    text += "defaults: {temperature: 0.7, max_tokens: 32}\nnodes:\n" + nodes
    if width > 1:
        sources = ", ".join(f"s{i}" for i in range(width))
        text += f"  - {{id: v, role: vote}}\nedges:\n  - {sources} -> v\n"
    return Graph.from_yaml(text, gateway=Gateway(store, GatewaySettings(cache=cache)))


Timing = tuple[list[float], list[float]]  # (wall seconds, CPU seconds) per call


async def _direct_calls(
    api_base: str, messages: list[dict[str, str]], calls: int, *, skip_logging: bool = False
) -> Timing:
    """`skip_logging`: as the gateway calls litellm (its logging and pricing off while nothing reads them)."""
    litellm = get_litellm()
    call: dict[str, Any] = {"model": "hosted_vllm/bench", "api_base": api_base, "messages": messages}
    call.update(temperature=0.7, max_tokens=32)
    wall, cpu = [], []
    for _ in range(calls):
        started, cpu_started = time.perf_counter(), time.process_time()
        with skipping_unread_work(call) if skip_logging else contextlib.nullcontext(call) as arguments:
            await litellm.acompletion(**arguments)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return wall, cpu


async def _graph_runs(graph: Graph, questions: list[str]) -> Timing:
    wall, cpu = [], []
    for question in questions:
        started, cpu_started = time.perf_counter(), time.process_time()
        await graph.arun(question)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return wall, cpu


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def measure(calls: int, wide_runs: int = 5) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, scripted_server(0.0) as fast, scripted_server(0.2) as slow:
        store = Store(Path(tmp) / "bench.db")
        one = _graph(fast, 1, store, cache=False)
        questions = [f"What is {i} + 1?" for i in range(calls)]
        messages = one.runtime.roles["assistant"].messages(questions[0], [], "text")
        await _direct_calls(fast, messages, 5)  # warm both paths
        await _graph_runs(one, questions[:5])
        # interleave the two so machine noise hits both alike
        direct: Timing = ([], [])
        unlogged: Timing = ([], [])
        framework: Timing = ([], [])
        for start in range(0, calls, 20):
            for total, (wall, cpu) in (
                (direct, await _direct_calls(fast, messages, 20)),
                (unlogged, await _direct_calls(fast, messages, 20, skip_logging=True)),
                (framework, await _graph_runs(one, questions[start : start + 20])),
            ):
                total[0].extend(wall)
                total[1].extend(cpu)
        figures["direct_call_ms"], figures["direct_cpu_ms"] = _ms(direct[0]), _ms(direct[1])
        figures["unlogged_call_ms"], figures["unlogged_cpu_ms"] = _ms(unlogged[0]), _ms(unlogged[1])
        figures["overhead_unlogged_ms"] = _ms(framework[0]) - figures["unlogged_call_ms"]
        figures["overhead_unlogged_cpu_ms"] = _ms(framework[1]) - figures["unlogged_cpu_ms"]
        figures["graph_call_ms"], figures["graph_cpu_ms"] = _ms(framework[0]), _ms(framework[1])
        figures["overhead_ms"] = figures["graph_call_ms"] - figures["direct_call_ms"]
        figures["overhead_ratio"] = figures["graph_call_ms"] / figures["direct_call_ms"]
        figures["overhead_cpu_ms"] = figures["graph_cpu_ms"] - figures["direct_cpu_ms"]

        # (b) fresh questions each time (no cache hits), one call and the width-16 graph alternating
        wide = _graph(slow, 16, store, cache=True)
        await _direct_calls(slow, messages, 1)
        one_call, width16, width16_cpu, width16_calls = [], [], [], []
        for i in range(wide_runs):
            one_call += (await _direct_calls(slow, messages, 1))[0]
            started, cpu_started = time.perf_counter(), time.process_time()
            result = await wide.arun(f"What is {i} + 2?")
            width16.append(time.perf_counter() - started)
            width16_cpu.append(time.process_time() - cpu_started)
            width16_calls.append(result.usage.calls)
        figures["one_call_s"] = statistics.median(one_call)
        figures["width16_s"] = statistics.median(width16)
        figures["width16_cpu_ms"] = _ms(width16_cpu)
        figures["width16_ratio"] = figures["width16_s"] / figures["one_call_s"]
        figures["width16_calls"] = statistics.median(width16_calls)
        figures["width16_runs"] = wide_runs

        rerun_times, rerun_cpu = [], []
        for _ in range(5):
            started, cpu_started = time.perf_counter(), time.process_time()
            again = await wide.arun("What is 0 + 2?")  # answered by the first run of (b)
            rerun_times.append(time.perf_counter() - started)
            rerun_cpu.append(time.process_time() - cpu_started)
            assert again.usage.calls == 0, "cached re-run made model calls"
        figures["cached_rerun_calls"] = again.usage.calls
        figures["cached_ms_per_node"] = _ms(rerun_times) / 17
        figures["cached_cpu_ms_per_node"] = _ms(rerun_cpu) / 17
    return figures


async def profile(calls: int, top: int) -> None:
    """The 1-node graph path under cProfile: cumulative and own CPU time of the top functions."""
    with tempfile.TemporaryDirectory() as tmp, scripted_server(0.0) as fast:
        one = _graph(fast, 1, Store(Path(tmp) / "bench.db"), cache=False)
        await _graph_runs(one, [f"What is {i} + 3?" for i in range(10)])  # warm
        profiler = cProfile.Profile(time.process_time)
        cpu_started = time.process_time()
        profiler.enable()
        await _graph_runs(one, [f"What is {i} + 1?" for i in range(calls)])
        profiler.disable()
        cpu = time.process_time() - cpu_started
    print(f"1-node graph, {calls} calls: {1000 * cpu / calls:.2f} ms CPU per call under the profiler")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


async def interleave(calls: int) -> dict[str, float]:
    """CPU ms per call (median) of five paths, interleaved in blocks of 20, without agentscale's runtime
    except in `agentscale 1-node graph`: where LangGraph's cost around a litellm call comes from."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class _State(TypedDict):
        question: str

    litellm = get_litellm()
    with tempfile.TemporaryDirectory() as tmp, scripted_server(0.0) as fast:
        one = _graph(fast, 1, Store(Path(tmp) / "bench.db"), cache=False)
        messages = one.runtime.roles["assistant"].messages("What is 1 + 1?", [], "text")

        async def call() -> None:
            await litellm.acompletion(
                model="hosted_vllm/bench", api_base=fast, messages=messages, temperature=0.7, max_tokens=32
            )

        async def calling_node(state: _State) -> dict[str, str]:
            await call()
            return {}

        async def noop_node(state: _State) -> dict[str, str]:
            return {}

        def bare(node: Any) -> Any:
            builder = StateGraph(_State)
            builder.add_node("n", node)
            builder.add_edge(START, "n")
            builder.add_edge("n", END)
            return builder.compile()

        around, noop = bare(calling_node), bare(noop_node)
        asked = 0

        async def then_noop() -> None:
            await call()
            await noop.ainvoke({"question": "q"})

        async def agentscale_graph() -> None:
            nonlocal asked
            asked += 1
            await one.arun(f"What is {asked} + 1?")

        paths: dict[str, Any] = {
            "litellm direct": call,
            "no-op LangGraph graph": lambda: noop.ainvoke({"question": "q"}),
            "litellm, then the no-op graph": then_noop,
            "LangGraph node around litellm": lambda: around.ainvoke({"question": "q"}),
            "agentscale 1-node graph": agentscale_graph,
        }
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        for path in paths.values():
            for _ in range(5):
                await path()
        for _ in range(0, calls, 20):
            for name, path in paths.items():
                for _ in range(20):
                    started = time.process_time()
                    await path()
                    cpu[name].append(time.process_time() - started)
    return {name: _ms(values) for name, values in cpu.items()}


async def canned(blocks: int = 7, questions: int = 100) -> dict[str, float]:
    """agentscale's CPU per question without litellm: `Gateway._call` answers at once with a canned
    reply; everything else (cache, ledger, rows, LangGraph) runs as usual."""
    can_litellm()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "canned.db")
        graphs = {
            "no store": (_graph("http://127.0.0.1:9/v1", 1, None, cache=False), questions),
            "store, cache off": (_graph("http://127.0.0.1:9/v1", 1, store, cache=False), questions),
            "store, cache on": (_graph("http://127.0.0.1:9/v1", 1, store, cache=True), questions),
            "width-16, cache on": (_graph("http://127.0.0.1:9/v1", 16, store, cache=True), questions // 10),
        }
        asked = 0
        timings: dict[str, list[float]] = {name: [] for name in graphs}
        for graph, _ in graphs.values():
            await graph.arun("What is 0 + 1?")
        for _ in range(blocks):
            for name, (graph, count) in graphs.items():
                started = time.process_time()
                for _ in range(count):
                    asked += 1
                    await graph.arun(f"What is {asked} + 1?")
                timings[name].append(1000 * (time.process_time() - started) / count)
    for name, values in timings.items():
        figures[name] = min(values)
    return figures


_FIRST_CALL = """
import sys
sys.path.insert(0, sys.argv[2])
from overhead import _graph
graph = _graph(sys.argv[1], 1, None, cache=False)
print(*(graph.run(f"What is {i} + 1?", record=False).trace[0].latency_s for i in range(3)))
"""


def first_call(processes: int) -> dict[str, float]:
    """The latency a fresh process records for its first model calls (a 1-node graph's trace, as an
    eval's first items record theirs): what litellm still imports inside the first call is in it."""
    recorded: list[list[float]] = []
    with scripted_server(0.0) as fast:
        for _ in range(processes):
            child = [sys.executable, "-c", _FIRST_CALL, fast, str(Path(__file__).parent)]
            done = subprocess.run(child, capture_output=True, text=True, check=True, timeout=300)
            recorded.append([float(value) for value in done.stdout.split()])
    return {f"call {n + 1}": _ms([calls[n] for calls in recorded]) for n in range(3)}


def _print_figures(figures: dict[str, float], title: str, as_json: bool, form: str = "6.2f") -> None:
    """One mode's figures in ms: a JSON object, or a title and a line per figure."""
    if as_json:
        print(json.dumps(figures))
        return
    print(title)
    width = max(map(len, figures), default=0)
    for name, value in figures.items():
        print(f"  {name:<{width}} {value:{form}} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls per path in (a)")
    parser.add_argument("--wide-runs", type=int, default=5, help="uncached width-16 runs in (b)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--profile", type=int, metavar="TOP", nargs="?", const=40, help="profile (a) instead")
    parser.add_argument("--canned", action="store_true", help="agentscale's CPU per question, litellm replaced")
    parser.add_argument(
        "--interleave", action="store_true", help="bare LangGraph around litellm, and alternating with it"
    )
    parser.add_argument(
        "--first-call", type=int, metavar="PROCESSES", nargs="?", const=5, help="a fresh process's first calls"
    )
    args = parser.parse_args()
    if args.first_call:
        title = f"latency recorded for a fresh process's first calls, median of {args.first_call} processes:"
        _print_figures(first_call(args.first_call), title, args.json, "7.1f")
        return
    if args.interleave:
        title = f"CPU of this process per call, median of {args.calls} (blocks of 20, interleaved):"
        _print_figures(asyncio.run(interleave(args.calls)), title, args.json)
        return
    if args.profile:
        asyncio.run(profile(args.calls, args.profile))
        return
    if args.canned:
        title = "agentscale's own CPU per question, litellm replaced by a canned reply (least of 7 blocks):"
        _print_figures(asyncio.run(canned()), title, args.json)
        return
    figures = asyncio.run(measure(args.calls, args.wide_runs))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"(a) per call, median of {args.calls}: litellm direct {figures['direct_call_ms']:.2f} ms, "
        f"1-node graph {figures['graph_call_ms']:.2f} ms -> +{figures['overhead_ms']:.2f} ms, "
        f"ratio {figures['overhead_ratio']:.2f} (goal <= 2 ms added)"
    )
    print(
        f"    CPU of this process per call: litellm direct {figures['direct_cpu_ms']:.2f} ms, "
        f"1-node graph {figures['graph_cpu_ms']:.2f} ms -> +{figures['overhead_cpu_ms']:.2f} ms"
    )
    print(
        "    litellm direct with its unread logging and pricing skipped, as the gateway calls it: "
        f"{figures['unlogged_call_ms']:.2f} ms "
        f"({figures['unlogged_cpu_ms']:.2f} ms CPU) -> the graph adds +{figures['overhead_unlogged_ms']:.2f} ms "
        f"(+{figures['overhead_unlogged_cpu_ms']:.2f} ms CPU) to that"
    )
    print(
        f"(b) server sleeps 200 ms, median of {figures['width16_runs']:.0f}: one call {figures['one_call_s']:.3f} s, "
        f"width-16 graph {figures['width16_s']:.3f} s ({figures['width16_calls']:.0f} calls, "
        f"{figures['width16_cpu_ms']:.1f} ms CPU) -> ratio {figures['width16_ratio']:.2f} (goal <= 1.4)"
    )
    print(
        f"(c) cached re-run of the width-16 graph: {figures['cached_rerun_calls']:.0f} model calls (goal 0), "
        f"{figures['cached_ms_per_node']:.2f} ms per node ({figures['cached_cpu_ms_per_node']:.2f} ms CPU)"
    )


if __name__ == "__main__":
    main()
