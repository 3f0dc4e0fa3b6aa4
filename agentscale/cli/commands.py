"""The `agentscale` command's typer app: every command registered, and how a command's outcome
becomes an exit code (0 ok, 1 user error, 2 usage error, 130 interrupted) with a message, never a
traceback. Imported by `app.main` inside its Ctrl-C guard: these imports take ≈ 0.5 s."""

from __future__ import annotations

import inspect

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.exceptions import TyperException

from agentscale.cli._console import Interrupted, ReaderGone, error, reader_gone, release_stdout
from agentscale.cli._finish import database_failed
from agentscale.cli.draw import draw_command
from agentscale.cli.evaluate import eval_command, tasks_app
from agentscale.cli.handbook import handbook_app
from agentscale.cli.models import models_app, serve_command
from agentscale.cli.optimize import optimize_command
from agentscale.cli.report import report_command
from agentscale.cli.run import run_command
from agentscale.cli.runs import runs_app
from agentscale.cli.serve_graph import serve_graph_command
from agentscale.cli.sim import sim_app
from agentscale.cli.validate import schema_command, validate_command
from agentscale.errors import AgentScaleError
from agentscale.storage import sqlite_failure

app = typer.Typer(
    name="agentscale",
    help="Find and run the best collaboration graph of LLM calls for a task under a compute budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_command)
app.command("validate")(validate_command)
app.command("schema")(schema_command)
app.command("eval")(eval_command)
app.command("optimize")(optimize_command)
app.add_typer(tasks_app, name="tasks")
app.command("serve-graph")(serve_graph_command)
app.command("serve")(serve_command)
app.add_typer(models_app, name="models")
app.add_typer(sim_app, name="sim")
app.add_typer(runs_app, name="runs")
app.command("report")(report_command)
app.command("draw")(draw_command)
app.add_typer(handbook_app, name="handbook")


def run_app(argv: list[str] | None) -> int:
    try:
        return _run_app(argv)
    finally:
        release_stdout()


def _run_app(argv: list[str] | None) -> int:
    try:
        command = typer.main.get_command(app)  # ≈ 25 ms: a Ctrl-C here is an interruption too
        if isinstance(command, TyperGroup):
            _tidy_help(command)
        result = command(args=argv, standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt) as stop:
        if reader_gone() or isinstance(stop, ReaderGone) or isinstance(stop.__cause__, ReaderGone):  # `| head`
            return 141
        error("interrupted")
        return 130
    except Interrupted as stop:  # the command said what it kept
        return stop.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            error(exc.format_message())
        return exc.exit_code
    except Exception as exc:
        cause = sqlite_failure(exc)  # sqlite3's error, or a StorageError raised with it
        if cause is None and not isinstance(exc, AgentScaleError):
            raise
        error(str(exc) if cause is None else database_failed(cause))
        return 1
    if result == 130:  # typer turns a Ctrl-C in a command into this return value, silently
        if reader_gone():  # `| head`, `| true`: nothing to say (it said "interrupted", exit 130)
            return 141
        error("interrupted")
    return result if isinstance(result, int) else 0


def _tidy_help(command: TyperCommand | TyperGroup) -> None:
    """Each prose paragraph of every command's help on one line, for Rich to wrap at the terminal's
    width: typer keeps the docstrings' line breaks, so an 80-column terminal showed every other line
    half full ("keeps their clocks" / "clean"). Indented lines (examples) and list items keep theirs.
    A flag shows no type: typer labels it "<bool>", which reads as a value to pass (`--yes true`)."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(_reflowed(paragraph) for paragraph in paragraphs)
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                _tidy_help(sub)


def _reflowed(paragraph: str) -> str:
    if paragraph.startswith("\b"):  # click's mark of a paragraph to show as written
        return paragraph
    lines: list[str] = []
    for line in paragraph.splitlines():
        own_line = not lines or line[:1].isspace() or line.lstrip().startswith(("- ", "* "))
        if own_line or lines[-1][:1].isspace():
            lines.append(line)
        else:
            lines[-1] = f"{lines[-1]} {line.strip()}"
    return "\n".join(lines)
