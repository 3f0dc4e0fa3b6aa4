"""The synchronous entry points run on agentscale's one event loop, from any thread."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest

from agentscale import Graph
from agentscale.runtime.sync import run_sync
from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml

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
