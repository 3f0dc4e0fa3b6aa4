"""Choosing an executor: flags, stored configs, and the error when Ray is not installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentscale.errors import AgentScaleError
from agentscale.executors import ExecutorConfig

# Ray made unimportable for the child process only (as on a machine without the extra)
_NO_RAY = "import sys; sys.modules['ray'] = None; from agentscale.cli.app import main; raise SystemExit(main())"


def test_flags_override_the_stored_executor() -> None:
    stored = ExecutorConfig("ray", "ray://head:10001", 4)
    assert ExecutorConfig.from_dict(stored.to_dict()) == stored
    assert ExecutorConfig.from_dict({}) == ExecutorConfig() == ExecutorConfig.from_dict(None)  # older runs: local
    assert stored.override(workers=2) == ExecutorConfig("ray", "ray://head:10001", 2)
    assert stored.override("local") == ExecutorConfig()  # switching kind drops the Ray settings
    with pytest.raises(AgentScaleError, match="need --executor ray"):
        ExecutorConfig().override(workers=2)
    with pytest.raises(AgentScaleError, match="unknown executor 'dask'"):
        ExecutorConfig().override("dask")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "rya"}, "unknown executor 'rya'; choose from local, ray"),
        ({"kind": "ray", "workers": 0}, "executor workers must be a whole number of at least 1 (got 0)"),
        ({"kind": "ray", "workers": True}, "executor workers must be a whole number of at least 1 (got True)"),
        ({"kind": "local", "workers": 4}, "executor address and workers are for the ray executor, not 'local'"),
    ],
    ids=["kind", "no-workers", "bool-workers", "local-workers"],
)
def test_an_executor_config_that_cannot_run_is_refused(fields: dict[str, object], message: str) -> None:
    """A mistyped kind ran the items locally without a word, and was stored as given."""
    with pytest.raises(AgentScaleError, match=re.escape(message)):
        ExecutorConfig(**fields)  # type: ignore[arg-type]
    with pytest.raises(AgentScaleError, match=re.escape(message)):
        ExecutorConfig.from_dict(fields)  # a stored run's, or EvalConfig(executor={...})'s


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ray", "an executor is ExecutorConfig(kind, address=, workers=) or its dict, not str 'ray'"),
        ({"kind": "ray", "worker": 2}, "unknown executor key 'worker'; valid keys: kind, address, workers"),
    ],
)
def test_an_executor_given_in_another_shape_is_said_from_python(given: object, message: str) -> None:
    """The Python API's executor arguments (the executors walk's F3): `EvalConfig(executor="ray")` failed
    on "argument after ** must be a mapping", a misspelt key on "unexpected keyword argument", and
    `Optimization(executor={...})` on "'dict' object has no attribute 'kind'"."""
    from agentscale import EvalConfig, Optimization

    with pytest.raises(AgentScaleError, match=re.escape(message)):
        EvalConfig(task="sim:math", executor=given)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Optimization's executor is an ExecutorConfig\(kind"):
        Optimization(None, None, space_text="", executor={"kind": "ray"})  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["eval", "optimize"])
def test_missing_ray_is_one_line_with_the_install_hint(tmp_path: Path, command: str) -> None:
    if command == "eval":
        (tmp_path / "g.yaml").write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
        args = ["eval", str(tmp_path / "g.yaml"), "--task", "sim:math", "--n", "2"]
    else:
        (tmp_path / "s.yaml").write_text(
            'name: s\ntask: {name: "sim:math", train: 4, test: 4, seed: 0}\n'
            "models: {l1: {model: sim/llama-1b, params_b: 1.0}}\nroles: [assistant]\nmax_nodes: 1\n"
            "budget: {compute: 4}\noptimizer: {method: random, iterations: 1, samples: 1, minibatch: 2}\n"
        )
        args = ["optimize", str(tmp_path / "s.yaml")]
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "x.db")}
    done = subprocess.run(
        [sys.executable, "-c", _NO_RAY, *args, "--executor", "ray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'agentscale[ray]'" in lines[0] and "Traceback" not in done.stderr
    # nothing was started: no run row left behind
    listed = subprocess.run(
        [sys.executable, "-m", "agentscale.cli.app", "runs", "list", "--json"], capture_output=True, text=True, env=env
    )
    assert json.loads(listed.stdout or "[]") == []


def test_ray_flags_without_the_ray_executor_are_refused(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "x.db")}
    args = ["eval", str(tmp_path / "g.yaml"), "--task", "sim:math", "--n", "2", "--ray-workers", "2"]
    done = subprocess.run([sys.executable, "-m", "agentscale.cli.app", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "--ray-workers need --executor ray" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_stored_with_workers_for_the_local_executor_still_resumes(tmp_path: Path) -> None:
    """Releases before 2026-12-07 took (and ignored) `workers` with the local executor and stored it;
    refused since, such a run could not be resumed, not even with --executor local (the review's B5)."""
    from agentscale.cli.app import main
    from agentscale.storage.db import Store

    graph = tmp_path / "one.yaml"
    graph.write_text("name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    database = tmp_path / "r.db"
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "3", "--db", str(database), "--json"]) == 0
    store = Store(database)
    (run,) = store.list_runs()
    config = json.loads(run.config_json)
    config["executor"] = {"kind": "local", "address": None, "workers": 2}  # as an earlier release stored it
    with store.session() as session:
        stored = session.get(type(run), run.id)
        stored.config_json, stored.status = json.dumps(config), "interrupted"  # type: ignore[union-attr]
        session.add(stored)
        session.commit()
    for extra in ([], ["--executor", "local"]):
        assert main(["eval", "--resume", run.id, "--db", str(database), "--json", *extra]) == 0
