"""`agentscale validate` and `agentscale schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentscale.cli._console import err, print_json, print_plain
from agentscale.cli._options import DbOption, JsonOption, unset_api_keys
from agentscale.cli._space_notes import space_notes
from agentscale.errors import AgentScaleError, SpecError
from agentscale.graphs.io import read_text
from agentscale.graphs.located import LocatedData, load_located
from agentscale.graphs.spec import GraphSpec
from agentscale.graphs.validate import looks_like_best_known, looks_like_space, validate_fields
from agentscale.models.routes import checked_spec

STDIN = "/dev/stdin"  # `-`: what a generator pipes in (`make-graph | agentscale validate -`), read with every check


def validate_command(
    files: Annotated[
        list[Path], typer.Argument(help="Graph or search-space YAML files; - reads one from stdin.", show_default=False)
    ],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Check graph and search-space files; exit 0 when all are valid, 1 otherwise (one message per file).

    Notes (valid, yet a run here would fail): an api_key_env variable that is unset, a graph's
    memory handbook that the database (--db) does not hold or that holds no behavior.

    Examples:

      agentscale validate graphs/*.yaml

      python make_graph.py | agentscale validate -
    """
    report = []
    for file in files:
        try:
            summary, notes = _check(file, db)
        except SpecError as exc:
            report.append({"file": str(file), "valid": False, "issues": [str(i) for i in exc.issues], "notes": []})
            if not json_output:
                err.print(f"[red]✗[/] {escape(str(exc))}", markup=True)
        else:
            report.append({"file": str(file), "valid": True, "issues": [], "notes": notes})
            if not json_output:
                err.print(f"[green]✓[/] {escape(str(file))}: {escape(summary)}", markup=True)
                for note in notes:
                    err.print(f"  note: {escape(note)}")
    if json_output:
        print_json(report)
    if not all(entry["valid"] for entry in report):
        raise typer.Exit(1)


def _missing_handbook(spec: GraphSpec, db: Path | None) -> list[str]:
    """A `memory:` handbook the database lacks, or a `memory.topic` none of its behaviors has: valid
    (it may be built before the run), yet run and eval stopped at their first question, and validate
    had passed the file without a word."""
    if spec.memory is None:
        return []
    from agentscale.memory.handbook import Handbook
    from agentscale.storage.db import Store, database_file

    name, path = spec.memory.handbook, database_file(db)
    try:  # read only: validate changes no file (it made an empty file a database)
        store = Store(path, read_only=True) if path.is_file() else None
    except AgentScaleError as exc:
        return [f"memory.handbook: no handbook {name!r}: {exc}"]
    if store is not None and (book := Handbook(store, name, embedder=None)).exists():
        if not book.behaviors():  # eval refused it at its start, after validate had passed the file
            return [f"memory.handbook: handbook {name!r} holds no behavior; eval refuses an empty handbook"]
        if spec.memory.topic is not None:
            try:  # a topic none of its behaviors has selects nothing, for every question
                book.check_topic(spec.memory.topic, "memory.topic")
            except AgentScaleError as exc:
                return [str(exc)]
        return []
    there = f"{path}" if path.is_file() else f"{path} (no database there)"
    build = f"agentscale handbook build --handbook {name}"
    return [f"memory.handbook: no handbook {name!r} in {there}; build it with `{build}`"]


def _check(file: Path, db: Path | None) -> tuple[str, list[str]]:
    """Validate a graph or a search space (told apart by their keys); return a one-line summary and
    the notes on what would fail where validate runs."""
    located = load_located(read_text(STDIN if str(file) == "-" else file), str(file))
    if not isinstance(located.data, dict):  # either kind's message named a graph, or a space, alone
        validate_fields(located, GraphSpec, "graph or search-space file", str(file))  # raises, saying so
    if looks_like_best_known(located.data):
        return _check_best_known(located, file), []
    if looks_like_space(located.data):
        from agentscale.optimize.problem import SearchProblem
        from agentscale.optimize.runner import load_task_split, method_and_seed
        from agentscale.optimize.space import space_from_data

        space = space_from_data(located, str(file))  # its models' routes too
        with located.locating(str(file)):  # the rules that need the models' costs, and the task itself
            SearchProblem.from_space(space)
            method_and_seed(space)
            task, train, _ = load_task_split(space)
        models = len(space.models)
        summary = f"search space {space.name!r}, {models} model{'s' * (models != 1)}, up to {space.max_nodes} nodes"
        return summary, space_notes(space, task.name, train)
    from agentscale.models.pull import graph_not_pulled
    from agentscale.runtime.graph import Graph

    spec = checked_spec(located, str(file))
    with located.locating(str(file)):  # what loading it to run checks too (budget caps, a tester's format)
        graph = Graph(spec, store=None, source=str(file))
    summary = f"graph {spec.name!r}, {len(spec.nodes)} node{'' if len(spec.nodes) == 1 else 's'}"
    notes = unset_api_keys(spec.models) + graph_not_pulled(spec) + _missing_handbook(spec, db)
    return summary, notes + _code_unsaid(spec, graph.runtime.answer_format)


def _code_unsaid(spec: GraphSpec, answer_format: str) -> list[str]:
    """A graph that answers in code without saying so (a tester, or `stop_guard: stated_examples`,
    with `answer_format` unset): a run of a math question ended "no node gave an answer", and nothing
    had said the graph reads its answers as programs (a new user's walk)."""
    if spec.answer_format is not None or answer_format != "code":
        return []
    testers = [node.id for node in spec.nodes if node.role == "tester"]
    why = f"node {testers[0]!r} is a tester" if testers else "coordinator.stop_guard 'stated_examples' runs the answer"
    return [f"answer_format: unset, and {why}: the graph answers in code (say `answer_format: code`)"]


def _check_best_known(located: LocatedData, file: Path) -> str:
    """A best-known record (`agentscale sim best-known`) against the space file beside it."""
    from agentscale.optimize.space import load_space
    from agentscale.sim.best_known import checked_best_known, space_file_of
    from agentscale.sim.evaluate import SimOracle

    # SPACE.yaml beside SPACE.best-known.yaml, else the file of the space it names beside it (a record
    # written with --out elsewhere was taken for its own space: "not a search space: give the space file")
    name = located.data.get("space")
    plain = isinstance(name, str) and name not in ("", ".", "..") and not set("/\\") & set(name)  # a file name
    named = [file.with_name(f"{name}.yaml")] if plain else []
    looked = [path for path in dict.fromkeys((space_file_of(file), *named)) if path.resolve() != file.resolve()]
    space_file = next((path for path in looked if path.exists()), None)
    if space_file is None:
        names = " or ".join(path.name for path in looked)
        message = (
            f"no space file beside this record ({names}): validate checks a record against its space"
            if names
            else f"space {name!r} is no file name: validate checks a record against SPACE.yaml beside it"
        )
        raise SpecError([located.issue(("space",), message)], str(file))
    space = load_space(space_file)
    accuracy, candidate = checked_best_known(located, space, str(file), truth=SimOracle.for_space(space))
    nodes = candidate.size
    return (
        f"best-known record of space {located.data['space']!r}: {nodes} node{'s' * (nodes != 1)}, "
        f"expected test accuracy {accuracy:.1%} (SIMULATED; the truth agrees)"
    )


def schema_command() -> None:
    """Print the JSON Schema of graph files (for editors and CI checks).

    Example:

      agentscale schema > graph.schema.json
    """
    schema = GraphSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentscale graph (version 1)"
    print_plain(json.dumps(schema, indent=2))  # its reader leaving or a full disk is said as for every command
