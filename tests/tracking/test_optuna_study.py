"""An optimization exported as an Optuna study: one trial per search evaluation with its objectives
and graph, the study's Pareto front equal to the run's, and optuna-dashboard's own API serving it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna_dashboard import wsgi

from agentscale.cli.app import main
from agentscale.optimize.trials import candidate_from_json
from agentscale.storage.db import Store
from tests.report.test_optimize_report import SPACE


def dashboard_get(storage: str, path: str) -> dict[str, object]:
    """One GET through optuna-dashboard's WSGI app (what its web page calls)."""
    environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi(storage)(environ, lambda s, h, *_: status.append(s)))  # type: ignore[arg-type]
    assert status[0].startswith("200"), status
    return json.loads(body)  # type: ignore[no-any-return]


def _optimized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> str:  # type: ignore[no-untyped-def]
    """The id of a finished `agentscale optimize` of SPACE, in tmp_path's o.db (AGENTSCALE_DB)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["run_id"])


def test_optimization_as_an_optuna_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    run_id = _optimized(tmp_path, monkeypatch, capsys)
    assert main(["runs", "optuna", run_id, "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["storage"] == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"

    search = [t for t in Store(tmp_path / "o.db").trials(run_id) if t.kind == "search"]
    study = optuna.load_study(study_name=f"agentscale-{run_id}", storage=exported["storage"])
    assert exported["trials"] == len(study.trials) == len(search)
    assert study.metric_names == ["accuracy", "compute"]
    assert study.user_attrs["simulated"] is True and study.user_attrs["agentscale_run_id"] == run_id
    for stored, trial in zip(search, study.trials, strict=True):
        candidate = candidate_from_json(stored.candidate_json)
        assert trial.values == [stored.accuracy, stored.compute]
        assert trial.params["nodes"] == candidate.size
        assert trial.params["node0.role"] == candidate.nodes[0].role
        assert trial.user_attrs["graph"] == candidate.describe() and trial.user_attrs["seq"] == stored.seq
    assert trial.datetime_complete is not None
    assert trial.datetime_complete.replace(tzinfo=None) == stored.created.replace(tzinfo=None)  # its own time

    points = {(t.accuracy, t.compute) for t in search}
    front = {p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)}
    assert {tuple(t.values) for t in study.best_trials} == front

    listed = dashboard_get(exported["storage"], "/api/studies")["study_summaries"]
    summary = next(s for s in listed if s["study_name"] == f"agentscale-{run_id}")  # type: ignore[union-attr, index]
    shown = dashboard_get(exported["storage"], f"/api/studies/{summary['study_id']}")
    assert len(shown["trials"]) == len(search) and len(shown["best_trials"]) == len(study.best_trials)  # type: ignore[arg-type]
    assert shown["objective_names"] == ["accuracy", "compute"]

    assert main(["runs", "optuna", run_id]) == 0  # again: the study is replaced, not doubled
    assert "optuna-dashboard sqlite:///" in capsys.readouterr().out.replace("\n", "")
    again = optuna.load_study(study_name=f"agentscale-{run_id}", storage=exported["storage"])
    assert len(again.trials) == len(search)


def test_optuna_export_refuses_other_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "o.db")
    run = store.create_run("eval", graph_name="g")
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    assert main(["runs", "optuna", run.id]) == 1
    assert "only optimizations" in capsys.readouterr().err
    assert main(["runs", "optuna", "nope"]) == 1


def test_a_storage_optuna_cannot_open_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """An unknown backend or a database in a missing folder printed SQLAlchemy's tracebacks."""
    run_id = _optimized(tmp_path, monkeypatch, capsys)
    for storage in ("bogus://x", f"sqlite:///{tmp_path / 'missing' / 'o.db'}"):
        assert main(["runs", "optuna", run_id, "--storage", storage]) == 1
        err = capsys.readouterr().err
        assert f"Optuna storage {storage!r}" in " ".join(err.split()) and "Traceback" not in err


def test_a_study_of_that_name_from_elsewhere_is_refused_unless_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--study NAME` deleted whatever study had that name (the tracking audit): a user's own, or
    another run's exported under one name. The run's own study is still replaced on re-export."""
    run_id = _optimized(tmp_path, monkeypatch, capsys)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    mine = optuna.create_study(study_name="my-precious", storage=storage)
    mine.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=5)
    assert main(["runs", "optuna", run_id, "--study", "my-precious"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "already holds a study named 'my-precious' (not written by agentscale)" in err and "--replace" in err
    assert len(optuna.load_study(study_name="my-precious", storage=storage).trials) == 5
    assert main(["runs", "optuna", run_id, "--study", "ours"]) == 0
    assert main(["runs", "optuna", run_id, "--study", "ours"]) == 0  # its own study: replaced
    assert main(["runs", "optuna", run_id, "--study", "my-precious", "--replace"]) == 0
    capsys.readouterr()
    replaced = optuna.load_study(study_name="my-precious", storage=storage)
    assert replaced.user_attrs["agentscale_run_id"] == run_id


def test_the_storage_url_survives_odd_folder_names_and_hides_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default URL was `sqlite:///` + the path: a folder named `a?b c` sent the study to a file
    `a` (the rest read as a query string) while the path printed did not exist, and the command
    printed to view it broke at the space; an in-memory
    database kept nothing and said it had; a PostgreSQL password was echoed."""
    folder = tmp_path / "a?b c"
    folder.mkdir()
    monkeypatch.setenv("AGENTSCALE_DB", str(folder / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["optimize", str(space), "--json"]) == 0
    run_id = str(json.loads(capsys.readouterr().out)["run_id"])
    assert main(["runs", "optuna", run_id]) == 0
    printed = capsys.readouterr().out
    assert (folder / "optuna.db").is_file() and not (tmp_path / "a").exists()
    assert optuna.get_all_study_names(f"sqlite:///{folder / 'optuna.db'}".replace("?", "%3F")) == [
        f"agentscale-{run_id}"
    ]
    assert "view it with: optuna-dashboard 'sqlite:///" in printed  # quoted for the shell
    for memory in ("sqlite:///:memory:", "sqlite://"):
        assert main(["runs", "optuna", run_id, "--storage", memory]) == 1
        assert "keeps nothing once the command ends" in capsys.readouterr().err
    assert main(["runs", "optuna", run_id, "--storage", "postgresql+nosuchdriver://bob:hunter2@127.0.0.1:1/db"]) == 1
    err = capsys.readouterr().err
    assert "bob:***@" in err and "hunter2" not in err


@pytest.mark.parametrize("method", ["agent-reinforce", "random"])
def test_the_study_labels_the_pilot_and_carries_the_crowned_graphs_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    """Only agent-reinforce's first iteration is a pilot: a random search labelled "pilot" in the
    dashboard reads as if it never searched at first. The crowned graph's test scores, the single
    calls' and why the run stopped are the study's attributes: a study without them shows the search
    but not its outcome."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("method: agent-reinforce", f"method: {method}"))
    assert main(["optimize", str(space), "--json"]) == 0
    run_id = str(json.loads(capsys.readouterr().out)["run_id"])
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["runs", "optuna", run_id, "--storage", storage]) == 0
    study = optuna.load_study(study_name=f"agentscale-{run_id}", storage=storage)
    stages = {(t.user_attrs["iteration"], t.user_attrs["stage"]) for t in study.trials}
    first = {stage for iteration, stage in stages if iteration == 0}
    assert first == ({"pilot"} if method == "agent-reinforce" else {"search"}), stages
    assert {stage for iteration, stage in stages if iteration > 0} == {"search"}
    summary = json.loads(Store(tmp_path / "o.db").get_run(run_id).summary_json)
    assert summary["best"] and study.user_attrs["crowned_test"] == summary["best"]
    assert study.user_attrs["baselines_test"] == summary.get("baselines")
    assert study.user_attrs["method"] == method and study.user_attrs["space"] == "simreport"


def test_exports_at_once_into_a_fresh_storage_all_land(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Runs of one --db share `<db folder>/optuna.db`; two exports at once into it raced to create
    Optuna's tables and one failed (UNIQUE constraint failed: alembic_version; 2 of 4 tries in the
    serve-graph walk). Four exports of one run, each under its own study name, at once."""
    import threading

    from agentscale.tracking.optuna_study import export_study, sqlite_storage

    run_id = _optimized(tmp_path, monkeypatch, capsys)
    store, storage = Store(tmp_path / "o.db"), sqlite_storage(tmp_path / "fresh.db")
    start, failures = threading.Barrier(4), []

    def export(index: int) -> None:
        start.wait()
        try:
            export_study(store, run_id, storage, f"copy-{index}")
        except Exception as exc:  # whatever it was, the test names it
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=export, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(optuna.study.get_all_study_names(storage)) == [f"copy-{index}" for index in range(4)]


def test_an_optimization_with_no_search_evaluation_says_its_study_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One interrupted before its search exported an empty study, exit 0, and nothing said why."""
    import sqlite3

    run_id = _optimized(tmp_path, monkeypatch, capsys)
    with sqlite3.connect(tmp_path / "o.db") as connection:  # as if Ctrl-C came in the single calls' race
        connection.execute("DELETE FROM trial WHERE run_id = ? AND kind = 'search'", (run_id,))
        connection.execute("UPDATE run SET status = 'interrupted' WHERE id = ?", (run_id,))
    assert main(["runs", "optuna", run_id, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["trials"] == 0
    assert f"run {run_id} (interrupted) stored no search evaluation" in " ".join(captured.err.split())
    study = optuna.load_study(study_name=f"agentscale-{run_id}", storage=json.loads(captured.out)["storage"])
    assert study.user_attrs["status"] == "interrupted"
