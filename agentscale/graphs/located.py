"""YAML reading that remembers where each value came from.

Validation errors must name the YAML path *and the line*; PyYAML's composed node tree carries start
marks, so we compose once, record a path → line map, then construct plain Python data from the same
tree. Duplicate mapping keys (silently last-wins in PyYAML) are reported as errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from agentscale.errors import SpecError, SpecIssue

PathPart = str | int


def format_path(parts: tuple[PathPart, ...] | list[PathPart]) -> str:
    """Render ('nodes', 2, 'model') as 'nodes[2].model'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LocatedData:
    """Parsed YAML data plus the 1-based line of every path in it."""

    data: Any
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)

    def line_of(self, parts: tuple[PathPart, ...]) -> int | None:
        """Line of the path, or of its nearest ancestor that has one."""
        parts = tuple(parts)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get(())

    def issue(self, parts: tuple[PathPart, ...], message: str) -> SpecIssue:
        return SpecIssue(format_path(parts), message, self.line_of(parts))

    def located(self, issue: SpecIssue) -> SpecIssue:
        """`issue` with the line of its path (as `format_path` writes it) when it has none: for checks
        made on the parsed spec, away from the YAML."""
        if issue.line is not None:
            return issue
        parts = tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", issue.path))
        return SpecIssue(issue.path, issue.message, self.line_of(parts))

    @contextmanager
    def locating(self, source: str | None) -> Iterator[None]:
        """Checks made on the parsed spec (costs against the budget, the task) raise `SpecError`s whose
        issues have no line: inside this block they get the lines of their paths and the file's name."""
        try:
            yield
        except SpecError as exc:
            raise SpecError([self.located(issue) for issue in exc.issues], source) from None


def _walk(node: yaml.Node, path: tuple[PathPart, ...], lines: dict, issues: list[SpecIssue]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(
                    SpecIssue(
                        format_path((*path, key)),
                        f"duplicate key (first defined on line {seen[key]})",
                        line,
                    )
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, issues)


def load_located(text: str, source: str | None = None) -> LocatedData:
    """Parse YAML text; raise SpecError with the line on syntax errors or duplicate keys."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise SpecError([SpecIssue("", "the file is empty", 1)], source)
            lines: dict[tuple[PathPart, ...], int] = {}
            issues: list[SpecIssue] = []
            _walk(node, (), lines, issues)
            if issues:
                raise SpecError(issues, source)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError([SpecIssue("", f"YAML syntax error: {problem}", line)], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue("", f"YAML error: {exc}")], source) from None
    return LocatedData(data, lines)
