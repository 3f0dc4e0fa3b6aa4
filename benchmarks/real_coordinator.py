"""The CEO coordinator on REAL local models: 0.5B workers led by a 1.5B CEO (Qwen2.5-Coder, vLLM on CPU).

Every arm is a graph run end to end as a user runs it (`agentscale eval GRAPH --task T --n N --seed 0
--json`, through `real_scaling.run_arm`), all under the same per-question cap
`budget: {max_tokens: CAP}`. The team: three Qwen2.5-Coder-0.5B assistants sampling at T = 0.8 into a
model-free aggregator (a majority `vote` on rg:gsm_symbolic; the `tester`, which runs each program on
the examples the question states, on HumanEval). Arms:

- `dag`: the team run once;
- `ceo`: the same team under `coordinator: {model: local/qwen2.5-coder-1.5b, max_rounds: 3}`, the
  CEO's decision written as free text (parsed leniently);
- `ceo-so`: the same with `structured_output: true` (vLLM constrains the reply to the decision's
  JSON schema);
- `ceo-so-eval`: `ceo-so` with the 1.5B also as evaluator (the MAS-TTS setting);
- `ceo-so-guard` (HumanEval): `ceo-so` with `stop_guard: stated_examples` (no stop while the answer
  fails an example the question states);
- `vote<k>` / `tester<k>`: equal spend, k samples into the same aggregator, k chosen so its tokens
  match the `--spend-of` CEO arm's (its first three samples are the `dag` arm's, from the cache).

Read back from SQLite per arm: accuracy (Wilson 95%), tokens per question (all calls, and the CEO's
and evaluator's share), rounds run, how many of the CEO's replies parsed, how many rounds fell back,
and the CEO's judgement: at each decision after round 1, was the current answer right or wrong, and
did the CEO stop or continue. Exact McNemar tests: every CEO arm against `dag` and against the
equal-spend arm, on the same items.

Run: flock /tmp/agentscale-heavy.lock .venv/bin/python benchmarks/real_coordinator.py gsm [--n 40]
     [--db PATH] [--arms dag,ceo] [--spend-of ceo-so] [--log F] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from real_scaling import LARGE, SMALL, Arm, aggregate, append_jsonl, paired_test, run_arm, start_servers

from agentscale.agents.coordinator import RawDecision, parse_decision, parse_verdict
from agentscale.evaluate.stats import wilson_interval
from agentscale.models.serving import stop_all
from agentscale.storage.db import Store
from agentscale.storage.tables import NodeCall
from agentscale.tasks import Task, load_task

CAP_TOKENS = 12_000  # per question, every arm: binds the costliest CEO runs, never a DAG
TEAM = 3
MAX_ROUNDS = 3
MIN_WORKER_TOKENS = 256  # the CEO picks worker depth in [256, 512]: below ~250 tokens 0.5B answers are cut off
CONTROL_ROLES = ("ceo", "evaluator")
_ROUND_ID = re.compile(r"^r(\d+)\.(.+)$")


@dataclass(frozen=True)
class Section:
    task: str
    aggregator: str  # vote | tester
    answer_format: str | None


SECTIONS = {
    "gsm": Section("rg:gsm_symbolic", "vote", None),
    "humaneval": Section("humaneval", "tester", "code"),
}


def team_arm(name: str, section: Section, width: int = TEAM, coordinator: str | None = None) -> Arm:
    """`width` 0.5B samples into the section's aggregator, capped; under a CEO when `coordinator` is set."""
    base = aggregate(name, SMALL, width, section.aggregator, section.answer_format)
    text = base.graph + f"budget: {{max_tokens: {CAP_TOKENS}}}\n"
    if coordinator is not None:
        text += f"coordinator: {{{coordinator}}}\n"
    return Arm(name, text, base.models)


def ceo_arms(section: Section) -> list[Arm]:
    ceo = f"model: {LARGE}, max_rounds: {MAX_ROUNDS}, min_tokens: {MIN_WORKER_TOKENS}"
    guard = f"{ceo}, structured_output: true, stop_guard: stated_examples"
    return [
        team_arm("dag", section),
        team_arm("ceo", section, coordinator=ceo),
        team_arm("ceo-so", section, coordinator=f"{ceo}, structured_output: true"),
        team_arm("ceo-so-eval", section, coordinator=f"{ceo}, structured_output: true, evaluator: {LARGE}"),
        *(  # the guard runs the answer as a program: code sections only
            [team_arm("ceo-so-guard", section, coordinator=guard)] if section.answer_format == "code" else []
        ),
    ]


def equal_spend_width(ceo_tokens: float, dag_tokens: float) -> int:
    """Samples whose tokens match a CEO arm's, from the DAG's tokens per sample (at least the team)."""
    return max(TEAM, round(ceo_tokens / (dag_tokens / TEAM)))


@dataclass
class ItemDiscussion:
    """One item's discussion as its stored calls tell it."""

    replies: int = 0  # CEO replies received
    parsed: int = 0  # of those, replies that parsed as a decision
    decisions: dict[int, str | None] = field(default_factory=dict)  # round -> continue/stop (None: fell back)
    worker_rounds: set[int] = field(default_factory=set)
    answers: dict[int, str] = field(default_factory=dict)  # round -> the aggregator's answer
    verdicts: dict[int, bool | None] = field(default_factory=dict)  # round -> the evaluator's "correct"
    control_tokens: int = 0  # CEO and evaluator tokens
    asked: list[RawDecision] = field(default_factory=list)  # every parsed decision, before clamping

    def shown_before(self, index: int) -> str | None:
        """The best answer the CEO was shown before round `index` (the last round answer before it)."""
        earlier = [self.answers[i] for i in sorted(self.answers) if i < index]
        return earlier[-1] if earlier else None

    def stopped_at(self) -> int | None:
        """The round whose CEO decision ended the run, if the CEO ended it."""
        if not self.decisions:
            return None
        last = max(self.decisions)
        ended = last > max(self.worker_rounds, default=0) and self.decisions[last] == "stop"
        return last if ended else None


def read_item(calls: list[NodeCall]) -> ItemDiscussion:
    """Calls are `r<k>.ceo` (the row's answer is the decision it parsed, if any), `r<k>.evaluator`,
    the round's workers, and `r<k>.out`, the aggregator, whose answer is the round's."""
    item = ItemDiscussion()
    for call in calls:
        match = _ROUND_ID.match(call.node_id)
        if match is None:
            continue
        index, node = int(match.group(1)), match.group(2)
        if call.role in CONTROL_ROLES:
            item.control_tokens += call.prompt_tokens + call.completion_tokens
        if call.role == "ceo":
            item.decisions.setdefault(index, None)
            if call.status == "ok":
                item.replies += 1
                if call.answer in ("continue", "stop"):
                    item.parsed += 1
                    item.decisions[index] = call.answer
                    item.asked.append(parse_decision(call.completion or ""))
        elif call.role == "evaluator":
            if call.status == "ok":
                item.verdicts[index] = parse_verdict(call.completion or "").correct
        else:
            item.worker_rounds.add(index)
            if node == "out" and call.answer:
                item.answers[index] = call.answer
    return item


def discussion_stats(store: Store, run_id: str, task: Task) -> dict[str, Any]:
    """The CEO's (and evaluator's) behaviour in one eval run, from its stored calls.

    A round fell back when none of its CEO replies parsed. The CEO's judgement: at each decision after
    round 1, was the answer it was shown right (scored with the task), and did it stop or continue.
    The evaluator's: at each verdict, was the round's answer right, and what did it say.
    """
    tasks = {item.id: item for item in task.items}
    by_item: dict[str, list[NodeCall]] = defaultdict(list)
    for call in store.node_calls(run_id):
        by_item[call.item_key].append(call)
    discussions = {key: read_item(calls) for key, calls in by_item.items()}
    scores: dict[tuple[str, str], bool] = {}

    def right(key: str, answer: str) -> str:
        if (key, answer) not in scores:
            scores[(key, answer)] = task.score(answer, tasks[key]).correct
        return "right" if scores[(key, answer)] else "wrong"

    judged: dict[str, int] = defaultdict(int)  # "right->stop", "wrong->continue", ...
    verdicts: dict[str, int] = defaultdict(int)  # "right->said correct", "wrong->unparsed", ...
    stopped: dict[str, int] = defaultdict(int)
    for key, item in discussions.items():
        for index, decision in item.decisions.items():
            shown = item.shown_before(index)
            if index > 1 and decision is not None and shown is not None:
                judged[f"{right(key, shown)}->{decision}"] += 1
        for index, correct in item.verdicts.items():
            said = {True: "said correct", False: "said wrong", None: "unparsed"}[correct]
            if index in item.answers:
                verdicts[f"{right(key, item.answers[index])}->{said}"] += 1
        end = item.stopped_at()
        shown = item.shown_before(end) if end is not None else None
        if shown is not None:
            stopped[right(key, shown)] += 1
    items = list(discussions.values())
    n = len(items) or 1
    rounds = [len(item.worker_rounds) for item in items]
    decided = [decision for item in items for decision in item.decisions.values()]
    asked = [raw for item in items for raw in item.asked if raw.decision == "continue"]
    return {
        "ceo_replies": sum(item.replies for item in items),
        "ceo_parsed": sum(item.parsed for item in items),
        "ceo_decisions": len(decided),
        "ceo_fallbacks": decided.count(None),
        "rounds_mean": round(sum(rounds) / n, 2),
        "rounds_hist": {str(k): rounds.count(k) for k in sorted(set(rounds))},
        "control_tokens_per_item": round(sum(item.control_tokens for item in items) / n, 1),
        "stopped_right": stopped["right"],
        "stopped_wrong": stopped["wrong"],
        "judged": dict(sorted(judged.items())),
        "continue_asked": {  # what the CEO asked for when it continued (before clamping)
            "agents": dict(sorted(Counter(raw.agents for raw in asked if raw.agents is not None).items())),
            "max_tokens": dict(sorted(Counter(raw.max_tokens for raw in asked if raw.max_tokens is not None).items())),
            "with_direction": sum(1 for raw in asked if raw.direction.strip()),
        },
        "evaluator": dict(sorted(verdicts.items())),
    }


def arm_row(result: dict[str, Any], store: Store, task: Task) -> dict[str, Any]:
    report = result["report"]
    n, usage = report["n"], report["usage"]
    low, high = wilson_interval(report["correct"], n)
    row: dict[str, Any] = {
        "arm": result["arm"],
        "n": n,
        "correct": report["correct"],
        "accuracy": report["accuracy"],
        "ci95": [round(low, 3), round(high, 3)],
        "tokens_per_item": round((usage["prompt_tokens"] + usage["completion_tokens"]) / n, 1),
        "completion_tokens_per_item": round(usage["completion_tokens"] / n, 1),
        "paid_calls": usage["calls"],
        # an item a budget cut short, or a discussion a budget ended between rounds (said in its rounds)
        "budget_stops": sum(
            1
            for item in store.run_items(report["run_id"])
            if item.stopped_reason or any(r.get("stopped_reason") for r in json.loads(item.rounds_json or "[]"))
        ),
        "wall_s": result["wall_s"],
        "run_id": report["run_id"],
    }
    if result["arm"].startswith("ceo"):
        row.update(discussion_stats(store, report["run_id"], task))
    return row


def mcnemar_rows(results: dict[str, dict[str, Any]], equal_spend: str | None) -> list[dict[str, Any]]:
    tests = []
    for name in results:
        if not name.startswith("ceo"):
            continue
        for other in ("dag", equal_spend):
            if other is None or other not in results:
                continue
            tests.append({"pair": f"{name} vs {other}", **paired_test(results[name]["items"], results[other]["items"])})
    return tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--n", type=int, default=40, help="items (default 40)")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "agentscale-real-coordinator.db")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default: all, equal spend last)")
    parser.add_argument("--spend-of", default="ceo-so", help="the CEO arm whose tokens the equal-spend arm matches")
    parser.add_argument("--width", type=int, default=None, help="equal-spend samples (default: matched)")
    parser.add_argument("--log", type=Path, default=None, help="append each finished arm's row (JSON lines)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    section = SECTIONS[args.section]
    task = load_task(section.task).sample(args.n, 0)
    wanted = set(args.arms.split(",")) if args.arms else None
    started = time.monotonic()
    starts = start_servers([SMALL, LARGE])
    store = Store(args.db)
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    equal_spend = None
    with tempfile.TemporaryDirectory() as tmp:
        arms = ceo_arms(section)
        for arm in arms:
            if wanted is not None and arm.name not in wanted and not (arm.name == "dag" and args.width is None):
                continue
            results[arm.name] = run_arm(arm, section.task, args.n, args.db, Path(tmp))
            rows.append(arm_row(results[arm.name], store, task))
            _log(args.log, rows[-1])
        by_name = {row["arm"]: row for row in rows}
        width = args.width
        if width is None and args.spend_of in by_name and "dag" in by_name:
            width = equal_spend_width(by_name[args.spend_of]["tokens_per_item"], by_name["dag"]["tokens_per_item"])
        if width is not None and (wanted is None or "equal" in wanted):
            equal_spend = f"{section.aggregator}{width}"
            results[equal_spend] = run_arm(
                team_arm(equal_spend, section, width), section.task, args.n, args.db, Path(tmp)
            )
            rows.append(arm_row(results[equal_spend], store, task))
            _log(args.log, rows[-1])
    stop_all()
    summary = {
        "section": args.section,
        "task": section.task,
        "cap_tokens": CAP_TOKENS,
        "rows": rows,
        "mcnemar": mcnemar_rows(results, equal_spend),
        "server_start_s": starts,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2) if args.json else _text(summary))


def _log(path: Path | None, row: dict[str, Any]) -> None:
    print(
        f"{row['arm']:14} {row['accuracy']:6.1%} {row['tokens_per_item']:8.0f} tok/item {row['wall_s']:6.0f}s",
        file=sys.stderr,
        flush=True,
    )
    append_jsonl(path, row)


def _text(summary: dict[str, Any]) -> str:
    lines = [f"{summary['task']}, cap {summary['cap_tokens']} tokens per question"]
    for row in summary["rows"]:
        low, high = row["ci95"]
        line = (
            f"{row['arm']:14} {row['accuracy']:6.1%} [{low:5.1%}, {high:5.1%}] {row['tokens_per_item']:7.0f} tok/q "
            f"{row['paid_calls']:5d} calls {row['wall_s']:6.0f}s"
        )
        if "ceo_replies" in row:
            line += (
                f"  parsed {row['ceo_parsed']}/{row['ceo_replies']}, fallbacks {row['ceo_fallbacks']}, "
                f"rounds {row['rounds_mean']}, stopped right/wrong {row['stopped_right']}/{row['stopped_wrong']}, "
                f"judged {row['judged']}" + (f", evaluator {row['evaluator']}" if row["evaluator"] else "")
            )
        lines.append(line)
    for test in summary["mcnemar"]:
        lines.append(
            f"McNemar {test['pair']}: {test['only_first']} vs {test['only_second']} of {test['n']}, p = {test['p']:.4f}"
        )
    lines.append(f"servers started in {summary['server_start_s']}; whole section {summary['wall_s']:.0f}s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
