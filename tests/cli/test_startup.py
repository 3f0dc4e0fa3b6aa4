"""A command's start: the library loads inside the command, so a Ctrl-C while it loads is the
command's interruption (exit 130), not a traceback from an import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

GRAPH = Path(__file__).parents[2] / "graphs" / "single.yaml"


def _stopped_on_import(
    module: str, argv: list[str], stop: str = "raise KeyboardInterrupt"
) -> subprocess.CompletedProcess[str]:
    """The command `argv` run as the console script runs it, with the interpreter "pressing Ctrl-C"
    (or running another `stop`) when `module`'s import starts: deterministic, unlike a timer."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys

        class StopOnImport:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    {stop}
                return None

        sys.meta_path.insert(0, StopOnImport())
        from agentscale.cli.app import main  # what the console script does
        sys.exit(main({argv!r}))
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_ctrl_c_while_a_command_imports_langgraph_exits_130_without_a_traceback() -> None:
    done = _stopped_on_import("langgraph", ["run", str(GRAPH), "-q", "What is 2 + 2?"])
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_while_the_commands_import_exits_130_without_a_traceback() -> None:
    """The console script imports `agentscale.cli.app` before `main` runs; that import pulled in every
    command (≈ 0.5 s), so a Ctrl-C in a command's first half second printed a traceback."""
    done = _stopped_on_import("typer", ["runs", "list"])
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"


def test_sigterm_while_the_commands_import_exits_130_as_ctrl_c_does() -> None:
    """`kill` in a command's first ≈ 0.4 s ended it silently with the signal (exit 143): its handler
    was installed after the commands' import."""
    done = _stopped_on_import("typer", ["runs", "list"], stop="os.kill(os.getpid(), signal.SIGTERM)")
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"


def test_a_second_ctrl_c_while_the_exit_waits_for_litellm_s_import_is_said_not_a_traceback(tmp_path: Path) -> None:
    """A Ctrl-C in a command's first seconds leaves litellm's import running, and Python's exit waits
    for it: a second Ctrl-C then printed "Exception ignored in: <module 'threading'> ...
    KeyboardInterrupt" (a new user's walk, 3 tries of 3). The signals are sent from the import itself,
    the second once the main thread waits for it: deterministic, unlike a timer."""
    graph = tmp_path / "one.yaml"
    graph.write_text("name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    code = textwrap.dedent(
        f"""
        import os, signal, sys, threading, time

        def main_thread_in(names):
            frame = sys._current_frames().get(threading.main_thread().ident)
            while frame is not None:
                if frame.f_code.co_name in names:
                    return True
                frame = frame.f_back
            return False

        class SlowImport:
            def find_spec(self, name, path=None, target=None):
                if name == "litellm" and threading.current_thread() is not threading.main_thread():
                    sys.meta_path.remove(self)
                    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while litellm imports
                    deadline = time.monotonic() + 60
                    while not main_thread_in({{"wait_for_the_import", "_shutdown"}}) and time.monotonic() < deadline:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGINT)  # and again while the exit waits for the import
                    time.sleep(0.3)
                return None

        sys.meta_path.insert(0, SlowImport())
        sys.argv = ["agentscale", "eval", {str(graph)!r}, "--task", "sim:math", "--n", "2", "--db", {str(tmp_path / "x.db")!r}]
        from agentscale.cli.app import main  # what the console script does
        sys.exit(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "interrupted; continue with: agentscale eval --resume" in done.stderr
    assert "exiting once litellm's import ends (a few seconds)" in done.stderr
