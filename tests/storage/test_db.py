"""SQLite storage: WAL mode, two writer processes at once, no secrets stored."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Field, SQLModel, select

from agentscale import Graph, Store
from agentscale.errors import AgentScaleError
from agentscale.storage._opening import unopenable
from agentscale.storage.tables import CacheEntry, NodeCall, RunItem, SpendEntry, Trial
from agentscale.testing import ScriptedServer


def _write_many(path: str, worker: int, count: int) -> None:
    store = Store(path)
    run = store.create_run("run", run_id=f"w{worker}")
    for index in range(count):
        store.add(NodeCall(run_id=run.id, item_key=str(index), node_id=f"n{worker}", role="assistant"))
    store.finish_run(run.id, "done")


def _open_together(path: str, start: object) -> None:
    start.wait(30)  # type: ignore[attr-defined]  # a multiprocessing Barrier
    Store(path)


def test_processes_opening_a_new_database_together_all_open_it(tmp_path: Path) -> None:
    """An eval and an optimize started together on a new database: both found no tables, and the
    slower one failed with "table run already exists" (5 trials of 10 with 4 processes)."""
    context = multiprocessing.get_context("spawn")
    for trial in range(3):
        path, start = str(tmp_path / f"new{trial}.db"), context.Barrier(4)
        openers = [context.Process(target=_open_together, args=(path, start)) for _ in range(4)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(120)
        assert [o.exitcode for o in openers] == [0, 0, 0, 0], f"trial {trial}"


def test_a_database_with_all_its_tables_opens_while_another_process_writes(tmp_path: Path) -> None:
    """Missing tables are created under the write lock (four processes opening a new database raced
    on "table behavior already exists" in CI); a database that has them all must not wait for a
    writer, or `runs list` would stall behind an eval writing its rows."""
    path = tmp_path / "busy.db"
    Store(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert Store(path).list_runs() == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_database_another_process_holds_is_opened_once_it_lets_go(tmp_path: Path) -> None:
    """SQLite converts a file to WAL under an exclusive lock and runs no busy handler for it: a process
    opening a new database while another held it failed at once with "database is locked" (1 of
    1,180 tests in CI, 4 processes opening one new file)."""
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE theirs (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer's reserved lock, kept until COMMIT
    holder.execute("INSERT INTO theirs VALUES (1)")
    release = threading.Timer(0.5, holder.execute, args=("COMMIT",))
    release.start()
    try:
        store = Store(path)
    finally:
        release.join()
        holder.close()
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _open_files_of(database: Path) -> list[str]:
    """The files of `database` (itself, -wal, -shm) this process holds open."""
    names = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            names.append(str(fd.readlink()))
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return [name for name in names if name.startswith(str(database))]


def test_a_dropped_store_closes_its_database_files_without_a_garbage_collection(tmp_path: Path) -> None:
    """The engine and its pool hold each other: a dropped Store's three open files (database, -wal,
    -shm) waited for a full collection, and a loop making a Store per graph held 147 files open."""
    database = tmp_path / "a.db"
    store = Store(database)
    store.create_run("eval")
    assert _open_files_of(database)
    del store
    assert _open_files_of(database) == []


def test_close_closes_the_files_now_and_a_later_use_opens_them_again(tmp_path: Path) -> None:
    database = tmp_path / "a.db"
    store = Store(database)
    run_id = store.create_run("eval").id
    store.close()
    assert _open_files_of(database) == [] and not Path(f"{database}-wal").exists()  # checkpointed into the file
    assert store.get_run(run_id).kind == "eval"


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


def test_rows_as_values_are_stored_like_model_instances(tmp_path: Path) -> None:
    """`insert` (column values, the hot path) and `add_all` (model instances) store the same row:
    defaults filled, None as the default, booleans and UTC datetimes as SQLAlchemy writes them."""
    store = Store(tmp_path / "v.db")
    run = store.create_run("run")
    values = {"run_id": run.id, "item_key": "k", "node_id": "a", "role": "assistant", "cached": True, "usd": None}
    store.add_all([NodeCall(**values)])
    store.insert([(NodeCall, values)])
    by_model, by_values = store.node_calls(run.id)
    assert by_values.started.tzinfo is not None and by_values.started >= by_model.started
    ignored = {"id", "started"}
    assert by_values.model_dump(exclude=ignored) == by_model.model_dump(exclude=ignored)
    assert by_values.cached is True and by_values.status == "ok" and by_values.messages_json == "[]"
    raw = sqlite3.connect(store.path).execute("SELECT started FROM nodecall ORDER BY id").fetchall()
    assert all(" " in stamp and "+" not in stamp for (stamp,) in raw)  # SQLAlchemy's SQLite format


def test_insert_is_one_transaction_and_refuses_unknown_columns(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    run = store.create_run("run")
    good = {"run_id": run.id, "item_key": "k", "node_id": "a", "role": "assistant"}
    with pytest.raises(sqlite3.IntegrityError):  # node_id is NOT NULL: the good row goes too
        store.insert([(NodeCall, good), (NodeCall, {**good, "node_id": None, "role": None})])
    assert store.node_calls(run.id) == []
    with pytest.raises(ValueError, match="no column"):
        store.insert([(NodeCall, {**good, "nodeid": "typo"})])


def test_cache_entries_and_spend_rows_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    entry = {"key": "k1", "route": "r", "request_json": "{}", "completion": "first", "prompt_tokens": 3}
    entry |= {"completion_tokens": 4, "latency_s": 0.5}
    spend = {"run_id": None, "route": "r", "prompt_tokens": 3, "completion_tokens": 4, "flops": 1.0, "usd": None}
    assert store.cache_get("k1") is None
    store.record_call(entry, spend)
    store.record_call({**entry, "completion": "second"}, spend)  # same key: the first entry is kept
    hit = store.cache_get("k1")
    assert isinstance(hit, CacheEntry)
    assert (hit.completion, hit.prompt_tokens, hit.completion_tokens, hit.latency_s) == ("first", 3, 4, 0.5)
    with store.session() as session:
        assert hit == session.get(CacheEntry, "k1")
        assert len(session.exec(select(SpendEntry)).all()) == 2  # both calls were paid for


def test_spend_sums_a_run_s_calls_and_knows_when_a_price_is_missing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    entry = {"route": "r", "request_json": "{}", "completion": "c", "prompt_tokens": 3, "completion_tokens": 4}
    paid = {"route": "r", "prompt_tokens": 3, "completion_tokens": 4, "flops": 1.0}
    assert store.spend("a") == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "usd": 0.0}
    store.record_call({**entry, "key": "1"}, {**paid, "run_id": "a", "usd": 0.25})
    store.record_call({**entry, "key": "2"}, {**paid, "run_id": "a", "usd": 0.5, "completion_tokens": 6})
    store.record_call({**entry, "key": "3"}, {**paid, "run_id": "b", "usd": None})
    assert store.spend("a") == {"calls": 2, "prompt_tokens": 6, "completion_tokens": 10, "tokens": 16, "usd": 0.75}
    store.record_call({**entry, "key": "4"}, {**paid, "run_id": "a", "usd": None})
    assert store.spend("a")["usd"] is None and store.spend("a")["calls"] == 3  # one unknown price: no total
    assert store.spend("b")["usd"] is None


def test_a_path_that_is_no_database_is_named_not_a_traceback(tmp_path: Path) -> None:
    """A directory, a text file and a path under a file each raised SQLAlchemy's error from every command."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    cases = {
        tmp_path: "is a directory",
        text: r"cannot be used \(file is not a database\)",
        text / "x.db": r"cannot be used \(.*notes.txt is a file\)",
    }
    for path, message in cases.items():
        with pytest.raises(AgentScaleError, match=f"database .* {message}: give a SQLite file path"):
            Store(path)


def test_a_locked_database_is_not_called_a_wrong_path(tmp_path: Path) -> None:
    """A lock (another process writing) is named as one, not answered with "give a SQLite file path"
    (the store waits 30 s for a lock, so its message is checked without the wait)."""
    locked = OperationalError("CREATE TABLE run", {}, sqlite3.OperationalError("database is locked"))
    message = unopenable(tmp_path / "runs.db", locked)
    assert "is locked by another process (database is locked): wait for it" in message
    assert "give a SQLite file path" not in message


def test_a_run_id_prefix_names_one_run_or_says_which(tmp_path: Path) -> None:
    """A prefix shared by two runs said "no run", and `_` or `%` in it matched any character."""
    store = Store(tmp_path / "runs.db")
    for run_id in ("8765693394a3", "8769a2d87f95"):
        store.create_run("run", run_id=run_id)
    assert store.get_run("8765").id == "8765693394a3"
    with pytest.raises(AgentScaleError, match=r"'876' is the start of 2 runs \(8765693394a3, 8769a2d87f95\)"):
        store.get_run("876")
    for wildcard in ("8_65", "%4a3"):
        with pytest.raises(AgentScaleError, match=f"no run '{wildcard}'"):
            store.get_run(wildcard)
    Store(tmp_path / "one.db").create_run("run", run_id="solo")
    with pytest.raises(AgentScaleError, match="an empty run id names no run"):  # it was every run's prefix
        Store(tmp_path / "one.db").get_run("")


_SPEND_BEFORE_ITEM_KEYS = """CREATE TABLE spendentry (
    id INTEGER NOT NULL, run_id VARCHAR, route VARCHAR NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, flops FLOAT NOT NULL, usd FLOAT, created DATETIME NOT NULL,
    PRIMARY KEY (id))"""  # as the first release made it: its ledger rows named no item


def test_a_database_of_an_earlier_release_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(_SPEND_BEFORE_ITEM_KEYS)
        old.execute("INSERT INTO spendentry VALUES (1, 'a', 'r', 3, 4, 1.0, 0.5, '2026-11-30 10:00:00')")
    store = Store(path)
    store.record_call(
        None,
        {"run_id": "a", "item_key": "t1:q0", "route": "r", "prompt_tokens": 1, "completion_tokens": 1, "flops": 0.0},
    )
    with store.session() as session:
        rows = session.exec(select(SpendEntry).order_by(SpendEntry.id)).all()  # type: ignore[arg-type]
    assert [(r.run_id, r.item_key, r.prompt_tokens) for r in rows] == [("a", None, 3), ("a", "t1:q0", 1)]
    assert store.spend("a")["calls"] == 2
    Store(path)  # opened again (or by a second process): the column is there, nothing to add


def test_a_database_before_a_column_with_a_default_gains_it_with_that_default(tmp_path: Path) -> None:
    """`cacheentry.latency_s` (NOT NULL, default 0) made every database written before it unopenable,
    even by `runs list`: "lacks column ... written by another release"."""
    path = tmp_path / "old.db"
    Store(path).record_call(
        {"key": "k", "route": "r", "request_json": "{}", "completion": "c", "prompt_tokens": 1, "completion_tokens": 2},
        {"run_id": "a", "route": "r", "prompt_tokens": 1, "completion_tokens": 2, "flops": 0.0},
    )
    with sqlite3.connect(path) as old:
        old.execute("ALTER TABLE cacheentry DROP COLUMN latency_s")
    entry = Store(path).cache_get("k")
    assert entry is not None and (entry.completion, entry.latency_s) == ("c", 0.0)


def test_every_column_with_a_default_has_it_in_sql_so_an_older_release_can_still_write(tmp_path: Path) -> None:
    """The defaults lived in Python only (`status VARCHAR NOT NULL`): a NOT NULL column a later release
    adds would make an older one's every insert fail ("NOT NULL constraint failed", after the calls
    were paid; a store audit). Each NOT NULL column with a default now has it in SQL, a creation
    time the insert's moment; an insert naming only what has no default takes them."""
    path = tmp_path / "new.db"
    store = Store(path)
    with sqlite3.connect(path) as connection:
        for table in ("run", "runitem", "nodecall", "cacheentry", "spendentry", "trial", "behavior"):
            columns = connection.execute(f"PRAGMA table_info({table})").fetchall()
            model = next(t for t in SQLModel.metadata.sorted_tables if t.name == table)
            lacking = [c[1] for c in columns if c[3] and c[4] is None and model.columns[c[1]].default is not None]
            assert lacking == [], (table, lacking)
        connection.execute("INSERT INTO run (id, kind) VALUES ('older', 'eval')")  # as a release without the rest
    run = store.get_run("older")
    assert (run.status, run.config_json, run.summary_json) == ("running", "{}", "{}") and run.created.year >= 2026


def test_a_database_lacking_a_required_column_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as odd:
        odd.execute(_SPEND_BEFORE_ITEM_KEYS.replace("route VARCHAR NOT NULL, ", ""))
    with pytest.raises(AgentScaleError, match=r"lacks column spendentry.route, .* another release"):
        Store(path)


def test_another_programs_file_is_refused_unchanged(tmp_path: Path) -> None:
    """Refused only after agentscale's missing tables were created and WAL set: another program's
    SQLite file with a table named like one of ours came back with 8 tables more, in WAL mode."""
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as theirs:
        theirs.execute("CREATE TABLE cacheentry (key TEXT PRIMARY KEY, value TEXT)")
        theirs.execute("INSERT INTO cacheentry VALUES ('a', 'b')")
    theirs.close()
    before = path.read_bytes()
    with pytest.raises(AgentScaleError, match=r"lacks column cacheentry.route, .* or by another program"):
        Store(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]


def test_a_read_only_store_reads_as_it_is_and_refuses_an_older_schema_in_words(tmp_path: Path) -> None:
    """Opened read-only (`validate`, and reading commands where the file cannot be written), nothing is
    written: an earlier release's file is refused in words, not brought up to date nor left to fail
    as "no such column" at the first query."""
    path = tmp_path / "old.db"
    run = Store(path).create_run("eval")
    with sqlite3.connect(path) as old:
        old.execute("PRAGMA journal_mode=DELETE")
        old.execute("ALTER TABLE run DROP COLUMN owner")
    old.close()
    before = path.read_bytes()
    with pytest.raises(AgentScaleError, match=r"written by an earlier release \(no column run.owner\)"):
        Store(path, read_only=True)
    assert path.read_bytes() == before
    assert Store(path).get_run(run.id).owner is None  # opened to write: brought up to date
    assert Store(path, read_only=True).get_run(run.id).kind == "eval"


def test_a_pipe_a_device_or_a_dangling_link_is_named_as_such(tmp_path: Path) -> None:
    """They said "cannot be opened (disk I/O error)" and "(unable to open database file)", which named
    nothing wrong with the path (a store audit)."""
    pipe = tmp_path / "pipe.db"
    os.mkfifo(pipe)
    for path in (pipe, Path("/dev/null")):
        with pytest.raises(AgentScaleError, match=r"is not a regular file \(a pipe or a device\)"):
            Store(path)
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "gone" / "x.db")
    with pytest.raises(AgentScaleError, match=r"is a link to .*gone/x.db, which does not exist"):
        Store(link)


class _AppNote(SQLModel, table=True):
    """A table of an app that keeps its own rows in agentscale's database file."""

    id: int | None = Field(default=None, primary_key=True)
    text: str
    added_later: str  # a column its own next release adds: not agentscale's to add


def test_an_apps_own_tables_are_neither_created_nor_altered(tmp_path: Path) -> None:
    """Opening a database walked every SQLModel table of the process: an app's table missing a column
    of its own made agentscale refuse the file as "written by another release of agentscale"."""
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as app:
        app.execute("CREATE TABLE _appnote (id INTEGER PRIMARY KEY, text VARCHAR NOT NULL)")
    Store(path)
    with sqlite3.connect(path) as app:
        assert [row[1] for row in app.execute("PRAGMA table_info(_appnote)")] == ["id", "text"]
        assert app.execute("SELECT name FROM sqlite_master WHERE name = 'run'").fetchone() == ("run",)


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (KeyboardInterrupt(), "interrupted", None),
        (asyncio.CancelledError(), "interrupted", None),  # Ctrl-C and SIGTERM's exit cancel the run's task
        (SystemExit(143), "interrupted", None),
        (ValueError("could not convert string to float: 'abc'"), "failed", "could not convert string to float: 'abc'"),
        (RuntimeError(), "failed", "RuntimeError"),
    ],
)
def test_a_run_that_ends_early_is_interrupted_when_stopped_and_failed_with_its_error_otherwise(
    tmp_path: Path, exc: BaseException, status: str, error: str | None
) -> None:
    """An eval that died on an item was stored "interrupted" with no error, and `runs show` offered
    a resume that died again (the bad-input review)."""
    store = Store(tmp_path / "runs.db")
    run = store.create_run("eval", graph_name="g")
    store.finish_broken_run(run.id, exc, {"answered": 3})
    stored = store.get_run(run.id)
    assert (stored.status, stored.error, stored.summary_json) == (status, error, '{"answered": 3}')


def test_an_items_first_failed_call_is_the_one_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    run = store.create_run("eval")
    calls = [("q1", "a", "ok", None), ("q1", "b", "failed", "HTTP 500"), ("q1", "c", "failed", "HTTP 400")]
    calls += [("q2", "a", "skipped", "budget"), ("q3", "a", "failed", "timed out")]
    store.insert(
        [
            (NodeCall, {"run_id": run.id, "item_key": k, "node_id": n, "role": "assistant", "status": s, "error": e})
            for k, n, s, e in calls
        ]
    )
    assert store.failed_calls_by_item(run.id) == {"q1": "b: HTTP 500", "q3": "a: timed out"}


def test_this_process_may_resume_a_run_it_left_running(tmp_path: Path) -> None:
    """An app whose eval raised in the same process resumes it there: its own live pid is no other owner."""
    store = Store(tmp_path / "r.db")
    run = store.create_run("eval")
    assert store.get_run(run.id).status == "running"
    store.reopen_run(run.id)
    assert store.refuse_if_busy(run.id).id == run.id


def test_a_path_is_opened_as_named_not_read_as_a_url(tmp_path: Path) -> None:
    """The path went into a sqlite:/// URL: "a?x.db" and "a?y.db" both opened a file "a", and
    "%41.db" opened "A.db", while `store.path` named the file given (an API fuzzer's)."""
    first, second = Store(tmp_path / "a?x.db"), Store(tmp_path / "a?y.db")
    first.create_run("run", run_id="r1")
    assert not second.has_run("r1") and sorted(p.name for p in tmp_path.glob("*.db")) == ["a?x.db", "a?y.db"]
    Store(tmp_path / "%41.db")
    assert (tmp_path / "%41.db").is_file() and not (tmp_path / "A.db").exists()


def test_a_database_in_memory_or_of_another_type_is_refused() -> None:
    """ ":memory:" gave every pooled connection its own empty database: the first recorded run failed
    with "no such table"; Store(3) was a pathlib TypeError."""
    with pytest.raises(AgentScaleError, match="a database in memory cannot be shared by a run's connections"):
        Store(":memory:")
    with pytest.raises(TypeError, match="a database is a file path \\(str or Path\\), not int"):
        Store(3)  # type: ignore[arg-type]


def test_a_path_from_the_home_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store("~/x.db") made a folder named "~" in the working directory (an API fuzzer's)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert Store("~/x.db").path == tmp_path / "home" / "x.db" and not (tmp_path / "~").exists()


def test_a_store_that_finished_a_run_is_not_kept_once_dropped(tmp_path: Path) -> None:
    """Finishing a run was the Store's one ORM flush, whose statement SQLAlchemy's mapper caches
    process-wide by the engine's dialect: every Store that finished a run stayed alive (≈300 objects)."""
    import gc
    import weakref

    stores = []
    for index in range(3):
        store = Store(tmp_path / f"{index}.db")
        run_id = store.create_run("eval").id
        store.finish_run(run_id, "done", {"n": 1}, error=None)
        assert store.get_run(run_id).status == "done" and store.get_run(run_id).finished is not None
        stores.append(weakref.ref(store.engine.dialect))
        del store
    gc.collect()
    assert [ref() for ref in stores] == [None, None, None]


def _item(run_id: str, key: str) -> RunItem:
    return RunItem(run_id=run_id, item_key=key, question="q")


def _trial(run_id: str, seq: int) -> Trial:
    return Trial(
        run_id=run_id,
        seq=seq,
        iteration=seq,
        kind="search",
        key=f"k{seq}",
        candidate_json="{}",
        n_items=1,
        correct=0,
        accuracy=0.0,
        compute=0.0,
        latency_s=0.0,
        tokens=0,
    )


def test_dropping_items_by_prefix_deletes_those_and_only_those(tmp_path: Path) -> None:
    """A resume asks one evaluation's items again (`t1:`): `t10:`'s and `t2:`'s stay answered, and
    those of `t1:` go with their node calls (left, they were stored twice)."""
    store = Store(tmp_path / "d.db")
    run = store.create_run("optimize")
    keys = ["t1:q0", "t1:q1", "t10:q0", "t2:q0"]
    store.add_all([_item(run.id, key) for key in keys])
    store.add_all([NodeCall(run_id=run.id, item_key=key, node_id="n", role="r") for key in keys])
    store.drop_items(run.id, "t1:")
    assert [item.item_key for item in store.run_items(run.id)] == ["t10:q0", "t2:q0"]
    assert [call.item_key for call in store.node_calls(run.id)] == ["t10:q0", "t2:q0"]


def test_dropping_trials_from_a_seq_keeps_the_ones_before_it(tmp_path: Path) -> None:
    """`drop_trials(run, 2)`: evaluations 2 on (and their items) are asked again, evaluation 1 is
    reused; keeping evaluation 2 reused a trial whose items were deleted."""
    store = Store(tmp_path / "t.db")
    run = store.create_run("optimize")
    store.add_all([_trial(run.id, seq) for seq in (1, 2, 3)])
    store.add_all([_item(run.id, f"t{seq}:q0") for seq in (1, 2, 3)])
    store.drop_trials(run.id, 2)
    assert [trial.seq for trial in store.trials(run.id)] == [1]
    assert [item.item_key for item in store.run_items(run.id)] == ["t1:q0"]


def test_runs_are_listed_newest_first(tmp_path: Path) -> None:
    """`runs list` shows the latest `limit` runs: oldest first, a busy database showed only its first 50."""
    store = Store(tmp_path / "l.db")
    ids = [store.create_run("run").id for _ in range(3)]
    assert [run.id for run in store.list_runs()] == ids[::-1]
    assert [run.id for run in store.list_runs(limit=1)] == [ids[-1]]


def test_false_and_zero_values_are_stored_as_given_not_as_defaults(tmp_path: Path) -> None:
    """A wrong answer's `correct=False` read back as None (unscored), and a free call's `usd=0.0` as
    an unknown price, if a falsy value were replaced by the column's default."""
    store = Store(tmp_path / "z.db")
    run = store.create_run("eval")
    store.insert([(RunItem, {"run_id": run.id, "item_key": "q0", "question": "q", "correct": False})])
    store.record_call(
        None, {"run_id": run.id, "route": "r", "prompt_tokens": 1, "completion_tokens": 1, "flops": 0.0, "usd": 0.0}
    )
    (item,) = store.run_items(run.id)
    assert item.correct is False
    assert store.spend(run.id)["usd"] == 0.0
    with store.session() as session:
        (row,) = session.exec(select(SpendEntry)).all()
    assert row.usd == 0.0


def test_a_database_lacking_a_table_added_since_gains_it(tmp_path: Path) -> None:
    """A database an earlier release wrote has some of agentscale's tables, not one added since: it
    must be created on open (left out, the first optimization on it failed with "no such table")."""
    path = tmp_path / "old.db"
    Store(path).close()
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE trial")
    store = Store(path)
    assert store.trials("any") == []
    run = store.create_run("optimize")
    store.add(_trial(run.id, 1))
    assert [trial.seq for trial in store.trials(run.id)] == [1]
