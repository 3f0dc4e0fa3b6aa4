"""The scripts in examples/ run end to end against the scripted server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml
from tests.serve.test_app import BODY, serve

ROOT = Path(__file__).parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "ex.db"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _graph_file(tmp_path: Path, scripted: ScriptedServer) -> str:
    path = tmp_path / "g.yaml"
    path.write_text(graph_yaml(scripted.api_base, BODY))
    return str(path)


def test_python_api_example(tmp_path: Path, scripted: ScriptedServer) -> None:
    out = _run("python_api.py", _graph_file(tmp_path, scripted), "What is 17 + 25?", tmp_path=tmp_path)
    assert "answer: 42" in out and "final: 42" in out and "v (vote) -> 42" in out


def test_langgraph_agent_example(tmp_path: Path, scripted: ScriptedServer) -> None:
    out = _run("langgraph_agent.py", _graph_file(tmp_path, scripted), tmp_path=tmp_path)
    assert "The reasoner says: 42" in out


def test_openai_client_example(tmp_path: Path, make_graph) -> None:  # type: ignore[no-untyped-def]
    for base_url in serve(make_graph(BODY)):
        out = _run("openai_client.py", base_url, "served", tmp_path=tmp_path)
        assert "answer: 42" in out and "streamed: 5" in out
