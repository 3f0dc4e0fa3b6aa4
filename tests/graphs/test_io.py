"""Output files a user names: written whole, through links and special files, or refused by name."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from agentscale.errors import AgentScaleError, SpecError
from agentscale.graphs.io import read_text, refuse_unusable_output, write_output


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


def test_an_empty_path_is_named_not_read_as_the_current_folder() -> None:
    """I4: Path('') is '.', which said "is a directory" naming no file."""
    with pytest.raises(SpecError) as info:
        read_text("")
    assert "an empty path" in str(info.value)


def test_an_output_given_as_a_folder_is_refused_with_a_file_to_give(tmp_path: Path) -> None:
    """I5: refused before anything is computed, with an example file path."""
    with pytest.raises(AgentScaleError, match=r"is a directory; give a file path, e\.g\. .*best\.yaml"):
        refuse_unusable_output(tmp_path, "best.yaml")


def test_a_database_is_never_overwritten_by_an_output(tmp_path: Path) -> None:
    """I6: `report RUN -o runs.db` replaced the runs' file with HTML."""
    db = tmp_path / "runs.db"
    with sqlite3.connect(db) as connection:
        connection.execute("create table t (x)")
    before = db.read_bytes()
    with pytest.raises(AgentScaleError, match="SQLite database"):
        refuse_unusable_output(db, "report.html")
    with pytest.raises(AgentScaleError, match="SQLite database"):
        write_output(db, "<html></html>")
    assert db.read_bytes() == before
