"""The report of a small optimization on the SIMULATED population, through the CLI, in a real browser:
the crowned graph drawn, every trial listed with its graph, the Pareto front's points, the SIMULATED
label, spend by stage, and the crowned graph's test items with their traces."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest

from agentscale.cli.app import main
from agentscale.evaluate.stats import wilson_interval
from agentscale.optimize.trials import candidate_from_json
from agentscale.report import write_report
from agentscale.report.html import fmt_interval
from agentscale.report.optimize_page import _merged, crowned_trial
from agentscale.storage.db import Store
from agentscale.storage.owner import current_owner
from agentscale.storage.tables import Run, Trial
from tests.report.conftest import fact

SPACE = """\
name: simreport
task: {name: "sim:math", train: 8, test: 12, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l8: {model: sim/llama-8b, params_b: 8.0}
roles: [assistant, fuser, vote]
max_nodes: 4  # room for the pilot: three calls and their vote
budget: {compute: 10}
optimizer: {method: agent-reinforce, iterations: 3, samples: 2, minibatch: 4, seed: 0}
"""


@pytest.fixture
def optimization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> dict[str, object]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--json"]) == 0
    return {**json.loads(capsys.readouterr().out), "store": Store(tmp_path / "o.db")}


def test_optimization_report_in_the_browser(optimization, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    trials = store.trials(run_id)
    crowned = crowned_trial(trials, json.loads(store.get_run(run_id).summary_json))
    assert crowned is not None
    candidate = candidate_from_json(crowned.candidate_json)
    assert candidate.describe() == optimization["best"]["graph"]  # the graph the runner crowned
    path = Path(str(optimization["report"]))
    assert path == store.path.parent / "runs" / run_id / "report.html" and path.exists()

    page = open_page(path)
    assert "SIMULATED" in page.locator(".simulated").inner_text()
    assert "SIMULATED accuracy" in (page.locator("#crowned .facts").text_content() or "")
    assert "latency (critical path, train)" in (page.locator("#crowned .facts").text_content() or "")  # not test's
    # the test card holds the test split's figures, as optimize --json does (it could show the train ones)
    best = optimization["best"]
    assert best["train_accuracy"] != best["accuracy"]  # this run's splits differ: the check below can tell
    low, high = best["ci95"]
    card = page.locator("#crowned .fact", has_text="test SIMULATED accuracy").locator(".fact-value").inner_text()
    assert card == f"{best['accuracy']:.1%} [{low:.1%}, {high:.1%}] (n={best['n']})"
    nodes = page.locator("#crowned svg.graph-drawing g.node")
    assert nodes.count() == candidate.size
    drawn = {nodes.nth(i).get_attribute("data-node") for i in range(nodes.count())}
    assert drawn == {candidate.node_id(i) for i in range(candidate.size)}
    assert page.locator("#crowned g.node.output").get_attribute("data-node") == "out"

    rows = page.locator("table.trials tbody tr")
    assert rows.count() == len(trials)
    first = rows.nth(0)
    assert not first.locator("svg").is_visible()
    first.locator("summary").click()
    assert first.locator("svg.graph-drawing").is_visible()

    # the front is the run's own (its summary's): each graph pooled over the minibatches and races it answered
    search = [t for t in trials if t.kind == "search"]
    front: list[dict[str, object]] = optimization["pareto"]  # type: ignore[assignment]
    assert page.locator("svg.pareto circle.front-dot").count() == len(front)
    assert page.locator("svg.pareto circle").count() == len(search) + len(front)
    shown = page.locator("#search table tbody tr td:nth-child(2)").all_inner_texts()
    assert [text.split(" (")[0] for text in shown] == [f"{p['accuracy']:.1%}" for p in front]
    assert page.locator("svg.search-curve circle.dot").count() == len(search)

    stages = page.locator("#spend tbody tr td:first-child").all_inner_texts()
    assert {"pilot", "search", "crowning", "test"} <= set(stages)
    spent_calls = sum(int(c) for c in page.locator("#spend tbody tr td:nth-child(4)").all_inner_texts())
    assert spent_calls == optimization["usage"]["calls"]  # every paid call is attributed to a stage

    test = page.locator("#comparison-test tbody tr")
    assert test.nth(0).locator("td").first.inner_text() == "crowned graph" and test.count() >= 2
    assert "p=" in test.nth(1).inner_text()
    assert test.count() == len({t.key for t in trials if t.kind == "test"})  # each scored graph once
    # the crowned graph paired with the single call it is compared to, as optimize --json counts them
    advantage = optimization["advantage"]
    first, second = advantage["only_first_right"], advantage["only_second_right"]
    assert first != second  # a swap of the two counts shows
    over = test.filter(has_text=f"single call of {advantage['over'][0]}")
    assert over.count() == 1
    assert f"only crowned right {first} · only this right {second} · " in over.inner_text()

    items = page.locator("#test-items tr.item-row")
    assert items.count() == 12
    island = re.search(r'<script type="application/json" id="data-test-items">(.*?)</script>', path.read_text())
    assert island is not None
    keys = [row[0] for row in json.loads(island.group(1))["rows"]]
    assert len(keys) == 12 and not any(re.match(r"t\d+:", key) for key in keys)  # the task's ids, as stored
    items.first.click()
    assert page.locator("#test-items .node-trace").count() == candidate.size  # one trace entry per node


def test_runs_show_draws_the_crowned_graph(optimization, capsys) -> None:  # type: ignore[no-untyped-def]
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    assert main(["runs", "show", run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["plot"] == str(store.path.parent / "runs" / run_id / "search.png")  # optimize's; it said null
    crowned = crowned_trial(store.trials(run_id), json.loads(store.get_run(run_id).summary_json))
    assert crowned is not None
    root = ET.parse(shown["drawing"]).getroot()
    nodes = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-node")]
    assert len(nodes) == candidate_from_json(crowned.candidate_json).size
    assert main(["runs", "show", run_id]) == 0
    text = capsys.readouterr().out
    assert "SIMULATED" in text and "best.svg" in text.replace("\n", "")
    assert "SIMULATED accuracy" in text  # the trials' column, as docs/report.md says (it read "accuracy")
    # the summary lines read as the optimize command's own (they printed raw floats, lists and a dict)
    best = shown["summary"]["best"]
    low, high = best["ci95"]
    flat = " ".join(text.split())
    assert f"test accuracy {best['accuracy']:.1%} of {best['n']} items (95% CI {low:.1%}-{high:.1%})" in flat
    assert f"spent {optimization['usage']['calls']} model calls (single calls " in flat and "{'calls'" not in flat


def test_the_report_and_runs_show_say_what_optimize_concluded(optimization, capsys) -> None:  # type: ignore[no-untyped-def]
    """Why the graph was crowned, its paired advantage over the best single call and the warnings
    ("add train items") were printed by `optimize` alone: the report and `runs show` left them out."""
    notes = [f"crowned: {optimization['crowning']['reason']}", *(f"warning: {w}" for w in optimization["warnings"])]
    assert optimization["warnings"] and optimization["advantage"]  # 8 train items cannot separate the top
    page = " ".join(Path(str(optimization["report"])).read_text().split())
    assert main(["runs", "show", str(optimization["run_id"])]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for note in notes:
        assert " ".join(escape(note).split()) in page and " ".join(note.split()) in shown, note
    assert "exact McNemar p=" in page and "exact McNemar p=" in shown


def _step(seq: int, items: int, correct: int) -> Trial:
    return Trial(
        run_id="r",
        seq=seq,
        iteration=-1,
        kind="crown",
        key="k",
        candidate_json="{}",
        n_items=items,
        correct=correct,
        accuracy=correct / items,
        compute=1.0,
        latency_s=1.0,
        tokens=10,
        reward=correct / items,
    )


def test_a_graphs_race_steps_merge_by_their_items_verdicts() -> None:
    """Runs stored before the crowning race asked each item once ended it with a whole-split step
    that repeats the earlier steps' items: the merged row counts each item once."""
    verdicts = {f"q{i}": i < 9 for i in range(12)}
    steps = [_step(1, 4, 4), _step(2, 4, 4), _step(3, 12, 9)]  # q0-3, q4-7, then all 12 again
    merged = _merged(steps, 1.0, verdicts)
    assert (merged.n_items, merged.correct, merged.accuracy) == (12, 9, 0.75)
    disjoint = _merged([_step(1, 4, 4), _step(2, 4, 1)], 1.0, {})  # no verdicts stored: the steps' sums
    assert (disjoint.n_items, disjoint.correct) == (8, 5)


def test_a_pareto_runs_report_shows_the_fronts_test_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """With objective.pareto the front's graphs are scored on the test split: the report named them
    baselines and its front table had no test column."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + "objective: {accuracy: 1.0, cost: 0.1, pareto: true}\n")
    assert main(["optimize", str(space), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    html = Path(result["report"]).read_text()
    search = html[html.index('id="search"') :]
    assert "test SIMULATED accuracy (items)" in search
    # the charts' hover titles too (they read "trial 8: 50.0% of 8"; the report walk's N1)
    titles = re.findall(r"<title>([^<]*)</title>", search[: search.index("<h3>Pareto front</h3>")])
    assert titles and all("SIMULATED accuracy" in title for title in titles if "%" in title), titles
    for point in result["pareto"]:
        assert f"{point['test']['accuracy']:.1%} ({point['test']['n']})" in search
    comparison = html[html.index('id="comparison-test"') : html.index('id="search"')]
    assert "Crowned graph against the baselines and the Pareto front" in comparison
    assert "(Pareto front)" in comparison
    assert result["best"]["graph"] in [point["graph"] for point in result["pareto"]]  # this run's crown is on it
    assert "crowned graph (Pareto front)" in comparison
    assert "as accurate and as cheap at once)" in search and "as fast" not in search
    assert "<th>train latency</th>" in search  # beside the test column: which split's latency (the walk's N2)
    folder = Path(result["pareto"][0]["path"]).parent  # the runnable files the page named nowhere (its F2)
    assert f"the front graphs as runnable YAML, most accurate first (front-1.yaml is the first row): {folder}" in search


def test_a_latency_weighed_front_is_not_read_as_accuracy_against_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """With a latency weight the front has three dimensions and the chart draws two: a point beaten on
    accuracy and compute stays for its latency, under a caption saying no other graph "is as accurate
    and as cheap at once" (the Pareto/llm walk's F1)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + "objective: {accuracy: 1.0, latency: 0.1}\n")
    assert main(["optimize", str(space), "--json", "--no-test"]) == 0
    result = json.loads(capsys.readouterr().out)
    html = Path(result["report"]).read_text()
    search = " ".join(html[html.index('id="search"') :].split())
    assert "as accurate, as cheap and as fast at once: latency is weighed" in search
    # --no-test's card said "not scored", neither why nor how to score it (the report walk's F5)
    assert "not scored (--no-test; agentscale eval " in html and f"--split-of {result['run_id']}" in html


def test_calls_of_items_cut_short_count_with_their_stage(optimization, capsys) -> None:  # type: ignore[no-untyped-def]
    """The ledger's rows name their item, so a call of an item an interruption cut short counts with
    its trial's stage (its node calls were never written); one of an evaluation with no stored trial,
    or a row of an earlier release's ledger (no item), is of no known stage. All such rows were once
    labelled "optimizer feedback agent", also in runs with no agent."""
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    paid = {"run_id": run_id, "route": "sim/llama-1b", "prompt_tokens": 5, "completion_tokens": 5, "flops": 0.0}
    report = store.path.parent / "again.html"

    def spend_rows() -> dict[str, list[str]]:
        assert main(["report", run_id, "-o", str(report)]) == 0
        section = report.read_text().split('id="spend"')[1].split("</table>")[0]
        cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in section.split("<tr")[2:]]
        return {row[0]: row[1:] for row in cells}

    before = spend_rows()
    test_seq = next(t.seq for t in store.trials(run_id) if t.kind == "test")
    store.record_call(None, {**paid, "item_key": f"t{test_seq}:q-cut-short"})
    after = spend_rows()
    assert int(after["test"][2]) == int(before["test"][2]) + 1 and after.keys() == before.keys()
    unstored = max(t.seq for t in store.trials(run_id, with_refused=True)) + 1
    store.record_call(None, {**paid, "item_key": f"t{unstored}:q0"})
    store.record_call(None, paid)  # no item: an earlier release's row
    unknown = [row for stage, row in spend_rows().items() if "no known stage" in stage]
    assert [row[2] for row in unknown] == ["2"]
    assert not any("feedback agent" in stage for stage in spend_rows())


def test_a_running_optimization_is_shown_as_in_progress(optimization, capsys) -> None:  # type: ignore[no-untyped-def]
    """`report` and `runs show` of a running optimization presented its state so far as final: a
    "Crowned graph" of a minibatch score, and its running evaluations' calls as "cut short by an
    interruption"; `runs show` also drew that graph into the run's folder."""
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    unstored = max(t.seq for t in store.trials(run_id, with_refused=True)) + 1
    paid = {"run_id": run_id, "route": "sim/llama-1b", "prompt_tokens": 5, "completion_tokens": 5, "flops": 0.0}
    store.record_call(None, {**paid, "item_key": f"t{unstored}:q0"})  # a call of an evaluation still running
    _set_run(store, run_id, status="running", owner=current_owner())
    drawing = store.path.parent / "runs" / run_id / "best.svg"
    drawing.unlink(missing_ok=True)
    page = store.path.parent / "running.html"
    assert main(["report", run_id, "-o", str(page)]) == 0
    text = page.read_text()
    assert "Leading graph so far (the run is still running: nothing is crowned yet)" in text
    assert "calls of evaluations still running" in text and "cut short by an interruption" not in text
    assert main(["runs", "show", run_id]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "leading graph so far" in shown and "crowned graph (trial" not in shown and not drawing.exists()
    # crowned, its test split running: the crown is recorded, and said (a review: "nothing is crowned yet")
    final = json.loads(store.get_run(run_id).summary_json)
    crowned = {"graph": final["best"]["graph"], "path": final["best"]["path"]}
    _set_run(store, run_id, summary_json=json.dumps({"crowned": crowned, "crowning": final["crowning"]}))
    assert main(["report", run_id, "-o", str(page)]) == 0
    assert "Crowned graph (the run is scoring it on the test split)" in page.read_text()
    assert main(["runs", "show", run_id]) == 0
    assert "crowned graph (trial" in " ".join(capsys.readouterr().out.split())
    _set_run(store, run_id, summary_json=json.dumps(final))
    for status, owner in (("created", current_owner()), ("running", current_owner().rsplit("/", 1)[0] + "/0")):
        _set_run(store, run_id, status=status, owner=owner, finished=None)  # never started; its process gone
        assert main(["report", run_id, "-o", str(page)]) == 0
        assert "still running" not in page.read_text(), status
        shown_status = "created (not started)" if status == "created" else "running (process gone)"
        assert f"· {shown_status} ·" in page.read_text()  # as runs list says it (the page said "running")
    assert main(["runs", "show", run_id]) == 0 and drawing.exists()
    drawn = drawing.stat().st_mtime_ns
    assert main(["runs", "show", run_id]) == 0 and drawing.stat().st_mtime_ns == drawn  # drawn once, not each time
    capsys.readouterr()


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root needs setpriv to obey modes")
def test_runs_show_of_an_optimization_in_a_folder_it_may_not_write(optimization) -> None:  # type: ignore[no-untyped-def]
    """`runs show` is a read, but it drew the crowned graph into the run's folder at every call and
    failed there ("cannot write .../best.svg", exit 1) for a reader without write access."""
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    folder = store.path.parent / "runs" / run_id
    (folder / "best.svg").unlink(missing_ok=True)
    folder.chmod(0o555)
    try:
        obey_modes = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
        command = [*obey_modes, sys.executable, "-m", "agentscale.cli.app", "runs", "show", run_id]
        done = subprocess.run([*command, "--db", str(store.path)], capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "crowned graph (trial" in " ".join(done.stdout.split())


def test_a_run_stopped_before_crowning_shows_no_crowned_graph(optimization, capsys) -> None:  # type: ignore[no-untyped-def]
    """After Ctrl-C (or kill -9) in the crowning race, the report and `runs show` named a "Crowned
    graph" (its train figures, McNemar against the singles, best.svg) that the resumed run did not crown."""
    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    _set_run(store, run_id, status="interrupted", summary_json="{}")  # what a run stopped before crowning leaves
    drawing = store.path.parent / "runs" / run_id / "best.svg"
    drawing.unlink(missing_ok=True)
    page = store.path.parent / "stopped.html"
    assert main(["report", run_id, "-o", str(page)]) == 0
    text = page.read_text()
    assert "stopped: —" not in text and "stopped: " not in text.split("</p>")[0]  # no reason recorded yet
    assert "Leading graph when the run stopped (nothing was crowned" in text
    # the command to go on, with the run and its database (the page said only "optimize --resume")
    assert f"not finished: continue with: {store.command_line('optimize', '--resume', run_id)}" in text
    assert "Crowned graph" not in text and "only crowned right" not in text and "only leading right" in text
    capsys.readouterr()
    assert main(["runs", "show", run_id]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "leading graph when the run stopped" in shown and "crowned graph (trial" not in shown
    spent = store.spend(run_id)  # a user deciding whether to resume saw no spend (the report showed it)
    assert f"spent so far: {spent['calls']} model calls, {spent['tokens']} tokens" in shown and spent["calls"] > 0
    assert not drawing.exists()


def test_a_run_stopped_in_its_search_leads_with_all_its_leaders_minibatches(optimization) -> None:  # type: ignore[no-untyped-def]
    """Stopped in the search, the headline showed the leading graph's first 8-item minibatch (87.5%,
    n=8) where the same page's front counted its five evaluations (73.3% on 30 items): a lucky
    minibatch led after all (the report walk). Its minibatches are merged, an item counted once."""
    import sqlite3
    from collections import Counter

    from agentscale.optimize.trials import stored_verdicts

    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    _set_run(store, run_id, status="interrupted", summary_json="{}")
    searched = Counter(t.key for t in store.trials(run_id) if t.kind == "search")
    twice = next(key for key, count in searched.items() if count > 1)  # this run's search asked one graph twice
    with sqlite3.connect(store.path) as connection:  # as if stopped with that graph leading the search
        connection.execute("DELETE FROM trial WHERE run_id = ? AND (kind != 'search' OR key != ?)", (run_id, twice))
    steps = store.trials(run_id)
    verdicts = {item: v for t in steps for item, v in stored_verdicts(store, run_id).get(t.seq, {}).items()}
    assert len(steps) == 2 and len(verdicts) > max(t.n_items for t in steps)
    page = store.path.parent / "stopped.html"
    assert main(["report", run_id, "-o", str(page)]) == 0
    train = f"{sum(verdicts.values()) / len(verdicts):.1%} (n={len(verdicts)})"
    assert train in page.read_text()


def _set_run(store: Store, run_id: str, **fields: object) -> None:
    """Give the stored run `fields`, as a run in another state would have them."""
    with store.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        for name, value in fields.items():
            setattr(run, name, value)
        session.add(run)
        session.commit()


async def test_a_run_stopped_before_its_first_call_says_so_instead_of_empty_tables(tmp_path: Path) -> None:
    """Its report had a "Spend by stage" and an "Every trial" table with headers and no row."""
    import asyncio

    from agentscale.models.gateway import Gateway
    from agentscale.optimize.runner import Optimization
    from agentscale.optimize.space import space_from_text

    store = Store(tmp_path / "o.db")
    run = Optimization(space_from_text(SPACE), Gateway(store), space_text=SPACE)
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.get_run(run.run_id).status == "interrupted" and not store.trials(run.run_id)
    text = write_report(store, run.run_id, str(tmp_path / "r.html")).read_text()  # a str: an AttributeError
    assert "No model call is stored." in text and "No evaluation is stored." in text
    assert "<th>items answered</th>" not in text and "<th>objective</th>" not in text


def test_the_report_keeps_the_test_scores_of_a_run_whose_crowned_graph_was_not_scored(optimization) -> None:  # type: ignore[no-untyped-def]
    """A spend cap that refused the crowned graph's test evaluation, after the single calls' had
    run: the page showed no test table at all, where the terminal listed the singles' scores; and
    every finished run's page was titled "Crowned graph against the baselines"."""
    from sqlalchemy import delete

    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    page = write_report(store, run_id).read_text()
    assert f"<title>agentscale optimization {run_id} · space simreport</title>" in page
    trials = store.trials(run_id)
    crowned = crowned_trial(trials, json.loads(store.get_run(run_id).summary_json))
    assert crowned is not None
    tests = [t for t in trials if t.kind == "test"]
    others = [t for t in tests if t.key != crowned.key]
    assert others
    with store.engine.begin() as connection:
        connection.execute(delete(Trial).where(Trial.run_id == run_id, Trial.kind == "test", Trial.key == crowned.key))  # type: ignore[arg-type]
    page = write_report(store, run_id).read_text()
    table = page[page.index('id="comparison-test"') :]
    table = table[: table.index("</table>")]
    assert "crowned graph was not scored" in table and "crowned graph</td>" not in table
    assert table.count("<tr>") - 1 == len(others)  # the header row, then each scored baseline
    assert "only crowned right" not in table and "p=" not in table  # no baseline is paired as if crowned


def test_a_run_stopped_in_its_search_leads_with_the_graph_measured_best_not_a_lucky_minibatch() -> None:
    """Interrupted during the search, the page's "leading graph" was a vote right on 4 of 8 minibatch
    items, beside a single call right on 35 of the 50 train items (the optimize review)."""

    def trial(seq: int, kind: str, key: str, correct: int, n: int) -> Trial:
        return Trial(
            run_id="r", seq=seq, iteration=0, kind=kind, key=key, candidate_json="{}", n_items=n,
            correct=correct, accuracy=correct / n, compute=1.0, latency_s=0.1, tokens=0, reward=correct / n,
        )  # fmt: skip

    single = [trial(0, "baseline", "g7", 9, 12), trial(1, "baseline", "g7", 26, 38)]
    lucky = trial(2, "search", "vote", 6, 8)  # 75% of 8 against 70% of 50
    assert crowned_trial([*single, lucky], {}) is single[1]  # the graph's largest step
    assert crowned_trial([trial(3, "search", "chain", 6, 8), trial(4, "search", "vote", 65, 100)], {}).key == "vote"  # type: ignore[union-attr]
    assert crowned_trial([], {}) is None


def test_a_run_stopped_in_its_crowning_race_leads_with_the_best_graph_of_the_race() -> None:
    """Stopped in the crowning race (its summary names no graph), the page leads with the graph whose
    race went furthest; of graphs raced on as many items, the one of the best objective, not the worst."""

    def step(seq: int, key: str, correct: int) -> Trial:
        return Trial(
            run_id="r", seq=seq, iteration=-1, kind="crown", key=key, candidate_json="{}", n_items=10,
            correct=correct, accuracy=correct / 10, compute=1.0, latency_s=0.1, tokens=0, reward=correct / 10,
        )  # fmt: skip

    worse, better = step(0, "chain", 5), step(1, "vote", 8)
    assert crowned_trial([worse, better], {}) is better
    assert crowned_trial([better, worse], {}) is better


def test_the_crowned_graph_is_its_race_not_a_search_minibatch_and_its_race_steps_merge(optimization) -> None:  # type: ignore[no-untyped-def]
    """The page stands the crowned graph by its race (the crowning race, else the singles' race),
    not by a search evaluation of the same graph on a minibatch; and a single call crowned from the
    singles' race shows its race steps merged: the page showed one step's items (n=2 of the 8 it
    answered) and no comparison with the other single models."""

    store: Store = optimization["store"]  # type: ignore[assignment]
    run_id = str(optimization["run_id"])
    summary = json.loads(store.get_run(run_id).summary_json)
    trials = store.trials(run_id)
    crowned = crowned_trial(trials, summary)
    assert crowned is not None and crowned.kind == "baseline"  # this run crowned the single call of l1
    after = trials[-1].seq + 1
    search = Trial(**{**crowned.model_dump(exclude={"id"}), "kind": "search", "seq": after, "n_items": 100})
    assert crowned_trial([*trials, search], summary) is crowned
    crown = Trial(**{**crowned.model_dump(exclude={"id"}), "kind": "crown", "seq": after + 1})
    assert crowned_trial([*trials, search, crown], summary) is crown

    steps = [t for t in trials if t.kind == "baseline" and t.key == crowned.key]
    assert len(steps) >= 2 and crowned.n_items < sum(t.n_items for t in steps)
    page = write_report(store, run_id).read_text()
    correct, answered = sum(t.correct for t in steps), sum(t.n_items for t in steps)  # disjoint items
    assert fact(page, "train SIMULATED accuracy") == f"{correct / answered:.1%} (n={answered})"
    train = page[page.index('id="comparison-train"') :]
    assert f"<td>crowned graph</td><td>{correct / answered:.1%} ({correct}/{answered})</td>" in train


def _rows(page: str, section_id: str) -> list[list[str]]:
    """The cells of a section's first table, row by row (header left out)."""
    part = page[page.index(f'id="{section_id}"') :]
    part = part[: part.index("</table>")]
    return [re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in part.split("<tr>")[2:]]


def test_each_comparison_rows_interval_is_its_own_counts(optimization) -> None:  # type: ignore[no-untyped-def]
    """The "95% interval (Wilson)" cell of every row is the interval of the right/answered count
    beside it (the crowned card was checked, the tables were not). Kills O3."""
    page = write_report(optimization["store"], str(optimization["run_id"])).read_text()
    checked = 0
    for section_id in ("comparison-test", "comparison-train"):
        for row in _rows(page, section_id):
            match = re.search(r"\((\d+)/(\d+)\)$", row[1])
            assert match is not None, row
            correct, n = int(match.group(1)), int(match.group(2))
            assert row[2] == fmt_interval(wilson_interval(correct, n)), (section_id, row)
            checked += 2 * correct != n  # a count whose interval is not its own mirror
    assert checked


def test_the_crowned_cards_compute_and_latency_are_its_trains(optimization) -> None:  # type: ignore[no-untyped-def]
    """Compute is shown against the space's budget ("of 10"), latency is the critical path over all
    the train items of the crowned graph's race, item-weighted (not its last step's, not the test
    split's, which `--json` prints). Kills O6, O7, O29."""
    store: Store = optimization["store"]
    run_id = str(optimization["run_id"])
    trials = store.trials(run_id)
    crowned = crowned_trial(trials, json.loads(store.get_run(run_id).summary_json))
    assert crowned is not None
    steps = [t for t in trials if t.kind == crowned.kind and t.key == crowned.key]
    latency = sum(t.latency_s * t.n_items for t in steps) / sum(t.n_items for t in steps)
    test = next(t for t in trials if t.kind == "test" and t.key == crowned.key)
    assert len(steps) >= 2 and f"{latency:.2f}" not in (f"{steps[-1].latency_s:.2f}", f"{test.latency_s:.2f}")
    page = write_report(store, run_id).read_text()
    assert fact(page, "compute (1B-call units)") == f"{crowned.compute:.2f} of 10"
    assert fact(page, "latency (critical path, train)") == f"{latency:.2f} s"
    (ours,) = [row for row in _rows(page, "comparison-train") if row[0] == "crowned graph"]
    assert ours[4] == f"{latency:.2f} s"


def test_the_train_comparison_lists_each_single_model_once(optimization) -> None:  # type: ignore[no-untyped-def]
    """The crowned single call heads the table as "crowned graph"; it is not listed again among the
    single models it is compared with (paired with itself: 0 and 0, p=1). Kills O23."""
    store: Store = optimization["store"]
    run_id = str(optimization["run_id"])
    trials = store.trials(run_id)
    singles = {t.key for t in trials if t.kind == "baseline"}
    rows = _rows(write_report(store, run_id).read_text(), "comparison-train")
    assert [row[0] for row in rows].count("crowned graph") == 1
    assert len(rows) == len(singles)


def test_every_trials_row_shows_its_iteration_and_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """Iteration 0 (the pilot) is an iteration, not "—" (which is for trials of no iteration); the
    accuracy column is the trial's accuracy, not its objective (they differ once the objective
    charges compute). A run whose objective is not Pareto marks no graph "(Pareto front)". Kills
    O15, O16, O33."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + "objective: {accuracy: 1.0, cost: 0.1}\n")
    assert main(["optimize", str(space), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    store = Store(tmp_path / "o.db")
    trials = store.trials(result["run_id"])
    assert any(t.iteration == 0 for t in trials) and any(f"{t.reward:.1%}" != f"{t.accuracy:.1%}" for t in trials)
    page = Path(result["report"]).read_text()
    rows = _rows(page, "trials")
    assert len(rows) == len(trials)
    for row, trial in zip(rows, trials, strict=True):
        assert row[0] == str(trial.seq)
        assert row[1] == (str(trial.iteration) if trial.iteration >= 0 else "—")
        assert row[3] == f"{trial.accuracy:.1%} ({trial.correct}/{trial.n_items})"
    assert "(Pareto front)" not in page


def test_the_crowned_graphs_crowning_evaluation_is_its_largest(optimization) -> None:  # type: ignore[no-untyped-def]
    """Of the named graph's crowning-race steps, the one on the most items stands for it. Kills O11."""
    store: Store = optimization["store"]
    run_id = str(optimization["run_id"])
    summary = json.loads(store.get_run(run_id).summary_json)
    trials = store.trials(run_id)
    crowned = crowned_trial(trials, summary)
    assert crowned is not None
    after = trials[-1].seq + 1
    small = Trial(**{**crowned.model_dump(exclude={"id"}), "kind": "crown", "seq": after, "n_items": 2})
    large = Trial(**{**crowned.model_dump(exclude={"id"}), "kind": "crown", "seq": after + 1, "n_items": 6})
    assert candidate_from_json(large.candidate_json).describe() == summary["best"]["graph"]
    assert crowned_trial([*trials, small, large], summary) is large
    assert crowned_trial([*trials, large, small], summary) is large


def _capped_optimization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, *, tokens: int, pareto: bool = False):  # type: ignore[no-untyped-def]
    """`optimize --json` of a four-model sim space under `max_spend.tokens`, as a new user's walk ran it."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(
        'name: capped\ntask: {name: "sim:math", train: 30, test: 40, seed: 0}\n'
        "models:\n  l1: {model: sim/llama-1b}\n  l3: {model: sim/llama-3b}\n  l8: {model: sim/llama-8b}\n"
        "  g7: {model: sim/gemma-7b}\nroles: [assistant, critic, fuser, vote]\nmax_nodes: 4\nbudget: {compute: 18}\n"
        + ("objective: {accuracy: 1.0, pareto: true}\n" if pareto else "")
        + "optimizer: {method: agent-reinforce, iterations: 4, samples: 4, minibatch: 8, seed: 0, "
        f"max_spend: {{tokens: {tokens}}}}}\n"
    )
    assert main(["optimize", str(space), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_run_the_spend_cap_stopped_in_its_single_calls_has_its_front_drawn_and_the_right_fix_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """A spend cap that stops the run in its single calls' race: optimize --json and runs show --plot
    had a front, the report said only "No search evaluation is stored" (the report walk's B1); its
    warning said to raise optimizer.iterations or max_nodes, which would change nothing (B2)."""
    result = _capped_optimization(tmp_path, monkeypatch, capsys, tokens=30000)
    assert result["pareto"] and result["usage"]["search_evaluations"] == 0
    (said,) = [w for w in result["warnings"] if w.startswith("the search evaluated no graph beyond")]
    assert "the spend cap stopped it first" in said and "raise optimizer.max_spend" in said
    assert "optimizer.iterations" not in said
    html = Path(result["report"]).read_text()
    search = html[html.index('id="search"') :]
    assert "No search evaluation is stored. Red points are the Pareto front" in " ".join(search.split())
    assert "<h3>Pareto front</h3>" in search
    for point in result["pareto"]:
        assert f"{point['accuracy']:.1%} ({point['n_items']})" in search


def test_a_front_graph_the_spend_cap_kept_off_the_test_split_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """With objective.pareto and a cap that lets only some graphs onto the test split, the others' test
    cells read "—", the reason in the page's first line only (the report walk's F3)."""
    result = _capped_optimization(tmp_path, monkeypatch, capsys, tokens=140000, pareto=True)
    assert "; test split: " in result["stopped_reason"]
    unscored = [point for point in result["pareto"] if "test" not in point]
    assert unscored, "the cap let every front graph onto the test split: tighten it"
    search = Path(result["report"]).read_text().split('id="search"')[1]
    assert search.count("not scored (the spend cap: see stopped)") == len(unscored)
