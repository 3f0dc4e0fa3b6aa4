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


def test_a_crowned_single_call_is_not_compared_with_itself() -> None:
    """The crowned single call of l8 read "+0.0 points [+0.0, +0.0], paired; ... McNemar p=1" against
    the best single call, l8 (the reports review)."""
    from agentscale.optimize.paired import paired_difference
    from agentscale.optimize.report import advantage_sentence
    from agentscale.optimize.runner import Advantage

    outcomes = {"q0": True, "q1": False, "q2": True, "q3": True}
    itself = Advantage(["l8"], paired_difference(outcomes, outcomes), crowned_is_it=True).to_dict()
    assert (
        advantage_sentence(itself)
        == "the crowned graph is the single call of l8, the best single call on the test items"
    )
    other = Advantage(["l8"], paired_difference(outcomes, dict.fromkeys(outcomes, False))).to_dict()
    assert advantage_sentence(other).startswith(
        "crowned graph minus the best single call (l8) on the same 4 test items"
    )


def test_a_summary_stored_before_the_key_is_read_by_its_crowned_graphs_name() -> None:
    from agentscale.optimize.paired import paired_difference
    from agentscale.optimize.report import outcome_notes
    from agentscale.optimize.runner import Advantage

    outcomes = {"q0": True, "q1": False}
    stored = Advantage(["l8"], paired_difference(outcomes, outcomes)).to_dict()
    del stored["crowned_is_the_single"]  # written by the previous release
    notes = outcome_notes({"best": {"name": "single call of l8"}, "advantage": stored})
    assert notes == ["the crowned graph is the single call of l8, the best single call on the test items"]
    assert outcome_notes({"best": {"name": "majority vote of 3 x l8"}, "advantage": stored})[0].startswith(
        "crowned graph minus the best single call (l8)"
    )


def test_a_graph_in_one_line_shows_the_inputs_its_levels_hide() -> None:
    """`0 -> 1 -> vote(0, 1)` printed as `[0] -> [1] -> [2:vote]` in the trial and front tables: a chain
    into a one-input vote, which the search never makes."""
    a = NodeChoice("assistant", "s")
    skipping = CandidateGraph((a, a, NodeChoice("vote", None)), frozenset({(0, 1), (0, 2), (1, 2)}))
    assert skipping.diagram_line() == "[0:assistant:s] -> [1:assistant:s] -> [2:vote] (2 <- 0, 1)"
    fan_in = CandidateGraph((a, a, a, NodeChoice("vote", None)), frozenset({(0, 3), (1, 3), (2, 3)}))
    assert fan_in.diagram_line() == "[0:assistant:s] [1:assistant:s] [2:assistant:s] -> [3:vote]"  # reads as drawn


def test_the_advantage_sentence_gives_the_interval_low_to_high_and_names_tied_singles() -> None:
    """The run's headline: a swapped interval read "[+25.2, +1.5]", and two best single calls tied on
    the test items must both be named, marked tied, or the reader takes one model for the best."""
    from agentscale.optimize.report import advantage_sentence

    advantage = {
        "over": ["l8", "q7"],
        "n": 60,
        "difference": 0.133,
        "ci95": (-0.012, 0.27),
        "only_first_right": 11,
        "only_second_right": 3,
        "p_value": 0.0574,
        "crowned_is_the_single": False,
    }
    assert advantage_sentence(advantage) == (
        "crowned graph minus the best single call (l8 / q7 (tied)) on the same 60 test items: "
        "+13.3 points [-1.2, +27.0], paired; right only with the crowned graph 11, only with the single 3, "
        "exact McNemar p=0.0574"
    )


def test_outcome_notes_say_why_the_graph_was_crowned_and_keep_every_warning() -> None:
    """`runs show` and the report print these notes: a lost warning ("add train items") left a reader
    of the report alone unaware that the train split could not separate the crown."""
    from agentscale.optimize.report import outcome_notes

    summary = {
        "crowning": {"reason": "most accurate on the train split"},
        "warnings": ["the train split cannot separate the crown: add train items", "max_spend.calls reached"],
    }
    assert outcome_notes(summary) == [
        "crowned: most accurate on the train split",
        "warning: the train split cannot separate the crown: add train items",
        "warning: max_spend.calls reached",
    ]
    assert outcome_notes({}) == []


def test_the_diagram_shows_each_nodes_inputs_and_the_ceo() -> None:
    """The crowned graph is printed after a run: a CEO-led graph drawn without its CEO reads as one
    pass, with a fraction of the compute it spends."""
    from agentscale.optimize.candidate import CeoChoice
    from agentscale.optimize.report import diagram

    a = NodeChoice("assistant", "s")
    graph = CandidateGraph((a, a, NodeChoice("fuser", "s")), frozenset({(0, 2), (1, 2)}), CeoChoice("s", 3))
    assert diagram(graph) == (
        "[0:assistant:s] [1:assistant:s] -> [2:fuser:s]\n  2 <- 0, 1\n  CEO s over up to 3 rounds"
    )
    assert graph.diagram_line() == "[0:assistant:s] [1:assistant:s] -> [2:fuser:s] + CEO s (up to 3 rounds)"
    assert diagram(CandidateGraph((a,), frozenset())) == "[0:assistant:s]"


@pytest.mark.parametrize("simulated", [True, False])
def test_the_simulated_warning_is_drawn_in_red_above_the_plots(tmp_path: Path, simulated: bool) -> None:
    """The PNG is shared without its metadata (pasted in a chat or a slide): only the red SIMULATED
    title drawn above the two plots tells a viewer the accuracies are not a real model's."""
    import numpy as np

    single = CandidateGraph((NodeChoice("assistant", "l8"),), frozenset())
    observation = Observation(single, 0.5, 7.9, 0.1, 8, 0.5)
    path = write_plot([(1, 0.5)], [observation], [observation], tmp_path / "search.png", simulated=simulated)
    assert path is not None
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    top = pixels[: pixels.shape[0] // 12]  # above the axes' own titles
    red = (top[..., 0] > 150) & (top[..., 1] < 100) & (top[..., 2] < 100)
    assert bool(red.sum() > 100) is simulated, int(red.sum())
