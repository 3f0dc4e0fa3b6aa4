"""Where CLI output goes: machine output (answers, --json) on stdout, everything human on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from agentscale.errors import AgentScaleError

if TYPE_CHECKING:
    from agentscale.storage.db import Store

PIPED_WIDTH = 160  # columns of tables written to a file or a pipe (Rich's default there is 80)


def _terminal_width_known() -> bool:
    """Whether Rich finds a width by itself: COLUMNS, or a terminal on stdin, stdout or stderr (so
    `agentscale runs list | less` typed in a terminal keeps the terminal's width)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return True
    for descriptor in (0, 1, 2):
        try:
            os.get_terminal_size(descriptor)
        except (OSError, ValueError):
            continue
        return True
    return False


class _StderrUntilClosed:
    """stderr that goes quiet once its reader is gone (`agentscale eval ... 2>&1 | head -1`): progress
    and notes are for a person, and losing them must not stop a run half way (it was left `running`).
    Reads `sys.stderr` on each write, so a redirected or captured stderr is followed."""

    def __init__(self) -> None:
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader and sys.stderr is not None:  # None: started with stderr closed (2>&-)
            try:
                return sys.stderr.write(text)
            except BrokenPipeError:
                self.closed_by_reader = True
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader and sys.stderr is not None:
            try:
                sys.stderr.flush()
            except BrokenPipeError:
                self.closed_by_reader = True

    def isatty(self) -> bool:
        return sys.stderr is not None and sys.stderr.isatty()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding: Rich's terminal checks
        if sys.stderr is None:
            raise AttributeError(name)
        return getattr(sys.stderr, name)


class StdoutFailed(AgentScaleError):
    """stdout cannot be written (a full disk behind `> file`, `> /dev/full`): said in one line, not as
    a traceback from deep inside Rich or json."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write to stdout: {error.strerror or error}")


@contextlib.contextmanager
def _failed_writes_said() -> Iterator[None]:
    """A failed write to stdout as `StdoutFailed`, but the reader leaving (BrokenPipeError), which its
    callers stop on (`_reader_left`)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise StdoutFailed(exc) from None


class _Stdout:
    """stdout for Rich: `sys.stdout` read on each write (a redirected or captured stdout is followed),
    a failed write other than the reader leaving (which Rich hands to `on_broken_pipe`) raised as
    `StdoutFailed`."""

    def write(self, text: str) -> int:
        with _failed_writes_said():
            return sys.stdout.write(text)

    def flush(self) -> None:
        with _failed_writes_said():
            sys.stdout.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: Rich's terminal checks
        return getattr(sys.stdout, name)


class _StdoutConsole(Console):
    """The stdout console: its reader leaving (`agentscale tasks list | head -1`) is `ReaderGone`, as
    for `print_json`; Rich's own handling exited 1 in silence."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _reader_left()


def _console(*, stderr: bool) -> Console:
    """A console for stdout or stderr. Output with no terminal anywhere (a file, a pipe from a job or
    CI) gets `PIPED_WIDTH` columns: at Rich's fallback of 80 a table folded routes and graph labels
    over several lines, which `grep` and log readers then saw cut.

    Markup is off: what is printed is mostly text from users and models (questions, prompts,
    answers, names), and as Rich markup `[/INST]` raised MarkupError and `a[i]` lost its `[i]`; emoji
    codes are off for the same reason (`:thumbs_up:` stays text). A line styled on purpose says
    `markup=True` and escapes what it interpolates."""
    kind, file = (Console, _StderrUntilClosed()) if stderr else (_StdoutConsole, _Stdout())
    console = kind(file=file, markup=False, emoji=False, highlight=False, soft_wrap=True)  # type: ignore[arg-type]
    if not _terminal_width_known():
        console.width = PIPED_WIDTH
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def print_json(data: Any) -> None:
    """One JSON document on stdout, unstyled, so scripts can parse it."""
    write_stdout(json.dumps(data, default=str) + "\n")


def print_plain(text: str) -> None:
    """A line on stdout exactly as given: answers go to scripts and pipes, and through Rich a tab
    became spaces (a code answer's indentation, `run --input`'s tab-separated columns)."""
    write_stdout(text + "\n")


class ReaderGone(KeyboardInterrupt):
    """stdout's reader has left (`agentscale run --input q.jsonl | head -2`): a stop, as Ctrl-C is (a
    batch is stored interrupted with the answers it gave), that ends the command with SIGPIPE's exit
    status, 141. It failed the batch ("Broken pipe"), silently, going on paying for answers nobody read."""


_reader_gone = False  # set once stdout's reader has left (`reader_gone`)


def reader_gone() -> bool:
    """Whether stdout's reader has left during this command (typer turns `ReaderGone`, a
    KeyboardInterrupt, into exit 130 like a Ctrl-C: `app` says 141, silently, instead)."""
    return _reader_gone


def _reader_left() -> None:
    global _reader_gone
    _reader_gone = True
    # what is still buffered would fail again at the interpreter's exit ("Exception ignored")
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise ReaderGone from None


def write_stdout(text: str) -> None:
    """`text` on stdout as given; every command's stdout goes through here (or the `out` console), so
    a reader that left ends the command as `ReaderGone` and a failed write (a full disk) is one
    error line, not a traceback."""
    stream = _json_stdout or sys.stdout
    try:
        with _failed_writes_said():
            stream.write(text)
            stream.flush()
    except BrokenPipeError:
        _reader_left()


_json_stdout: Any = None  # stdout while a --json command runs (`keep_stdout_for_json`)


def keep_stdout_for_json(enabled: bool) -> bool:
    """The `--json` option's callback: while the command runs, stdout is the JSON's alone, and what
    else would print there goes to stderr. Ray's driver prints its raylet's errors on stdout
    ("(raylet) A worker died or was killed ...", whatever `log_to_driver` says), and a worker killed
    mid-eval, which the executor survives, left `eval --json`'s stdout no JSON document."""
    global _json_stdout
    if enabled and _json_stdout is None:
        _json_stdout, sys.stdout = sys.stdout, sys.stderr
    return enabled


def release_stdout() -> None:
    """stdout back to what it was once a `--json` command ends (tests run many in one process)."""
    global _json_stdout
    if _json_stdout is not None:
        sys.stdout, _json_stdout = _json_stdout, None


def say_simulated(console: Console | None = None) -> None:
    """The note under figures of sim/ models: the simulated population's, never a real model's (on
    stdout with the figures, or on `console`: `run` keeps stdout for the answer)."""
    from agentscale.report.html import SIMULATED_NOTE

    (console or out).print(SIMULATED_NOTE, style="bold yellow")


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def warn_if(message: str | None) -> None:
    """A warning line on stderr, when there is one to give."""
    if message is not None:
        err.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def short(text: str | None, width: int = 60) -> str:
    """Stored text (a question, an answer, an error) on one line of at most `width` characters, its
    control characters shown, not sent (`terminal_safe`)."""
    if text is None:
        return "—"
    flat = terminal_safe(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` with its control characters written out (ESC as `\x1b`): a stored question or model
    reply holding `ESC ]0;...BEL` set the terminal's title and `ESC [2J` cleared the screen when
    `runs show` printed it (Rich passes ESC through). Tabs and newlines stay."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class Interrupted(Exception):
    """A Ctrl-C (or SIGTERM) a command has already reported (what was kept, how to go on): exit 130
    (141 when stdout's reader left: `ReaderGone`) with nothing more said. A Ctrl-C no command
    reported reaches `main` as typer's silent 130."""

    def __init__(self, exit_code: int = 130) -> None:
        super().__init__()
        self.exit_code = exit_code


def outputs_first(doing: str) -> None:
    """From here to the command's end, the first Ctrl-C or SIGTERM is said ("{doing} (Ctrl-C stops
    now)") and let pass, a second stops at once: a command's outputs (a report, a summary, a JSON
    object naming the run) take a second or two, and a quick second Ctrl-C lost them. `app.main` puts
    the handlers back as it returns (restored as the outputs ended, a signal landing before that
    return, on a busy machine, still ended in "error: interrupted"). Set inside `asyncio.run`, the
    handler stays: asyncio puts back only a SIGINT handler of its own. Only the main thread can set
    handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    said: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if said:
            raise KeyboardInterrupt
        said.append(signum)
        again = "Ctrl-C" if signum == signal.SIGINT else "another SIGTERM"
        err.print(f"{doing} ({again} stops now)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)


def interrupted(store: Store, run_id: str, resume: str, *, json_output: bool = False) -> Interrupted:
    """Say how an interrupted eval or optimization continues and where the report of what it had
    finished is (what a user looks at first after a Ctrl-C); the exception to raise. With
    `json_output` stdout gets the same as one JSON object, so a script that reads it learns the run
    to resume."""
    from agentscale.report import write_report

    err.print(f"interrupted; continue with: {resume}")
    outputs_first("writing the report of what finished first")  # a quick second Ctrl-C lost it, and the JSON
    report: str | None = None
    try:
        report = str(write_report(store, run_id))
        err.print(f"report of what finished: {report}")
    except Exception as exc:  # the report is a courtesy: never hide the interruption behind its failure
        err.print(f"(no report: {exc})")
    if json_output:
        print_json({"run_id": run_id, "status": "interrupted", "resume": resume, "report": report})
    return Interrupted()
