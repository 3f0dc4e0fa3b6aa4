"""`benchmarks/coordinator.py` still runs and reports every arm (a smoke test on a few SIMULATED
questions; the figures themselves live in docs/coordinator.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "coordinator.py"


def test_the_coordinator_benchmark_reports_every_arm() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "12", "--json"], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(done.stdout)  # labelled: its accuracies are no real model's (docs/sim.md)
    assert (report["simulated"], report["task"], report["n"]) == (True, "sim:math", 12) and report["max_tokens"] > 0
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert {"single", "dag (no CEO)", "ceo llama-70b", "ceo llama-8b + evaluator"} <= set(arms)
    assert any(name.startswith("equal spend") for name in arms)
    assert arms["dag (no CEO)"]["calls"] == 4.0 and arms["dag (no CEO)"]["rounds"] is None
    led = arms["ceo llama-70b"]
    assert 1.0 <= led["rounds"] <= 3.0 and led["early_stops"] is not None
    assert all(0.0 <= arm["ci95"][0] <= arm["accuracy"] <= arm["ci95"][1] <= 1.0 for arm in arms.values())
