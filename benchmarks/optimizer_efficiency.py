"""How fast each optimizer finds good graphs, on the SIMULATED population (figures, not a test).

For every space in benchmarks/spaces/ (sim tasks with different budgets) the true optimum is found by
exhaustive enumeration (`agentscale.sim.optimum`). Every registered method (except `llm`, which
needs an LLM agent) then searches the same space for `--evaluations` evaluations, ≥ 10 seeds each,
through the same search loop as `agentscale optimize`; an evaluation is a simulated minibatch run
(`SimOracle.observe`, Bernoulli outcomes from the exact per-item probabilities). After every
evaluation the incumbent is what the runner would crown at that point (of the three graphs with the
best mean minibatch accuracy, the best on the whole train split), and its true expected test
accuracy is looked up. Reported per method: evaluations until the incumbent reaches
95% of the optimum (median and IQR over seeds; runs that never reach it count as ∞), regret (optimum
minus the incumbent's true accuracy, in accuracy points) after 25/50/100 evaluations, and the ratio
of the median evaluations-to-95% to random search's.

All accuracies here are simulated. Run: .venv/bin/python benchmarks/optimizer_efficiency.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.methods import METHODS
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.search import run_search
from agentscale.optimize.space import SpaceSpec, load_space
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.optimum import search_optimum

SPACES = Path(__file__).parent / "spaces"
CHECKPOINTS = (25, 50, 100)


def iqr(values: list[float]) -> tuple[float, float]:
    finite = sorted(values)
    return float(np.percentile(finite, 25)), float(np.percentile(finite, 75))


async def one_run(space: SpaceSpec, method: str, seed: int, evaluations: int, optimum: float) -> dict[str, Any]:
    oracle = SimOracle.for_space(space)
    problem = SearchProblem.from_space(space)
    searcher = METHODS[method](problem, seed=seed)
    minibatch = space.optimizer.minibatch
    scores: dict[str, list[float]] = {}
    candidates: dict[str, CandidateGraph] = {}
    truth: dict[str, float] = {}
    trajectory: list[float] = []  # true accuracy of the incumbent after each evaluation

    def crowned() -> str:
        """What the runner would crown now: of the 3 best by mean minibatch accuracy, the best on the
        whole train split (its expected train accuracy stands in for the runner's re-evaluation)."""
        finalists = sorted(scores, key=lambda k: (float(np.mean(scores[k])), len(scores[k])), reverse=True)[:3]
        return max(
            finalists, key=lambda k: train_accuracy.setdefault(k, oracle.expected_accuracy(candidates[k], "train"))
        )

    def truth_of(key: str) -> float:
        if key not in truth:
            truth[key] = oracle.expected_accuracy(candidates[key], "test")
        return truth[key]

    train_accuracy: dict[str, float] = {}

    async def evaluate(candidate: CandidateGraph, iteration: int) -> Observation:
        observed = oracle.observe(candidate, minibatch, seed=seed * 100_003 + iteration).accuracy
        key = candidate.canonical_key
        scores.setdefault(key, []).append(observed)
        candidates[key] = candidate
        trajectory.append(truth_of(crowned()))
        return Observation(candidate, observed, problem.compute(candidate), 0.0, minibatch, reward=observed)

    await run_search(
        searcher,
        evaluate,
        iterations=10 * evaluations,
        samples=space.optimizer.samples,
        patience=10 * evaluations,
        max_evaluations=evaluations,
    )
    reached = next((i + 1 for i, acc in enumerate(trajectory) if acc >= 0.95 * optimum), math.inf)
    regret = {k: 100 * (optimum - trajectory[min(k, len(trajectory)) - 1]) for k in CHECKPOINTS if trajectory}
    return {"evals_to_95": reached, "regret": regret}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    reach = [r["evals_to_95"] for r in runs]
    low, high = iqr(reach)
    return {
        "evals_to_95": statistics.median(reach),
        "evals_to_95_iqr": [low, high],
        "reached": sum(1 for r in reach if r != math.inf),
        "runs": len(runs),
        "regret_at": {str(k): statistics.median(r["regret"][k] for r in runs) for k in CHECKPOINTS},
    }


def fmt(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--methods", default=",".join(m for m in METHODS if not METHODS[m].needs_agent))
    parser.add_argument("--json", action="store_true", help="print {space: {method: {...}}} as JSON")
    args = parser.parse_args()
    methods = args.methods.split(",")
    report: dict[str, Any] = {}
    for path in sorted(SPACES.glob("*.yaml")):
        space = load_space(path)
        started = time.perf_counter()
        found = search_optimum(space)
        report[space.name] = {
            "_optimum": {
                "accuracy": found.accuracy,
                "candidates": found.candidates,
                "graph": found.candidate.describe(),
                "seconds": time.perf_counter() - started,
            }
        }
        for method in methods:
            runs = [await one_run(space, method, seed, args.evaluations, found.accuracy) for seed in range(args.seeds)]
            report[space.name][method] = summarise(runs)
        random_median = report[space.name]["random"]["evals_to_95"] if "random" in methods else None
        for method in methods:
            entry = report[space.name][method]
            ratio = entry["evals_to_95"] / random_median if random_median not in (None, 0, math.inf) else None
            entry["ratio_to_random"] = ratio
        if not args.json:
            print(
                f"\n{space.name} (SIMULATED): optimum {found.accuracy:.3f} expected test accuracy over "
                f"{found.candidates} candidates, budget {space.budget.compute} compute",
                file=sys.stderr,
            )
            print(f"{'method':18} {'evals to 95% (median [IQR], reached)':38} regret@25/50/100 (points)  vs random")
            for method in methods:
                e = report[space.name][method]
                low, high = e["evals_to_95_iqr"]
                regret = "/".join(f"{e['regret_at'][str(k)]:.1f}" for k in CHECKPOINTS)
                ratio = "—" if e["ratio_to_random"] is None else f"{e['ratio_to_random']:.2f}"
                print(
                    f"{method:18} {fmt(e['evals_to_95']):>4} [{fmt(low)}, {fmt(high)}] {e['reached']}/{e['runs']:<20} "
                    f"{regret:26} {ratio}"
                )
    if args.json:
        print(json.dumps(report, default=lambda v: None if v == math.inf else v))


if __name__ == "__main__":
    asyncio.run(main())
