"""The progress bar of long commands (`run --input`, `eval`, `optimize`, `handbook build`), declared once."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agentscale.cli._console import err


def progress_bar(*, status: bool = True, quiet: bool = False) -> Progress:
    """Spinner, description, bar, done/total, a status text, elapsed time; on stderr, erased when done.

    With `status`, each task's `status` field is shown after the count (pass `status=` to `add_task` and
    `update`). `quiet` (`--json`) hides the bar.
    """
    columns: list[ProgressColumn] = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if status:
        columns.append(TextColumn("{task.fields[status]}"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True, disable=quiet)
