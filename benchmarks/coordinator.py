"""A discussion graph with and without the CEO coordinator, on the SIMULATED population (figures, not
a test; every accuracy printed is simulated, never a real model's).

Workers: three `sim/llama-3b` assistants and a `sim/llama-3b` fuser. Arms, all under the same
per-question cap (`budget: {max_tokens: B}`):
- `single`: one worker call; `dag`: the graph run once, no CEO;
- `ceo <model>`: the same graph under a simulated CEO (agentscale/sim/ceo.py) for up to 3 rounds;
- `ceo llama-8b + evaluator`: the MAS-TTS setting, an 8B evaluator advising the CEO;
- `equal spend`: self-consistency (n worker samples and a vote) with n chosen so its tokens match the
  `ceo llama-8b` arm's: what the CEO's extra spend buys without a CEO.
Reported: accuracy with a Wilson 95% interval, mean tokens and calls per question, mean rounds run,
how often the CEO stopped before the last round and how often such a stop kept a right answer.

Run: .venv/bin/python benchmarks/coordinator.py [--n 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentscale import Graph
from agentscale.evaluate.stats import wilson_interval
from agentscale.graphs.validate import load_spec_text
from agentscale.models.gateway import Gateway
from agentscale.storage.db import Store
from agentscale.tasks import Task, load_task

BUDGET_TOKENS = 10_000
MAX_ROUNDS = 3
WORKER = "sim/llama-3b"
CONCURRENCY = 16


def discussion(name: str, ceo: str | None = None, evaluator: str | None = None) -> str:
    """The arms' graph: three workers and a fuser, optionally under a CEO (and its evaluator)."""
    lines = [
        f"name: {name}",
        "nodes:",
        *(f"  - {{id: s{i}, role: assistant, model: {WORKER}}}" for i in (1, 2, 3)),
        f"  - {{id: f, role: fuser, model: {WORKER}}}",
        'edges: ["s1, s2, s3 -> f"]',
        f"budget: {{max_tokens: {BUDGET_TOKENS}}}",
    ]
    if ceo is not None:
        judge = f", evaluator: sim/{evaluator}" if evaluator else ""
        lines.append(f"coordinator: {{model: sim/{ceo}, max_rounds: {MAX_ROUNDS}{judge}}}")
    return "\n".join(lines) + "\n"


def self_consistency(n: int) -> str:
    nodes = [f"  - {{id: s{i}, role: assistant, model: {WORKER}}}" for i in range(1, n + 1)]
    sources = ", ".join(f"s{i}" for i in range(1, n + 1))
    edges = f'edges: ["{sources} -> v"]' if n > 1 else "edges: []"
    vote = ["  - {id: v, role: vote}"] if n > 1 else []
    return (
        "\n".join([f"name: sc-{n}", "nodes:", *nodes, *vote, edges, f"budget: {{max_tokens: {BUDGET_TOKENS}}}"]) + "\n"
    )


@dataclass
class ArmResult:
    name: str
    correct: int
    n: int
    tokens: float
    calls: float
    rounds: float | None = None
    early_stops: float | None = None  # share of questions the CEO stopped before the last round
    stop_precision: float | None = None  # of those, the share whose answer was right

    def to_dict(self) -> dict[str, Any]:
        low, high = wilson_interval(self.correct, self.n)
        return {
            "arm": self.name,
            "accuracy": self.correct / self.n,
            "ci95": [low, high],
            "tokens": self.tokens,
            "calls": self.calls,
            "rounds": self.rounds,
            "early_stops": self.early_stops,
            "stop_precision": self.stop_precision,
        }


async def run_arm(name: str, text: str, task: Task, folder: Path) -> ArmResult:
    """Every arm has a database of its own: a response cache shared between arms would make later
    arms replay earlier arms' identical calls for free (round 1 of every CEO arm is the DAG)."""
    gateway = Gateway(store=Store(folder / f"arm-{len(list(folder.iterdir()))}.db"))
    graph = Graph(load_spec_text(text, name), gateway=gateway, answer_format=task.answer_format)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(item: Any) -> tuple[bool, Any]:
        async with semaphore:
            result = await graph.arun(item.question)
        return task.score(result.answer, item).correct, result

    outcomes = await asyncio.gather(*(one(item) for item in task.items))
    n = len(outcomes)
    arm = ArmResult(
        name,
        sum(ok for ok, _ in outcomes),
        n,
        sum(r.usage.prompt_tokens + r.usage.completion_tokens for _, r in outcomes) / n,
        sum(r.usage.calls for _, r in outcomes) / n,
    )
    if "coordinator" in text:
        rounds = [[record for record in r.rounds if record.ran] for _, r in outcomes]
        stopped = [(ok, r) for ok, r in outcomes if r.rounds and r.rounds[-1].decision.get("decision") == "stop"]
        arm.rounds = sum(len(ran) for ran in rounds) / n
        arm.early_stops = len(stopped) / n
        arm.stop_precision = sum(ok for ok, _ in stopped) / len(stopped) if stopped else None
    return arm


def closest_self_consistency(tokens: float, per_call: float) -> int:
    return max(1, round(tokens / per_call))


async def main_async(n: int) -> list[ArmResult]:
    task = load_task("sim:math").sample(n, 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        arms = [await run_arm("single", self_consistency(1), task, folder)]
        arms.append(await run_arm("dag (no CEO)", discussion("dag"), task, folder))
        for ceo in ("llama-1b", "llama-8b", "llama-70b"):
            arms.append(await run_arm(f"ceo {ceo}", discussion("ceo", ceo), task, folder))
        arms.append(
            await run_arm("ceo llama-8b + evaluator", discussion("ceo-eval", "llama-8b", "llama-8b"), task, folder)
        )
        reference = next(a for a in arms if a.name == "ceo llama-8b")
        width = closest_self_consistency(reference.tokens, arms[0].tokens)
        arms.append(await run_arm(f"equal spend: {width} samples + vote", self_consistency(width), task, folder))
    return arms


def table(arms: list[ArmResult]) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    rows = [
        "| arm (SIMULATED) | accuracy % | 95% CI | tokens/q | calls/q | rounds | CEO stopped early % | "
        "right when stopped % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        data = arm.to_dict()
        low, high = data["ci95"]
        rounds = "-" if arm.rounds is None else f"{arm.rounds:.2f}"
        rows.append(
            f"| {arm.name} | {pct(data['accuracy'])} | {100 * low:.1f}–{100 * high:.1f} | {arm.tokens:.0f} | "
            f"{arm.calls:.1f} | {rounds} | {pct(arm.early_stops)} | {pct(arm.stop_precision)} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="sim:math questions (default 200)")
    parser.add_argument(
        "--json", action="store_true", help='print one JSON document: {"simulated", "task", "n", "max_tokens", "arms"}'
    )
    args = parser.parse_args()
    started = time.perf_counter()
    arms = asyncio.run(main_async(args.n))
    if args.json:
        arms_data = [a.to_dict() for a in arms]
        document = {"simulated": True, "task": "sim:math", "n": args.n, "max_tokens": BUDGET_TOKENS, "arms": arms_data}
        print(json.dumps(document, indent=2))
    else:
        print(f"SIMULATED population, sim:math, n = {args.n}, cap {BUDGET_TOKENS} tokens per question")
        print(table(arms))
        print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
