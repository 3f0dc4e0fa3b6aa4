"""`agentscale validate` and `agentscale schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentscale.cli._console import err, print_json
from agentscale.cli._options import JsonOption
from agentscale.errors import SpecError
from agentscale.graphs.io import load_graph_spec
from agentscale.graphs.spec import GraphSpec


def validate_command(
    files: Annotated[list[Path], typer.Argument(help="Graph YAML files.", show_default=False)],
    json_output: JsonOption = False,
) -> None:
    """Check graph files; exit 0 when all are valid, 1 otherwise (one message per file).

    Example:

      agentscale validate graphs/*.yaml
    """
    report = []
    for file in files:
        try:
            spec = load_graph_spec(file)
        except SpecError as exc:
            report.append({"file": str(file), "valid": False, "issues": [str(i) for i in exc.issues]})
            if not json_output:
                err.print(f"[red]✗[/] {escape(str(exc))}")
        else:
            report.append({"file": str(file), "valid": True, "issues": []})
            if not json_output:
                err.print(f"[green]✓[/] {escape(str(file))}: graph {spec.name!r}, {len(spec.nodes)} nodes")
    if json_output:
        print_json(report)
    if not all(entry["valid"] for entry in report):
        raise typer.Exit(1)


def schema_command() -> None:
    """Print the JSON Schema of graph files (for editors and CI checks).

    Example:

      agentscale schema > graph.schema.json
    """
    schema = GraphSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentscale graph (version 1)"
    typer.echo(json.dumps(schema, indent=2))
