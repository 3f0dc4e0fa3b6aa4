"""`agentscale report RUN_ID -o F.html`: one offline HTML page for an eval, run or optimization."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from agentscale.cli._console import err, print_json, print_plain
from agentscale.cli._options import DbOption, JsonOption, open_store, output_file
from agentscale.errors import AgentScaleError


def report_command(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).", show_default=False)],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--out",
            parser=output_file("report.html"),
            metavar="<path>",
            help="HTML file to write (default: <db folder>/runs/RUN_ID/report.html).",
        ),
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Write one self-contained HTML page for a run (no network needed to view it).

    Evals and runs: accuracy and interval, tokens, FLOPs, USD, latency, the graph, every item and its trace.

    Optimizations: crowned graph against the baselines, search curve, Pareto front, spend, every trial drawn.

    Examples:

      agentscale report 3f2a9c0d1e2b -o run.html

      agentscale report 3f2a --open
    """
    from agentscale.report import write_report

    if out_file is not None and out_file.suffix.lower() not in (".html", ".htm"):  # an HTML page named .pdf
        raise AgentScaleError(f"-o {out_file}: a report is an HTML page; name it .html")
    store = open_store(db, reads_only=True)
    path = write_report(store, run_id, out_file)
    if open_page and not webbrowser.open(path.resolve().as_uri()):  # False: no browser (a server, no DISPLAY)
        err.print(f"no browser to open it here; open {path} yourself")
    if json_output:
        print_json({"run_id": store.get_run(run_id).id, "path": str(path)})
        return
    err.print("report written (one file, works offline)")
    print_plain(str(path))
