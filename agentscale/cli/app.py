"""The `agentscale` command's entry point: SIGTERM handled as Ctrl-C, then the commands (`commands.py`).

Light to import: the console script imports this module before `main` runs, and the commands' imports
(≈ 0.5 s) happen inside `main`, where a Ctrl-C is an interruption (exit 130), not a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 user error, 2 usage error, 130 interrupted: Ctrl-C, SIGTERM)."""
    code = _run_command(argv)
    if argv is None and threading.current_thread() is threading.main_thread():
        from agentscale.models.litellm_loader import import_underway

        importing = import_underway()
        if importing is not None:
            wait_for_the_import(importing)
    return code


def wait_for_the_import(importing: Future[None]) -> None:
    """Wait for litellm's import (a Ctrl-C in a command's first seconds leaves it running) where a
    Ctrl-C is said, not printed as a traceback, and later ones are ignored: it ends in seconds.

    Python's exit waits for that thread (not a daemon: `litellm_loader`), and a second Ctrl-C during
    that wait printed "Exception ignored in: <module 'threading'> ... KeyboardInterrupt" after the
    run was stored and its resume command printed (a new user's walk, 3 tries of 3). Leaving at once
    instead (`os._exit`) would skip the exit handlers that stop the local servers a run started."""
    try:
        importing.exception()  # waits; an import that failed was said by whoever waited for it
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("exiting once litellm's import ends (a few seconds)", file=sys.stderr, flush=True)
        importing.exception()


def _run_command(argv: list[str] | None) -> int:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            _interrupt_on_terminate()  # first: the commands' import takes ≈ 0.4 s, and a `kill` then ended it silently
            if argv is None:  # the console script: the process is the command's alone (a caller passes its argv)
                from agentscale.models.litellm_loader import freeze_imports

                freeze_imports()
            from agentscale.cli.commands import run_app

            _watch_local_servers()
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        return run_app(argv)
    finally:  # a SIGTERM once the command is done ends the process as SIGTERM does, not in a traceback
        if threading.current_thread() is threading.main_thread():
            for sig, handler in before.items():  # the command's own (a done run's finishing) end with it
                if handler is not None:
                    signal.signal(sig, handler)


def _watch_local_servers() -> None:
    """Show local-server starts (they take tens of seconds) and stop them on SIGHUP."""
    from rich.markup import escape

    from agentscale.cli._console import err
    from agentscale.models import local
    from agentscale.models.serving import install_signal_handlers

    local.on_status(lambda message: err.print(f"[dim]local model:[/] {escape(message)}", markup=True))
    install_signal_handlers()  # SIGHUP still stops started servers at once; SIGTERM is handled above


def _interrupt_on_terminate() -> None:
    """SIGTERM (`kill`, a job scheduler's stop) is handled as Ctrl-C, so an eval or optimization
    stops the way Ctrl-C stops it: the run is marked interrupted, the report of what finished is
    written and the resume command printed; servers this process started stop at exit (atexit).
    It goes to the SIGINT handler of the moment: inside asyncio.run that one cancels the main task,
    whereas a KeyboardInterrupt raised in whatever frame was running (a task, a generator, a
    database pool) left runs `failed` (GeneratorExit) or `running`, with tracebacks."""

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
            return
        # SIGINT ignored (a script's background job: the shell's rule), so asyncio.run installed no
        # handler to call: stop its loop between two callbacks, where asyncio.run then cancels every
        # task and waits for them, rather than in whatever frame this signal landed in
        import asyncio  # here: the CLI's start does without it

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: nothing runs that a KeyboardInterrupt could cut in half
            raise KeyboardInterrupt from None
        loop.call_soon_threadsafe(_raise_keyboard_interrupt)

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, on_terminate)


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
