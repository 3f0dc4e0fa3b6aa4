"""The command's process as a whole: its garbage collector, and its database once it has exited."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path


def test_the_command_freezes_its_imports_and_leaves_its_database_whole(tmp_path: Path) -> None:
    """The command freezes the objects alive once litellm is imported (a full collection walked them
    all); the Store alive then was frozen too, so its connections were never closed: at exit the
    database file held no table and every row was in its -wal (a copy of the file alone was empty)."""
    graph, database = tmp_path / "g.yaml", tmp_path / "x.db"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    argv = ["agentscale", "run", str(graph), "-q", "[sim:math#0001] q", "--db", str(database)]
    code = textwrap.dedent(
        f"""
        import gc, sys
        sys.argv = {argv!r}
        from agentscale.cli.app import main  # what the console script does
        code = main()
        print(gc.get_freeze_count())
        sys.exit(code)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 100_000
    assert not Path(f"{database}-wal").exists()
    copy = tmp_path / "copy" / "x.db"
    copy.parent.mkdir()
    shutil.copy(database, copy)  # the file alone, as a user copies it
    with sqlite3.connect(copy) as connection:
        assert connection.execute("SELECT count(*) FROM run").fetchone() == (1,)
