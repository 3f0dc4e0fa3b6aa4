"""`agentscale sim optimum` and `sim best-known`: the best graph of a space on the SIMULATED population
(exhaustive for small spaces, a long search on the exact truth for large ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentscale.cli._console import Interrupted, err, out, print_json
from agentscale.cli._options import JsonOption, output_file
from agentscale.errors import AgentScaleError
from agentscale.graphs.io import refuse_unusable_output

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

    with err.status("enumerating the space (simulated ground truth)…", spinner="dots") as status:
        report = optimum_report(
            space_file,
            on_progress=lambda scored, best: status.update(f"{scored:,} graphs scored · best {best:.4f} (SIMULATED)"),
        )
    if json_output:
        print_json(report)
    else:
        found = "best graph so far (interrupted)" if report["interrupted"] else "optimum"
        out.print(
            f"SIMULATED {found} of {space_file}: expected test accuracy {report['accuracy']:.3f} "
            f"(compute {report['compute']:.2f}; {report['candidates']} candidates within the budget scored)"
        )
        out.print(report["graph"])
    if report["interrupted"]:  # the best so far is shown (an interruption lost the whole enumeration)
        err.print(
            f"interrupted after {report['candidates']:,} graphs: the graph above is the best scored so far, "
            "not the optimum (run again to enumerate the whole space)"
        )
        raise Interrupted()  # said above: no 'error: interrupted' after it


@sim_app.command("best-known")
def best_known_command(
    space_file: Annotated[Path, typer.Argument(help="Search-space YAML over a sim task.", show_default=False)],
    evaluations: Annotated[
        int,
        typer.Option(
            help="Distinct graphs to score on the exact truth (at least each model's canonical shapes: alone, "
            "self-consistency, widest and deepest, which every search starts from).",
            min=1,
        ),
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the sampling and of the restarts.", min=0)] = 0,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            parser=output_file("space.best-known.yaml"),
            metavar="<path>",
            help="Write the result here (default: SPACE.best-known.yaml beside it).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Search a space too large to enumerate for its best graph on the exact simulated truth.

    Sampling, then iterated hill climbing, until --evaluations distinct graphs were scored; the best is
    stored beside the space as the reference an optimizer benchmark measures against.

    Example:

      agentscale sim best-known benchmarks/spaces/math-b18-large.yaml \\
          --evaluations 100000
    """
    from agentscale.optimize.space import load_space
    from agentscale.sim.best_known import BEST_KNOWN_SUFFIX, search_best_known, stored_accuracy, write_best_known

    space = load_space(space_file)
    target = out_file or space_file.with_name(space_file.stem + BEST_KNOWN_SUFFIX)
    # refused now, not after minutes of search (which a failed write lost)
    if target.resolve() == space_file.resolve():
        raise AgentScaleError(f"--out {target} is the space file itself; give another path")
    if out_file is None and target.is_dir():  # not "--out ...": the user gave none
        raise AgentScaleError(
            f"{target}, where the record is kept beside the space, is a directory; move it or give --out"
        )
    refuse_unusable_output(target, space_file.stem + BEST_KNOWN_SUFFIX, shown=f"--out {target}" if out_file else None)
    with err.status("searching on the exact simulated truth…", spinner="dots") as status:
        found = search_best_known(
            space,
            evaluations=evaluations,
            seed=seed,
            on_progress=lambda done, best: status.update(
                f"{done}/{evaluations} graphs scored · best {best:.4f} (SIMULATED)"
            ),
        )
    stored = stored_accuracy(target, space)
    kept = stored is not None and stored >= found.accuracy
    if not kept:
        write_best_known(found, target)
    if json_output:
        # the file's graph is the stored one when kept: its accuracy too (the JSON named the file beside
        # this search's graph and accuracy alone, which the file did not hold)
        print_json({**found.to_dict(), "path": str(target), "kept_stored": kept, "stored_accuracy": stored})
        if found.interrupted:
            raise Interrupted()  # said above: no 'error: interrupted' after it
        return
    out.print(
        f"SIMULATED best-known graph of {space_file}: expected test accuracy {found.accuracy:.4f} "
        f"(compute {found.compute:.2f}; {found.evaluations} graphs scored in {found.seconds:.0f}s)"
    )
    out.print(found.candidate.describe())
    if found.interrupted:  # the best so far is kept (an interruption lost the whole search)
        err.print(
            f"interrupted after {found.evaluations} of {evaluations} graphs: the graph above is the best found so far"
        )
    elif found.evaluations < evaluations:  # "16 graphs scored" of 50 asked said nothing of why
        out.print(
            f"stopped at {found.evaluations} of {evaluations} graphs: the last restarts around the best graphs "
            "found none not yet scored (`sim optimum` scores a small space exhaustively)"
        )
    if kept:  # a shorter search must not replace the reference benchmarks measure against
        out.print(f"kept {target}: its graph scores {stored:.4f}, at least this search's (delete it to replace it)")
    else:
        out.print(f"stored in {target}")
    if found.interrupted:
        raise Interrupted()  # said above: no 'error: interrupted' after it
