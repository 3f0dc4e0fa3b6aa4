"""Lazy, quiet access to litellm.

Importing litellm takes seconds and, unless told otherwise, fetches a price map from the network;
CLI commands such as `validate` must not pay for that, so every module goes through `get_litellm()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from functools import cache
from typing import Any


@cache
def get_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    litellm.telemetry = False
    return litellm


async def import_litellm() -> None:
    """Import litellm (`get_litellm`) without blocking the event loop, in a daemon thread of its own.

    Not `asyncio.to_thread`: `asyncio.run` joins its executor's threads on the way out, so a Ctrl-C
    in the seconds the import takes (the first seconds of every `eval`) waited for it to finish; a
    daemon thread is left behind instead."""
    if get_litellm.cache_info().currsize:  # imported already: every graph's first run asks again
        return
    loop = asyncio.get_running_loop()
    imported: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if imported.done():  # the run was cancelled meanwhile
            return
        if error is None:
            imported.set_result(None)
        else:
            imported.set_exception(error)

    def work() -> None:
        error: BaseException | None = None
        try:
            get_litellm()
        except BaseException as exc:  # handed to the awaiting task, not printed by the thread
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (the run was interrupted)
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=work, name="import-litellm", daemon=True).start()
    await imported
