"""`agentscale draw GRAPH -o F.svg`: a picture of any graph file (`best.yaml` included)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentscale.cli._console import err, print_json, print_plain
from agentscale.cli._options import JsonOption, output_file


def draw_command(
    graph_file: Annotated[Path, typer.Argument(help="Graph YAML file.", show_default=False)],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--out",
            parser=output_file("graph.svg"),
            metavar="<path>",
            help="Picture to write: .svg, or .png (needs agentscale\\[png]). Default: GRAPH.svg",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Draw a graph: nodes with role and model alias, edges in DAG order, the output and any coordinator.

    Examples:

      agentscale draw graphs/fan-in.yaml -o fan-in.svg

      agentscale draw .agentscale/runs/3f2a9c0d1e2b/best.yaml -o best.png
    """
    from agentscale.graphs.io import load_graph_spec
    from agentscale.report import picture_from_spec, write_drawing

    spec = load_graph_spec(graph_file)
    picture = picture_from_spec(spec)
    path = write_drawing(picture, out_file or graph_file.with_suffix(".svg"))
    if json_output:
        print_json({"path": str(path), "graph": spec.name, "nodes": len(picture.nodes), "edges": len(picture.edges)})
        return
    nodes, edges = len(picture.nodes), len(picture.edges)
    err.print(f"drew {nodes} node{'s' * (nodes != 1)} and {edges} edge{'s' * (edges != 1)} of {spec.name!r}")
    print_plain(str(path))
