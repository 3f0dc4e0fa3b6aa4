"""The report of an optimization: the crowned graph, how the search moved, the front, every trial.

Read from the run's stored trials (one row per evaluation) and item verdicts, so a resumed or
interrupted run reports what is in the database. Which graph was crowned is decided as the runner
records it (the graph its summary names as `best`, see :func:`crowned_trial`); the crowned graph's
test trial is the one with its graph, and the other test trials are the baselines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any

from agentscale.evaluate.stats import format_p, mcnemar_exact, paired_counts, wilson_interval
from agentscale.models.cost import known_total
from agentscale.optimize.report import outcome_notes, scored_later
from agentscale.optimize.space import SpaceSpec, stored_space
from agentscale.optimize.trials import (
    TRAIN_KINDS,
    candidate_from_json,
    recorded_front,
    stage_of,
    stored_verdicts,
    trials_front,
)
from agentscale.report.charts import Interval, Point, interval_chart, pareto_chart, search_curve
from agentscale.report.drawing import picture_from_candidate
from agentscale.report.html import (
    Markup,
    document,
    facts,
    fmt_interval,
    fmt_pct,
    fmt_usd,
    items_section,
    paragraph,
    section,
    simulated_banner,
    table,
)
from agentscale.report.items import read_items
from agentscale.report.simulated import run_is_simulated, simulated_label
from agentscale.report.spend import spend_by_stage
from agentscale.report.svg import render_svg
from agentscale.storage.db import Store
from agentscale.storage.tables import SHOWN_TIME, Run, Trial


@dataclass
class Arm:
    """A scored graph on one split: its trial, verdicts per item, and a readable name."""

    name: str
    trial: Trial
    verdicts: dict[str, bool]

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.trial.correct, self.trial.n_items)


_LEADING_TITLE = "Leading graph so far (the run is still running: nothing is crowned yet)"
_STOPPED_TITLE = "Leading graph when the run stopped (nothing was crowned)"


def crown_recorded(summary: dict[str, Any]) -> bool:
    """Whether the runner crowned a graph (its summary names it). A run stopped before crowning
    (Ctrl-C, kill -9) has a leading graph, which its report called "Crowned graph" with train
    figures of a graph its resumed run did not crown."""
    return bool(_crowned_description(summary))


def _crowned_description(summary: dict[str, Any]) -> str | None:
    """The crowned graph as the runner's summary describes it (`best.graph`, or `crowned.graph` when
    the run stopped during its test split), if it crowned one."""
    return recorded_crown(summary).get("graph")


def recorded_crown(summary: dict[str, Any]) -> dict[str, Any]:
    """The crowned graph as the runner recorded it: the final summary's `best`, else the `crowned`
    record a run stopped in its test split keeps (graph, path, train accuracy, compute); {} before."""
    best: dict[str, Any] = summary.get("best") or summary.get("crowned") or {}
    return best


class OptimizeReport:
    """Builds the page; one instance per report."""

    def __init__(self, store: Store, run: Run) -> None:
        self.store = store
        self.run = run
        self.config: dict[str, Any] = json.loads(run.config_json)
        self.summary: dict[str, Any] = json.loads(run.summary_json)
        self.space: SpaceSpec = stored_space(run)
        self.method = str(self.config.get("method", ""))
        self.trials = store.trials(run.id)
        self.candidates = {t.seq: candidate_from_json(t.candidate_json) for t in self.trials}
        self.verdicts = stored_verdicts(store, run.id)
        self.simulated = run_is_simulated(run)
        self.in_progress = run.in_progress()
        # "crowned" only for the graph the runner crowned; before that, the leading graph
        # (or crowned while its test split runs: the crown is recorded then)
        testing = self.in_progress and "crowned" in self.summary
        self.crowned_word = (
            "crowned" if crown_recorded(self.summary) and (testing or not self.in_progress) else "leading"
        )
        self._drawings: dict[str, str] = {}
        recorded = recorded_front(self.summary) if not self.in_progress else None
        self.front = trials_front(self.trials, self.verdicts, self.space, self.candidates, recorded=recorded)

    # helpers ------------------------------------------------------------------------------------
    def drawing(self, trial: Trial) -> str:
        """The trial's graph as SVG, drawn once per distinct graph."""
        if trial.key not in self._drawings:
            self._drawings[trial.key] = render_svg(
                picture_from_candidate(self.candidates[trial.seq], f"trial-{trial.seq}"),
                title=f"graph of trial {trial.seq}",
            )
        return self._drawings[trial.key]

    def stage(self, trial: Trial) -> str:
        """What an evaluation was for (`optimize.trials.stage_of`)."""
        return stage_of(trial.kind, trial.iteration, self.method)

    def arm(self, trial: Trial, name: str | None = None) -> Arm:
        return Arm(name or self.candidates[trial.seq].short_name(), trial, self.verdicts.get(trial.seq, {}))

    def raced_arms(self, kind: str) -> dict[str, Arm]:
        """Each graph raced on the train split — the models alone (`kind` "baseline") or the crowning
        pool ("crown") — its race steps (one trial each) merged into one arm; for "search", each
        graph's minibatch evaluations merged, an item counted once at its latest verdict."""
        steps: dict[str, list[Trial]] = {}
        for trial in self.trials:
            if trial.kind == kind:
                steps.setdefault(trial.key, []).append(trial)
        arms = {}
        for key, group in steps.items():
            verdicts = {item: v for t in group for item, v in self.verdicts.get(t.seq, {}).items()}
            merged = _merged(group, self.space.objective.accuracy, verdicts)
            arms[key] = Arm(self.candidates[merged.seq].short_name(), merged, verdicts)
        return arms

    @property
    def accuracy_label(self) -> str:
        return simulated_label("accuracy", self.simulated)

    # the page -----------------------------------------------------------------------------------
    def render(self) -> str:
        run = self.run
        crowned = crowned_trial(self.trials, self.summary)
        singles = self.raced_arms("baseline")
        ours = None
        # every train evaluation of its graph of its kind merged: a raced graph's race steps; a searched
        # one's minibatches (a run stopped before its crowning), as the front counts them (one lucky
        # 8-item minibatch, 87.5%, led beside 73.3% on 30 items)
        if crowned is not None:
            ours = replace(self.raced_arms(crowned.kind)[crowned.key], name=f"{self.crowned_word} graph")
            crowned = ours.trial
        tests = [t for t in self.trials if t.kind == "test"]
        crowned_test = next((t for t in tests if crowned is not None and t.key == crowned.key), None)
        title = f"optimization {run.id} · space {run.graph_name}"
        parts = [
            f"<h1>{escape(title)}</h1>",
            paragraph(
                f"method {self.method} · task {self.space.task.name or self.space.task.path} · {run.shown_status()} · "
                f"started {run.created:{SHOWN_TIME}}"
                # why the search ended, once it has ("stopped: —" on a running or interrupted run)
                + (f" · stopped: {self.summary['stopped_reason']}" if self.summary.get("stopped_reason") else ""),
                css_class="sub",
            ),
        ]
        if self.simulated:
            parts.append(simulated_banner())
        if run.error:
            parts.append(paragraph(f"error: {run.error}", css_class="error"))
        parts.append(self._outcome(crowned, crowned_test))
        if tests:  # also when a spend cap left the crowned graph unscored: the baselines it scored stand
            front = {o.candidate.canonical_key for o in self.front} if self.space.objective.pareto else set()

            def marked(trial: Trial, name: str) -> str:
                return name + (" (Pareto front)" if trial.key in front else "")

            ours_test = (
                []
                if crowned_test is None
                else [self.arm(crowned_test, marked(crowned_test, f"{self.crowned_word} graph"))]
            )
            arms = ours_test + [
                self.arm(t, marked(t, self.candidates[t.seq].short_name()))
                for t in tests
                if crowned_test is None or t.key != crowned_test.key
            ]
            heading = f"{self.crowned_word.capitalize()} graph against the baselines" + (
                " and the Pareto front's graphs" if front else ""
            )
            if crowned_test is None:
                heading = f"The baselines (the {self.crowned_word} graph was not scored on it)"
            parts.append(
                self._comparison(f"{heading} (test split)", arms, "test", "comparison-test", paired=bool(ours_test))
            )
        others = [arm for key, arm in singles.items() if crowned is not None and key != crowned.key]
        if ours is not None and others:
            arms = [ours, *others]
            parts.append(
                self._comparison(
                    f"{self.crowned_word.capitalize()} graph against each single model (train split; a model the "
                    "best one clearly beat stopped early in the singles' race: n says on how many items)",
                    arms,
                    "train",
                    "comparison-train",
                )
            )
        parts.append(self._search())
        parts.append(self._spend())
        parts.append(self._trials())
        if crowned_test is not None:
            items = read_items(self.store, run.id, key_prefix=f"t{crowned_test.seq}:")
            parts.append(
                items_section(
                    f"The {self.crowned_word} graph's test items", "test-items", items.page_data(), items.trace_data()
                )
            )
        return document(f"agentscale {title}", "".join(parts))

    def _outcome(self, crowned: Trial | None, crowned_test: Trial | None) -> str:
        if self.crowned_word == "crowned":
            title = "Crowned graph (the run is scoring it on the test split)" if self.in_progress else "Crowned graph"
        else:
            title = _LEADING_TITLE if self.in_progress else _STOPPED_TITLE
        if crowned is None:
            empty = "No graph has been evaluated yet." if self.in_progress else "The search evaluated no graph."
            return section(title, paragraph(empty))
        spent = self.store.spend(self.run.id)
        best = recorded_crown(self.summary).get("path")
        test = "not scored"
        if self.config.get("score_test") is False and self.crowned_word == "crowned":  # said nowhere why, nor how
            test += f" ({scored_later(self.store, best or 'best.yaml', self.run.id)})"
        if crowned_test is not None:
            interval = wilson_interval(crowned_test.correct, crowned_test.n_items)
            test = f"{fmt_pct(crowned_test.accuracy)} {fmt_interval(interval)} (n={crowned_test.n_items})"
        figures = facts(
            [
                (f"test {self.accuracy_label}", test),
                (f"train {self.accuracy_label}", f"{fmt_pct(crowned.accuracy)} (n={crowned.n_items})"),
                ("compute (1B-call units)", _of_budget(crowned.compute, self.space.budget.compute)),
                ("latency (critical path, train)", f"{crowned.latency_s:.2f} s"),  # --json's is the test split's
                ("evaluations", len(self.trials)),
                ("spend", f"{spent['calls']} calls · {spent['tokens']:,} tokens · {fmt_usd(spent['usd'])}"),
            ]
        )
        where = paragraph(f"runnable YAML: {best}") if best else ""
        if self.run.stopped_unfinished():  # named its command without the run or the database
            resume = self.store.command_line("optimize", "--resume", self.run.id)
            where += paragraph(f"not finished: continue with: {resume}", css_class="note")
        where += "".join(paragraph(note, css_class="note") for note in outcome_notes(self.summary))
        drawing = f'<div class="drawing crowned">{self.drawing(crowned)}</div>'
        return section(title, figures + drawing + where, section_id="crowned")

    def _comparison(self, title: str, arms: list[Arm], split: str, section_id: str, *, paired: bool = True) -> str:
        """A table and chart of `arms`, each paired with the first (the crowned graph) unless not `paired`."""
        crowned = arms[0] if paired else None
        rows = []
        for arm in arms:
            low, high = arm.ci95
            with_crowned = "—"
            if crowned is not None and arm is not crowned:
                shared, only_crowned, only_arm = paired_counts(crowned.verdicts, arm.verdicts)
                p = mcnemar_exact(only_crowned, only_arm)
                with_crowned = (
                    f"{shared} items · only {self.crowned_word} right {only_crowned} · only this right {only_arm} · "
                    f"p={format_p(p)}"
                )
            rows.append(
                [
                    arm.name,
                    f"{fmt_pct(arm.trial.accuracy)} ({arm.trial.correct}/{arm.trial.n_items})",
                    fmt_interval((low, high)),
                    f"{arm.trial.compute:.2f}",
                    f"{arm.trial.latency_s:.2f} s",
                    with_crowned,
                ]
            )
        chart = interval_chart(
            [Interval(a.name, a.trial.accuracy, *a.ci95) for a in arms], f"{self.accuracy_label} on the {split} split"
        )
        headers = [
            "graph",
            self.accuracy_label,
            "95% interval (Wilson)",
            "compute",
            "latency",
            f"paired with the {self.crowned_word} graph (exact McNemar)",
        ]
        return section(title, table(headers, rows) + chart, section_id=section_id)

    def _search(self) -> str:
        search = [t for t in self.trials if t.kind == "search"]
        if not search and not self.front:
            return section("Search", paragraph(f"No search evaluation is stored{self._yet()}."), section_id="search")
        train = [t for t in self.trials if t.kind in TRAIN_KINDS]
        front = self.front
        label = self.accuracy_label  # SIMULATED on every accuracy, the charts' hover titles too
        evaluations = {
            o.candidate.canonical_key: [t for t in train if t.key == o.candidate.canonical_key] for o in front
        }
        points = [
            Point(t.compute, t.accuracy, f"trial {t.seq}: {label} {t.accuracy:.1%} of {t.n_items} at {t.compute:.2f}")
            for t in search
        ] + [
            Point(
                o.compute,
                o.accuracy,
                f"{o.candidate.short_name()}: {label} {o.accuracy:.1%} of {o.n_items}",
                on_front=True,
            )
            for o in front
        ]
        charts = (
            '<div class="figure-row">'
            + (search_curve([t.reward for t in search]) if search else "")
            + pareto_chart(points, "compute (1B-call units)", f"train {self.accuracy_label}")
            + "</div>"
        )
        tested = {t.key: t for t in self.trials if t.kind == "test"}  # objective.pareto: the front's too
        scored = self.space.objective.pareto and any(o.candidate.canonical_key in tested for o in front)
        # a graph the spend cap kept off the test split read "—", its reason in the page's first line only
        capped = "; test split: " in str(self.summary.get("stopped_reason") or "")
        missing = "not scored (the spend cap: see stopped)" if capped else "—"
        rows = [
            [
                ", ".join(str(t.seq) for t in evaluations[o.candidate.canonical_key]),
                f"{fmt_pct(o.accuracy)} ({o.n_items})",
                *([_test_cell(tested.get(o.candidate.canonical_key), missing)] if scored else []),
                f"{o.compute:.2f}",
                f"{o.latency_s:.2f} s",
                Markup(self.drawing(evaluations[o.candidate.canonical_key][-1])),
            ]
            for o in front
        ]
        test_header = [f"test {self.accuracy_label} (items)"] if scored else []
        headers = ["trials", f"train {self.accuracy_label} (items)", *test_header, "compute", "train latency", "graph"]
        beaten = (  # with a latency weight the front has three dimensions, and the chart draws two
            "as accurate, as cheap and as fast at once: latency is weighed, so a point the chart shows beaten on "
            "accuracy and compute stays for its latency"
            if self.space.objective.latency > 0
            else "as accurate and as cheap at once"
        )
        charts_said = (
            "Left: each search evaluation's objective and the best so far. Right: grey points are search "
            "evaluations, each on its minibatch; red points"
            if search  # a run the spend cap or a stop ended in its single calls' race has their front alone
            else f"No search evaluation is stored{self._yet()}. Red points"
        )
        note = paragraph(
            f"{charts_said} are the Pareto front, each graph on every train item "
            "it answered in the search and the races, among graphs measured on more items than one minibatch (no other "
            f"graph is {beaten})."
        )
        files = [Path(str(point["path"])) for point in self.summary.get("pareto") or [] if point.get("path")]
        if files:  # objective.pareto: each front graph is a runnable file, which the page named nowhere
            where = "the front graphs as runnable YAML, most accurate first (front-1.yaml is the first row)"
            note += paragraph(f"{where}: {files[0].parent}")
        return section("Search", charts + note + "<h3>Pareto front</h3>" + table(headers, rows), section_id="search")

    def _spend(self) -> str:
        stages = {t.seq: self.stage(t) for t in self.trials}
        rows, beyond = spend_by_stage(self.store, self.run.id, stages, in_progress=self.in_progress)
        body = [
            [r.stage, r.evaluations, r.items, r.calls, r.cached_calls, f"{r.tokens:,}", fmt_usd(r.usd)] for r in rows
        ]
        body += [[r.stage, "—", "—", r.calls, 0, f"{r.tokens:,}", fmt_usd(r.usd)] for r in beyond]
        if not body:  # stopped before its first call: no table of nothing
            return section("Spend by stage", paragraph(f"No model call is stored{self._yet()}."), section_id="spend")
        headers = ["stage", "evaluations", "items answered", "model calls", "cache hits", "tokens", "USD"]
        return section("Spend by stage", table(headers, body), section_id="spend")

    def _yet(self) -> str:
        return " yet (the run is still running)" if self.in_progress else ""

    def _trials(self) -> str:
        if not self.trials:
            return section("Every trial", paragraph(f"No evaluation is stored{self._yet()}."), section_id="trials")
        rows = [
            [
                t.seq,
                t.iteration if t.iteration >= 0 else "—",
                self.stage(t),
                f"{fmt_pct(t.accuracy)} ({t.correct}/{t.n_items})",
                f"{t.compute:.2f}",
                f"{t.latency_s:.2f} s",
                f"{t.reward:.3f}",
                f"{t.tokens:,}",
                Markup(
                    f'<details class="graph"><summary>{escape(self.candidates[t.seq].diagram_line())}</summary>'
                    f"{self.drawing(t)}</details>"
                ),
            ]
            for t in self.trials
        ]
        headers = ["seq", "iteration", "stage", self.accuracy_label, "compute", "latency", "objective", "tokens"]
        headers.append("graph")
        return section("Every trial", table(headers, rows, css_class="trials"), section_id="trials")


def crowned_trial(trials: list[Trial], summary: dict[str, Any]) -> Trial | None:
    """A train evaluation of the graph the runner crowned: the largest of its race steps (on the
    train split a graph is raced in steps; `OptimizeReport.raced_arms` merges them, callers that
    need only the graph take this one).

    The runner's own record decides: its summary names the crowned graph (`best.graph`), and that
    graph's crowning evaluation (else its single-model baseline one, else a search one) is returned.
    A run stopped before testing has no such record; then the crowning graph that answered the most
    items (its steps together) with the best objective on its last step stands in, else the graph of
    the search and the single calls with the best objective less one standard error over the items
    it answered (a graph right on 4 of 8 minibatch items stood in beside a single call right on 35
    of 50).
    """
    described = _crowned_description(summary)
    if described:
        preference = {"crown": 0, "baseline": 1, "search": 2}
        named = [
            t for t in trials if t.kind in preference and candidate_from_json(t.candidate_json).describe() == described
        ]
        if named:
            return min(named, key=lambda t: (preference[t.kind], -t.n_items, t.seq))
    answered: dict[str, int] = {}
    for trial in trials:
        if trial.kind == "crown":
            answered[trial.key] = answered.get(trial.key, 0) + trial.n_items
    if answered:  # one race step is a quarter of the split: a lucky first step must not stand in
        most = max(answered.values())
        last_steps = {t.key: t for t in trials if t.kind == "crown" and answered[t.key] == most}
        return max(last_steps.values(), key=lambda t: t.reward)
    return _measured_best([t for t in trials if t.kind in ("search", "baseline")])


def _measured_best(trials: list[Trial]) -> Trial | None:
    """The largest trial of the graph whose item-weighted objective, less one standard error of a
    proportion at its widest (0.5 / √items), is best: many items at a little less beat a few."""
    by_key: dict[str, list[Trial]] = {}
    for trial in trials:
        by_key.setdefault(trial.key, []).append(trial)

    def cautious(steps: list[Trial]) -> float:
        items = sum(t.n_items for t in steps)
        return sum(t.reward * t.n_items for t in steps) / max(1, items) - 0.5 / math.sqrt(max(1, items))

    best = max(by_key.values(), key=cautious, default=None)
    return None if best is None else max(best, key=lambda t: (t.n_items, -t.seq))


def _merged(steps: list[Trial], accuracy_weight: float, verdicts: dict[str, bool]) -> Trial:
    """One trial for a graph's race steps, in order. Its items and right answers are those of the
    merged per-item verdicts when known: runs stored before the crowning race asked each item once
    ended it with a whole-split step that repeats the earlier steps' items."""
    if len(steps) == 1:
        return steps[0]
    first, last = steps[0], steps[-1]
    if verdicts:
        n, correct = len(verdicts), sum(verdicts.values())
    else:
        n, correct = sum(t.n_items for t in steps), sum(t.correct for t in steps)
    accuracy = correct / max(1, n)
    return Trial(
        run_id=first.run_id,
        seq=first.seq,
        iteration=first.iteration,
        kind=first.kind,
        key=first.key,
        candidate_json=first.candidate_json,
        n_items=n,
        correct=correct,
        accuracy=accuracy,
        compute=first.compute,
        latency_s=sum(t.latency_s * t.n_items for t in steps) / max(1, sum(t.n_items for t in steps)),
        tokens=sum(t.tokens for t in steps),
        usd=known_total(t.usd for t in steps),
        reward=last.reward + accuracy_weight * (accuracy - last.accuracy),
        created=first.created,
    )


def _test_cell(trial: Trial | None, missing: str) -> str:
    return missing if trial is None else f"{fmt_pct(trial.accuracy)} ({trial.n_items})"


def optimize_report(store: Store, run: Run) -> str:
    return OptimizeReport(store, run).render()


def _of_budget(compute: float, budget: float | None) -> str:
    """`12.30 of 18`, or the compute alone when the space caps tokens, USD or time instead."""
    return f"{compute:.2f}" if budget is None else f"{compute:.2f} of {budget:g}"
