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


def read_exponents_as_yaml12(resolver: type[yaml.SafeLoader] | type[yaml.SafeDumper]) -> None:
    """Numbers in exponent form are numbers, as in YAML 1.2: `1e-6` and `1.0e308` are floats.

    Why: PyYAML follows YAML 1.1, where an exponent needs a dot and a signed power, so `1e-6` was a
    string; a quoted number is an error where a number belongs (`StrictModel`), and a price written
    `2.5e-7` must stay a number. The dumper knows the rule too, so it quotes a string such as a node
    id `1e5` and a stored graph reads back as written."""
    resolver.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading exponents as YAML 1.2 does (`read_exponents_as_yaml12`)."""


read_exponents_as_yaml12(_SpecLoader)


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


MAX_VALUES = 100_000  # values a file may hold once its YAML aliases are expanded


class _Walker:
    """Records the line of every path and the duplicate keys. A YAML alias repeats a value in place:
    one that contains itself would recurse forever, and aliases of aliases multiply ("billion
    laughs": 400 bytes took 2 minutes and 1 GB), so both are refused at the alias's line."""

    def __init__(self, source: str | None) -> None:
        self.source = source  # named by the errors raised during the walk
        self.lines: dict[tuple[PathPart, ...], int] = {}
        self.issues: list[SpecIssue] = []
        self._inside: set[int] = set()  # the nodes being walked (ancestors of the current one)
        self._values = 0

    def walk(self, node: yaml.Node, path: tuple[PathPart, ...]) -> None:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        self._values += 1
        if self._values > MAX_VALUES:
            message = f"the file holds over {MAX_VALUES:,} values (an alias, *name, counts its value each time)"
            raise SpecError([SpecIssue(format_path(path), message, line)], self.source)
        if id(node) in self._inside:
            message = "a YAML alias (*name) that contains itself"
            raise SpecError([SpecIssue(format_path(path), message, line)], self.source)
        self._inside.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))
        self._inside.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: tuple[PathPart, ...]) -> None:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                issue = SpecIssue(format_path((*path, key)), f"duplicate key (first defined on line {seen[key]})", line)
                self.issues.append(issue)
            seen[key] = line
            self.lines[(*path, key)] = line
            self.walk(value_node, (*path, key))


def load_located(text: str, source: str | None = None) -> LocatedData:
    """Parse YAML text; raise SpecError with the line on syntax errors or duplicate keys."""
    try:
        loader = _SpecLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise SpecError([SpecIssue("", "the file is empty", 1)], source)
            walker = _Walker(source)
            walker.walk(node, ())
            if walker.issues:
                raise SpecError(walker.issues, source)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:  # values nested thousands deep: PyYAML and the walk recurse
        raise SpecError([SpecIssue("", "values nested too deeply to read")], source) from None
    except yaml.reader.ReaderError as exc:  # a control character: it has a position, not a mark
        at = text.count("\n", 0, exc.position) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        message = f"character U+{code:04X} is not allowed in YAML (a control character: remove it)"
        raise SpecError([SpecIssue("", message, at)], source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context == "expected a single document in the stream":  # "but found another document", alone
            problem = "the file holds several YAML documents (a `---` line starts another): keep one"
        raise SpecError([SpecIssue("", f"YAML syntax error: {problem}", line)], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue("", f"YAML error: {exc}")], source) from None
    return LocatedData(data, walker.lines)
