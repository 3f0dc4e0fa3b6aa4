"""Output files a user names: written whole, through links and special files, or refused by name."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agentscale.errors import AgentScaleError
from agentscale.graphs.io import write_output


def test_an_output_is_written_whole_and_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    write_output(target, "<p>hi</p>")
    assert target.read_text() == "<p>hi</p>" and os.listdir(target.parent) == ["report.html"]


def test_a_link_and_a_pipe_are_written_through_not_replaced(tmp_path: Path) -> None:
    """Replacing the path (the atomic write) turned a link into a plain file and broke /dev/stdout or a pipe."""
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_output(link, "{}")
    assert link.is_symlink() and real.read_text() == "{}"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    write_output(pipe, b"through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"] and not pipe.is_file()


def test_a_path_under_a_file_is_named(tmp_path: Path) -> None:
    blocking = tmp_path / "notes.txt"
    blocking.write_text("x")
    with pytest.raises(AgentScaleError, match=r"cannot write .*notes.txt/r.html \(.*notes.txt is a file\)"):
        write_output(blocking / "r.html", "x")
