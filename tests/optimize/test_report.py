"""The search plot (`search.png`) says SIMULATED when its run's models are simulated."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.objective import Observation
from agentscale.optimize.report import write_plot


@pytest.mark.parametrize("simulated", [True, False])
def test_the_search_plot_is_labelled_simulated_only_for_simulated_runs(tmp_path: Path, simulated: bool) -> None:
    single = CandidateGraph((NodeChoice("assistant", "l8"),), frozenset())
    observation = Observation(single, 0.5, 7.9, 0.1, 8, 0.5)
    path = write_plot([(1, 0.5)], [observation], [observation], tmp_path / "search.png", simulated=simulated)
    assert path is not None
    title = Image.open(path).info.get("Title", "")
    assert ("SIMULATED" in title) is simulated, title
