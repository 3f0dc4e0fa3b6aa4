"""Wall time of one `agentscale optimize` run with evaluations side by side (the product) against the
same run with evaluations in turn (as before 2026-12-02), measured back to back (figures, not a test).

Why: a local CPU server answered one request at a time during the last items of each evaluation
(its slowest completions) while the next evaluation waited; side by side, one evaluation's tail
overlaps the next one's start. The scripted server stands in for such a server: one item in eight
is slow (`--slow` s, a long completion), the rest take `--fast` s, and each model admits 8 calls at
once (`max_concurrency`, a server's batch). Both runs use fresh databases, the same space and seed;
the script checks that they crown the same graph with the same train scores and pay the same
number of calls, so the only difference is the schedule.

Run: .venv/bin/python benchmarks/side_by_side.py [--slow 1.0] [--fast 0.15] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentscale import Gateway, GatewaySettings, Store
from agentscale.graphs.located import load_located
from agentscale.optimize import race, runner, search
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import space_from_data
from agentscale.testing import Rule, ScriptedServer

T = TypeVar("T")
ITEMS = 48
SLOW_EVERY = 8


def _space(folder: Path, api_base: str) -> str:
    data = folder / "items.jsonl"
    with data.open("w") as handle:
        for i in range(ITEMS):
            handle.write(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i + 3}?", "answer": str(2 * i + 3)}))
            handle.write("\n")
    models = "".join(
        f'  {name}: {{model: hosted_vllm/{name}, api_base: "{api_base}", params_b: {size}, max_concurrency: 8}}\n'
        for name, size in (("good", 1.0), ("fair", 1.0), ("bad", 0.5))
    )
    return (
        "name: side-by-side\n"
        f'task: {{path: "{data}", scorer: numeric, train: 16, test: 32, seed: 0}}\n'
        f"models:\n{models}roles: [assistant, critic, fuser, vote]\nmax_nodes: 4\nbudget: {{compute: 4}}\n"
        "defaults: {max_tokens: 64}\n"
        "optimizer: {method: agent-reinforce, iterations: 3, samples: 3, minibatch: 8, seed: 0}\n"
    )


def _script(server: ScriptedServer, slow: float, fast: float) -> None:
    """`good` answers right, `fair` right on even items, `bad` never; one item in eight is slow."""
    server.latency_s = fast
    for i in range(ITEMS):
        question = rf"What is {i} \+ {i + 3}\?"
        latency = slow if i % SLOW_EVERY == 0 else fast
        right = f"{i} + {i + 3} = {2 * i + 3}.\nFinal answer: {2 * i + 3}"
        fair = right if i % 2 == 0 else "Final answer: 1"
        server.add_rule(Rule(model="good", pattern=question, replies=[right], latency_s=latency))
        server.add_rule(Rule(model="fair", pattern=question, replies=[fair], latency_s=latency))
        server.add_rule(Rule(model="bad", pattern=question, replies=["Final answer: 0"], latency_s=latency))


async def _in_turn(evaluations: list[Awaitable[T]], stop: type[Exception]) -> tuple[list[T], Exception | None]:
    """The schedule before side by side: each evaluation awaited before the next starts; the first
    `stop` ends the step (what finished stands)."""
    results: list[T] = []
    for evaluation in evaluations:
        try:
            results.append(await evaluation)
        except stop as exc:
            for rest in evaluations[len(results) + 1 :]:
                rest.close()  # type: ignore[attr-defined]  # coroutines never started
            return results, exc
    return results, None


async def _one_run(text: str, folder: Path, label: str) -> dict[str, Any]:
    space = space_from_data(load_located(text, "space.yaml"), "space.yaml")
    store = Store(folder / f"{label}.db")
    optimization = Optimization(space, Gateway(store, GatewaySettings(max_retries=0)), space_text=text)
    started = time.perf_counter()
    result = await optimization.run()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "crowned": result.best_train.candidate.describe(),
        "train_accuracy": result.best_train.accuracy,
        "test_accuracy": result.best.accuracy if result.best else None,
        "evaluations": result.evaluations,
        "paid_calls": int(result.usage["calls"] or 0),
    }


async def measure(slow: float, fast: float, rounds: int) -> dict[str, Any]:
    """`rounds` pairs of runs, the order alternating (the first run of a process also pays litellm's
    and LangGraph's warm-up), each on a fresh database."""
    schedules = {"side by side": race.side_by_side, "in turn": _in_turn}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in schedules}
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer() as server:
        text = _space(Path(tmp), server.api_base)
        for round_ in range(rounds):
            order = list(schedules) if round_ % 2 else list(reversed(schedules))
            for label in order:
                server.reset()
                _script(server, slow, fast)
                for module in (race, search, runner):
                    module.side_by_side = schedules[label]  # type: ignore[attr-defined]
                runs[label].append(await _one_run(text, Path(tmp), f"{label.replace(' ', '-')}-{round_}"))
    for module in (race, search, runner):
        module.side_by_side = schedules["side by side"]  # type: ignore[attr-defined]
    outcome = ("crowned", "train_accuracy", "test_accuracy", "evaluations", "paid_calls")
    first = runs["side by side"][0]
    return {
        "runs": runs,
        "same_outcome": all(run[k] == first[k] for label in runs for run in runs[label] for k in outcome),
        "wall_ratio": statistics.median(
            runs["in turn"][i]["seconds"] / runs["side by side"][i]["seconds"] for i in range(rounds)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=float, default=1.0, help="seconds per call on the slow items")
    parser.add_argument("--fast", type=float, default=0.15, help="seconds per call on the others")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs, the order alternating")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.slow, args.fast, args.rounds))
    if args.json:
        print(json.dumps(figures))
        return
    for label, runs in figures["runs"].items():
        for f in runs:
            print(
                f"{label:13} {f['seconds']:6.1f} s  {f['evaluations']} evaluations, {f['paid_calls']} paid calls, "
                f"crowned {f['crowned']} (train {f['train_accuracy']:.1%}, test {f['test_accuracy']:.1%})"
            )
    print(
        f"in turn / side by side, median of pairs: {figures['wall_ratio']:.2f}x wall; "
        f"same outcome: {figures['same_outcome']}"
    )


if __name__ == "__main__":
    main()
