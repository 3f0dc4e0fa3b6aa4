"""A command's start: the library loads inside the command, so a Ctrl-C while it loads is the
command's interruption (exit 130), not a traceback from an import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

GRAPH = Path(__file__).parents[2] / "graphs" / "single.yaml"


def test_ctrl_c_while_a_command_imports_langgraph_exits_130_without_a_traceback() -> None:
    # The interpreter "presses Ctrl-C" when LangGraph's import starts: deterministic, unlike a timer.
    code = textwrap.dedent(
        f"""
        import sys

        class CtrlCOnLangGraph:
            def find_spec(self, name, path=None, target=None):
                if name == "langgraph":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, CtrlCOnLangGraph())
        from agentscale.cli.app import main
        sys.exit(main(["run", {str(GRAPH)!r}, "-q", "What is 2 + 2?"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_while_the_commands_import_exits_130_without_a_traceback() -> None:
    """The console script imports `agentscale.cli.app` before `main` runs; that import pulled in every
    command (≈ 0.5 s), so a Ctrl-C in a command's first half second printed a traceback."""
    code = textwrap.dedent(
        """
        import sys

        class CtrlCOnTyper:
            def find_spec(self, name, path=None, target=None):
                if name == "typer":
                    raise KeyboardInterrupt
                return None

        sys.meta_path.insert(0, CtrlCOnTyper())
        from agentscale.cli.app import main  # what the console script does
        sys.exit(main(["runs", "list"]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"
