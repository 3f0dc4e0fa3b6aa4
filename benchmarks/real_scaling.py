"""Test-time scaling on REAL local models (Qwen2.5-Coder 0.5B / 1.5B, SmolLM2-135M) on this machine.

Every arm is a graph run end to end as a user runs it: `agentscale eval GRAPH --task T --n N --seed 0
--json` in a subprocess, against vLLM servers started once (as `agentscale serve` would) and reused
by every eval through agentscale's server state file. Arms share one database, so identical requests
(the same prompt, temperature and sample index) are answered from the response cache: the five
samples of "5 samples + vote" are the first five of "8 samples + tester". Each arm's tokens and FLOPs
count cached calls like real ones (what the graph consumes); `calls` is what it paid for itself.

Sections:
  styles     one greedy call per model, task (rg:gsm_symbolic, rg:chain_sum) and answer style
  humaneval  single, samples + vote, samples + tester, fan-in + fuser, critic chain, small-model
             graphs at the compute of one 1.5B call, mixed graphs (HumanEval)
  gsm        single, samples + vote, fan-in + fuser, critic chain (rg:gsm_symbolic)

Reported per arm: accuracy with a Wilson 95% interval, compute relative to one greedy 1.5B call
(FLOPs per item), completion tokens per item, paid calls, wall time; then exact McNemar tests between
named pairs of arms on the same items.

Run: .venv/bin/python benchmarks/real_scaling.py humaneval [--n 164] [--db PATH] [--arms a,b] [--log F] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agentscale.evaluate.stats import mcnemar_exact, paired_counts, wilson_interval
from agentscale.models.serving import ensure_server, stop_all
from agentscale.storage.db import Store

SMALL, LARGE, TINY = "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b", "local/smollm2-135m"
SAMPLE_T = 0.8
MAX_TOKENS = 512


@dataclass(frozen=True)
class Arm:
    name: str
    graph: str  # YAML
    models: tuple[str, ...]
    subset: int | None = None  # run on the first `subset` items of the section's sample only (time)


def on_subset(arm: Arm, n: int) -> Arm:
    return replace(arm, subset=n)


def _graph(name: str, models: dict[str, str], nodes: list[str], edges: list[str], fmt: str | None) -> str:
    """A graph YAML; ``models`` maps aliases to their flow-style entries."""
    lines = [f"name: {name}", "models:", *(f"  {alias}: {entry}" for alias, entry in models.items())]
    if fmt:
        lines.append(f"answer_format: {fmt}")
    lines += [f"defaults: {{temperature: {SAMPLE_T}, max_tokens: {MAX_TOKENS}}}", "nodes:"]
    lines += [f"  - {node}" for node in nodes]
    if edges:
        lines += ["edges:", *(f'  - "{edge}"' for edge in edges)]
    return "\n".join(lines) + "\n"


def _entry(route: str) -> str:
    return f"{{model: {route}}}"


def single(name: str, route: str, style: str | None = None) -> Arm:
    """One greedy call (``style`` overrides the model's answer style)."""
    entry = f"{{model: {route}, answer_style: {style}}}" if style else _entry(route)
    return Arm(
        name, _graph(name, {"m": entry}, ["{id: a, role: assistant, model: m, temperature: 0.0}"], [], None), (route,)
    )


def samples(n: int, alias: str = "m", prefix: str = "s") -> list[str]:
    """n assistant nodes sampling at T=0.8 (identical requests: sample indexes 0..n-1)."""
    return [f"{{id: {prefix}{i}, role: assistant, model: {alias}}}" for i in range(1, n + 1)]


def aggregate(name: str, route: str, n: int, role: str, fmt: str | None) -> Arm:
    """n samples into one vote, tester, or greedy model node (fuser, critic)."""
    model_free = {"vote": "{id: out, role: vote}", "tester": "{id: out, role: tester}"}
    out = model_free.get(role, f"{{id: out, role: {role}, model: m, temperature: 0.0}}")
    sources = ", ".join(f"s{i}" for i in range(1, n + 1))
    return Arm(name, _graph(name, {"m": _entry(route)}, [*samples(n), out], [f"{sources} -> out"], fmt), (route,))


def critic_chain(name: str, route: str, fmt: str | None) -> Arm:
    """A greedy answer reviewed by a greedy critic that gives its own answer."""
    nodes = [
        "{id: a, role: assistant, model: m, temperature: 0.0}",
        "{id: c, role: critic, model: m, temperature: 0.0}",
    ]
    return Arm(name, _graph(name, {"m": _entry(route)}, nodes, ["a -> c"], fmt), (route,))


def mixed_tester(name: str, greedy: int, large: int, small: int) -> Arm:
    """`greedy` greedy 1.5B calls (0 or 1), `large` sampled 1.5B calls and `small` sampled 0.5B calls,
    all into one tester. The greedy call is the single-call arm's request, so it comes from the cache."""
    nodes = ["{id: g, role: assistant, model: big, temperature: 0.0}"] if greedy else []
    nodes += [*samples(large, "big", "b"), *samples(small, "small", "s"), "{id: out, role: tester}"]
    sources = ["g"] * greedy + [f"b{i}" for i in range(1, large + 1)] + [f"s{i}" for i in range(1, small + 1)]
    models = {"big": _entry(LARGE), "small": _entry(SMALL)}
    return Arm(name, _graph(name, models, nodes, [f"{', '.join(sources)} -> out"], "code"), (LARGE, SMALL))


# On this 2-core machine the 1.5B writes ≈25 tokens/s in all: every arm on all 164 HumanEval items
# would take most of a day, so the arms that sample most run on the first 80 items of the same sample
# (the seed-0 sample's order: an 80-item sample is a prefix of the 164-item one, so pairs stay paired).
SUBSET = 80


def humaneval_arms() -> list[Arm]:
    """Cheapest and most telling first: a partial run (stopped for time) still answers the main question."""
    return [
        single("single-05b", SMALL),
        single("single-15b", LARGE),
        aggregate("tester3-05b", SMALL, 3, "tester", "code"),  # ≈ the compute of one 1.5B call
        aggregate("vote3-05b", SMALL, 3, "vote", "code"),
        aggregate("tester5-05b", SMALL, 5, "tester", "code"),
        aggregate("vote5-05b", SMALL, 5, "vote", "code"),
        mixed_tester("tester-g15b-2x15b-5x05b", 1, 2, 5),  # ≈ 4.6 1.5B calls
        mixed_tester("tester-g15b-2x15b-8x05b", 1, 2, 8),
        on_subset(aggregate("tester5-15b", LARGE, 5, "tester", "code"), SUBSET),
        on_subset(aggregate("vote5-15b", LARGE, 5, "vote", "code"), SUBSET),
        on_subset(aggregate("fuser3-05b", SMALL, 3, "fuser", "code"), SUBSET),
        on_subset(critic_chain("critic-05b", SMALL, "code"), SUBSET),
        on_subset(aggregate("fuser3-15b", LARGE, 3, "fuser", "code"), SUBSET),
        on_subset(critic_chain("critic-15b", LARGE, "code"), SUBSET),
    ]


def gsm_arms() -> list[Arm]:
    return [
        single("single-05b", SMALL),
        single("single-15b", LARGE),
        aggregate("vote3-05b", SMALL, 3, "vote", None),
        aggregate("vote5-05b", SMALL, 5, "vote", None),
        aggregate("fuser3-05b", SMALL, 3, "fuser", None),
        critic_chain("critic-05b", SMALL, None),
        aggregate("vote5-15b", LARGE, 5, "vote", None),
        aggregate("fuser3-15b", LARGE, 3, "fuser", None),
        critic_chain("critic-15b", LARGE, None),
    ]


def style_arms() -> list[Arm]:
    """After the prompt change: each model in its family's style, plus the 0.5B in the other style.

    (The 1.5B in the foreign style would cost ≈30 machine-minutes more; the 0.5B answers the question.)
    """
    return [
        single("final_line-135m", TINY, style="final_line"),
        single("boxed-05b", SMALL, style="boxed"),
        single("final_line-05b", SMALL, style="final_line"),
        single("boxed-15b", LARGE, style="boxed"),
    ]


SECTIONS: dict[str, tuple[list[str], Any, list[tuple[str, str]]]] = {
    # section: (tasks, arms, pairs to test)
    "humaneval": (
        ["humaneval"],
        humaneval_arms,
        [
            ("tester5-05b", "single-05b"),
            ("tester5-15b", "single-15b"),
            ("tester5-15b", "vote5-15b"),
            ("tester3-05b", "single-15b"),
            ("fuser3-15b", "single-15b"),
            ("critic-15b", "single-15b"),
            ("tester-g15b-2x15b-5x05b", "single-15b"),
            ("tester-g15b-2x15b-8x05b", "single-15b"),
        ],
    ),
    "gsm": (
        ["rg:gsm_symbolic"],
        gsm_arms,
        [
            ("vote5-15b", "single-15b"),
            ("fuser3-15b", "single-15b"),
            ("critic-15b", "single-15b"),
            ("vote3-05b", "single-05b"),
            ("vote5-05b", "single-05b"),
            ("fuser3-05b", "single-05b"),
            ("critic-05b", "single-05b"),
            ("single-15b", "single-05b"),
        ],
    ),
    "styles": (
        ["rg:gsm_symbolic", "rg:chain_sum"],
        style_arms,
        [("boxed-05b", "final_line-05b")],
    ),
}


def start_servers(routes: list[str]) -> dict[str, float]:
    """Start (or reuse) each route's server once, as `agentscale serve` would; seconds each took."""
    starts = {}
    for route in routes:
        begun = time.monotonic()
        ensure_server(route, on_status=lambda message: print(f"  {message}", file=sys.stderr))
        starts[route] = round(time.monotonic() - begun, 1)
    return starts


def paired_test(first: dict[str, bool], second: dict[str, bool]) -> dict[str, Any]:
    """Exact McNemar on the items both arms answered: items only the first got right, only the second."""
    shared, only_first, only_second = paired_counts(first, second)
    return {
        "n": shared,
        "only_first": only_first,
        "only_second": only_second,
        "p": round(mcnemar_exact(only_first, only_second), 4),
    }


def append_jsonl(path: Path | None, row: dict[str, Any]) -> None:
    """One line per finished step, so nothing is lost if a long run is stopped."""
    if path is not None:
        with open(path, "a") as log:
            log.write(json.dumps(row) + "\n")


def run_arm(arm: Arm, task: str, n: int, db: Path, workdir: Path) -> dict[str, Any]:
    path = workdir / f"{arm.name}.yaml"
    path.write_text(arm.graph)
    command = [sys.executable, "-m", "agentscale.cli.app", "eval", str(path), "--task", task, "--n", str(n)]
    command += ["--seed", "0", "--concurrency", "16", "--json"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "AGENTSCALE_DB": str(db)})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{arm.name} on {task} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    items = {item.item_key: bool(item.correct) for item in Store(db).run_items(report["run_id"])}
    return {"arm": arm.name, "task": task, "wall_s": round(wall, 1), "report": report, "items": items}


def summarize(results: list[dict[str, Any]], reference_flops: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        report, n = result["report"], result["report"]["n"]
        usage = report["usage"]
        low, high = wilson_interval(report["correct"], n)
        rows.append(
            {
                "task": result["task"],
                "arm": result["arm"],
                "n": n,
                "accuracy": report["accuracy"],
                "ci95": [round(low, 3), round(high, 3)],
                "compute_vs_1.5b_call": round(usage["flops"] / n / reference_flops[result["task"]], 2)
                if usage["flops"] and reference_flops.get(result["task"])
                else None,
                "completion_tokens_per_item": round(usage["completion_tokens"] / n, 1),
                "paid_calls": usage["calls"],
                "unfinished": report.get("unfinished", 0),  # items whose graph failed or hit a cap
                "wall_s": result["wall_s"],
            }
        )
    return rows


def one_large_call_flops(task: str, n: int, db: Path, workdir: Path) -> float:
    """FLOPs per item of one greedy 1.5B call on the task: the compute unit of the tables."""
    result = run_arm(single("reference-15b", LARGE), task, n, db, workdir)
    return float(result["report"]["usage"]["flops"]) / result["report"]["n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--n", type=int, default=None, help="items per task (default: 164 HumanEval, 80 others)")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "agentscale-real-scaling.db")
    parser.add_argument("--arms", default=None, help="comma-separated arm names to run (default: all)")
    parser.add_argument("--log", type=Path, default=None, help="append each finished arm's row (JSON lines)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tasks, make_arms, pairs = SECTIONS[args.section]
    arms = make_arms()
    if args.arms:
        wanted = set(args.arms.split(","))
        arms = [arm for arm in arms if arm.name in wanted]
    started = time.monotonic()
    starts = start_servers(sorted({route for arm in arms for route in arm.models} | {LARGE}))
    results: list[dict[str, Any]] = []
    reference: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for task in tasks:
            n = args.n or (164 if task == "humaneval" else 80)
            reference[task] = one_large_call_flops(task, n, args.db, workdir)
            for arm in arms:
                result = run_arm(arm, task, min(n, arm.subset or n), args.db, workdir)
                results.append(result)
                append_jsonl(args.log, {**summarize([result], reference)[0], "run_id": result["report"]["run_id"]})
                print(
                    f"{task:16} {arm.name:24} {result['report']['accuracy']:6.1%}  "
                    f"{result['report']['usage']['completion_tokens'] / n:6.0f} tok/item  {result['wall_s']:7.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    stop_all()
    rows = summarize(results, reference)
    tests = []
    by_key = {(r["task"], r["arm"]): r["items"] for r in results}
    for task in tasks:
        for first, second in pairs:
            if (task, first) in by_key and (task, second) in by_key:
                test = paired_test(by_key[(task, first)], by_key[(task, second)])
                tests.append({"task": task, "pair": f"{first} vs {second}", **test})
    summary = {
        "section": args.section,
        "rows": rows,
        "mcnemar": tests,
        "server_start_s": starts,
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{'task':16} {'arm':24} {'acc':>6} {'95% CI':>15} {'compute':>8} {'tok/item':>8} {'calls':>6} {'wall':>7}")
    for row in rows:
        low, high = row["ci95"]
        compute = "—" if row["compute_vs_1.5b_call"] is None else f"{row['compute_vs_1.5b_call']:.2f}x"
        print(
            f"{row['task']:16} {row['arm']:24} {row['accuracy']:6.1%} [{low:5.1%}, {high:5.1%}] {compute:>8} "
            f"{row['completion_tokens_per_item']:8.0f} {row['paid_calls']:6d} {row['wall_s']:6.0f}s"
        )
    for test in tests:
        print(
            f"McNemar {test['task']}: {test['pair']}: {test['only_first']} vs {test['only_second']} discordant "
            f"of {test['n']}, p = {test['p']:.4f}"
        )
    print(f"servers started in {starts}; whole section {summary['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
