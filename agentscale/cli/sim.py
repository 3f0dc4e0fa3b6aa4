"""`agentscale sim optimum`: the true best graph of a small space on the SIMULATED population."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentscale.cli._console import err, out, print_json
from agentscale.cli._options import JsonOption

sim_app = typer.Typer(
    help="The simulated model population (benchmarks only; never model accuracy).", no_args_is_help=True
)


@sim_app.command("optimum")
def optimum_command(
    space_file: Annotated[Path, typer.Argument(help="Search-space YAML over a sim task.", show_default=False)],
    json_output: JsonOption = False,
) -> None:
    """Enumerate every graph of a small space and print the one with the best simulated accuracy.

    Example:

      agentscale sim optimum benchmarks/spaces/math-b18.yaml --json
    """
    from agentscale.sim.optimum import optimum_report

    with err.status("enumerating the space (simulated ground truth)…", spinner="dots"):
        report = optimum_report(space_file)
    if json_output:
        print_json(report)
        return
    out.print(
        f"SIMULATED optimum of {escape(str(space_file))}: expected test accuracy {report['accuracy']:.3f} "
        f"(compute {report['compute']:.2f}, {report['candidates']} candidates enumerated)"
    )
    out.print(escape(report["graph"]))
