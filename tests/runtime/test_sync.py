"""The synchronous entry points run on agentscale's one event loop, from any thread."""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentscale import Graph
from agentscale.runtime.sync import run_sync
from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml

ONE_NODE = "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"
FAN_IN = "name: fan\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n" + (
    "  - {id: f, role: fuser, model: m}\nedges: ['a, b -> f']\nanswer_format: number\n"
)


def test_runs_from_several_threads_at_once_answer_and_print_nothing(scripted: ScriptedServer, capfd) -> None:  # type: ignore[no-untyped-def]
    """Each `Graph.run` was an `asyncio.run` of its own: from threads at once, litellm's logging worker
    (bound to one loop) printed "bound to a different event loop" errors and unretrieved task
    tracebacks on stderr for nearly every call."""
    scripted.latency_s = 0.02
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, FAN_IN), store=None)
    graph.run("What is 1 + 1?")  # litellm imported and warm: what follows is the calls alone
    capfd.readouterr()
    answers: list[str | None] = []

    def ask(thread: int) -> None:
        answers.extend(graph.run(f"What is {thread} + {i}?").answer for i in range(4))

    threads = [threading.Thread(target=ask, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 16 and all(answer is not None for answer in answers)
    assert capfd.readouterr().err == ""


def test_run_sync_returns_raises_and_carries_the_callers_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("the caller's")

    async def seen() -> str:
        await asyncio.sleep(0)
        return marker.get()

    async def fails() -> None:
        raise ValueError("from the coroutine")

    assert run_sync(seen()) == "the caller's"
    with pytest.raises(ValueError, match="from the coroutine"):
        run_sync(fails())


def test_run_sync_inside_its_own_loop_is_refused_not_a_deadlock() -> None:
    async def inner() -> int:
        return 1

    async def nested() -> int:
        return run_sync(inner())

    with pytest.raises(RuntimeError, match="own event loop: await the coroutine"):
        run_sync(nested())


def test_a_forked_child_runs_on_a_loop_of_its_own() -> None:
    """The child inherits the loop object but not the thread running it: it would wait forever."""

    async def one() -> int:
        return 1

    assert run_sync(one()) == 1
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own loop answered
        os._exit(0 if run_sync(one()) == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_runs_on_both_loops_in_one_program_exit_quietly(tmp_path: Path) -> None:
    """`Graph.run`, then `asyncio.run(graph.arun(...))`, then `Graph.run` again: litellm's logging
    worker moved between the loops and the one left on agentscale's loop was destroyed pending at
    exit ("Task was destroyed but it is pending!" on stderr)."""
    script = tmp_path / "mixed.py"
    script.write_text(
        "import asyncio, agentscale\n"
        "g = agentscale.Graph.from_yaml('name: s\\nnodes:\\n  - {id: a, role: assistant, model: sim/llama-1b}\\n',"
        " store=None)\n"
        "print(g.run('[sim:math#0001] q').answer is not None)\n"
        "print(asyncio.run(g.arun('[sim:math#0002] q')).answer is not None)\n"
        "print(g.run('[sim:math#0003] q').answer is not None)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["True"] * 3, "")


def test_a_callback_that_exits_reaches_its_caller_and_the_loop_goes_on() -> None:
    """`sys.exit` in an `on_event` callback ended the loop's thread: the caller, and every later run
    from any thread, waited forever."""
    graph = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=None)

    def leave(_event: object) -> None:
        sys.exit(3)

    with pytest.raises(SystemExit):
        graph.run("[sim:math#0001] q", on_event=leave)
    assert graph.run("[sim:math#0002] q").answer is not None


def test_a_run_in_an_exit_hook_after_the_loop_closed_does_not_hang(tmp_path: Path) -> None:
    """An exit hook registered before the first run runs after agentscale's own closed the loop: its
    run was queued on a loop nothing ran any more, and the process never exited."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, agentscale\n"
        "g = agentscale.Graph.from_yaml('name: s\\nnodes:\\n  - {id: a, role: assistant, model: sim/llama-1b}\\n',"
        " store=None)\n"
        "atexit.register(lambda: print('exit hook ran', g.run('[sim:math#0003] q').run_id))\n"
        "print(g.run('[sim:math#0002] q').answer is not None)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.split()[:4] == ["True", "exit", "hook", "ran"], done


def test_a_run_after_the_main_thread_returned_says_python_is_shutting_down(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    """A thread still asking after the main thread returned (Python waits for it, with its thread
    pools shut down, which litellm's calls need): each call was retried 4 times, 2-3 s per node, and
    failed as "connection failed". Now at once, saying why."""
    script = tmp_path / "late_thread.py"
    script.write_text(
        "import threading, time, agentscale\n"
        f"g = agentscale.Graph.from_yaml({graph_yaml(scripted.api_base, ONE_NODE)!r}, store=None)\n"
        "print('main', g.run('What is 1 + 1?').answer, flush=True)\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        "    started = time.monotonic()\n"
        "    result = g.run('What is 2 + 2?')\n"
        "    print('late', result.answer, time.monotonic() - started < 1.5, result.errors, flush=True)\n"
        "threading.Thread(target=late).start()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    lines = done.stdout.splitlines()
    assert lines[:1] == ["main 2"] and lines[1].startswith("late None True"), done
    assert "after 1 attempt(s): no request was sent: Python is shutting down" in lines[1]


def test_a_slow_callback_holds_up_its_own_run_only() -> None:
    """`on_event` ran on agentscale's loop, which serves every thread's runs: a callback that took
    a second per event held up a run of another thread for as long (the Python API review). Here the
    callback waits for the other thread's run to finish, which it could not while it held the loop."""
    graph = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=None)
    waiting, finished = threading.Event(), threading.Event()
    seen: list[tuple[str, bool]] = []

    def slow(_event: object) -> None:
        waiting.set()
        seen.append((threading.current_thread().name, finished.wait(timeout=10)))

    def unrelated() -> None:
        waiting.wait(timeout=10)
        graph.run("[sim:math#0003] q")
        finished.set()

    beside = threading.Thread(target=unrelated)
    beside.start()
    result = graph.run("[sim:math#0002] q", on_event=slow)
    beside.join()
    assert result.answer is not None
    assert seen == [(threading.current_thread().name, True)] * 2  # in the caller's thread; the other run went on


def test_an_async_callback_is_refused_not_dropped() -> None:
    """An `async def` on_event was never awaited: its events were lost behind a RuntimeWarning."""
    graph = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=None)

    async def forward(_event: object) -> None:
        pass

    with pytest.raises(TypeError, match="astream"):
        graph.run("[sim:math#0001] q", on_event=forward)
    with pytest.raises(TypeError, match="astream"):
        asyncio.run(graph.arun("[sim:math#0001] q", on_event=forward))
    from agentscale.runtime.execute import RunOptions

    with pytest.raises(TypeError, match="astream"):  # what a caller of compile() puts in its config
        RunOptions(on_event=forward)  # type: ignore[arg-type]


def test_callbacks_that_cannot_be_called_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """on_event="x" (and an eval's on_item, an optimization's on_progress) failed at its first call:
    a failed run stored each time, and the calls before it paid for (an API fuzzer's)."""
    from agentscale import EvalConfig, Evaluation, Store

    store = Store(tmp_path / "cb.db")
    graph = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=store)
    with pytest.raises(TypeError, match="on_event takes a function, not str"):
        graph.run("[sim:math#0001] q", on_event="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_event takes a function, not int"):
        asyncio.run(graph.arun("[sim:math#0001] q", on_event=3))  # type: ignore[arg-type]
    assert store.list_runs() == []
    evaluation = Evaluation(graph, EvalConfig(task="sim:math", n=2))
    with pytest.raises(TypeError, match="on_item takes a function, not str"):
        asyncio.run(evaluation.run(on_item="x"))  # type: ignore[arg-type]

    async def on_item(_item: object) -> None:
        pass

    with pytest.raises(TypeError, match=r"on_item takes a plain function \(it is called, not awaited\)$"):
        asyncio.run(evaluation.run(on_item=on_item))  # type: ignore[arg-type]
    assert store.spend(evaluation.run_id)["calls"] == 0 and store.get_run(evaluation.run_id).status != "failed"


def test_ctrl_c_in_a_callback_stops_the_run_at_once(scripted: ScriptedServer, tmp_path: Path) -> None:
    """Ctrl-C while `run` delivers an event in the calling thread: the run stops then, stored as
    interrupted, not after the next node's call (30 s here) — as Ctrl-C while waiting does."""
    import time

    from agentscale import Store
    from agentscale.testing import Rule

    scripted.add_rule(Rule(pattern="strict reviewer", replies=["Final answer: 2"], latency_s=30))  # b's prompt
    chain = "name: c\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: m}\nedges: ['a -> b']\n"
    store = Store(tmp_path / "c.db")
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, chain), store=store)

    def interrupt(event: object) -> None:
        if getattr(event, "node_id", "") == "b":  # b started: its event is the last for 30 s
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        graph.run("What is 1 + 1?", on_event=interrupt)
    assert time.monotonic() - started < 15
    (run,) = store.list_runs()
    assert run.status == "interrupted"


def test_a_callback_failing_on_the_last_event_fails_its_run(tmp_path: Path) -> None:
    """The callback's error reaches the run at its next event; on the last one the run had ended and
    was stored done while `run` raised (the second diff review)."""
    from agentscale import Store

    store = Store(tmp_path / "l.db")
    graph = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=store)

    def boom(event: object) -> None:
        if getattr(event, "kind", "") == "node_finished":
            raise ValueError("boom on the last event")

    with pytest.raises(ValueError, match="boom on the last event"):
        graph.run("[sim:math#0001] q", on_event=boom)
    (run,) = store.list_runs()
    assert (run.status, run.error) == ("failed", "boom on the last event")


def test_a_run_cancelled_by_the_loops_closing_at_exit_says_why() -> None:
    """A run still going in a daemon thread when Python exits is cancelled by agentscale's exit hook:
    its thread printed a bare `CancelledError` traceback that named no cause."""
    from agentscale.runtime import sync

    async def slow() -> None:
        await asyncio.sleep(30)

    raised: list[BaseException] = []

    def waits() -> None:
        try:
            run_sync(slow())
        except BaseException as exc:  # the test reads what the thread got
            raised.append(exc)

    thread = threading.Thread(target=waits, daemon=True)
    thread.start()
    runner = sync._loop_thread()
    while not any(not task.done() for task in asyncio.all_tasks(runner.loop)):
        threading.Event().wait(0.01)
    sync._close(runner)  # what the exit hook does
    thread.join(timeout=10)
    assert len(raised) == 1 and isinstance(raised[0], asyncio.CancelledError)
    assert "the run was stopped because Python is exiting" in str(raised[0])
    assert run_sync(asyncio.sleep(0, result=1)) == 1  # later runs get a loop of their own
