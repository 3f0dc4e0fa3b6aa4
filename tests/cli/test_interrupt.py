"""Ctrl-C during `agentscale run`: exit 130 with a word on stderr, and for a file of questions, the run
that keeps the answers so far (typer turned it into a silent exit 130). A reader that leaves stderr
early does not stop or orphan a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml, with_default_sigint


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A server of these tests' own: the requests they leave hanging must not count as in flight in
    other tests' server (the shared one measures its peak concurrency)."""
    with ScriptedServer() as server:
        yield server


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    command = [sys.executable, "-m", "agentscale.cli.app", "run", str(tmp_path / "g.yaml"), *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=with_default_sigint
    )


def _wait_for(condition: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ctrl_c_during_one_question_says_interrupted(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.latency_s = 30.0
    (tmp_path / "g.yaml").write_text(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    )
    process = _start(tmp_path, "-q", "What is 2 + 2?")
    _wait_for(lambda: scripted.completion_requests)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_ctrl_c_during_a_file_of_questions_names_the_run_that_keeps_the_answers(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    scripted.add_rule(Rule(pattern="slow", latency_s=30.0))
    (tmp_path / "g.yaml").write_text(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    )
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "fast", "question": "What is 1 + 1?"}\n{"id": "slow", "question": "slow one"}\n')
    process = _start(tmp_path, "--input", str(questions), "--json")
    assert process.stdout is not None
    line = process.stdout.readline()  # answered in input order: the fast one is out
    assert line, process.stderr.read() if process.stderr else ""
    first = json.loads(line)
    assert first["id"] == "fast"
    _wait_for(lambda: len(scripted.completion_requests) == 2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    stopped = json.loads(stdout)
    assert stopped == {"run_id": first["run_id"], "status": "interrupted", "answered": 1, "n": 2}
    assert f"interrupted; run {first['run_id']} keeps the 1 of 2 questions answered" in stderr
    assert "the same command again answers the rest, those answered from the response cache" in " ".join(stderr.split())
    # the command that shows them (AGENTSCALE_DB names the database, so it needs no --db); a command
    # naming another run view went unnoticed (a mutation audit of cli/, R5)
    assert f"see them with: agentscale runs show {first['run_id']}" in stderr.splitlines()
    assert "Traceback" not in stderr


def _eval_command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n")
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    return [sys.executable, "-m", "agentscale.cli.app", "eval", str(graph), "--task", "sim:math", "--n", "5"], env


def test_an_eval_whose_stderr_reader_leaves_finishes_its_run(tmp_path: Path) -> None:
    """`agentscale eval ... 2>&1 >/dev/null | head -1` exited 1 on the next progress line and left the
    run `running` for good, with no report."""
    command, env = _eval_command(tmp_path)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    assert process.stderr.readline().startswith("eval run ")
    process.stderr.close()  # as `head -1` does
    assert process.wait(timeout=120) == 0
    _assert_done_with_report(tmp_path, env)


def test_an_eval_started_with_stderr_closed_finishes_its_run(tmp_path: Path) -> None:
    """`2>&-` (some job runners): Python's sys.stderr is then None, which the console must take as closed."""
    command, env = _eval_command(tmp_path)
    done = subprocess.run(command, stdout=subprocess.DEVNULL, env=env, preexec_fn=lambda: os.close(2), timeout=120)
    assert done.returncode == 0
    _assert_done_with_report(tmp_path, env)


def _assert_done_with_report(tmp_path: Path, env: dict[str, str]) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "agentscale.cli.app", "runs", "list", "--json"], capture_output=True, text=True, env=env
    )
    (run,) = json.loads(listed.stdout)
    assert run["status"] == "done"
    assert (tmp_path / "runs" / run["run_id"] / "report.html").exists()


def test_a_sigterm_after_the_command_is_done_is_no_traceback(tmp_path: Path) -> None:
    """main() left its SIGTERM-to-KeyboardInterrupt handler installed: a SIGTERM landing after the
    work (while the output was flushed, or at exit) printed a KeyboardInterrupt traceback."""
    late = (
        "import os, signal, time\n"
        "from agentscale.cli.app import main\n"
        "main(['runs', 'list', '--json'])\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
    )
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    done = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == -signal.SIGTERM and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("moment", ["first trial", "search", "test split"])
def test_sigterm_during_an_optimization_marks_it_interrupted_without_a_traceback(
    tmp_path: Path, scripted: ScriptedServer, moment: str
) -> None:
    """SIGTERM raised KeyboardInterrupt in whatever frame was running (a task, a generator, the
    database pool): the run was left `failed` (GeneratorExit) or `running` while the command said
    "interrupted", with "Task was destroyed" and "never retrieved" tracebacks. It is Ctrl-C now."""
    from agentscale.optimize.runner import load_task_split
    from agentscale.optimize.space import load_space
    from agentscale.storage.db import Store
    from tests.optimize.test_runner import space_text

    scripted.latency_s = 0.02
    (tmp_path / "space.yaml").write_text(space_text(tmp_path, scripted.api_base))
    test_questions = [item.question for item in load_task_split(load_space(tmp_path / "space.yaml"))[2]]
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    best = tmp_path / "best.yaml"
    command = [
        *(sys.executable, "-m", "agentscale.cli.app", "optimize", str(tmp_path / "space.yaml"), "--json"),
        *("--out", str(best)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    store = Store(tmp_path / "runs.db")

    def reached() -> bool:
        if moment == "test split":
            return any(q in json.dumps(r) for r in scripted.completion_requests for q in test_questions)
        runs = store.list_runs()
        return bool(runs) and len(store.trials(runs[0].id)) >= (1 if moment == "first trial" else 6)

    _wait_for(reached, 60)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    sys.stderr.write(stderr)  # whole under "Captured stderr" if an assertion fails (the diff is cut short)
    run = store.list_runs()[0]
    assert process.returncode == 130, stderr
    assert json.loads(stdout)["status"] == "interrupted" and run.status == "interrupted", (run.status, run.error)
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr and "never retrieved" not in stderr
    assert json.loads(stdout)["resume"].endswith(f"--resume {run.id} --out {best}")  # --out is not stored
    report = json.loads(stdout)["report"]  # what a user opens first after a stop (`interrupted()`)
    assert report is not None and Path(report).exists()


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_cancels_the_main_task_as_ctrl_c_does_not_the_frame_it_lands_in(sigint: str) -> None:
    """The deterministic form of the test above: SIGTERM lands while another task runs. As Ctrl-C
    does, it cancels asyncio.run's main task (whose cleanup runs) and leaves that task alone; it
    used to raise KeyboardInterrupt in that task's frame ("Task exception was never retrieved").
    Where SIGINT is ignored (a script's background job, which the README says to stop with `kill`)
    asyncio.run has no handler to call: the loop stops between callbacks and cancels every task."""
    script = (
        "import asyncio, gc, os, signal\n"
        + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if sigint == "ignored" else "")
        + "from agentscale.cli.app import _interrupt_on_terminate\n"
        "_interrupt_on_terminate()\n"
        "async def killer():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    await asyncio.sleep(0)\n"
        "    print('killer finished')\n"
        "async def main():\n"
        "    asyncio.get_running_loop().create_task(killer())\n"
        "    try:\n"
        "        await asyncio.sleep(10)\n"
        "    except asyncio.CancelledError:\n"
        "        print('main cancelled')\n"
        "        raise\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except KeyboardInterrupt:\n"
        "    gc.collect()\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert {"main cancelled", "interrupted"} <= set(lines) <= {"interrupted", "killer finished", "main cancelled"}
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr, done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_once_the_eval_is_stored_done_still_shows_its_summary(tmp_path: Path, sig: int) -> None:
    """A Ctrl-C or SIGTERM in an eval's last moments (stored done) made it exit 130 saying
    "interrupted": the --json summary (a script never learned the run), the report were lost."""
    command, env = _eval_command(tmp_path)
    command[command.index("5")] = "60"
    stdout = _signal_once_stored_done(tmp_path, [*command, "--json"], env, sig)
    summary = json.loads(stdout)
    assert summary["n"] == 60 and Path(summary["report"]).exists()


def test_a_signal_once_the_optimization_is_stored_done_still_writes_its_graph(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    """As for the eval; the --out file was lost too."""
    from tests.optimize.test_runner import space_text

    (tmp_path / "space.yaml").write_text(space_text(tmp_path, scripted.api_base))
    best = tmp_path / "best.yaml"
    command = [sys.executable, "-m", "agentscale.cli.app", "optimize", str(tmp_path / "space.yaml"), "--json"]
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    found = json.loads(_signal_once_stored_done(tmp_path, [*command, "--out", str(best)], env, signal.SIGTERM))
    assert best.exists() and found["best"]["path"] == str(best) and Path(found["report"]).exists()


def _signal_once_stored_done(tmp_path: Path, command: list[str], env: dict[str, str], sig: int) -> str:
    """Run `command`, send `sig` as soon as its run is stored done; its stdout, once it exited without
    a traceback or a word of an interruption."""
    from agentscale.storage.db import Store

    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=with_default_sigint
    )
    _wait_for(lambda: (tmp_path / "runs.db").exists(), 60)
    store = Store(tmp_path / "runs.db")
    deadline = time.monotonic() + 120
    while not any(run.status == "done" for run in store.list_runs()) and process.poll() is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    # 0; or killed by it as it exits, its outputs all written (main has put the default handlers back)
    assert process.returncode in (0, -sig), (process.returncode, stderr)
    assert "Traceback" not in stderr and "interrupted" not in stderr, stderr
    return stdout
