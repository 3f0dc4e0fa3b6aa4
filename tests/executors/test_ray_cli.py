"""`agentscale optimize --executor ray` from the command line: the same report as the local executor.

In a module of its own: the CLI starts two worker actors of one CPU each, which a 2-CPU Ray shared
with `test_ray.py`'s two workers (holding both CPUs for the whole module) could never place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentscale import Store
from agentscale.cli.app import main


@pytest.mark.integration  # ~35 s: the CLI starts its own two workers
def test_optimize_cli_with_ray_matches_local(
    tmp_path: Path, ray_session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        """\
name: simray
task: {name: "sim:math", train: 12, test: 12, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l8: {model: sim/llama-8b, params_b: 8.0}
roles: [assistant, critic]
max_nodes: 2
budget: {compute: 10}
optimizer: {method: random, iterations: 2, samples: 2, minibatch: 6, seed: 0}
"""
    )
    reports = []
    for executor in (["--executor", "local"], ["--executor", "ray", "--ray-workers", "2"]):
        db = tmp_path / f"{executor[1]}.db"
        assert main(["optimize", str(space), "--json", "--db", str(db), *executor]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    local, remote = reports
    for key in ("best", "pareto"):
        assert _without_paths(remote[key]) == _without_paths(local[key])
    # the vote baseline breaks ties by finishing order (timing): compare the deterministic single call
    assert _without_paths(remote["baselines"]["single"]) == _without_paths(local["baselines"]["single"])
    assert remote["usage"]["calls"] == local["usage"]["calls"] and remote["usage"]["tokens"] == local["usage"]["tokens"]
    stored = json.loads(Store(tmp_path / "ray.db").get_run(remote["run_id"]).config_json)
    assert stored["executor"] == {"kind": "ray", "address": None, "workers": 2}  # --resume reuses it
    # runs show says where it ran (only --json did), and nothing for the local run
    for db, said in (("ray", "· on ray (workers 2)"), ("local", None)):
        run_id = (remote if db == "ray" else local)["run_id"]
        assert main(["runs", "show", run_id, "--db", str(tmp_path / f"{db}.db")]) == 0
        header = " ".join(capsys.readouterr().out.split())
        assert (said in header) if said else ("on ray" not in header)


def _without_paths(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_paths(v) for k, v in data.items() if k not in ("path", "latency_s")}
    if isinstance(data, list):
        return [_without_paths(v) for v in data]
    return data
