"""Every python block of docs/api.md runs, in order, against the scripted server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml
from tests.optimize.test_runner import space_text, write_task

DOC = Path(__file__).parents[1] / "docs" / "api.md"


def test_api_doc_examples_run(
    tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "doc.db"))
    (tmp_path / "best.yaml").write_text(
        graph_yaml(
            scripted.api_base, "name: best\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"
        )
    )
    write_task(tmp_path / "sums.jsonl")
    (tmp_path / "space.yaml").write_text(space_text(tmp_path, scripted.api_base))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "42" in out and "answer 4" in out and "21" in out and "role: critic" in out
    assert "100% [51%, 100%] of 4, 4 calls" in out  # the scripted server adds right
    assert "best.yaml" in out


def test_every_class_the_api_page_names_is_re_exported() -> None:
    """The page says everything on it is re-exported from `agentscale`: `RoundRecord`, named for a
    discussion's rounds, was not (`agentscale.RoundRecord` was an AttributeError)."""
    import agentscale

    named = set(re.findall(r"`([A-Z][A-Za-z]+)[.(`]", DOC.read_text()))
    package = Path(agentscale.__file__).parent
    defined = {name for path in package.rglob("*.py") for name in re.findall(r"^class (\w+)", path.read_text(), re.M)}
    by_module = {"ExecutorConfig"}  # the page names its module, agentscale.executors
    assert sorted(named & defined - by_module - set(agentscale.__all__)) == []


def test_the_sim_pages_python_block_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/sim.md's API block used a `space` and a `candidate` it never made (the sim walk): it runs
    as written now, from the repository's root (SIMULATED figures; nothing is asserted of them)."""
    monkeypatch.chdir(DOC.parents[1])
    (block,) = re.findall(r"```python\n(.*?)```", (DOC.parent / "sim.md").read_text(), re.DOTALL)
    namespace: dict[str, object] = {}
    exec(compile(block, "docs/sim.md", "exec"), namespace)
    assert {"oracle", "accuracy", "best", "found"} <= set(namespace)
