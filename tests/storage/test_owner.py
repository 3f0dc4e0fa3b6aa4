"""A run's owner: a run left `running` by a dead process says so and resumes; a run a live process
runs is refused to a second one (two resumes at once paid for every call twice)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from socket import gethostname

import pytest

from agentscale.cli.app import main
from agentscale.errors import RunBusy
from agentscale.storage.db import Store
from agentscale.storage.owner import claim_in_this_process, current_owner, owner_alive


def _python(code: str, db: Path) -> subprocess.Popen[str]:
    prelude = f"from agentscale.storage.db import Store\nstore = Store({str(db)!r})\n"
    return subprocess.Popen([sys.executable, "-c", prelude + code], stdout=subprocess.PIPE, text=True)


def _run_of_a_killed_process(db: Path) -> str:
    child = _python("import os, signal\nprint(store.create_run('eval').id, flush=True)\nos.kill(os.getpid(), 9)", db)
    run_id = child.communicate(timeout=60)[0].strip()
    assert child.returncode == -signal.SIGKILL
    return run_id


def test_a_run_is_owned_by_the_process_that_made_it(tmp_path: Path) -> None:
    run = Store(tmp_path / "s.db").create_run("eval")
    assert run.owner == current_owner() and owner_alive(run.owner) is True and not run.process_gone()
    assert owner_alive(current_owner().rsplit("/", 1)[0] + "/0") is False  # this pid, another process's start
    assert owner_alive(None) is None  # a run of an older release: not known either way


def test_a_run_left_running_by_a_killed_process_says_so_and_resumes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "s.db"
    run_id = _run_of_a_killed_process(db)
    store = Store(db)
    assert store.get_run(run_id).status == "running" and store.get_run(run_id).process_gone()
    assert main(["runs", "list", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["process_gone"] is True
    assert main(["runs", "show", run_id, "--db", str(db)]) == 0
    shown = capsys.readouterr()
    assert "running (process gone)" in shown.out and f"agentscale eval --resume {run_id}" in shown.err
    store.reopen_run(run_id)
    assert store.get_run(run_id).owner == current_owner() and not store.get_run(run_id).process_gone()


def test_a_run_a_live_process_runs_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    child = _python("import time\nprint(store.create_run('eval').id, flush=True)\ntime.sleep(60)", db)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        with pytest.raises(RunBusy, match=f"run {run_id} is being run by process {child.pid} on host {gethostname()}"):
            Store(db).reopen_run(run_id)
        with pytest.raises(RunBusy):  # what a resume checks before it says anything
            Store(db).refuse_if_busy(run_id)
    finally:
        child.kill()
        child.wait()
    Store(db).reopen_run(run_id)  # its process is gone: the run is ours now


def test_a_run_made_but_not_started_is_anyones_to_start(tmp_path: Path) -> None:
    """An `Evaluation` made in a notebook that stays open, resumed from a terminal, was refused as
    "being run": a run is owned once it starts (`claim=False` until then)."""
    db = tmp_path / "s.db"
    child = _python("import time\nprint(store.create_run('eval', claim=False).id, flush=True)\ntime.sleep(60)", db)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        Store(db).reopen_run(run_id)
        assert Store(db).get_run(run_id).owner == current_owner()
    finally:
        child.kill()
        child.wait()


def test_of_two_resumes_started_together_one_gets_the_run(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    run_id = _run_of_a_killed_process(db)
    claim = (
        "import sys, time\nfrom agentscale.errors import RunBusy\n"
        f"try:\n    store.reopen_run({run_id!r})\nexcept RunBusy:\n    print('busy', flush=True)\n    sys.exit()\n"
        "print('claimed', flush=True)\ntime.sleep(5)\n"
    )
    children = [_python(claim, db) for _ in range(2)]
    said = sorted(child.communicate(timeout=60)[0].strip() for child in children)
    assert said == ["busy", "claimed"]


def test_an_owner_of_another_boot_or_host_or_a_zombie(tmp_path: Path) -> None:
    """After a reboot a run left running is gone (resumable); another host's is not known either way
    (its process ids mean nothing here); a zombie, exited but not yet reaped by its parent, has ended."""
    host, _, pid, start = current_owner().split("/")
    assert owner_alive(f"{host}/another-boot/{pid}/{start}") is False
    assert owner_alive(f"not-{host}/another-boot/{pid}/{start}") is None
    assert owner_alive(f"{host}/{current_owner().split('/')[1]}/{pid}/") is True  # no start time stored: the pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        for _ in range(600):  # exited, not reaped: state Z
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        start_of_child = stat.read_text().rsplit(")", 1)[1].split()[19]
        boot = current_owner().split("/")[1]
        assert owner_alive(f"{host}/{boot}/{child.pid}/{start_of_child}") is False
    finally:
        child.wait()


def test_a_resume_loses_the_run_another_process_claimed_after_it_looked(tmp_path: Path) -> None:
    """The claim is one conditional UPDATE (`owner IS <seen> AND status = <seen>`): a resume that saw
    the run free, then waited for the write lock while another process claimed it, must be refused.
    An unconditional UPDATE took the run over: both resumes ran, and paid for every call twice."""
    path = tmp_path / "race.db"
    store = Store(path)
    run = store.create_run("eval", claim=False)  # `created`: free for whoever starts it
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host, boot, _, _ = current_owner().split("/")
        start = Path(f"/proc/{other.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the other process holds the write lock
        outcome: list[BaseException | None] = []

        def resume() -> None:
            try:
                store.reopen_run(run.id)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        resuming = threading.Thread(target=resume)
        resuming.start()
        time.sleep(0.5)  # it has read the run (free) and waits for the write lock
        holder.execute(
            "UPDATE run SET status = 'running', owner = ? WHERE id = ?", (f"{host}/{boot}/{other.pid}/{start}", run.id)
        )
        holder.execute("COMMIT")
        holder.close()
        resuming.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], RunBusy)
        assert store.get_run(run.id).owner.split("/")[2] == str(other.pid)
    finally:
        other.kill()
        other.wait()


def test_a_run_held_in_this_process_is_refused_a_second_time_until_let_go(tmp_path: Path) -> None:
    """`asyncio.gather(e.run(), e.run())` ran every item twice and paid for every call twice: the
    owner check looks at other processes only, so this process keeps its own list."""
    database = tmp_path / "a.db"
    with claim_in_this_process(database, "r1"):
        same_file_named_otherwise = tmp_path / "." / "a.db"
        with (
            pytest.raises(RunBusy, match="running in this process already"),
            claim_in_this_process(same_file_named_otherwise, "r1"),
        ):
            pass
        with claim_in_this_process(database, "r2"):  # another run of the file is free
            pass
    with claim_in_this_process(database, "r1"):  # let go: runnable again
        pass
