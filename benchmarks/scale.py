"""Items per second of an eval with the local executor vs Ray with 1, 2 and 4 workers (figures, not a test).

The scripted server (its own process) sleeps 200 ms per call, so an item of the one-node graph is
200 ms of waiting plus the framework's CPU work. Every configuration keeps `--concurrency` items in
flight per worker (the local executor is one worker); Ray is started once, with this machine's
cores, and its workers are started and warm before the clock starts. Each configuration writes a
fresh database (no cache hits). Also printed: the driver's own time per recorded result (cache
probe, draining paid calls from the outbox, writing the item's rows), from the executor's counters,
and for every configuration the driver process's CPU time per item (goal for the local executor,
whose driver does all the work of a one-call item: <= 6 ms), beside the CPU time per call of litellm
alone making the same calls with as many in flight (the floor no framework around it can go under):
medians of `--rounds` pairs run in turn, since this CPU figure moves by ±1.5 ms from one run to the next.
`--canned` instead replaces litellm with a canned reply (`_canned.py`) and prints the eval path's own
CPU per item (dispatch, the LangGraph run, cache probe, SQLite rows, scoring, progress): least of 5.
`--gc` alternates, in one process, runs with the objects alive after litellm's import frozen (as the
`agentscale` command leaves them, `gc.freeze`; the Python API does not) and unfrozen, printing the
driver's CPU and the garbage collector's own CPU per item of each.

Run: .venv/bin/python benchmarks/scale.py [--items 160] [--concurrency 8] [--local-only] [--rounds 3]
     [--canned] [--gc] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
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
from agentscale.evaluate.engine import EvalConfig, Evaluation
from agentscale.executors import Executor, LocalExecutor
from agentscale.models.litellm_loader import get_litellm

LATENCY_S = 0.2


def _task(folder: Path, items: int, *, canned: bool = False) -> Path:
    """Sums the scripted server answers right; with litellm canned every answer is 3."""
    path = folder / "items.jsonl"
    lines = [
        json.dumps({"id": f"q{i}", "question": f"What is {i} + 7?", "answer": "3" if canned else str(i + 7)})
        for i in range(items)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def _run(api_base: str, task: Path, db: Path, executor: Executor, concurrency: int) -> tuple[float, float]:
    """(items/s, the driver process's CPU ms per item)."""
    text = f'name: one\nmodels:\n  m: {{model: hosted_vllm/bench, api_base: "{api_base}"}}\n'
    text += "defaults: {temperature: 0.7, max_tokens: 32}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    graph = Graph.from_yaml(text, gateway=Gateway(Store(db), GatewaySettings(max_concurrency=256)))
    evaluation = Evaluation(graph, EvalConfig(task=str(task), concurrency=concurrency), executor=executor)
    started, cpu = time.perf_counter(), time.process_time()
    summary = await evaluation.run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert summary.correct == summary.n, "the scripted server answers every item right"
    return summary.n / elapsed, 1000 * cpu / summary.n


async def _litellm_alone(api_base: str, calls: int, concurrency: int) -> float:
    """CPU ms per call of litellm making the items' calls itself, `concurrency` in flight."""
    litellm = get_litellm()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await litellm.acompletion(
                model="hosted_vllm/bench",
                api_base=api_base,
                messages=[{"role": "user", "content": f"What is {i} + 7?"}],
                temperature=0.7,
                max_tokens=32,
            )

    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return 1000 * (time.process_time() - cpu) / calls


def measure(
    items: int, concurrency: int, *, rounds: int = 3, ray_workers: tuple[int, ...] = (1, 2, 4)
) -> dict[str, Any]:
    """Items/s and driver CPU per item of every executor; the local executor's figures (goal (d)) are
    medians of `rounds` runs, each followed by litellm alone making the same calls."""
    figures: dict[str, Any] = {"items": items, "concurrency_per_worker": concurrency, "latency_s": LATENCY_S}
    figures["cpus"] = os.cpu_count() or 0
    if ray_workers:
        import ray

        from agentscale.executors.ray_executor import DriverStats, RayExecutor

        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        figures["cpus"] = int(ray.cluster_resources().get("CPU", 0))
    figures["ray_workers"] = list(ray_workers)
    with tempfile.TemporaryDirectory() as tmp, scripted_server(LATENCY_S) as api_base:
        folder = Path(tmp)
        task = _task(folder, items)
        figures["ceiling_per_worker"] = concurrency / LATENCY_S
        asyncio.run(_run(api_base, task, folder / "warm.db", LocalExecutor(), concurrency))  # imports, litellm
        figures["rounds"] = []
        for index in range(rounds):  # the eval and litellm alone in turn: the VM's drift hits both
            rate, cpu_ms = asyncio.run(_run(api_base, task, folder / f"local{index}.db", LocalExecutor(), concurrency))
            alone_ms = asyncio.run(_litellm_alone(api_base, items, concurrency))
            figures["rounds"].append({"local": rate, "local_driver_cpu_ms": cpu_ms, "litellm_alone_cpu_ms": alone_ms})
        for key in ("local", "local_driver_cpu_ms", "litellm_alone_cpu_ms"):
            figures[key] = statistics.median(one[key] for one in figures["rounds"])
        rate, cpu_ms = asyncio.run(_run(api_base, task, folder / "local_x4.db", LocalExecutor(), 4 * concurrency))
        figures["local_x4"], figures["local_x4_driver_cpu_ms"] = rate, cpu_ms
        for workers in ray_workers:
            executor = RayExecutor(workers=workers)
            asyncio.run(executor.start())
            asyncio.run(_run(api_base, task, folder / f"warm{workers}.db", executor, concurrency))
            executor.stats = DriverStats()  # count the measured run only
            rate, cpu_ms = asyncio.run(_run(api_base, task, folder / f"ray{workers}.db", executor, concurrency))
            figures[f"ray_{workers}"], figures[f"ray_{workers}_driver_cpu_ms"] = rate, cpu_ms
            figures[f"ray_{workers}_write_ms"] = executor.stats.write_ms_per_result()
            executor.close()
    if ray_workers:
        ray.shutdown()
    return figures


def measure_canned(items: int, concurrency: int, blocks: int = 5) -> dict[str, Any]:
    """The eval path's own driver CPU per one-call item, litellm replaced: least of `blocks` runs."""
    can_litellm()
    figures: dict[str, Any] = {"items": items, "canned": True}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task = _task(folder, items, canned=True)
        api_base = "http://127.0.0.1:9/v1"  # never called
        asyncio.run(_run(api_base, task, folder / "warm.db", LocalExecutor(), concurrency))
        for name, inflight in (("local", concurrency), ("local_x4", 4 * concurrency)):
            runs = [
                asyncio.run(_run(api_base, task, folder / f"{name}{i}.db", LocalExecutor(), inflight))[1]
                for i in range(blocks)
            ]
            figures[f"{name}_driver_cpu_ms"] = min(runs)
    return figures


class _CollectorClock:
    """CPU seconds spent in the garbage collector, its longest collection, and its collections per generation."""

    def __init__(self) -> None:
        self.seconds, self.longest, self.collections, self._started = 0.0, 0.0, [0, 0, 0], 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
            return
        took = time.process_time() - self._started
        self.seconds, self.longest = self.seconds + took, max(self.longest, took)
        self.collections[info["generation"]] += 1


def measure_gc(items: int, concurrency: int, rounds: int = 3) -> dict[str, Any]:
    """Driver and collector CPU per item, imports frozen (as shipped) or not, alternated `rounds` times."""
    figures: dict[str, Any] = {"items": items, "frozen": [], "unfrozen": []}
    clock = _CollectorClock()
    with tempfile.TemporaryDirectory() as tmp, scripted_server(LATENCY_S) as api_base:
        folder = Path(tmp)
        task = _task(folder, items)
        asyncio.run(_run(api_base, task, folder / "warm.db", LocalExecutor(), concurrency))  # imports, litellm
        gc.callbacks.append(clock)
        for index in range(rounds):
            for mode in ("frozen", "unfrozen") if index % 2 == 0 else ("unfrozen", "frozen"):
                if mode == "frozen":
                    gc.freeze()
                else:
                    gc.unfreeze()
                clock.seconds, clock.longest, clock.collections = 0.0, 0.0, [0, 0, 0]
                db = folder / f"{mode}{index}.db"
                _, cpu_ms = asyncio.run(_run(api_base, task, db, LocalExecutor(), concurrency))
                figures[mode].append(
                    {
                        "driver_cpu_ms": cpu_ms,
                        "gc_cpu_ms": 1000 * clock.seconds / items,
                        "longest_collection_ms": 1000 * clock.longest,
                        "collections": clock.collections,
                    }
                )
        gc.callbacks.remove(clock)
    return figures


def _print_gc(figures: dict[str, Any]) -> None:
    print(f"eval of {figures['items']} one-call items, server sleeping {LATENCY_S * 1000:.0f} ms, runs alternated")
    for mode in ("frozen", "unfrozen"):
        runs = figures[mode]
        driver = ", ".join(f"{run['driver_cpu_ms']:.2f}" for run in runs)
        collector = ", ".join(f"{run['gc_cpu_ms']:.2f}" for run in runs)
        full = sum(run["collections"][2] for run in runs)
        longest = max(run["longest_collection_ms"] for run in runs)
        print(
            f"  {mode:<9} driver CPU {driver} ms/item; collector {collector} ms/item; "
            f"{full} full collections, the longest {longest:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--local-only", action="store_true", help="skip Ray (the local executor's figures only)")
    parser.add_argument("--rounds", type=int, default=3, help="local eval / litellm alone pairs (medians printed)")
    parser.add_argument("--canned", action="store_true", help="litellm replaced: the eval path's own CPU per item")
    parser.add_argument("--gc", action="store_true", help="imports frozen (as shipped) vs not, alternated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.gc:
        collected = measure_gc(args.items, args.concurrency)
        if args.json:
            print(json.dumps(collected, indent=2))
        else:
            _print_gc(collected)
        return
    if args.canned:
        canned = measure_canned(args.items, args.concurrency)
        if args.json:
            print(json.dumps(canned, indent=2))
            return
        print(
            f"eval path's own driver CPU per one-call item, litellm canned (least of 5): "
            f"{canned['local_driver_cpu_ms']:.2f} ms at {args.concurrency} in flight, "
            f"{canned['local_x4_driver_cpu_ms']:.2f} ms at {4 * args.concurrency}"
        )
        return
    ray_workers = () if args.local_only else (1, 2, 4)
    figures = measure(args.items, args.concurrency, rounds=args.rounds, ray_workers=ray_workers)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    local = figures["local"]
    print(
        f"eval of {figures['items']} one-call items, server sleeping {LATENCY_S * 1000:.0f} ms, "
        f"{figures['concurrency_per_worker']} items in flight per worker, {figures['cpus']} CPUs"
    )
    print(f"  ceiling per worker (no CPU cost): {figures['ceiling_per_worker']:.0f} items/s")
    rows = [("local executor", "local"), ("local, 4x in flight", "local_x4")]
    rows += [(f"ray, {w} worker(s)", f"ray_{w}") for w in figures["ray_workers"]]
    for label, key in rows:
        line = f"  {label:<22} {figures[key]:6.1f} items/s ({figures[key] / local:.2f}x)"
        line += f"  driver CPU {figures[f'{key}_driver_cpu_ms']:.1f} ms/item"
        if key.startswith("ray"):
            line += f", SQLite writes {figures[f'{key}_write_ms']:.2f} ms/result"
        print(line)
    pairs = ", ".join(f"{r['local_driver_cpu_ms']:.1f}/{r['litellm_alone_cpu_ms']:.1f}" for r in figures["rounds"])
    print(
        f"  driver CPU per one-call item, local executor: {figures['local_driver_cpu_ms']:.1f} ms (goal <= 6 ms); "
        f"litellm alone, the same calls with as many in flight: {figures['litellm_alone_cpu_ms']:.1f} ms per call "
        f"(medians of {len(figures['rounds'])} rounds, eval/litellm alone: {pairs} ms)"
    )


if __name__ == "__main__":
    main()
