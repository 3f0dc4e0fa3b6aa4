"""The behavior handbook on REAL local models: Qwen2.5-Coder-1.5B curates, 0.5B and 1.5B students use it.

1. **Build** (solve → reflect → extract) with `agentscale handbook build` on rg:gsm_symbolic items of
   generator seed 1 (`--task-option seed=1`), twice into one database: free-text extraction (handbook
   `gsm-free`) and `--structured-output` (handbook `gsm-so`). The solve and reflect calls are the same
   requests both times (temperature 0), so the second build pays only for its extractions.
2. **Evaluate** on held-out items, rg:gsm_symbolic of generator seed 0 (`--seed 0` sample): each
   student as one greedy call (`real_scaling.single`), without and with the handbook (the same graph
   plus `memory: {handbook: H, top_k: 5}`, which is what `eval --handbook H` adds). No eval question
   appears among the build questions (checked before anything runs). The handbook used is `gsm-so`,
   unless it kept fewer behaviors than `gsm-free` (decided on the build items; an empty list parses).

Reported: the builds' counts (extractions parsed, behaviors proposed, kept after dedup, rejected),
then per student accuracy (Wilson 95%) and completion tokens per item with and without the handbook,
the paired difference in completion tokens (mean ± 1.96 sd/√n), exact McNemar on the same items, and
how many answers cite a behavior they were shown.

Run: flock /tmp/agentscale-heavy.lock .venv/bin/python benchmarks/real_handbook.py [--n 60] [--build-n 40]
     [--db PATH] [--log F] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from real_scaling import LARGE, SMALL, Arm, append_jsonl, run_arm, single, start_servers

from agentscale.evaluate.stats import mcnemar_exact, paired_counts, wilson_interval
from agentscale.memory.extract import find_citations
from agentscale.memory.handbook import Handbook
from agentscale.models.serving import stop_all
from agentscale.storage.db import Store
from agentscale.tasks import load_task

TASK = "rg:gsm_symbolic"
BUILD_GENERATOR_SEED = 1  # build questions come from another generator seed than the eval's (0)
TOP_K = 5
STUDENTS = {"05b": SMALL, "15b": LARGE}


def check_disjoint(n_eval: int, n_build: int) -> None:
    """Refuse to run when a build question is also an eval question (the handbook must not see them)."""
    evaluated = {item.question for item in load_task(TASK).sample(n_eval, 0).items}
    built = {item.question for item in load_task(TASK, seed=BUILD_GENERATOR_SEED).sample(n_build, 0).items}
    if evaluated & built:
        raise SystemExit(f"{len(evaluated & built)} build questions are eval questions; pick other sizes")


def build(handbook: str, n: int, db: Path, structured: bool) -> dict[str, Any]:
    """`agentscale handbook build` with the 1.5B as curator, as a user runs it."""
    command = [sys.executable, "-m", "agentscale.cli.app", "handbook", "build", "--task", TASK]
    command += ["--task-option", f"seed={BUILD_GENERATOR_SEED}", "--n", str(n), "--seed", "0"]
    command += ["--model", LARGE, "--handbook", handbook, "--concurrency", "16", "--json"]
    command += ["--structured-output"] if structured else []
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "AGENTSCALE_DB": str(db)})
    if done.returncode != 0:
        raise SystemExit(f"handbook build {handbook} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    parsed = report["items"] - report["failed"] - report["malformed"] - report["skipped_wrong"]
    return {
        **report,
        "extractions_parsed": parsed,
        "structured": structured,
        "wall_s": round(time.monotonic() - started, 1),
    }


def with_memory(arm: Arm, handbook: str) -> Arm:
    return Arm(f"{arm.name}+{handbook}", arm.graph + f"memory: {{handbook: {handbook}, top_k: {TOP_K}}}\n", arm.models)


def per_item(store: Store, run_id: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """Correctness, completion tokens and citations of every item of an eval run."""
    items = {}
    for row in store.run_items(run_id):
        calls = store.node_calls(run_id, row.item_key)
        shown = find_citations([call.messages_json for call in calls], names)  # the behaviors in the prompt
        cited = find_citations([call.completion for call in calls], set(shown))
        items[row.item_key] = {
            "correct": bool(row.correct),
            "completion_tokens": json.loads(row.usage_json)["completion_tokens"],
            "shown": len(shown),
            "cited": cited,
        }
    return items


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its normal 95% interval (1.96 sd/√n)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def student_rows(tag: str, plain: dict[str, Any], helped: dict[str, Any]) -> dict[str, Any]:
    """The paper's comparison for one student: the same items without and with the handbook."""
    rows = {}
    for label, result in (("without", plain), ("with", helped)):
        items = result["per_item"]
        n, correct = len(items), sum(i["correct"] for i in items.values())
        low, high = wilson_interval(correct, n)
        tokens = mean_interval([i["completion_tokens"] for i in items.values()])
        rows[label] = {
            "arm": result["arm"],
            "run_id": result["report"]["run_id"],
            "n": n,
            "correct": correct,
            "accuracy": correct / n,
            "ci95": [round(low, 3), round(high, 3)],
            "completion_tokens": [round(t, 1) for t in tokens],
            "prompt_tokens_per_item": round(result["report"]["usage"]["prompt_tokens"] / n, 1),
            "citing_items": sum(1 for i in items.values() if i["cited"]),
            "shown_items": sum(1 for i in items.values() if i["shown"]),
            "wall_s": result["wall_s"],
        }
    shared = plain["per_item"].keys() & helped["per_item"].keys()
    difference = mean_interval(
        [helped["per_item"][k]["completion_tokens"] - plain["per_item"][k]["completion_tokens"] for k in shared]
    )
    correct = {
        label: {k: v["correct"] for k, v in r["per_item"].items()} for label, r in (("w", helped), ("wo", plain))
    }
    n, only_with, only_without = paired_counts(correct["w"], correct["wo"])
    return {
        "student": tag,
        **rows,
        "completion_token_difference": [round(t, 1) for t in difference],
        "mcnemar": {
            "n": n,
            "only_with": only_with,
            "only_without": only_without,
            "p": round(mcnemar_exact(only_with, only_without), 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="held-out eval items (default 60)")
    parser.add_argument("--build-n", type=int, default=40, help="build items (default 40)")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "agentscale-real-handbook.db")
    parser.add_argument("--log", type=Path, default=None, help="append each finished step (JSON lines)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    check_disjoint(args.n, args.build_n)
    started = time.monotonic()
    start_servers([SMALL, LARGE])
    builds = [build("gsm-free", args.build_n, args.db, False), build("gsm-so", args.build_n, args.db, True)]
    for report in builds:
        _log(args.log, {"build": report})
    free, constrained = builds
    # the handbook with more behaviors kept: parsing is not enough (an empty list parses)
    handbook = "gsm-so" if constrained["behaviors"] >= free["behaviors"] else "gsm-free"
    if max(free["behaviors"], constrained["behaviors"]) == 0:
        raise SystemExit("neither build kept a behavior: nothing to evaluate with")
    store = Store(args.db)
    names = {row.name for row in Handbook(store, handbook, embedder=None).behaviors()}
    students = []
    with tempfile.TemporaryDirectory() as tmp:
        for tag, route in STUDENTS.items():
            base = single(f"single-{tag}", route)
            results = []
            for arm in (base, with_memory(base, handbook)):
                result = run_arm(arm, TASK, args.n, args.db, Path(tmp))
                result["per_item"] = per_item(store, result["report"]["run_id"], names)
                results.append(result)
            students.append(student_rows(tag, *results))
            _log(args.log, {"student": students[-1]})
    stop_all()
    behaviors = [
        {
            "name": row.name,
            "instruction": row.instruction,
            "merged": row.merged,
            "times_retrieved": row.times_retrieved,
            "times_cited": row.times_cited,
        }
        for row in Handbook(store, handbook, embedder=None).behaviors()
    ]
    summary = {
        "builds": builds,
        "handbook": handbook,
        "behaviors": behaviors,
        "students": students,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2) if args.json else _text(summary))


def _log(path: Path | None, entry: dict[str, Any]) -> None:
    print(json.dumps(entry)[:400], file=sys.stderr, flush=True)
    append_jsonl(path, entry)


def _text(summary: dict[str, Any]) -> str:
    lines = []
    for b in summary["builds"]:
        lines.append(
            f"build {b['handbook']}: {b['items']} items, {b['correct']} solved right, extractions parsed "
            f"{b['extractions_parsed']}/{b['items']} (malformed {b['malformed']}, failed {b['failed']}), proposed "
            f"{b['proposed']}, added {b['added']}, merged {b['merged']}, rejected {b['rejected']}, {b['wall_s']:.0f}s"
        )
    lines.append(f"evaluated with {summary['handbook']} ({len(summary['behaviors'])} behaviors)")
    for s in summary["students"]:
        for label in ("without", "with"):
            r = s[label]
            low, high = r["ci95"]
            mean, tlow, thigh = r["completion_tokens"]
            lines.append(
                f"{s['student']} {label:7} {r['accuracy']:6.1%} [{low:5.1%}, {high:5.1%}]  completion {mean:6.1f} "
                f"[{tlow:.1f}, {thigh:.1f}]  prompt {r['prompt_tokens_per_item']:6.1f}  "
                f"citing {r['citing_items']}/{r['n']}  {r['wall_s']:.0f}s"
            )
        d, m = s["completion_token_difference"], s["mcnemar"]
        lines.append(
            f"{s['student']} with − without: {d[0]:+.1f} tokens [{d[1]:+.1f}, {d[2]:+.1f}]; McNemar "
            f"{m['only_with']} vs {m['only_without']} of {m['n']}, p = {m['p']:.4f}"
        )
    lines.append(f"whole benchmark {summary['wall_s']:.0f}s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
