"""Lazy, quiet access to litellm.

Importing litellm takes seconds and, unless told otherwise, fetches a price map from the network;
CLI commands such as `validate` must not pay for that, so every module goes through `get_litellm()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread  # noqa: F401 - see `_import_in_background`
import contextlib
import gc
import importlib
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

# litellm's lists of callbacks (and its own spend cap): while all are empty, nothing reads the
# logging payload litellm builds after every call
_LISTENER_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "service_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "_async_input_callback",
)
# callbacks a call may carry itself (an endpoint's extra parameters)
_REQUEST_LISTENERS = ("callbacks", "success_callback", "failure_callback")
# a call's own per-token price: given, litellm prices the reply by it instead of looking one up
_PRICE_ARGUMENTS = ("input_cost_per_token", "output_cost_per_token")
# what litellm imports inside a process's first call (0.32 of its 0.35 s of first-call imports here:
# the tokenizer's encoding, the proxy's file-id types): imported with litellm instead, the first
# call's recorded latency is the model's, not litellm's imports (every eval's first items were
# 0.3 s slower, and an optimization's first evaluations too)
_FIRST_CALL_IMPORTS = (
    "litellm.litellm_core_utils.default_encoding",
    "litellm.proxy.openai_files_endpoints.common_utils",
)
# litellm's acompletion builds the request's coroutine in a worker thread and then awaits it: a call
# cancelled during that hop (a timeout, Ctrl-C, a client gone) leaves the coroutine unawaited, and
# Python printed "RuntimeWarning: coroutine 'BaseLLMHTTPHandler.async_completion' was never awaited"
# on stderr for about one cancelled call in 30, which read as agentscale's bug (an audit of the API)
_DROPPED_HANDOFF = r"coroutine '(BaseLLMHTTPHandler|OpenAIChatCompletion)\.\w+' was never awaited"
# set by `freeze_imports`; an Event, since the import runs in a thread of its own
_FREEZE_AFTER_IMPORT = threading.Event()


@cache
def get_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    litellm.telemetry = False
    for name in _FIRST_CALL_IMPORTS:
        with contextlib.suppress(ImportError):  # another litellm may not have it: its first call pays
            importlib.import_module(name)
    warnings.filterwarnings("ignore", message=_DROPPED_HANDOFF, category=RuntimeWarning)
    if _FREEZE_AFTER_IMPORT.is_set():
        _freeze_alive_objects()
    return litellm


def freeze_imports() -> None:
    """For a process that runs agentscale alone (the CLI): once litellm is imported, leave the objects
    alive then (the imports', ≈490,000 on the development VM, two thirds of them litellm's) out of
    every later garbage collection.

    Why: they live as long as the process, yet every full collection walked them all, ≈240 ms of CPU
    here, and an eval's own garbage set one off every ≈1,000 one-call items: ≈0.4 ms of CPU per item,
    and a pause of the event loop while every call in flight waited (docs/benchmarks.md). The garbage
    of the imports is collected first, so none of it is kept. Not done for a library caller: an object
    of theirs alive at that moment within a reference cycle would never be freed."""
    _FREEZE_AFTER_IMPORT.set()
    if get_litellm.cache_info().currsize:
        _freeze_alive_objects()


def _freeze_alive_objects() -> None:
    gc.collect()
    gc.freeze()


def _nothing_listens(call_kwargs: Mapping[str, Any]) -> bool:
    """No litellm callback installed (nor litellm's own `max_budget`), none carried by the call."""
    litellm = get_litellm()
    if any(getattr(litellm, name, None) for name in _LISTENER_LISTS) or litellm.max_budget:
        return False
    return not any(call_kwargs.get(name) for name in _REQUEST_LISTENERS)


@contextlib.contextmanager
def skipping_unread_work(call_kwargs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The arguments to make a litellm call with, inside: litellm then skips the work after the call
    that nothing would read — its logging pipeline and its pricing of the reply.

    Why: after every call litellm builds a logging payload and queues success handlers for its
    callbacks, even when none is installed: 0.7-1.4 ms of CPU per call on the development VM
    (10-15% of a call; py-spy and interleaved A/Bs, docs/benchmarks.md). And it prices every reply
    for that payload and the reply's hidden `response_cost`; for a route its price map lacks (every
    local model), the lookup fails through its fallbacks, ≈19% of the driver's CPU in a local eval
    (py-spy --gil). agentscale records and prices every call itself (models/cost.py), so when no
    litellm callback is installed (nor litellm's own `max_budget`), and the call carries none of its
    own, that work is read by no one. litellm skips the logging for its own nested calls, whose parent
    call logs them (`is_internal_call`): agentscale sets the same flag; and a price given with the
    call (zero, unless the call names its own) makes the pricing a multiplication (litellm registers
    nothing from it: its price map is unchanged after). Otherwise, or with a litellm without the flag,
    calls log and price as before."""
    if not _nothing_listens(call_kwargs):
        yield dict(call_kwargs)
        return
    try:
        from litellm._internal_context import is_internal_call  # noqa: PLC2701  # no public switch exists
    except ImportError:  # a litellm that moved the flag: calls log as before
        yield dict(call_kwargs)
        return
    token = is_internal_call.set(True)
    try:
        yield {**{name: 0.0 for name in _PRICE_ARGUMENTS}, **call_kwargs}
    finally:
        is_internal_call.reset(token)


async def import_litellm() -> None:
    """Import litellm (`get_litellm`) without blocking the event loop, in a thread that every caller
    shares (`_import_in_background`).

    Not `asyncio.to_thread`: `asyncio.run` joins its executor's threads on the way out, so a Ctrl-C
    in the seconds the import takes (the first seconds of every `eval`) waited for the import before
    it said anything; the wait is at the process's exit instead."""
    if get_litellm.cache_info().currsize:  # imported already: every graph's first run asks again
        return
    # a cancelled run stops waiting; the shared import, running, cannot be cancelled and goes on
    await asyncio.wrap_future(_import_in_background())


_import_lock = threading.Lock()
_importing: concurrent.futures.Future[None] | None = None


def import_underway() -> concurrent.futures.Future[None] | None:
    """The background import of litellm while it runs (the process's exit waits for it), else None."""
    importing = _importing
    return importing if importing is not None and not importing.done() else None


def _import_in_background() -> concurrent.futures.Future[None]:
    """The one import of litellm in a thread of its own, started by the first caller.

    One: an optimization's first evaluations all start at once, and each started a thread of its
    own. Not a daemon thread: Python waits for it before it finalizes. With five daemon threads
    importing litellm's modules and a Ctrl-C in those seconds, the process hung at exit for good (1
    of 17 tries, in the contract audit): the finalizing main thread ran an HTTP handler's `__del__`,
    which imports, and waited for a module lock that a daemon thread held and, finalization begun,
    could never release. Python's exit waits for the thread before anything else, and litellm's
    import then completes, but for one thing imported here beforehand: `concurrent.futures.thread`,
    whose import registers an exit hook with `threading`, which is refused once the exit has begun
    (the import failed with "can't register atexit after shutdown"). A failed import is tried again
    by the next caller, as `get_litellm` itself would be."""
    global _importing
    with _import_lock:
        if _importing is None or (_importing.done() and _importing.exception() is not None):
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_running_or_notify_cancel()  # no waiter can cancel the import the others share

            def work() -> None:
                try:
                    get_litellm()
                except BaseException as exc:  # handed to the waiters, not printed by the thread
                    done.set_exception(exc)
                else:
                    done.set_result(None)

            _importing = done
            # daemon=False said: a thread inherits its creator's, and `Graph.run` runs its loop in a daemon
            threading.Thread(target=work, name="import-litellm", daemon=False).start()
        return _importing
