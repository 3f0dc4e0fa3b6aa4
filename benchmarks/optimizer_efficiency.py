"""How well each optimizer does as a user runs it, on the SIMULATED population (figures, not a test).

Every figure comes from the product run end to end: the real `Optimization` runner (single calls on
the train split, pilot, search, crowning on the noisy train split, test split) with `sim/` models
through the gateway, litellm, the response cache and SQLite, one fresh database per run, as
`agentscale optimize SPACE --method M --seed S` would run it. Nothing is looked up from the exact
truth while the runner works; afterwards the crowned graph is scored by its exact expected accuracy
on the space's test split (`SimOracle.estimate`; Monte-Carlo with a stated error for the few graphs
too entangled for exact elimination).

References: the exhaustive optimum for spaces small enough to enumerate, else the best-known graph
stored beside the space (`SPACE.best-known.yaml`, from `agentscale sim best-known`, ≥ 10^5 truth
evaluations), whose stored accuracy is checked against the truth before use.

Per space and method, over seeds:
- at the space's own settings (the defaults: 8 iterations × 4 samples, minibatch 8): crowned /
  reference (median, worst), how many seeds crowned a graph at least as good as the best single
  model (true test accuracies), and the run's spend in model calls up to the crown;
- the efficiency curve: the same runs with `iterations` in `--levels` (with `--no-test`: the test
  split does not change what is crowned); model calls until the crowned graph reaches 95% of the
  reference (pilot, search and crowning included; the smallest level whose crowned graph does),
  median over seeds, and its ratio to random search's and TPE's.

All accuracies are simulated. Run: .venv/bin/python benchmarks/optimizer_efficiency.py [--json]
(`--spaces`, `--methods`, `--seeds`, `--levels` narrow it). One large space with every method and
10 seeds took 223 min of run time (75 min wall as three processes) on the loaded 2-core
development machine (docs/benchmarks.md); run the methods as separate processes with `--json`
and print them together with `--combine A.json B.json ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from agentscale.errors import SpecError
from agentscale.graphs.located import load_located
from agentscale.models.gateway import Gateway
from agentscale.optimize.crowning import SEPARATION_Z, crown
from agentscale.optimize.pilot import single
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import SpaceSpec, space_from_data
from agentscale.optimize.trials import candidate_to_json
from agentscale.sim.best_known import BEST_KNOWN_SUFFIX, read_best_known
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.optimum import MAX_EXHAUSTIVE_NODES, search_optimum
from agentscale.storage.db import Store

SPACES = Path(__file__).parent / "spaces"
METHODS = ("agent-reinforce", "random", "bayes")
LEVELS = (2, 4, 8, 16)
TARGET = 0.95


@dataclass(frozen=True)
class Reference:
    """What a space's crowned graphs are measured against (simulated expected test accuracies)."""

    accuracy: float
    graph: str
    source: str
    best_single: float
    best_single_model: str


@dataclass
class RunRecord:
    """One end-to-end run of the product and how its crowned graph truly scores."""

    method: str
    seed: int
    iterations: int
    crowned_accuracy: float  # exact (or Monte-Carlo) expected test accuracy, simulated
    crowned_stderr: float
    crowned_graph: str
    crowned_candidate: str  # JSON, as stored in the run's trials
    crowned_reason: str
    spend_calls: int  # model calls up to the crown: single calls, pilot, search, crowning
    calls_by_stage: dict[str, int]  # the run's own split (`usage.calls_by_stage`), test split included
    total_calls: int  # with the test split, when it was scored
    evaluations: int
    seconds: float
    warnings: list[str]
    reported_advantage: dict[str, Any] | None
    # with a split drawn per seed, the reference and the best single on this run's own test split
    reference_accuracy: float | None = None
    best_single_accuracy: float | None = None
    # with --margins: the crown decided again over the same finalists with each margin (in standard
    # errors beyond one item), as {margin: simulated expected test accuracy of that crown}
    recrowned: dict[str, float] | None = None


def space_files(names: list[str] | None = None) -> list[Path]:
    """The benchmark's spaces (not their best-known files), else those named, in the order given; a
    name ending in `.yaml` is a space file elsewhere (its best-known file, if any, beside it)."""
    found = {p.stem: p for p in sorted(SPACES.glob("*.yaml")) if not p.name.endswith(BEST_KNOWN_SUFFIX)}
    if names is None:
        return list(found.values())
    unknown = [n for n in names if not n.endswith(".yaml") and n not in found]
    if unknown:
        raise SystemExit(f"no such space: {', '.join(unknown)} (spaces: {', '.join(found)}; or give a .yaml file)")
    paths = [Path(n) if n.endswith(".yaml") else found[n] for n in names]
    stems = [p.stem for p in paths]
    if len(set(stems)) < len(stems):
        raise SystemExit(f"two spaces named alike in --spaces ({', '.join(stems)}): their figures would mix")
    return paths


def configured(text: str, iterations: int, split_seed: int | None = None) -> tuple[SpaceSpec, str]:
    """The space text with `optimizer.iterations` set (what a user would edit), and with `task.seed`
    when the split is drawn per run (a user with another sample of the same task), and its spec."""
    data = yaml.safe_load(text)
    data.setdefault("optimizer", {})["iterations"] = iterations
    if split_seed is not None:
        data["task"]["seed"] = split_seed
    changed = yaml.safe_dump(data, sort_keys=False)
    return space_from_data(load_located(changed, "space.yaml"), "space.yaml"), changed


def with_train(text: str, train: int | None) -> str:
    """The space text with `task.train` set (None: as written). A new train size moves the test
    split, so the stored best-known graph is then scored by the truth on the split drawn."""
    if train is None:
        return text
    data = yaml.safe_load(text)
    data["task"]["train"] = train
    return yaml.safe_dump(data, sort_keys=False)


def reference(path: Path, space: SpaceSpec, *, stored_split: bool = True) -> Reference:
    """The exhaustive optimum of a small space, else its stored best-known graph: verified against
    the truth on the split it was found on, scored by the truth on another (`stored_split=False`)."""
    oracle = SimOracle.for_space(space)
    singles = {alias: oracle.expected_accuracy(single(alias), "test") for alias in space.models}
    top = max(singles, key=singles.__getitem__)
    stored = path.with_name(path.stem + BEST_KNOWN_SUFFIX)
    if space.max_nodes <= MAX_EXHAUSTIVE_NODES and not stored.exists():
        found = search_optimum(space)
        return Reference(found.accuracy, found.candidate.describe(), "exhaustive optimum", singles[top], top)
    if not stored.exists():
        raise SystemExit(f"{path}: no {stored.name}; run: agentscale sim best-known {path}")
    try:
        _, candidate = read_best_known(stored, space, truth=oracle if stored_split else None)
    except SpecError as exc:
        raise SystemExit(str(exc)) from None
    truth = oracle.estimate(candidate, "test")
    data = yaml.safe_load(stored.read_text())
    source = f"best-known ({data['search']['truth_evaluations']} truth evaluations)"
    return Reference(truth.accuracy, candidate.describe(), source, singles[top], top)


async def run_once(
    text: str,
    method: str,
    seed: int,
    iterations: int,
    *,
    score_test: bool,
    workdir: Path,
    own_split: Reference | None = None,
    margins: list[float] | None = None,
) -> RunRecord:
    """`agentscale optimize` on a fresh database, then the crowned graph's true test accuracy;
    with `own_split` (the reference on it), the task's split is drawn with the run's seed; with
    `margins`, the crown is decided again over the run's finalists with each (`recrowned`)."""
    space, changed = configured(text, iterations, seed if own_split is not None else None)
    store = Store(workdir / f"{method}-{seed}-{iterations}.db")
    optimization = Optimization(
        space, Gateway(store), space_text=changed, method=method, seed=seed, score_test=score_test
    )
    started = time.perf_counter()
    result = await optimization.run()
    seconds = time.perf_counter() - started
    oracle = SimOracle.for_space(space)
    truth = oracle.estimate(result.best_train.candidate, "test")
    stages = result.usage["calls_by_stage"]
    recrowned = None
    if margins and result.crowning is not None:
        finalists = [finalist.observation for finalist in result.crowning.finalists]
        singles = {single(alias).canonical_key for alias in space.models}
        weight = space.objective.accuracy
        recrowned = {
            f"{z:g}": oracle.estimate(
                crown(finalists, accuracy_weight=weight, baselines=singles, separation_z=z).crowned.candidate, "test"
            ).accuracy
            for z in margins
        }
    return RunRecord(
        method=method,
        seed=seed,
        iterations=iterations,
        crowned_accuracy=truth.accuracy,
        crowned_stderr=truth.stderr,
        crowned_graph=result.best_train.candidate.describe(),
        crowned_candidate=candidate_to_json(result.best_train.candidate),
        crowned_reason=result.crowning.reason if result.crowning else "",
        spend_calls=sum(calls for stage, calls in stages.items() if stage != "test"),
        calls_by_stage=dict(stages),
        total_calls=int(result.usage["calls"] or 0),
        evaluations=result.evaluations,
        seconds=seconds,
        warnings=result.warnings,
        reported_advantage=result.advantage.to_dict() if result.advantage else None,
        reference_accuracy=own_split.accuracy if own_split else None,
        best_single_accuracy=own_split.best_single if own_split else None,
        recrowned=recrowned,
    )


def calls_to_target(runs: list[RunRecord], goal: float) -> float:
    """Model calls of the first level (fewest iterations) whose crowned graph reaches `goal`."""
    for run in sorted(runs, key=lambda r: r.iterations):
        if run.crowned_accuracy >= goal:
            return float(run.spend_calls)
    return math.inf


def summarise(ref: Reference, runs: list[RunRecord], default_level: int) -> dict[str, Any]:
    """Figures of one method on one space from its runs (every seed, every level). A seed whose
    largest level does not reach 95% counts as infinitely many calls in `calls_to_95`, and as that
    level's spend in `calls_to_95_at_least` (a lower bound on the calls it would need). A run on its
    own split is measured against the reference and the best single on that split."""
    default = [r for r in runs if r.iterations == default_level]
    curve: dict[int, list[RunRecord]] = {}
    for run in runs:
        curve.setdefault(run.seed, []).append(run)
    ratios = [r.crowned_accuracy / _reference(r, ref) for r in default]
    margins: dict[str, dict[str, float]] = {}
    for run in default:
        for z, accuracy in (run.recrowned or {}).items():
            figures = margins.setdefault(z, {"ratios": [], "beats_best_single": 0})
            figures["ratios"].append(accuracy / _reference(run, ref))
            figures["beats_best_single"] += accuracy >= _best_single(run, ref) - 1e-9
    reach = [calls_to_target(seed_runs, TARGET * _reference(seed_runs[0], ref)) for seed_runs in curve.values()]
    bounds = [
        v if math.isfinite(v) else float(max(seed_runs, key=lambda r: r.iterations).spend_calls)
        for v, seed_runs in zip(reach, curve.values(), strict=True)
    ]
    return {
        "runs": len(default),
        "median_ratio": statistics.median(ratios),
        "worst_ratio": min(ratios),
        "beats_best_single": sum(r.crowned_accuracy >= _best_single(r, ref) - 1e-9 for r in default),
        "median_spend_calls": statistics.median(r.spend_calls for r in default),
        "median_calls_by_stage": {
            stage: statistics.median(r.calls_by_stage.get(stage, 0) for r in default)
            for stage in default[0].calls_by_stage
        },
        "calls_to_95": statistics.median(reach),
        "calls_to_95_at_least": statistics.median(bounds),
        "reached_95": sum(math.isfinite(v) for v in reach),
        "seeds": len(curve),
        "seconds": sum(r.seconds for r in runs),
        "margins": {
            z: {
                "mean_ratio": statistics.mean(f["ratios"]),
                "median_ratio": statistics.median(f["ratios"]),
                "worst_ratio": min(f["ratios"]),
                "beats_best_single": f["beats_best_single"],
            }
            for z, f in margins.items()
        },
    }


def _reference(run: RunRecord, ref: Reference) -> float:
    return ref.accuracy if run.reference_accuracy is None else run.reference_accuracy


def _best_single(run: RunRecord, ref: Reference) -> float:
    return ref.best_single if run.best_single_accuracy is None else run.best_single_accuracy


async def benchmark_space(
    path: Path,
    methods: list[str],
    seeds: int,
    levels: list[int],
    workdir: Path,
    *,
    split_per_seed: bool = False,
    train: int | None = None,
    margins: list[float] | None = None,
) -> dict[str, Any]:
    """Every method's runs on one space. With `split_per_seed`, seed S also draws the task's
    train/test split (`task.seed: S`): a space's seeds otherwise share one split, so one lucky
    draw of a single model's train items decides every seed alike. `train` overrides the space's
    train size; `margins` re-decides each default-settings crown (see `run_once`)."""
    text = with_train(path.read_text(), train)
    space = space_from_data(load_located(text, str(path)), str(path))
    # each split's reference is the truth of the best-known graph there (the stored figure is for
    # the split it was found on, which another seed or train size no longer draws)
    ref = reference(path, space, stored_split=not split_per_seed and train is None)
    own_splits: dict[int, Reference | None] = {seed: None for seed in range(seeds)}
    if split_per_seed:
        for seed in own_splits:
            own_space, _ = configured(text, space.optimizer.iterations, seed)
            own_splits[seed] = reference(path, own_space, stored_split=False)
    default_level = space.optimizer.iterations
    report: dict[str, Any] = {
        "reference": asdict(ref),
        "default_iterations": default_level,
        "split_per_seed": split_per_seed,
        "train": space.task.train,
        "methods": {},
        "runs": [],
    }
    started = time.perf_counter()
    for method in methods:
        records: list[RunRecord] = []
        for seed, own_split in own_splits.items():
            for level in sorted({*levels, default_level}):
                record = await run_once(
                    text,
                    method,
                    seed,
                    level,
                    score_test=level == default_level,
                    workdir=workdir,
                    own_split=own_split,
                    margins=margins if level == default_level else None,
                )
                report["runs"].append(asdict(record))
                share = record.crowned_accuracy / _reference(record, ref)
                print(
                    f"  {path.stem} {method} seed {seed} iterations {level}: crowned "
                    f"{record.crowned_accuracy:.3f} SIMULATED ({share:.1%}), {record.spend_calls} calls "
                    f"({_split(record)}), {record.seconds:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
                records.append(record)
        report["methods"][method] = summarise(ref, records, default_level)
    compare(report["methods"])
    report["seconds"] = time.perf_counter() - started
    return report


def _split(record: RunRecord) -> str:
    """Where a run's calls up to the crown went, stage by stage."""
    return ", ".join(f"{stage} {calls}" for stage, calls in record.calls_by_stage.items() if stage != "test")


def compare(methods: dict[str, dict[str, Any]]) -> None:
    """Each method's median calls to 95% as a ratio of random search's and TPE's. When theirs is
    infinite (most of their seeds never reached 95% within the largest level), the ratio to their
    lower bound is an upper bound on the true ratio (`calls_ratio_to_X_at_most`)."""
    for method, figures in methods.items():
        for other in ("random", "bayes"):
            if other in methods and other != method:
                theirs = methods[other]
                mine = figures["calls_to_95"]
                exact = math.isfinite(theirs["calls_to_95"])
                figures[f"calls_ratio_to_{other}"] = mine / theirs["calls_to_95"] if exact else None
                figures[f"calls_ratio_to_{other}_at_most"] = None if exact else mine / theirs["calls_to_95_at_least"]


def combine(files: list[Path]) -> dict[str, Any]:
    """Reports of the same spaces run as separate processes (e.g. one per method) as one report,
    its figures computed again from the runs."""
    spaces: dict[str, Any] = {}
    seconds = 0.0
    for file in files:
        data = json.loads(file.read_text())
        seconds += data["seconds"]
        for name, part in data["spaces"].items():
            merged = spaces.setdefault(name, {"reference": part["reference"], "runs": [], "seconds": 0.0})
            merged["default_iterations"] = part.get("default_iterations") or next(
                r["iterations"] for r in part["runs"] if r["reported_advantage"] is not None
            )
            per_seed = part.get("split_per_seed", False)
            if merged.setdefault("split_per_seed", per_seed) != per_seed:
                raise SystemExit(f"{file}: {name} ran with another split setting than the reports before it")
            merged["runs"] += part["runs"]
            merged["seconds"] += part["seconds"]
    for report in spaces.values():
        ref = Reference(**report["reference"])
        by_method: dict[str, list[RunRecord]] = {}
        for run in report["runs"]:
            by_method.setdefault(run["method"], []).append(
                RunRecord(**{"calls_by_stage": {}, **run})
            )  # files written before the split
        report["methods"] = {m: summarise(ref, runs, report["default_iterations"]) for m, runs in by_method.items()}
        compare(report["methods"])
    return {"spaces": spaces, "seconds": seconds, "simulated": True}


def print_space(name: str, report: dict[str, Any]) -> None:
    ref = report["reference"]
    print(
        f"\n{name} (SIMULATED): reference {ref['accuracy']:.3f} ({ref['source']}), best single "
        f"{ref['best_single_model']} {ref['best_single']:.3f}; {report['seconds'] / 60:.1f} min"
        + ("; each seed on its own split, measured against the reference there" if report.get("split_per_seed") else "")
    )
    print(
        f"{'method':16} {'crowned/ref median':>18} {'worst':>6} {'>= best single':>14} {'calls (default)':>15} "
        f"{'calls to 95%':>12} {'reached':>7} {'vs random':>9} {'vs TPE':>7}"
    )
    for method, f in report["methods"].items():
        reach = f"{f['calls_to_95']:.0f}" if math.isfinite(f["calls_to_95"]) else f">{f['calls_to_95_at_least']:.0f}"
        versus = [_ratio(f, other) for other in ("random", "bayes")]
        print(
            f"{method:16} {100 * f['median_ratio']:17.1f}% {100 * f['worst_ratio']:5.1f}% "
            f"{f['beats_best_single']:>11}/{f['runs']:<2} {f['median_spend_calls']:>15.0f} {reach:>12} "
            f"{f['reached_95']:>4}/{f['seeds']:<2} {versus[0]:>9} {versus[1]:>7}"
        )
    for method, f in report["methods"].items():
        if stages := f.get("median_calls_by_stage"):
            split = ", ".join(f"{stage} {calls:.0f}" for stage, calls in stages.items() if stage != "test")
            print(f"  {method} calls at the defaults by stage (medians): {split}")
        for z, m in f.get("margins", {}).items():
            print(
                f"  {method} crowned again with margin {z} SE (margin {SEPARATION_Z:g} ships): crowned/ref mean "
                f"{100 * m['mean_ratio']:.1f}%, median {100 * m['median_ratio']:.1f}%, worst "
                f"{100 * m['worst_ratio']:.1f}%, >= best single {m['beats_best_single']}/{f['runs']}"
            )


def _ratio(figures: dict[str, Any], other: str) -> str:
    """The ratio to another method's calls to 95%, `<x` when theirs is only a lower bound."""
    exact, at_most = figures.get(f"calls_ratio_to_{other}"), figures.get(f"calls_ratio_to_{other}_at_most")
    if exact is not None:
        return f"{exact:.2f}"
    if at_most is not None and math.isfinite(at_most):
        return f"<{at_most:.2f}"
    return "—"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--spaces",
        help="comma-separated space names or space files (default: every space in benchmarks/spaces)",
    )
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds: 0 to SEEDS-1 (default 10)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="iterations settings of the curve")
    parser.add_argument(
        "--split-per-seed",
        action="store_true",
        help="seed S also draws the task's train/test split (task.seed: S); default: the space's own split",
    )
    parser.add_argument("--train", type=int, help="train items of every space (default: each space's own)")
    parser.add_argument(
        "--margins",
        help="comma-separated crowning margins in standard errors beyond one item (e.g. 0,0.5,1,1.645): each "
        "default-settings crown is decided again over the same finalists with each, and scored by the truth",
    )
    parser.add_argument("--json", action="store_true", help="print {space: {...}} as JSON on stdout")
    parser.add_argument(
        "--combine", nargs="+", type=Path, metavar="JSON", help="print the tables of --json reports run separately"
    )
    args = parser.parse_args()
    if args.seeds < 1:  # no run to summarise: it failed only after every space had been set up
        parser.error("--seeds counts the seeds run (0 to SEEDS-1): give at least 1")
    if args.combine:
        combined = combine(args.combine)
        for name, part in combined["spaces"].items():
            print_space(name, part)
        print(f"\nprocess time summed over the reports: {combined['seconds'] / 60:.1f} min")
        return
    names = args.spaces.split(",") if args.spaces else None
    levels = [int(v) for v in args.levels.split(",")]
    margins = [float(v) for v in args.margins.split(",")] if args.margins else None
    started = time.perf_counter()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="agentscale-bench-") as workdir:
        for path in space_files(names):
            report[path.stem] = await benchmark_space(
                path,
                args.methods.split(","),
                args.seeds,
                levels,
                Path(workdir),
                split_per_seed=args.split_per_seed,
                train=args.train,
                margins=margins,
            )
            if not args.json:
                print_space(path.stem, report[path.stem])
    total = time.perf_counter() - started
    if args.json:
        # "simulated": every accuracy in it is the sim/ population's (docs/sim.md: JSON says so too)
        document = {"spaces": report, "seconds": total, "simulated": True}
        print(json.dumps(document, default=lambda v: None if v == math.inf else v))
    else:
        print(f"\nwhole benchmark: {total / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
