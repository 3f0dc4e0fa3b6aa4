"""`benchmarks/scale.py` runs as documented: `--canned` still replaces litellm where the gateway calls it
(when the gateway's call took a new keyword, the canned stand-in failed every item and the benchmark
with it), and the local executor's figures are the medians of runs alternated with litellm alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCALE = Path(__file__).parent.parent / "benchmarks" / "scale.py"


def test_the_canned_eval_path_runs_and_prints_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(SCALE), "--canned", "--items", "16", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["canned"] is True
    assert figures["local_driver_cpu_ms"] > 0 and figures["local_x4_driver_cpu_ms"] > 0


def test_the_local_figures_are_medians_of_rounds_beside_litellm_alone() -> None:
    done = subprocess.run(
        [sys.executable, str(SCALE), "--local-only", "--items", "16", "--rounds", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    rounds = figures["rounds"]
    assert len(rounds) == 3
    for key in ("local_driver_cpu_ms", "litellm_alone_cpu_ms"):
        assert figures[key] == sorted(one[key] for one in rounds)[1]
        assert figures[key] > 0
