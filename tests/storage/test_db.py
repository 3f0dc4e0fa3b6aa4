"""SQLite storage: WAL mode, two writer processes at once, no secrets stored."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from agentscale import Graph, Store
from agentscale.storage.tables import NodeCall
from agentscale.testing import ScriptedServer


def _write_many(path: str, worker: int, count: int) -> None:
    store = Store(path)
    run = store.create_run("run", run_id=f"w{worker}")
    for index in range(count):
        store.add(NodeCall(run_id=run.id, item_key=str(index), node_id=f"n{worker}", role="assistant"))
    store.finish_run(run.id, "done")


def test_wal_mode_and_default_path(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AGENTSCALE_DB", raising=False)
    store = Store()
    assert store.path == Path(".agentscale/agentscale.db")
    store.create_run("run")
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_env_overrides_path(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "elsewhere.db"))
    assert Store().path == tmp_path / "elsewhere.db"


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Store(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(path, w, 200)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = Store(path)
    assert len(store.node_calls("w0")) == 200 and len(store.node_calls("w1")) == 200
    assert {r.status for r in store.list_runs()} == {"done"}


def test_api_keys_never_reach_the_database(tmp_path: Path, scripted: ScriptedServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret = "sk-test-SECRET-4242424242"
    monkeypatch.setenv("MY_PROVIDER_KEY", secret)
    store = Store(tmp_path / "s.db")
    text = (
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}", api_key_env: MY_PROVIDER_KEY}}\n'
        "name: s\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    graph = Graph.from_yaml(text, store=store)
    graph.run("What is 1 + 1?")
    sent = scripted.completion_requests[0]
    assert sent["model"] == "scripted"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert secret.encode() not in raw
    assert b"MY_PROVIDER_KEY" in raw  # the variable's name is kept, so the graph can be re-run


def test_missing_key_variable_is_a_clear_node_error(tmp_path: Path, scripted: ScriptedServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    text = (
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}", api_key_env: ABSENT_KEY}}\n'
        "name: s\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    result = Graph.from_yaml(text, store=None).run("hi")
    assert result.trace[0].status == "failed"
    assert "ABSENT_KEY" in (result.trace[0].error or "")
