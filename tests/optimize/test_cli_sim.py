"""`agentscale optimize` end to end on SIMULATED models: the CLI, the report, and the dry run's
projection against what the run really spends (stated tolerance: at most 25% more than projected,
at most 40% less: the projection counts the crowned graph's test items apart from the single calls',
and on small spaces the crowned graph is often one of them)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.storage.db import Store
from agentscale.storage.owner import current_owner
from agentscale.storage.tables import Run
from tests.sim.helpers import DISCUSSION

SPACE = """\
name: simcli
task: {name: "sim:math", train: 16, test: 24, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l3: {model: sim/llama-3b, params_b: 3.0}
roles: [assistant, fuser, vote]
max_nodes: 4
budget: {compute: 7}
optimizer: {method: agent-reinforce, iterations: 3, samples: 3, minibatch: 6, seed: 0}
"""

TOLERANCE = 0.25  # a run may spend this much more than projected
UNDER = 0.4  # and this much less


def _single_call(tmp_path: Path, route: str) -> Path:
    """A graph file of one call to `route`."""
    graph = tmp_path / "g.yaml"
    graph.write_text(f"name: g\nmodels: {{m: {{model: {route}}}}}\nnodes:\n  - {{id: a, role: assistant, model: m}}\n")
    return graph


def test_dry_run_projects_the_real_spend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--json"]) == 0
    projected = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "o.db").exists()  # nothing runs, so no database is made
    assert main(["optimize", str(space), "--json", "--no-cache", "--out", str(tmp_path / "best.yaml")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    # the count beside a stage is the search's iterations, said so ("crowning: 2 graphs on items 1-4 of
    # 12: 3/3" read as a count of that step's graphs or items)
    assert re.search(r"^crowning: [^\n]* of \d+: search iteration \d+/\d+ · ", captured.err, re.MULTILINE)
    spent = report["usage"]
    for unit in ("calls", "tokens"):
        assert (1 - UNDER) * projected[unit] <= spent[unit] <= (1 + TOLERANCE) * projected[unit], unit
    # stage by stage, named as the run names them (the dry run gave totals alone; a new user's walk),
    # the single calls' at their most (a model far behind leaves their race early)
    by_stage = projected["calls_by_stage"]
    assert list(by_stage) == list(spent["calls_by_stage"]) and sum(by_stage.values()) == projected["calls"]
    assert 0 < spent["calls_by_stage"]["single calls"] <= by_stage["single calls"]
    assert (tmp_path / "best.yaml").exists() and report["best"]["path"] == str(tmp_path / "best.yaml")
    trials = Store(tmp_path / "o.db").trials(report["run_id"])  # every evaluation, of which the search's
    assert report["evaluations"] == len(trials) and spent["search_evaluations"] == sum(
        t.kind == "search" for t in trials
    )
    assert all("test" not in point and "path" not in point for point in report["pareto"])  # no objective.pareto
    # the printed front names each point's items; the JSON did not (a statistics audit)
    for point in report["pareto"]:
        right = point["accuracy"] * point["n_items"]
        assert point["n_items"] >= 1 and abs(right - round(right)) < 1e-9
    assert report["simulated"] is True  # the accuracies are the sim population's, and the output says so
    written = yaml.safe_load((tmp_path / "best.yaml").read_text())  # and so does the graph file it wrote
    assert written["description"].endswith("on the SIMULATED population (sim/ models: no model accuracy)")
    assert 0.0 <= report["best"]["accuracy"] <= 1.0 and report["best"]["ci95"][0] <= report["best"]["accuracy"]
    assert main(["run", str(tmp_path / "best.yaml"), "-q", "[sim:math#0001] Solve problem 1.", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] is not None


CEO_SPACE = SPACE.replace("max_nodes: 4", "max_nodes: 3").replace(
    "budget: {compute: 7}", "budget: {compute: 30}\ncoordinator: {models: [l1, l3], max_rounds: 2}"
)


@pytest.mark.parametrize("optional", [True, False])
def test_dry_run_projects_the_calls_of_a_ceo_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], optional: bool
) -> None:
    """CEO-led graphs were projected at one pass of their nodes: a CEO space's run made 2.3x (CEOs
    optional) and 1.9x (required) the calls its dry run projected. Now every round and one CEO call
    a round; tokens are not held to the tolerance here: the sim's answers are short texts, so its CEO
    reads fewer tokens than a real model's would (the projection sizes answers by the task's mean)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(CEO_SPACE if optional else CEO_SPACE.replace("max_rounds: 2}", "max_rounds: 2, optional: false}"))
    assert main(["optimize", str(space), "--dry-run", "--json"]) == 0
    projected = json.loads(capsys.readouterr().out)["calls"]
    assert main(["optimize", str(space), "--json", "--no-cache"]) == 0
    spent = json.loads(capsys.readouterr().out)["usage"]["calls"]
    assert (1 - UNDER) * projected <= spent <= (1 + TOLERANCE) * projected


def test_dry_run_notes_a_bundled_local_model_not_pulled_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A space on a bundled `local/` model whose weights are not here was projected without a word;
    its run then stopped at the first call (a new user's walk). Said as validate says it."""
    from agentscale.models import catalog
    from tests.models.test_weights import fake_model

    model = fake_model("unpulled_space")  # its parts' packages exist nowhere
    monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("sim/llama-3b", f"local/{model.name}"))
    assert main(["optimize", str(space), "--dry-run", "--json"]) == 0
    note = json.loads(capsys.readouterr().out)["note"]
    assert f"models.l3: local/{model.name} is not pulled (3 of 3 packages missing) here" in note
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))  # its run is refused before it exists
    assert main(["optimize", str(space)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"models.l3: local/{model.name} is not pulled" in said and "nothing was optimized" in said
    assert Store(tmp_path / "o.db").list_runs() == []
    # on Ray each worker starts (or reuses) its own server from its own weights: the driver's are not asked
    pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    from agentscale import Gateway, Optimization
    from agentscale.executors import ExecutorConfig

    on_ray = ExecutorConfig("ray")  # a local Ray, started only when the run runs: it does not here
    Optimization.from_file(space, Gateway(Store(tmp_path / "o.db")), executor=on_ray).executor.close()
    assert len(Store(tmp_path / "o.db").list_runs()) == 1
    from agentscale import EvalConfig, Evaluation, load

    graph = load(_single_call(tmp_path, f"local/{model.name}"), gateway=Gateway(Store(tmp_path / "o.db")))
    with pytest.raises(AgentScaleError, match="nothing was evaluated"):
        Evaluation(graph, EvalConfig(task="sim:math", n=2))
    Evaluation(graph, EvalConfig(task="sim:math", n=2, executor=on_ray.to_dict())).executor.close()
    (tmp_path / "sim.yaml").write_text(SPACE)
    assert main(["optimize", str(tmp_path / "sim.yaml"), "--dry-run", "--json"]) == 0
    assert "not pulled" not in json.loads(capsys.readouterr().out)["note"]
    # a feedback agent of its own is no alias of the space's: said at its own path
    agent = f"agent_model: {{model: local/{model.name}}}, "
    (tmp_path / "agent.yaml").write_text(
        SPACE.replace("{method: agent-reinforce, ", "{method: agent-reinforce, " + agent)
    )
    assert main(["optimize", str(tmp_path / "agent.yaml"), "--dry-run", "--json"]) == 0
    note = json.loads(capsys.readouterr().out)["note"]
    assert f"optimizer.agent_model: local/{model.name} is not pulled (3 of 3 packages missing) here" in note


def test_dry_run_refuses_an_unknown_method_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--method", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown method 'nope'; choose from" in err and "Traceback" not in err


def test_eval_and_optimize_on_sim_models_say_their_figures_are_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    graph = _single_call(tmp_path, "sim/llama-1b")
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "5", "--json"]) == 0
    eval_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "5"]) == 0
    assert "SIMULATED: these numbers come from agentscale's simulated model population" in capsys.readouterr().out
    # `run` (its stdout is the answer: the note goes to stderr), and `runs show --json`, said nothing
    assert main(["run", str(graph), "-q", "[sim:math#0001] q"]) == 0
    assert "SIMULATED: these numbers" in capsys.readouterr().err
    assert main(["run", str(graph), "-q", "[sim:math#0001] q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["simulated"] is True
    assert main(["runs", "show", eval_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["simulated"] is True
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("iterations: 3", "iterations: 1"))
    assert main(["optimize", str(space), "--no-test"]) == 0
    said, progress = capsys.readouterr()
    assert "SIMULATED: these numbers come from agentscale's simulated model population" in said
    # the progress lines too, and their count is the search's, not the summary's "evaluations"
    assert "graphs searched · SIMULATED best minibatch acc" in progress, progress
    # no empty test table, its headers alone (a new user's walk read it as a bug)
    assert "no graph scored on the test split" in said and "95% CI" not in said
    # and why, and how to score the crowned graph later (the report said it; the review's N1)
    assert "(--no-test; agentscale eval " in " ".join(said.split()) and "--split-of " in said


LABELS = (
    'name: labels\ntask: {name: "sim:math", train: 12, test: 24, seed: 1}\nmodels:\n'
    "  l1: {model: sim/llama-1b, params_b: 1.0}\n  g1: {model: sim/gemma-1b, params_b: 1.0}\n"
    "roles: [assistant, vote]\nmax_nodes: 3\nbudget: {compute: 7}\n"
    "optimizer: {method: agent-reinforce, iterations: 1, samples: 2, minibatch: 6, seed: 0}\n"
)


def test_the_table_tells_the_single_chosen_on_train_from_the_best_on_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On this split llama-1b leads on the 12 train items (the baseline of `--json` and `runs show`)
    and gemma-1b on the 24 test items (what the advantage compares with); the table marked only the
    second "(best single)", which read as the baseline."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    text = _optimized(tmp_path, capsys, LABELS)
    assert "single call of l1 (best single on train)" in text
    assert "single call of g1 (best single on test)" in text
    # each figure says SIMULATED, as runs show and the report label them (only a closing banner did)
    assert "best graph (SIMULATED train accuracy" in text and "SIMULATED test accuracy" in text
    assert "Pareto front: SIMULATED train accuracy (items)" in text
    assert main(["runs", "list", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)[0]["run_id"]
    assert main(["runs", "show", run_id]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    # which model, not only "single"; SIMULATED on each figure (the second diff review)
    assert "baseline single (single call of l1), the best on the train split: SIMULATED test accuracy" in shown
    # and g1, the best single on the test split the advantage compares with, was named nowhere there
    assert "single call of g1: SIMULATED test accuracy" in shown and "single call of l1: SIMULATED" in shown


def test_pareto_scores_and_writes_every_front_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`objective.pareto: true` was accepted and read by nothing. Now each front graph is scored on
    the test split and written as a runnable file; without it, the front stays train-only."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + "objective: {accuracy: 1.0, cost: 0.1, pareto: true}\n")
    assert main(["optimize", str(space), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "each graph on the Pareto front on the 24 test items" in said
    assert re.search(r"model calls \(single calls \d+, pilot \d+, search \d+, crowning \d+, test \d+\)", said)
    assert main(["optimize", str(space), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    front = result["pareto"]
    assert len(front) >= 2  # a cheap single call and something more accurate
    tested = [t for t in Store(tmp_path / "o.db").trials(result["run_id"]) if t.kind == "test"]
    for index, point in enumerate(front, start=1):
        assert point["test"]["n"] == 24 and point["test"]["graph"] == point["graph"]
        assert any(t.accuracy == point["test"]["accuracy"] and t.n_items == 24 for t in tested)
        assert point["path"].endswith(f"front-{index}.yaml")
        assert main(["run", point["path"], "-q", "[sim:math#0001] Solve problem 1.", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] is not None
    # the table names the files front-N.yaml; with --out, the one folder printed was --out's, not theirs
    assert main(["optimize", "--resume", result["run_id"], "--out", str(tmp_path / "mine.yaml")]) == 0
    folder = Path(front[0]["path"]).parent
    printed = capsys.readouterr()
    said = " ".join(printed.out.split())
    assert f"front graphs' YAML (front-N.yaml): {folder}" in said
    # a done run, resumed: it replayed its result without a word (a new user's walk)
    assert f"run {result['run_id']} is done: its result again, replayed from what it stored" in printed.err
    # the run's evaluations, as its report counts them (it printed "27 evaluations (27 replayed ...)", one
    # figure beside the other, and a resume that ran one more read "35 (1 replayed)" where the report said 36)
    stored = len(Store(tmp_path / "o.db").trials(result["run_id"]))
    assert f"· {stored} evaluations ({stored} read back from the stored run, 0 run now) ·" in said
    # runs show printed no front (its --help promised one): only --json, --plot and the report had it
    assert main(["runs", "show", result["run_id"]]) == 0
    shown = capsys.readouterr().out
    assert "train latency" in shown  # beside the test column: which split's latency
    rows = [line for line in shown.splitlines() if "front-" in line and ".yaml" in line and "%" in line]
    assert len(rows) == len(front), shown
    for point, row in zip(front, rows, strict=True):
        assert f"{point['test']['accuracy']:.1%} (n=24)" in row and Path(point["path"]).name in row
    assert f"front graphs' YAML (front-N.yaml): {folder}" in " ".join(shown.split())


def test_dry_run_says_when_the_spend_cap_stops_the_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With max_spend.calls under the projection, the dry run projected the full run without a word."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("minibatch: 6, seed: 0}", "minibatch: 6, seed: 0, max_spend: {calls: 40}}"))
    assert main(["optimize", str(space), "--dry-run", "--json"]) == 0
    projected = json.loads(capsys.readouterr().out)
    assert projected["calls"] > 40 and "max_spend.calls=40 stops the run before this" in projected["note"]
    # 20 projected against a run's 42 read as a 2x miss: they count different things, and say so
    assert "where the run's count adds each step of its races" in projected["note"]


def test_a_method_needing_an_agent_model_is_refused_by_validate_and_the_dry_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--method llm --dry-run` projected a run, and `validate` passed a space with `method: llm`, that
    `optimize` then refused (after writing a failed run) for want of optimizer.agent_model."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--method", "llm"]) == 1
    assert re.search(r"optimizer\.agent_model \(line \d+\): --method llm needs an agent model", capsys.readouterr().err)
    with_llm = tmp_path / "llm.yaml"
    with_llm.write_text(SPACE.replace("method: agent-reinforce", "method: llm"))
    assert main(["validate", str(with_llm)]) == 1
    assert re.search(r"optimizer\.agent_model \(line \d+\): optimizer\.method: llm needs", capsys.readouterr().err)
    assert main(["optimize", str(with_llm)]) == 1
    assert Store(tmp_path / "o.db").list_runs() == []  # refused before a run row


def test_an_agent_model_the_spaces_method_never_calls_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`method: random` with `agent_model: l3` validated and ran with 0 agent calls, silently. Another
    --method on the command line may leave the space's agent model unused: that is a choice."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("method: agent-reinforce,", "method: random, agent_model: l3,"))
    assert main(["validate", str(space)]) == 1
    message = r"optimizer\.agent_model \(line \d+\): optimizer\.method: random makes no agent calls \(only agent-reinforce, llm"
    assert re.search(message, capsys.readouterr().err)
    assert main(["optimize", str(space), "--dry-run", "--method", "bayes"]) == 0
    assert main(["optimize", str(space), "--dry-run", "--method", "agent-reinforce"]) == 0


def test_an_agent_given_as_a_route_is_asked_under_a_usd_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With `max_spend.usd`, an agent named by a route (no alias of the space's) failed every call with
    a KeyError of its route, reported as "the call failed: 'sim/llama-8b'": the cap looked its price up
    among the space's models only. Each step now asks it (the simulated agent writes no JSON)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    priced = SPACE.replace("params_b: 1.0}", "params_b: 1.0, price: {input_per_mtok: 0.1, output_per_mtok: 0.1}}")
    priced = priced.replace("params_b: 3.0}", "params_b: 3.0, price: {input_per_mtok: 0.1, output_per_mtok: 0.1}}")
    space = tmp_path / "space.yaml"
    optimizer = "optimizer: {method: llm, iterations: 2, samples: 2, minibatch: 6, seed: 0, "
    space.write_text(priced.split("optimizer:")[0] + optimizer + "agent_model: sim/llama-8b, max_spend: {usd: 5}}\n")
    assert main(["optimize", str(space), "--no-test", "--json"]) == 0
    (unused,) = [w for w in json.loads(capsys.readouterr().out)["warnings"] if "feedback agent" in w]
    assert "(first: its reply was ignored: no JSON object in the reply)" in unused


def test_an_agent_of_its_own_without_a_price_is_refused_under_a_usd_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cap refused each of its calls and the search went on without it, exit 0 (the review of
    3676514): the space's aliases were checked for a price, the agent given in place was not."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    agent = '{model: hosted_vllm/judge, api_base: "http://127.0.0.1:9/v1"}'
    optimizer = f"optimizer: {{method: llm, iterations: 2, samples: 2, agent_model: {agent}, max_spend: {{usd: 5}}}}\n"
    space.write_text(
        SPACE.split("optimizer:")[0]
        .replace("params_b: 1.0}", "params_b: 1.0, price: {input_per_mtok: 1, output_per_mtok: 1}}")
        .replace("params_b: 3.0}", "params_b: 3.0, price: {input_per_mtok: 1, output_per_mtok: 1}}")
        + optimizer
    )
    assert main(["validate", str(space)]) == 1
    assert re.search(r"optimizer\.agent_model \(line \d+\): unknown price: give it in place", capsys.readouterr().err)
    priced = space.read_text().replace('/v1"}', '/v1", price: {input_per_mtok: 2, output_per_mtok: 2}}')
    space.write_text(priced)
    assert main(["validate", str(space)]) == 0


def test_a_resumed_evals_progress_counts_the_items_it_had_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The progress of `eval --resume` counted the earlier items as done but not their correct answers
    (it ended at `200/200 · 75/168 correct` for a run that scored 95 of 200)."""
    import sqlite3

    db = tmp_path / "o.db"
    monkeypatch.setenv("AGENTSCALE_DB", str(db))
    graph = _single_call(tmp_path, "sim/llama-8b")
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "8", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    with sqlite3.connect(db) as connection:  # as if stopped after all but two items, two answered, not scored
        keys = [k for (k,) in connection.execute("SELECT item_key FROM runitem ORDER BY item_key")]
        connection.executemany("DELETE FROM runitem WHERE item_key = ?", [(k,) for k in keys[:2]])
        connection.executemany("UPDATE runitem SET correct = NULL WHERE item_key = ?", [(k,) for k in keys[2:4]])
        connection.execute("UPDATE run SET status = 'interrupted'")
    assert main(["eval", "--resume", first["run_id"]]) == 0
    last_line = [line for line in capsys.readouterr().err.splitlines() if "correct" in line][-1]
    assert f"8/8 · {first['correct']}/8 correct" in last_line, last_line  # the answered ones ended 2 short


def test_an_eval_of_a_discussion_keeps_each_items_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An eval of a coordinator graph stored its items' calls but not their rounds: the CEO's requested
    and applied decisions and the clamping notes were lost (`run` kept them in its summary)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    graph = tmp_path / "coord.yaml"
    graph.write_text(DISCUSSION)
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "2", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["runs", "show", run_id, "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert len(items) == 2 and all(item["rounds"] and "decision" in item["rounds"][0] for item in items)


@pytest.mark.parametrize("flag", [["--dry-run"], ["--no-test"], ["--seed", "7"], ["--method", "random"]])
def test_a_resume_refuses_the_flags_it_would_ignore_before_spending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, flag: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """`optimize --resume R --dry-run` ran the whole resume and paid for it; --no-test, --seed and
    --method were silently ignored. Each is refused, and nothing is spent."""
    from agentscale.cli._options import make_gateway
    from agentscale.optimize.runner import Optimization

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    run_id = Optimization.from_file(space, make_gateway(None, False)).run_id  # stored, not run yet
    assert main(["optimize", "--resume", run_id, *flag]) == 1
    assert f"drop {flag[0]}" in capsys.readouterr().err
    store = Store(tmp_path / "o.db")
    assert store.spend(run_id)["calls"] == 0 and store.trials(run_id) == []


def test_a_resume_keeps_the_runs_concurrency_unless_given(tmp_path: Path) -> None:
    """--concurrency changes how many items run at once, not what they answer: a resume may set it."""
    from agentscale.cli._options import make_gateway
    from agentscale.optimize.runner import Optimization

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    gateway = make_gateway(tmp_path / "o.db", False)
    run_id = Optimization.from_file(space, gateway, concurrency=3).run_id
    assert Optimization.resume(run_id, gateway).concurrency == 3
    assert Optimization.resume(run_id, gateway, concurrency=5).concurrency == 5
    with pytest.raises(AgentScaleError, match="concurrency must be at least 1"):  # it took the stored 3
        Optimization.resume(run_id, gateway, concurrency=0)


@pytest.mark.parametrize("no_cache", [True, False])
def test_a_resume_keeps_the_no_cache_its_run_was_made_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cache: bool
) -> None:
    """`optimize --no-cache`, interrupted, then the printed `optimize --resume RUN`: its remaining
    evaluations were answered from the response cache (a new user's walk, for eval; the same here)."""
    from agentscale.cli._options import make_gateway
    from agentscale.optimize.runner import Optimization

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    run_id = Optimization.from_file(space, make_gateway(tmp_path / "o.db", no_cache)).run_id  # stored, not run
    assert make_gateway(tmp_path / "o.db", False, resume=run_id).settings.cache is not no_cache
    said = f"run {run_id} was started with --no-cache: it goes on without the response cache"
    assert (said in " ".join(capsys.readouterr().err.split())) is no_cache


def test_runs_show_says_how_to_write_a_report_a_kill_left_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill between marking a run done and writing its report left no report, and nothing said so."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    graph = _single_call(tmp_path, "sim/llama-1b")
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "3", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert main(["runs", "show", done["run_id"]]) == 0
    assert "report was not written" not in capsys.readouterr().err
    Path(done["report"]).unlink()  # as if its process were still writing it: it says so (not "was not written")
    assert main(["runs", "show", done["run_id"]]) == 0
    assert "its report is being written by the command that ran it" in capsys.readouterr().err
    store = Store(tmp_path / "o.db")
    for owner, finished in (  # killed before writing it; or alive long after (a notebook writes no report)
        (current_owner().rsplit("/", 1)[0] + "/0", None),  # this pid, another process's start: gone
        (current_owner(), datetime.now(UTC) - timedelta(hours=1)),
    ):
        with store.session() as session:
            run = session.get(Run, done["run_id"])
            assert run is not None
            run.owner, run.finished = owner, finished or run.finished
            session.add(run)
            session.commit()
        assert main(["runs", "show", done["run_id"]]) == 0
        said = " ".join(capsys.readouterr().err.split())
        assert f"its report was not written; write it with: agentscale runs show {done['run_id']} --html" in said
    monkeypatch.delenv("AGENTSCALE_DB")  # another database than the default: the command names it
    assert main(["runs", "show", done["run_id"], "--db", str(tmp_path / "o.db")]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"write it with: agentscale runs show {done['run_id']} --html --db {(tmp_path / 'o.db').resolve()}" in said
    assert main(["runs", "show", done["run_id"], "--html", "--db", str(tmp_path / "o.db")]) == 0
    assert Path(done["report"]).exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--trace", "zipkin"], "unknown trace exporter 'zipkin'"),  # left a run "created (not started)"
        (["--out", "{space}"], "is the space file: the best graph would replace it"),  # the space was lost
        (["--out", "{space}/best.yaml"], "space.yaml is a file)"),  # failed after the whole search
        (["--dry-run", "--out", "{best}"], "--dry-run only projects the search's spend (nothing runs); drop --out"),
        (["--dry-run", "--concurrency", "4"], "drop --concurrency"),
    ],
)
def test_flags_that_would_lose_work_or_be_ignored_are_refused_before_a_run_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, arguments: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    best = tmp_path / "best.yaml"
    given = [argument.format(space=space, best=best) for argument in arguments]
    assert main(["optimize", str(space), *given]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert space.read_text() == SPACE and not best.exists()
    assert Store(tmp_path / "o.db").list_runs() == []
    graph = _single_call(tmp_path, "sim/llama-1b")
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "2", "--trace", "zipkin"]) == 1
    assert Store(tmp_path / "o.db").list_runs() == []


def test_a_dry_run_takes_trace_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`--trace off` asks for nothing a dry run ignores (it was refused with "drop --trace")."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--trace", "off"]) == 0


def test_a_resume_finds_a_task_file_named_beside_the_space_and_keeps_its_inferred_scorer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`task: {name: data.jsonl}` beside the space was read there when the run began, but its resume
    looked in the working directory ("task file not found"); and a scorer inferred from the file was
    inferred again on resume, by whatever rule the release then had."""
    from agentscale.cli._options import make_gateway
    from agentscale.optimize.runner import Optimization

    (tmp_path / "spaces").mkdir()
    code_item = '{"question": "Write add(a, b).", "answer": "", "test": "assert add(1, 2) == 3"}\n'
    (tmp_path / "spaces" / "data.jsonl").write_text(code_item * 40)
    space = tmp_path / "spaces" / "s.yaml"
    space.write_text(SPACE.replace('name: "sim:math"', "name: data.jsonl"))
    monkeypatch.chdir(tmp_path)
    gateway = make_gateway(tmp_path / "o.db", False)
    started = Optimization.from_file(space, gateway)
    assert started.task.scorer_name == "code"
    resumed = Optimization.resume(started.run_id, gateway)
    assert resumed.space.task.name == str(tmp_path / "spaces" / "data.jsonl") and resumed.task.scorer_name == "code"


def test_a_resume_refuses_an_edited_task_file_and_finds_a_moved_one_by_its_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An optimization's resume read its task file as it was then: edited after the interrupt, the
    verdicts before were the old file's and those after the new one's, and it crowned a graph neither
    would (an audit of chained commands). A moved file could not be resumed at all (no --task)."""
    from agentscale.cli._options import make_gateway
    from agentscale.optimize.runner import Optimization

    data = tmp_path / "items.jsonl"
    data.write_text("".join(f'{{"question": "[sim:math#{i:04d}] q", "answer": "{i}"}}\n' for i in range(40)))
    space = tmp_path / "s.yaml"
    space.write_text(SPACE.replace('name: "sim:math"', "path: items.jsonl"))
    database = tmp_path / "o.db"
    run_id = Optimization.from_file(space, make_gateway(database, False)).run_id
    data.write_text(data.read_text().replace('"answer": "1"', '"answer": "2"'))
    code = main(["optimize", "--resume", run_id, "--db", str(database)])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and f"task file {data} has changed since run {run_id} started" in said
    assert "put the file back as it was, or start a new optimization" in said
    data.write_text(data.read_text().replace('"answer": "2"', '"answer": "1"', 1))  # as it was
    moved = tmp_path / "moved" / "items.jsonl"
    moved.parent.mkdir()
    data.rename(moved)
    code = main(["optimize", "--resume", run_id, "--db", str(database)])
    assert code == 1 and "is not there: if it moved, give its new path with --task" in capsys.readouterr().err
    resumed = Optimization.resume(run_id, make_gateway(database, False), task_file=moved)
    assert resumed.space.task.path == str(moved)
    code = main(["optimize", str(space), "--task", str(moved), "--db", str(database)])
    assert code == 1 and "--task gives a resumed run's moved task file" in capsys.readouterr().err


def test_a_stored_optimization_names_its_files_by_paths_that_work_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default database (`.agentscale/`, relative), the best graph's and the front's paths
    were stored relative to where `optimize` ran: `runs show` elsewhere, and the report, named files
    that were not there, beside an absolute plot path (an audit of chained commands)."""
    monkeypatch.delenv("AGENTSCALE_DB", raising=False)
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + "objective: {pareto: true}\n")
    monkeypatch.chdir(tmp_path / "work")
    assert main(["optimize", str(space), "--json", "--no-test"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert (
        main(["runs", "show", run_id, "--json", "--db", str(tmp_path / "work" / ".agentscale" / "agentscale.db")]) == 0
    )
    summary = json.loads(capsys.readouterr().out)["summary"]
    paths = [summary["best"]["path"], *(point["path"] for point in summary["pareto"] if point.get("path"))]
    assert len(paths) > 1 and all(Path(path).is_absolute() and Path(path).is_file() for path in paths), paths


def test_two_single_calls_level_on_both_splits_are_labelled_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two aliases of one model tie everywhere: one row said "(best single, tie)", the other "(best
    single on test, tie)" at the same score, which read as two different claims."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    text = _optimized(
        tmp_path,
        capsys,
        'name: tie\ntask: {name: "sim:math", train: 8, test: 12, seed: 0}\nmodels:\n'
        "  a: {model: sim/llama-8b, params_b: 8.0}\n  b: {model: sim/llama-8b, params_b: 8.0}\n"
        "roles: [assistant]\nmax_nodes: 1\nbudget: {compute: 9}\n"
        "optimizer: {method: agent-reinforce, iterations: 1, samples: 2, minibatch: 4, seed: 0}\n",
    )
    assert "single call of a (best single on train and test, tie)" in text
    assert "single call of b (best single on test, tie)" in text


def _optimized(tmp_path: Path, capsys: pytest.CaptureFixture[str], space_text: str) -> str:
    """`agentscale optimize` of `space_text`, its stdout in one line."""
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    assert main(["optimize", str(space)]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_the_advantage_is_the_crowned_graph_minus_the_best_single(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Here the crowned vote (37.5%) loses to gemma-1b (50%) on the test items: the advantage must say
    -12.5 points, with the items only the crowned graph got right counted first."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(LABELS)
    assert main(["optimize", str(space), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    advantage, single = data["advantage"], data["singles"][data["advantage"]["over"][0]]
    assert advantage["difference"] == pytest.approx(data["best"]["accuracy"] - single["accuracy"])
    assert advantage["difference"] < 0
    assert advantage["only_first_right"] - advantage["only_second_right"] == round(advantage["difference"] * 24)


async def test_one_optimization_run_twice_at_once_runs_once(tmp_path: Path) -> None:
    """Gathering run() twice on one Optimization ran the search twice: 176 calls instead of 88 (an
    API fuzzer's); the second is refused while the first runs."""
    import asyncio

    from agentscale import Gateway, GatewaySettings, Optimization, RunBusy

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    search = Optimization.from_file(space, Gateway(Store(tmp_path / "o.db"), GatewaySettings(cache=False)))
    first, second = await asyncio.gather(search.run(), search.run(), return_exceptions=True)
    assert isinstance(second, RunBusy) and not isinstance(first, BaseException)
    assert Store(tmp_path / "o.db").get_run(search.run_id).status == "done"


async def test_two_objects_resuming_one_optimization_at_once_run_it_once(tmp_path: Path) -> None:
    """Two `Optimization.resume` of one run, gathered, each passed its own object's check and ran the
    search twice; the claim is the process's, by database file and run."""
    import asyncio

    from agentscale import Gateway, GatewaySettings, Optimization, RunBusy

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    run_id = Optimization.from_file(space, Gateway(Store(tmp_path / "o.db"), GatewaySettings(cache=False))).run_id
    first, second = (
        Optimization.resume(run_id, Gateway(Store(tmp_path / "o.db"), GatewaySettings(cache=False))) for _ in range(2)
    )
    done, refused = await asyncio.gather(first.run(), second.run(), return_exceptions=True)
    assert isinstance(refused, RunBusy) and not isinstance(done, BaseException)
    assert Store(tmp_path / "o.db").get_run(run_id).status == "done"


def test_a_file_where_the_runs_folder_goes_is_refused_before_a_run_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """A file named `runs` beside the database: a finished eval failed writing its report, with no
    summary printed, and a whole search was stored failed when it came to write its best graph."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    (tmp_path / "runs").write_text("in the way")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    graph = _single_call(tmp_path, "sim/llama-1b")
    for command in (["optimize", str(space), "--no-test"], ["eval", str(graph), "--task", "sim:math", "--n", "2"]):
        assert main(command) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert f"a run's files go under {tmp_path / 'runs'}, but {tmp_path / 'runs'} is a file, not a folder" in err
        assert Store(tmp_path / "o.db").list_runs() == []


def test_eval_split_of_measures_a_graph_on_an_optimizations_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --n N --seed S` samples with another salt than the optimization's split, so no eval could
    measure the crowned graph, or a hand-written baseline, on the items the optimization's test
    figures came from; `--split-of RUN` answers exactly those (a chained-commands audit)."""
    from agentscale.optimize.runner import load_task_split
    from agentscale.optimize.space import load_space

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    run_id, best = report["run_id"], report["best"]
    test_ids = [item.id for item in load_task_split(load_space(space))[2]]

    def split_of(graph: Path, *flags: str) -> dict[str, object]:
        assert main(["eval", str(graph), "--split-of", run_id[:6], *flags, "--json", "--show-items"]) == 0
        measured: dict[str, object] = json.loads(capsys.readouterr().out)
        return measured

    again = split_of(Path(best["path"]))
    assert (again["accuracy"], again["n"]) == (best["accuracy"], best["n"]) == (again["accuracy"], len(test_ids))
    assert sorted(item["item_id"] for item in again["items"]) == sorted(test_ids)  # type: ignore[attr-defined]
    baseline = report["baselines"]["single"]  # a hand-written graph: the single call's test figure
    model = baseline["name"].removeprefix("single call of ")
    route = yaml.safe_load(SPACE)["models"][model]["model"]
    assert split_of(_single_call(tmp_path, route))["accuracy"] == baseline["accuracy"]
    assert main(["eval", best["path"], "--split-of", run_id]) == 0
    assert f"{len(test_ids)} items · the test split of optimization {run_id}" in capsys.readouterr().err

    for flags, said in [
        (["--n", "3"], "--split-of answers the optimization's test split, with its task, options and scorer; drop --n"),
        (["--seed", "2"], "drop --seed"),
        (
            ["--resume", run_id],
            "--resume answers the stored run's items, with its own sample and scorer; drop --split-of",
        ),
    ]:
        graph = [] if "--resume" in flags else [best["path"]]
        code = main(["eval", *graph, "--split-of", run_id, *flags])
        assert code == 1 and said in " ".join(capsys.readouterr().err.split()), flags
    eval_run = again["run_id"]
    code = main(["eval", best["path"], "--split-of", str(eval_run)])
    error = " ".join(capsys.readouterr().err.split())
    assert (
        code == 1
        and f"--split-of takes an optimization's run id: run {eval_run} was made by `agentscale eval`" in error
    )


def test_eval_split_of_refuses_a_task_file_edited_since_the_optimization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Edited, the task file's test split would be other questions (or other answers) than those the
    optimization scored; moved, it is found by its contents with --task."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    data = tmp_path / "items.jsonl"
    data.write_text("".join(f'{{"question": "[sim:math#{i:04d}] q", "answer": "{i}"}}\n' for i in range(40)))
    space = tmp_path / "s.yaml"
    space.write_text(SPACE.replace('name: "sim:math"', "path: items.jsonl"))
    assert main(["optimize", str(space), "--json", "--no-test"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    graph = _single_call(tmp_path, "sim/llama-3b")
    moved = tmp_path / "moved.jsonl"
    data.rename(moved)
    assert main(["eval", str(graph), "--split-of", run_id]) == 1
    assert "is not there: if it moved, give its new path with --task" in capsys.readouterr().err
    assert main(["eval", str(graph), "--split-of", run_id, "--task", str(moved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    moved.write_text(moved.read_text().replace('"answer": "1"', '"answer": "2"'))
    assert main(["eval", str(graph), "--split-of", run_id, "--task", str(moved)]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"task file {moved} is not the file run {run_id} started on" in said
    moved.rename(data)
    assert main(["eval", str(graph), "--split-of", run_id]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"task file {data} has changed since run {run_id} started" in said
    assert "put the file back as it was, or evaluate without --split-of" in said


def test_a_dry_run_refuses_a_trace_it_would_not_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`--dry-run --trace console` exports nothing (nothing runs): refused, as --out and --concurrency
    are (mutant P2: accepted silently; only `--trace off` was tested, which must pass)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--trace", "console"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "--dry-run only projects the search's spend (nothing runs); drop --trace" in err
    assert not (tmp_path / "o.db").exists()


def test_a_dry_runs_json_says_it_is_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`optimize --dry-run --json` is one object with "dry_run": true beside the figures, which a script
    tells from a finished run's JSON by (mutant P7: the key was dropped and no test read it)."""
    import json

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--dry-run", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["dry_run"] is True
    assert {"evaluations", "items_answered", "calls", "tokens", "usd", "note"} <= set(figures)


def test_the_summary_names_the_out_file_as_the_best_graphs_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """With --out, `best graph YAML:` names that file (mutant P8: it named the copy in the run's folder;
    only --json's best.path was tested)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    best = tmp_path / "best.yaml"
    assert main(["optimize", str(space), "--out", str(best), "--no-test"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"best graph YAML: {best}" in out and best.exists()
    # and `runs show --json` gives every trial's fields (mutant U7 dropped "n", the items it was scored on)
    import json
    import re

    (run_id,) = re.findall(r"run (\w+) \(agentscale runs show", out)
    assert main(["runs", "show", run_id, "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    fields = {"seq", "iteration", "kind", "accuracy", "n", "compute", "latency_s", "reward", "tokens", "graph"}
    assert trials and all(set(trial) == fields for trial in trials)
    assert all(isinstance(trial["n"], int) and trial["n"] > 0 for trial in trials)


def test_runs_show_says_how_to_write_an_optimizations_report_a_kill_left_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for an eval (the existing test): a done optimization whose process died before its report was
    written names `runs show RUN --html` (mutant U10: only evals were told; an optimization said nothing)."""
    import json

    from agentscale.storage.db import Store
    from agentscale.storage.owner import current_owner
    from agentscale.storage.tables import Run

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--no-test", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    Path(done["report"]).unlink()
    store = Store(tmp_path / "o.db")
    with store.session() as session:
        run = session.get(Run, done["run_id"])
        assert run is not None
        run.owner = current_owner().rsplit("/", 1)[0] + "/0"  # this pid, another process's start: gone
        session.add(run)
        session.commit()
    assert main(["runs", "show", done["run_id"]]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"its report was not written; write it with: agentscale runs show {done['run_id']} --html" in said


def test_an_interrupted_optimization_names_optimize_resume_not_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runs show` of an interrupted optimization suggests `agentscale optimize --resume RUN` (mutant
    U5: the suggested command was eval's, which refuses the run; only evals were tested)."""
    from agentscale.storage.db import Store
    from tests.cli.test_cli import run_cli

    database = tmp_path / "o.db"
    stopped = Store(database).create_run("optimize", graph_name="space", config={"space_yaml": SPACE})
    Store(database).finish_run(stopped.id, "interrupted")
    code, _, err = run_cli(capsys, "runs", "show", stopped.id, "--db", str(database))
    resume = f"it was interrupted; continue with: agentscale optimize --resume {stopped.id} --db {database.resolve()}"
    assert code == 0 and resume in " ".join(err.split())
