"""litellm's import in the background (one thread for all callers; a Ctrl-C during it does not wait
for it, the exit does), and its logging pipeline and pricing skipped while nothing reads them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agentscale.models.litellm_loader import _LISTENER_LISTS, get_litellm, skipping_unread_work
from agentscale.testing import Rule

SCRIPT = """
import asyncio
from agentscale.models.litellm_loader import get_litellm, import_litellm

async def main():
    asyncio.get_running_loop().create_task(import_litellm())
    await asyncio.sleep(0.05)
    raise KeyboardInterrupt  # what Ctrl-C raises in asyncio.run, seconds before the import ends

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
print("imported" if get_litellm.cache_info().currsize else "left behind")
"""


def test_an_interrupt_during_the_import_does_not_wait_for_it() -> None:
    """With `asyncio.to_thread`, `asyncio.run` joined the importing thread on the way out, so every
    Ctrl-C in an eval's first seconds waited 2-5 s for litellm's import; the daemon thread is left."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "left behind"
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr


def test_callers_at_once_share_one_import_and_the_exit_waits_for_it() -> None:
    """An optimization's first evaluations each started an import thread (5 at once); with a Ctrl-C
    during them, the process hung at exit for good in 1 of 17 tries (a `__del__` of litellm's that
    imports, run by the finalizing main thread, waited for a module lock a daemon import thread held
    and could never release). Now one thread imports, and the exit waits for it before finalizing."""
    script = (
        "import asyncio, atexit, threading\n"
        "from agentscale.models.litellm_loader import get_litellm, import_litellm\n"
        "atexit.register(lambda: print('imported at exit', get_litellm.cache_info().currsize == 1))\n"
        "async def main():\n"
        "    waiting = [asyncio.create_task(import_litellm()) for _ in range(5)]\n"
        "    await asyncio.sleep(0.05)\n"
        "    print('threads', sum(t.name == 'import-litellm' for t in threading.enumerate()))\n"
        "    raise KeyboardInterrupt\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', get_litellm.cache_info().currsize == 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["threads 1", "interrupted False", "imported at exit True"], done.stdout
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr


def test_the_import_thread_is_no_daemon_when_a_daemon_thread_starts_it() -> None:
    """A thread inherits its creator's daemon flag, and `Graph.run` runs its event loop in a daemon
    thread: the import thread it started was a daemon, which the exit does not wait for (the hang
    above)."""
    script = (
        "import asyncio, contextlib, threading\n"
        "from agentscale.models.litellm_loader import import_litellm\n"
        "async def briefly():\n"
        "    with contextlib.suppress(asyncio.TimeoutError):\n"
        "        await asyncio.wait_for(import_litellm(), 0.01)  # the import goes on\n"
        "starter = threading.Thread(target=lambda: asyncio.run(briefly()), daemon=True)\n"
        "starter.start(); starter.join()\n"
        "print([t.daemon for t in threading.enumerate() if t.name == 'import-litellm'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[False]", (done.stdout, done.stderr)


def test_the_import_completes_when_awaited() -> None:
    script = (
        "import asyncio\nfrom agentscale.models.litellm_loader import get_litellm, import_litellm\n"
        "asyncio.run(import_litellm())\nprint(get_litellm().drop_params)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


@pytest.fixture
def unobserved_litellm() -> Iterator[Any]:
    """litellm with no callback and no spend cap, as a user who installed none has it; the lists are
    process-wide (a replica set's Router adds its own), so they are emptied here and put back after."""
    litellm = get_litellm()
    names = (*_LISTENER_LISTS, "max_budget")
    saved = {name: getattr(litellm, name) for name in names}
    for name in _LISTENER_LISTS:
        setattr(litellm, name, [])
    litellm.max_budget = 0.0
    yield litellm
    for name, value in saved.items():
        setattr(litellm, name, value)


def _internal_flag() -> bool:
    from litellm._internal_context import is_internal_call

    return is_internal_call.get()


def test_calls_skip_litellms_logging_only_while_nothing_would_read_it(unobserved_litellm: Any) -> None:
    """The flag litellm reads to skip its logging pipeline is set inside, reset after, and never set
    while a callback is installed (a litellm that renamed the flag fails here, not silently); the
    call's price is given (zero) only then too."""
    from litellm.integrations.custom_logger import CustomLogger

    litellm = unobserved_litellm
    call = {"model": "hosted_vllm/m", "temperature": 0.7}
    assert not _internal_flag()
    with skipping_unread_work(call) as arguments:
        assert _internal_flag()
        assert arguments == {**call, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
    assert not _internal_flag()
    for name, value in (("callbacks", [CustomLogger()]), ("success_callback", ["langfuse"]), ("max_budget", 1.0)):
        saved = getattr(litellm, name)
        setattr(litellm, name, value)
        with skipping_unread_work(call) as arguments:
            assert not _internal_flag() and arguments == call, name
        setattr(litellm, name, saved)
    for name in ("callbacks", "success_callback", "failure_callback"):  # a call's own callbacks
        with skipping_unread_work({**call, name: ["langfuse"]}) as arguments:
            assert not _internal_flag() and "input_cost_per_token" not in arguments, name
    with skipping_unread_work({**call, "callbacks": None, "input_cost_per_token": 2e-6}) as arguments:
        assert _internal_flag() and arguments["input_cost_per_token"] == 2e-6  # a call's own price stays


async def test_a_graph_call_dispatches_no_success_logging_while_nothing_listens(
    make_graph, scripted: Any, unobserved_litellm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The gateway's calls skip litellm's success logging; the same call made directly to litellm,
    the control, dispatches it (so this fails if the gateway stops skipping, or litellm stops
    reading the flag)."""
    import litellm.utils

    dispatched: list[object] = []
    dispatch = litellm.utils._schedule_async_success_logging
    monkeypatch.setattr(
        litellm.utils, "_schedule_async_success_logging", lambda *a, **k: (dispatched.append(1), dispatch(*a, **k))
    )
    graph = make_graph("name: quiet\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    result = await graph.arun("What is 2 + 2?")
    assert result.usage.calls == 1 and dispatched == []
    messages = [{"role": "user", "content": "What is 3 + 3?"}]
    await unobserved_litellm.acompletion(model="hosted_vllm/scripted", api_base=scripted.api_base, messages=messages)
    assert dispatched == [1]


async def test_a_graph_call_makes_litellm_look_up_no_price_while_nothing_listens(
    make_graph, scripted: Any, unobserved_litellm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The gateway's call gives litellm a price, so litellm does not look the route up in its price
    map (a lookup that fails through its fallbacks for every local model); the same call made directly
    to litellm, the control, looks it up. Nothing is registered in litellm's price map, which
    agentscale's own pricing reads (an unknown price must stay unknown)."""
    import litellm.cost_calculator

    priced_by_lookup: list[object] = []
    calculate = litellm.response_cost_calculator

    def spy(**kwargs: Any) -> Any:
        if not kwargs.get("custom_pricing"):
            priced_by_lookup.append(kwargs.get("model"))
        return calculate(**kwargs)

    monkeypatch.setattr(litellm, "response_cost_calculator", spy)
    graph = make_graph("name: unpriced\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    priced_before = dict(litellm.model_cost)  # other tests may have priced routes: only this call matters
    result = await graph.arun("What is 2 + 2?")
    assert litellm.model_cost == priced_before
    assert result.usage.calls == 1 and priced_by_lookup == []
    assert result.usage.usd is None  # agentscale's own pricing: the route's price is unknown
    messages = [{"role": "user", "content": "What is 3 + 3?"}]
    await unobserved_litellm.acompletion(model="hosted_vllm/scripted", api_base=scripted.api_base, messages=messages)
    assert priced_by_lookup == ["hosted_vllm/scripted"]


async def test_a_users_litellm_callback_still_sees_every_graph_call(make_graph, unobserved_litellm: Any) -> None:  # type: ignore[no-untyped-def]
    """A user who installed a litellm callback (Langfuse, a CustomLogger, ...) gets agentscale's calls."""
    from litellm.integrations.custom_logger import CustomLogger

    seen: list[str] = []
    question = "What is 20 + 22?"  # events of other tests' calls may still be on litellm's logging queue

    class Recorder(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            if question in str(kwargs.get("messages")):
                seen.append(kwargs.get("model", ""))

    unobserved_litellm.callbacks = [Recorder()]
    nodes = "  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n  - {id: v, role: vote}\n"
    graph = make_graph(f"name: listened\nnodes:\n{nodes}edges: ['a, b -> v']\n")
    result = await graph.arun(question)
    assert result.usage.calls == 2
    for _ in range(100):  # litellm's logging worker delivers events in the background
        if len(seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert seen == ["scripted", "scripted"]


FIRST_CALL = """
import asyncio, sys
from agentscale.models.litellm_loader import _FIRST_CALL_IMPORTS, get_litellm

litellm = get_litellm()
before = set(sys.modules)
asyncio.run(litellm.acompletion(
    model="hosted_vllm/scripted", api_base=sys.argv[1], messages=[{"role": "user", "content": "What is 1 + 1?"}]
))
print(sorted(name for name in set(sys.modules) - before if name.startswith(_FIRST_CALL_IMPORTS)))
print(all(name in before for name in _FIRST_CALL_IMPORTS))
"""


def test_a_process_first_call_imports_nothing_heavy_inside_its_timing(scripted: Any) -> None:
    """litellm imported its tokenizer's encoding and its proxy's file-id types inside a process's
    first call: 0.3 s recorded as that call's latency (every eval's first items, an optimization's
    first evaluations). They are imported with litellm now (the first call's recorded latency: 360-375
    ms -> 74-83 ms, `benchmarks/overhead.py --first-call`)."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, scripted.api_base], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


CANCELLED_CALLS = """
import asyncio, gc, random, sys, warnings
from agentscale import Gateway, GatewaySettings, Graph, Store

caught = []
warnings.showwarning = lambda message, category, *rest, **kw: caught.append(str(message))
body = "name: one\\nnodes:\\n  - {id: a, role: assistant, model: m}\\n"
models = 'models:\\n  m: {model: hosted_vllm/scripted, api_base: "%s"}\\n' % sys.argv[1]
graph = Graph.from_yaml(models + body, gateway=Gateway(Store(sys.argv[2]), GatewaySettings(max_retries=0)))
random.seed(0)

async def main():
    await graph.arun("What is 0 + 0?")
    for i in range(200):  # each cancelled a few ms in, some inside litellm's hop to its thread
        task = asyncio.create_task(graph.arun(f"What is {i} + 5000?"))
        await asyncio.sleep(random.random() * 0.004)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    gc.collect()

asyncio.run(main())
gc.collect()
print(sum("was never awaited" in message for message in caught))
"""


def test_cancelled_calls_print_no_unawaited_coroutine_warning(scripted: Any, tmp_path: Any) -> None:
    """A call cancelled while litellm hands it to its thread leaves litellm's request coroutine
    unawaited: "RuntimeWarning: coroutine 'BaseLLMHTTPHandler.async_completion' was never awaited" on
    stderr for about one cancelled call in 30 (10 of these 200), read as agentscale's bug."""
    scripted.add_rule(Rule(replies=["Final answer: 1"], latency_s=0.05))
    done = subprocess.run(
        [sys.executable, "-c", CANCELLED_CALLS, scripted.api_base, str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr


def test_the_command_freezes_the_objects_alive_after_the_import_a_library_caller_does_not() -> None:
    """≈490,000 objects live as long as the process once litellm is imported; every full collection
    walked them (≈240 ms of CPU, every ≈1,000 eval items). The command freezes them, so a collection
    skips them; a library caller's process is left as it is (its own objects would be pinned too)."""
    script = (
        "import gc\nfrom agentscale.models.litellm_loader import freeze_imports, get_litellm\n"
        "litellm = get_litellm()\nassert gc.get_freeze_count() == 0, 'a library caller froze'\n"
        "freeze_imports()\nassert gc.get_freeze_count() > 100_000, gc.get_freeze_count()\n"
        "assert not any(o is litellm.model_cost for o in gc.get_objects())\nprint('frozen')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "frozen", done.stderr[-2000:]
