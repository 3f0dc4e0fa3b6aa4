"""Two processes build the same handbook at once (real processes, one SQLite file): nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentscale import Store
from agentscale.memory import Handbook, InsertReport, Proposal
from agentscale.memory.handbook import write_lock
from agentscale.storage.tables import BehaviorRow
from agentscale.testing import ScriptedServer
from tests.memory.conftest import extraction, script_item, write_task


def _instruction(i: int) -> str:
    # lexically disjoint per behavior, so only equal names can merge
    return f"alpha{i} bravo{i} charlie{i} delta{i} echo{i} foxtrot{i}"


def test_two_concurrent_builders_lose_nothing(tmp_path: Path, scripted: ScriptedServer) -> None:
    count = 20
    questions = [f"What is {i} + 100?" for i in range(count)]
    for i, question in enumerate(questions):
        shared = ("behavior_shared_check", "Check the result by subtracting one addend from the sum.")
        own = (f"behavior_item_{i}", _instruction(i))
        pair = (f"behavior_pair_{i // 2}", _instruction(100 + i // 2))  # proposed by two items
        script_item(
            scripted,
            question,
            solution=f"Final answer: {i + 100}",
            reflection="Fine.",
            reply=extraction(shared, own, pair),
        )
    db = tmp_path / "shared.db"
    Store(db)  # create the schema once, as a first command would
    # overlapping parts: items 0-13 and 6-19
    tasks = [
        write_task(tmp_path / "a.jsonl", [(q, str(i + 100)) for i, q in enumerate(questions) if i < 14]),
        write_task(tmp_path / "b.jsonl", [(q, str(i + 100)) for i, q in enumerate(questions) if i >= 6]),
    ]
    env = {**os.environ, "AGENTSCALE_EMBEDDINGS": "off", "AGENTSCALE_DB": str(db), "AGENTSCALE_CACHE": "off"}
    command = [sys.executable, "-m", "agentscale.cli.app", "handbook", "build", "--handbook", "math"]
    options = ["--model", "hosted_vllm/scripted", "--api-base", scripted.api_base, "--json", "--concurrency", "8"]
    processes = [
        subprocess.Popen(
            [*command, "--task", str(task), *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in tasks
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    assert [r["items"] for r in reports] == [14, 14] and all(r["malformed"] == r["failed"] == 0 for r in reports)

    book = Handbook(Store(db), "math", embedder=None)
    rows = book.behaviors()
    expected = {"behavior_shared_check"} | {f"behavior_item_{i}" for i in range(count)}
    expected |= {f"behavior_pair_{i}" for i in range(count // 2)}
    assert sorted(r.name for r in rows) == sorted(expected)
    proposed = sum(r["proposed"] for r in reports)
    assert proposed == 84  # 28 items × 3 behaviors
    assert sum(r["added"] for r in reports) == len(expected)
    assert sum(r["merged"] for r in reports) == proposed - len(expected)
    # every proposal left a provenance row, and each behavior's merge count matches its rows
    sources = {r.name: book.sources(r) for r in rows}
    assert sum(len(s) for s in sources.values()) == proposed
    assert all(r.merged == len(sources[r.name]) - 1 for r in rows)
    assert len(sources["behavior_shared_check"]) == 28
    assert {s.run_id for s in sources["behavior_shared_check"]} == {r["run_id"] for r in reports}


def test_an_insert_waits_for_a_concurrent_writer_and_then_merges(tmp_path: Path) -> None:
    """The read-check-write of an insert runs under SQLite's write lock: while another connection holds it
    (and has inserted, uncommitted, the same name), the insert waits, then sees that row and merges."""
    store = Store(tmp_path / "lock.db")
    Handbook(store, "math", embedder=None).create()
    other = Store(tmp_path / "lock.db")  # a second engine: separate connections, like another process
    reports: list[InsertReport] = []
    errors: list[BaseException] = []

    def insert() -> None:
        try:
            # the same instruction again: a name merges only an instruction alike (SAME_NAME_THRESHOLD)
            reports.append(Handbook(other, "math", embedder=None).add([Proposal("behavior_x", _instruction(0), "r2")]))
        except BaseException as exc:
            errors.append(exc)

    with write_lock(store) as connection:
        handbook_id = Handbook(store, "math", embedder=None)._ensure(connection)
        table = BehaviorRow.__table__  # type: ignore[attr-defined]
        connection.execute(
            table.insert().values(
                handbook_id=handbook_id, name="behavior_x", instruction=_instruction(0), source_run="r1"
            )
        )
        thread = threading.Thread(target=insert)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # blocked on the write lock, not reading a stale snapshot
    thread.join(timeout=30)
    assert errors == [] and [r.merged for r in reports] == [[("behavior_x", "behavior_x", 1.0)]]
    [row] = Handbook(store, "math", embedder=None).behaviors()
    assert (row.source_run, row.merged) == ("r1", 1)


def test_prune_judges_the_counters_it_holds_the_lock_over(tmp_path: Path) -> None:
    """An eval's citation counted while prune waited for the write lock was not seen: prune read the
    counters before it asked for the lock, and deleted a behavior that no longer met its rule."""
    store = Store(tmp_path / "race.db")
    book = Handbook(store, "math", embedder=None)
    book.add([Proposal("behavior_keep_a_running_total", "Keep a running total while adding long columns.")])
    book.record_use(["behavior_keep_a_running_total"], [])  # retrieved once, never cited: prunable
    removed: list[BehaviorRow] = []
    with write_lock(Store(tmp_path / "race.db")) as eval_process:
        pruning = threading.Thread(target=lambda: removed.extend(book.prune(min_uses=1)))
        pruning.start()
        time.sleep(0.5)  # prune is waiting for the lock
        eval_process.exec_driver_sql("UPDATE behavior SET times_cited = times_cited + 1")  # its citation
    pruning.join(30)
    assert removed == [] and [b.name for b in book.behaviors()] == ["behavior_keep_a_running_total"]
