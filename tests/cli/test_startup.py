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
