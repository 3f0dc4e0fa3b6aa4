"""Reading YAML that a user wrote: what the fuzzer of the loaders found crashing or hanging
(a recursive alias, aliases of aliases, control characters, bytes that are not UTF-8) is a
SpecError with a line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agentscale.errors import SpecError, SpecIssue
from agentscale.graphs.io import read_text
from agentscale.graphs.located import load_located

NODE = "{id: a, role: assistant, model: sim/llama-8b}"


def _issue(text: str) -> tuple[str, str, int | None]:
    with pytest.raises(SpecError) as caught:
        load_located(text, "g.yaml")
    issue = caught.value.issues[0]
    return issue.path, issue.message, issue.line


def test_an_alias_that_contains_itself_is_refused_not_a_recursion_error() -> None:
    assert _issue(f"name: x\nnodes: &n\n  - {NODE}\n  - *n\n") == (
        "nodes[1]",
        "a YAML alias (*name) that contains itself",
        2,  # the anchor's line: PyYAML's nodes keep no mark of the alias
    )
    assert "contains itself" in _issue("&a {name: x, self: *a}\n")[1]


def test_aliases_of_aliases_stop_at_a_cap_at_once() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9**9 values
    started = time.monotonic()
    message = _issue("\n".join(levels) + f"\nname: g\nnodes: [{NODE}]\n")[1]
    assert "holds over 100,000 values" in message and time.monotonic() - started < 10
    load_located("shared: &m {model: sim/llama-8b}\nmodels: {a: *m, b: *m}\n")  # aliases as such are fine


def test_a_control_character_is_named_with_its_line() -> None:
    assert _issue(f"name: g\nnodes: [{NODE}]\ndescription: 'a\x01'\n") == (
        "",
        "character U+0001 is not allowed in YAML (a control character: remove it)",
        3,
    )


def test_bytes_that_are_not_utf8_are_named_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(b"name: g\ndescription: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        read_text(path)
    issue = caught.value.issues[0]
    assert (issue.line, issue.message) == (2, "not UTF-8 text: byte 0xe9 cannot be read (save the file as UTF-8)")


def test_an_endless_file_a_dangling_link_and_a_pipe(tmp_path: Path) -> None:
    """`validate /dev/zero` read until the kernel killed it (24 GB); a link in a loop said "file not
    found" beside a name that exists; a pipe (`validate <(generate)`) is read as a file is."""
    with pytest.raises(SpecError, match="over 64 MiB: not a graph or space file"):
        read_text("/dev/zero")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    with pytest.raises(SpecError, match="a symbolic link to nothing, or in a loop"):
        read_text(tmp_path / "a.yaml")
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_text, args=("name: g\n",))
    writer.start()
    assert read_text(pipe) == "name: g\n"
    writer.join()


def test_values_nested_too_deeply_are_refused_not_a_recursion_error() -> None:
    assert _issue("name: " + "[" * 5000 + "]" * 5000 + "\n")[1] == "values nested too deeply to read"


def test_an_issue_found_on_the_parsed_spec_gets_the_line_of_its_indexed_path() -> None:
    """L6: checks made away from the YAML (costs against the budget) name `nodes[1].max_tokens`; the
    index must be read as an index, or the issue points at `nodes:` instead of the node's line."""
    located = load_located("name: g\nnodes:\n  - {id: a, max_tokens: 1}\n  - id: b\n    max_tokens: 9\n")
    with pytest.raises(SpecError) as info, located.locating("g.yaml"):
        raise SpecError([SpecIssue("nodes[1].max_tokens", "above the budget")])
    assert [(i.path, i.line) for i in info.value.issues] == [("nodes[1].max_tokens", 5)]
    assert info.value.source == "g.yaml"
