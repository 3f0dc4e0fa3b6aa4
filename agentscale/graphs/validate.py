"""Whole-graph validation: turns parsed YAML into a GraphSpec or a SpecError listing every problem.

Each problem names its YAML path and line, because users fix graph files by jumping to lines.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Iterable
from itertools import pairwise
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from agentscale.errors import SpecError, SpecIssue
from agentscale.graphs.located import LocatedData, PathPart, format_path, load_located
from agentscale.graphs.spec import (
    BUILTIN_ROLES,
    DEFAULT_MAX_TOKENS,
    MODEL_FREE_ROLES,
    ROLES_NEEDING_INPUTS,
    STORED_CONTEXT,
    GraphSpec,
    parse_edge,
)
from agentscale.graphs.topology import find_cycle


def _model_at(model: type[BaseModel], loc: tuple[PathPart, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the mapping at `loc` (to list its valid keys)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap_optional(annotation)
        if isinstance(part, int):
            annotation = _args(annotation)[0] if _args(annotation) else None
        elif typing.get_origin(annotation) is dict:
            annotation = _args(annotation)[1]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        else:
            return None
    annotation = _unwrap_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _unwrap_optional(annotation: Any) -> Any:
    """Strip `X | None` and `Annotated[X, ...]` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = _args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in _args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def pydantic_issues(error: ValidationError, located: LocatedData, root: type[BaseModel]) -> list[SpecIssue]:
    issues = []
    # the values of keys YAML read as no text (`yes:`, `null:`, `3:`): each key's own issue says to
    # quote it; pydantic's paths of what lies under them (True as 1) would point elsewhere
    unkeyed = {item["loc"][:-1] for item in error.errors() if _at_key(item) and not isinstance(item["input"], str)}
    for item in error.errors():
        if not _at_key(item) and any(item["loc"][: len(key)] == key for key in unkeyed):
            continue
        loc = tuple(part for part in item["loc"] if isinstance(part, int | str))
        kind = item["type"]
        if _at_key(item) or kind == "invalid_key":  # a mapping's key (a model alias, a role), not its value
            # a model's own keys (`1:` or `true:` beside `name:`) come as invalid_key at the key's place
            ends = -2 if _at_key(item) else -1
            mapping = tuple(part for part in item["loc"][:ends] if isinstance(part, int | str))
            line = _key_line(located, mapping, item["input"])
            issues.append(SpecIssue(format_path(mapping), _key_message(item), line))
            continue
        if isinstance(item["input"], bool) and kind == "string_type":
            message = f"got {_yaml_bool(item['input'])}"
        elif kind == "string_type" and item["input"] is not None:  # `name: .nan`, `model: 1.5`
            quote = ": quote it" if isinstance(item["input"], int | float) else ""  # not a mapping or a list
            message = f"expected text, got {_shown(item['input'])}{quote}"
        elif isinstance(item["input"], float) and not math.isfinite(item["input"]) and kind not in _TEXT_ERRORS:
            message = f"must be a finite number, got {item['input']}"
        elif kind == "extra_forbidden":
            key = str(loc[-1])
            owner = _model_at(root, loc[:-1])
            valid = sorted(owner.model_fields) if owner else []
            message = f"unknown key {key!r}{_did_you_mean(key, valid)}"
            if valid:
                message += f"; valid keys: {', '.join(valid)}"
        elif kind == "missing":
            message = f"missing required key {str(loc[-1])!r}"
        elif kind == "string_pattern_mismatch":
            pattern = item.get("ctx", {}).get("pattern", "")
            message = f"{item['input']!r} does not match {pattern}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):  # pydantic names its classes here
            message = f"expected a mapping (`key: value` lines or `{{key: value}}`), got {_shown(item['input'])}"
        elif kind == "list_type":
            message = f"expected a list (`[a, b]` or `- a` lines), got {_shown(item['input'])}"
        elif kind in _SCALAR_ERRORS and not isinstance(item["input"], str | int | float):
            # `iterations:` left empty said "Input should be a valid integer", and not what it got
            message = f"{item['msg']}, got {_shown(item['input'])}"
        elif kind == "int_parsing_size":  # `train: 1e20`: pydantic spoke of parsing "input string"
            message = f"Input should be a valid integer, got {_shown(item['input'])}: far too large"
        elif kind == "literal_error" and isinstance(item["input"], str):  # `roles: [critc]`: no hint, as keys get
            allowed = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
            message = item["msg"] + f", got {item['input']!r}{_did_you_mean(item['input'], allowed)}"
        else:
            message = item["msg"].removeprefix("Value error, ")
        issues.append(located.issue(loc, message))
    return issues


def _did_you_mean(word: str, known: list[str]) -> str:
    """` (did you mean 'critic'?)` for a near miss of one of `known`, else nothing."""
    hint = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _at_key(item: Any) -> bool:
    """Whether a pydantic error is about a mapping's key, not its value."""
    return bool(item["loc"][-1:] == ("[key]",))


_TEXT_ERRORS = frozenset({"string_type", "string_pattern_mismatch", "string_too_short", "string_too_long"})
_SCALAR_ERRORS = frozenset({"int_type", "float_type", "bool_type"})


def _key_line(located: LocatedData, owner: tuple[PathPart, ...], key: object) -> int | None:
    """The line of the key of mapping `owner` that YAML read as `key` (`yes:`, `on:`, `1:`, `null:`
    are keyed by their text; the mapping's line when none is found)."""
    for path, line in located.lines.items():
        if len(path) == len(owner) + 1 and path[:-1] == owner and _same(_read(str(path[-1])), key):
            return line
    return located.line_of(owner)


def _read(text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b  # True == 1 in Python: `true:` is not `1:`


def _key_message(item: Any) -> str:
    key = item["input"]
    if isinstance(key, bool):
        return f"a key read as {_yaml_bool(key)}"
    if key is None:
        return "a key read as null (YAML reads null and ~ so): quote it"
    if isinstance(key, int | float):
        return f"a key read as the number {key!r}: quote it"
    return f"the key {key!r}: {item['msg']}"


def _yaml_bool(value: bool) -> str:
    """A YAML 1.1 boolean where text was meant (`name: yes`, `true:` as a key)."""
    return f"the boolean {str(value).lower()} (YAML reads true/false, yes/no, on/off so): quote it"


def _shown(value: object) -> str:
    """A YAML value as a message names it."""
    if value is None:
        return "an empty value"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bool | int | float):
        return f"the value {value!r}"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else type(value).__name__


_Model = TypeVar("_Model", bound=BaseModel)


def validate_fields(
    located: LocatedData, model: type[_Model], what: str, source: str | None = None, *, stored: bool = False
) -> _Model:
    """The field-level pass shared by graph and space files: a mapping, valid per `model`; `stored`
    (a stored run's file) tells the field rules added since it was written to let it pass
    (`STORED_CONTEXT`)."""
    if not isinstance(located.data, dict):
        found = located.data
        named = isinstance(found, str) and found.endswith((".yaml", ".yml"))
        reader = "agentscale.load(path)" if what.startswith("graph") else "its path"
        hint = f"; a file name? give the file's text, or read the file with {reader}" if named else ""
        raise SpecError([SpecIssue("", f"a {what} must be a YAML mapping, not {_shown(found)}{hint}", 1)], source)
    try:
        return model.model_validate(located.data, context=STORED_CONTEXT if stored else None)
    except ValidationError as exc:
        raise SpecError(pydantic_issues(exc, located, model), source) from None


SPACE_ONLY_KEYS = ("task", "max_nodes", "optimizer", "objective", "sampled_nodes")


def looks_like_space(data: object) -> bool:
    """Spaces and graphs share one `validate` command; a space has a key only spaces have (`task:`,
    `max_nodes:`, ...) and no `nodes:`, or two such keys beside a stray `nodes:`: a space whose
    `task:` was misspelt was checked as a graph, and its every space key reported unknown; one with
    a `nodes:` key too got five graph errors from validate where optimize named the stray key."""
    if not isinstance(data, dict):
        return False
    own = sum(key in data for key in SPACE_ONLY_KEYS)
    return own >= (1 if "nodes" not in data else 2)


def looks_like_best_known(data: object) -> bool:
    """A best-known record (`agentscale sim best-known`'s file beside a space), not a graph or a space:
    `validate` of a spaces folder met these files and reported every key of theirs unknown."""
    return isinstance(data, dict) and "nodes" not in data and {"space", "candidate", "accuracy"} <= data.keys()


def spec_from_data(located: LocatedData, source: str | None = None, *, stored: bool = False) -> GraphSpec:
    """Validate parsed data into a GraphSpec, or raise SpecError with every issue found; `stored`: the
    graph of a stored run (shown, reported or resumed), which the field rules added since let pass."""
    if looks_like_space(located.data):  # not a list of unknown keys: say what the file is
        key = next(key for key in SPACE_ONLY_KEYS if key in located.data)
        without = ", no `nodes:`" if "nodes" not in located.data else ""
        message = (
            f"this is a search-space file (`{key}:`{without}), not a graph: search it with "
            "`agentscale optimize`, then run the graph it writes (best.yaml)"
        )
        raise SpecError([located.issue((key,), message)], source)
    if looks_like_best_known(located.data):  # `draw` of one listed each of its keys as unknown
        message = (
            f"this is a best-known record of space {located.data['space']!r} (`agentscale sim best-known`), "
            "not a graph: `agentscale validate` checks it against its space"
        )
        raise SpecError([located.issue(("space",), message)], source)
    spec = validate_fields(located, GraphSpec, "graph file", source, stored=stored)
    issues = graph_issues(spec, located, stored=stored)
    if issues:
        raise SpecError(issues, source)
    return spec


def load_spec_text(text: str, source: str | None = None, *, stored: bool = False) -> GraphSpec:
    return spec_from_data(load_located(text, source), source, stored=stored)


def alias_issues(aliases: Iterable[str], loc: LocatedData, *, stored: bool = False) -> list[SpecIssue]:
    """Model aliases that read as routes: a node's `model` with a '/' is a litellm route, so an alias
    `sim/llama-1b` made that route mean another model (it silently won over the route). Unless
    `stored` (a stored run's, written before the rule): aliases that are no name, empty or with
    blanks (an empty one passed validate, then crashed the optimizer's pilot)."""
    issues = []
    for alias in aliases:
        if "/" in alias:
            issues.append(
                loc.issue(("models", alias), f"alias {alias!r} contains '/', which makes it read as a route: rename it")
            )
        elif not stored and (not alias or any(c.isspace() for c in alias)):
            where = format_path(("models", alias) if alias else ("models",))  # not "models."
            message = f"alias {alias!r} is not a name (empty, or with blanks)"
            issues.append(SpecIssue(where, message, loc.line_of(("models", alias))))
    return issues


def graph_issues(spec: GraphSpec, located: LocatedData | None = None, *, stored: bool = False) -> list[SpecIssue]:
    """Rules that need the whole graph. Works without line info (for generated specs); `stored`: a
    stored run's graph, which the rules added since it was written let pass."""
    loc = located or LocatedData(None, {})
    issues: list[SpecIssue] = alias_issues(spec.models, loc, stored=stored)
    node_index: dict[str, int] = {}
    for index, node in enumerate(spec.nodes):
        if node.id in node_index:
            issues.append(
                loc.issue(
                    ("nodes", index, "id"),
                    f"duplicate node id {node.id!r} (also nodes[{node_index[node.id]}])",
                )
            )
        else:
            node_index[node.id] = index

    for name in spec.roles:
        if name in BUILTIN_ROLES:
            issues.append(loc.issue(("roles", name), f"custom role {name!r} shadows a built-in role"))
    valid_roles = list(BUILTIN_ROLES) + sorted(spec.roles)

    for index, node in enumerate(spec.nodes):
        if node.role not in valid_roles:
            issues.append(
                loc.issue(
                    ("nodes", index, "role"),
                    f"unknown role {node.role!r}{_did_you_mean(node.role, valid_roles)}; valid roles: "
                    f"{', '.join(valid_roles)}",
                )
            )
        if node.role in MODEL_FREE_ROLES:
            if node.model is not None:
                issues.append(loc.issue(("nodes", index, "model"), f"a {node.role!r} node takes no model"))
        elif node.model is None:
            issues.append(loc.issue(("nodes", index), f"node {node.id!r} needs a model (alias or litellm route)"))
        else:
            issue = _model_reference_issue(spec, node.model, ("nodes", index, "model"), loc)
            if issue:
                issues.append(issue)

    if spec.coordinator is not None:
        issue = _model_reference_issue(spec, spec.coordinator.model, ("coordinator", "model"), loc)
        if issue:
            issues.append(issue)
        if spec.coordinator.evaluator is not None:
            issue = _model_reference_issue(spec, spec.coordinator.evaluator, ("coordinator", "evaluator"), loc)
            if issue:
                issues.append(issue)

    pairs: dict[tuple[str, str], int] = {}  # each pair once, in the order written, with its first edge line
    for index, text in enumerate(spec.edges):
        try:
            edge_pairs = parse_edge(text)
        except ValueError as exc:
            issues.append(loc.issue(("edges", index), str(exc)))
            continue
        named: set[str] = set()  # `s1, s2, s3 -> fuse` with no fuse: once, not once per pair
        for source, target in edge_pairs:
            unknown = [n for n in (source, target) if n not in node_index]
            if unknown:
                if unknown[0] not in named:
                    issues.append(loc.issue(("edges", index), f"edge {text!r} names unknown node {unknown[0]!r}"))
                named.add(unknown[0])
            elif source == target:
                issues.append(loc.issue(("edges", index), f"self-loop on node {source!r}"))
            elif (source, target) in pairs:  # read once all the same: a vote would not count it twice
                first = pairs[(source, target)]
                where = "twice in this entry" if first == index else f"again (first in edges[{first}])"
                why = "an input is read once however often it is named"
                issues.append(loc.issue(("edges", index), f"edge {source} -> {target} is written {where}: {why}"))
            else:
                pairs[(source, target)] = index
    if issues:
        return issues

    cycle = find_cycle(list(node_index), pairs)
    if cycle:  # located at the edge written last among the cycle's (it closed the loop), not at `edges:`
        closing = max(pairs[pair] for pair in pairwise(cycle))
        issues.append(loc.issue(("edges", closing), "cycle: " + " -> ".join(cycle)))
        return issues

    predecessors: dict[str, list[str]] = {n: [] for n in node_index}
    successors: dict[str, list[str]] = {n: [] for n in node_index}
    for source, target in pairs:
        predecessors[target].append(source)
        successors[source].append(target)

    for index, node in enumerate(spec.nodes):
        needs_inputs = node.role in ROLES_NEEDING_INPUTS or (
            node.role in spec.roles and spec.roles[node.role].requires_inputs
        )
        if needs_inputs and not predecessors[node.id]:
            issues.append(
                loc.issue(("nodes", index), f"a {node.role!r} node needs predecessors (node {node.id!r} has none)")
            )
        custom = spec.roles.get(node.role)
        if custom is not None and predecessors[node.id] and "{inputs}" not in custom.system + custom.user:
            # the edges carried nothing: the node's prompt never showed what its predecessors answered
            message = (
                f"role {node.role!r} never shows a node its inputs, and node {node.id!r} has predecessors "
                f"({', '.join(predecessors[node.id])}): add {{inputs}} to its user template"
            )
            issues.append(loc.issue(("roles", node.role, "user"), message))

    sinks = [n for n in node_index if not successors[n]]
    output = spec.output
    if output is not None and output not in node_index:
        issues.append(loc.issue(("output",), f"output {output!r} is not a node"))
        return issues
    if output is None:
        if len(sinks) > 1:  # at the first sink's line: with no `output:` key, line 1 pointed at `name:`
            message = f"several sinks ({', '.join(sinks)}): set `output:` to one of them"
            issues.append(SpecIssue("output", message, loc.line_of(("nodes", node_index[sinks[0]]))))
            return issues
        output = sinks[0]

    reaching = {output}
    frontier = [output]
    while frontier:
        current = frontier.pop()
        for pred in predecessors[current]:
            if pred not in reaching:
                reaching.add(pred)
                frontier.append(pred)
    for index, node in enumerate(spec.nodes):
        if node.id not in reaching:
            issues.append(loc.issue(("nodes", index), f"node {node.id!r} cannot reach the output {output!r}"))
    if spec.coordinator is not None and not stored:
        issue = _min_tokens_issue(spec, loc, output)
        if issue:
            issues.append(issue)
    return issues


def _min_tokens_issue(spec: GraphSpec, loc: LocatedData, output: str) -> SpecIssue | None:
    """A CEO's `min_tokens` above the most a round's call may get was cut to it, silently (as a run
    resolves it: `coordinator.max_tokens`, else the largest node's `max_tokens`, within the
    question's token budget)."""
    coordinator = spec.coordinator
    assert coordinator is not None
    if "min_tokens" not in coordinator.model_fields_set:  # the default (16) gives way to tiny nodes
        return None
    # over the nodes that call a model and the output, as a run's ceiling counts an aggregating vote's
    # default (a vote in the middle it does not)
    counted = [n for n in spec.nodes if n.role not in MODEL_FREE_ROLES or n.id == output]
    largest = max(n.max_tokens or spec.defaults.max_tokens or DEFAULT_MAX_TOKENS for n in counted)
    ceiling, why = (
        (coordinator.max_tokens, "coordinator.max_tokens")
        if coordinator.max_tokens
        else (largest, "the largest node max_tokens; set coordinator.max_tokens or raise the nodes'")
    )
    if spec.budget is not None and spec.budget.max_tokens is not None and spec.budget.max_tokens < ceiling:
        ceiling, why = spec.budget.max_tokens, "budget.max_tokens"
    if coordinator.min_tokens <= ceiling:
        return None
    return loc.issue(
        ("coordinator", "min_tokens"),
        f"min_tokens ({coordinator.min_tokens}) is above the most a round's call may get ({ceiling}: {why})",
    )


def _model_reference_issue(
    spec: GraphSpec, model: str, path: tuple[PathPart, ...], loc: LocatedData
) -> SpecIssue | None:
    if "/" in model or model in spec.models:
        return None
    defined = ", ".join(sorted(spec.models)) or "none defined"
    return loc.issue(path, f"unknown model alias {model!r} (aliases: {defined}; a litellm route contains '/')")
