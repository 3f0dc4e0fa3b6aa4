"""The three Agent-REINFORCE insights hold in the simulated population (exact ground truth).

These are guards: a change to the generative model that flattens the landscape (no family
preference, monotone width or depth, no width-depth interaction) must fail here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.space import SpaceSpec
from agentscale.sim.evaluate import candidate_graph
from agentscale.sim.optimum import search_optimum
from agentscale.sim.truth import SimGraph, TruthEngine
from tests.sim.helpers import chain, parallel

L1, L3, L8, G1, G2 = "sim/llama-1b", "sim/llama-3b", "sim/llama-8b", "sim/gemma-1b", "sim/gemma-2b"


def _single(engine: TruthEngine, model: str) -> float:
    return engine.accuracy(SimGraph.build([("assistant", model)], [()]))


def test_insight1_tasks_prefer_different_families(engines: dict[str, TruthEngine]) -> None:
    math, code = engines["math"], engines["humaneval"]
    # MATH: Gemma beats Llama at equal or smaller size; HumanEval: the other way round.
    assert _single(math, G1) > _single(math, L1) + 0.05 and _single(math, G2) > _single(math, L3) + 0.03
    assert _single(code, L1) > _single(code, G1) + 0.05 and _single(code, L3) > _single(code, G2) + 0.05


def test_insight1_the_exhaustive_optimum_picks_the_task_s_family() -> None:
    def best_family(task: str) -> set[str]:
        space = SpaceSpec.model_validate(
            {
                "name": "family",
                "task": {"name": task, "train": 10, "test": 200},
                "models": {"llama": {"model": L1}, "gemma": {"model": G1}},
                "roles": ["assistant", "fuser", "vote"],
                "max_nodes": 3,
                "budget": {"compute": 4},
            }
        )
        return {node.model for node in search_optimum(space).candidate.nodes if node.model}

    assert best_family("sim:math") == {"gemma"}
    assert best_family("sim:humaneval") == {"llama"}


def test_insight2_width_rises_then_falls_for_fusion_and_plateaus_for_votes(engines: dict[str, TruthEngine]) -> None:
    math = engines["math"]
    widths = [1, 2, 3, 4, 5, 7, 9]
    fused = [math.accuracy(parallel(L1, w, sink="fuser")) for w in widths]
    peak = int(np.argmax(fused))
    assert 0 < peak < len(widths) - 1 and fused[-1] < fused[peak] - 0.01
    voted = [math.accuracy(parallel(L1, w)) for w in (1, 3, 5, 7, 9)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(voted))
    assert voted[4] - voted[2] < voted[2] - voted[0]  # diminishing returns


def test_insight2_depth_has_an_interior_optimum(engines: dict[str, TruthEngine]) -> None:
    for task in ("math", "humaneval"):
        for role in ("assistant", "critic"):
            curve = [engines[task].accuracy(chain(L1, d, role)) for d in range(1, 9)]
            best = int(np.argmax(curve))
            assert 0 < best < 6 and curve[-1] < curve[best] - 0.01, (task, role, curve)
    # Larger models tolerate depth: their optimum is not shallower.
    small = np.argmax([engines["math"].accuracy(chain(L1, d, "critic")) for d in range(1, 9)])
    large = np.argmax([engines["math"].accuracy(chain(L8, d, "critic")) for d in range(1, 9)])
    assert large > small


def test_insight3_wider_graphs_want_shallower_depth(engines: dict[str, TruthEngine]) -> None:
    def best_depth(task: str, model: str, width: int) -> int:
        return 1 + int(np.argmax([engines[task].accuracy(parallel(model, width, depth)) for depth in range(1, 6)]))

    strictly = 0
    for task in ("math", "mmlu", "humaneval"):
        for model in (L3, L8):
            narrow, wide = best_depth(task, model, 1), best_depth(task, model, 6)
            assert wide <= narrow, (task, model, narrow, wide)
            strictly += wide < narrow
    assert strictly >= 3


def test_candidate_graphs_and_sim_graphs_agree() -> None:
    a, f = NodeChoice("assistant", "x"), NodeChoice("fuser", "x")
    candidate = CandidateGraph((a, a, f), frozenset({(0, 2), (1, 2)}))
    assert candidate_graph(candidate, {"x": ModelSpec(model=L3)}) == parallel(L3, 2, sink="fuser")


DOC = Path(__file__).resolve().parents[2] / "docs" / "sim.md"


def _rows(header_start: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and body rows of the markdown table whose header starts with `header_start`."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    cells = [[c.strip().strip("*") for c in line.strip().strip("|").split("|")] for line in lines[start:]]
    body = []
    for row in cells[2:]:
        if len(row) != len(cells[0]):
            break
        body.append(row)
    return cells[0], body


def _pct(engine: TruthEngine, graph: SimGraph) -> float:
    return 100 * engine.accuracy(graph)


def test_the_documented_width_table_is_computed(engines: dict[str, TruthEngine]) -> None:
    header, rows = _rows("| model | sink | w=1 |")
    widths = [int(h.removeprefix("w=")) for h in header[2:]]
    assert len(rows) == 4
    for model, sink, *values in rows:
        got = [_pct(engines["math"], parallel(f"sim/{model}", w, sink=sink)) for w in widths]
        np.testing.assert_allclose(got, [float(v) for v in values], atol=0.051, err_msg=f"{model} {sink}")


def test_the_documented_depth_table_is_computed(engines: dict[str, TruthEngine]) -> None:
    header, rows = _rows("| task | model | d=1 |")
    depths = [int(h.removeprefix("d=")) for h in header[2:-1]]
    assert len(rows) == 6
    for task, model, *values, best in rows:
        curve = [_pct(engines[task], chain(f"sim/{model}", d, "critic")) for d in depths]
        np.testing.assert_allclose(curve, [float(v) for v in values], atol=0.051, err_msg=f"{task} {model}")
        full = [_pct(engines[task], chain(f"sim/{model}", d, "critic")) for d in range(1, 9)]
        assert 1 + int(np.argmax(full)) == int(best), (task, model, full)


def test_the_documented_width_depth_interaction_is_computed(engines: dict[str, TruthEngine]) -> None:
    header, rows = _rows("| task | model | w=1 | 2 | 3 | 4 | 6 |")
    widths = [int(h.removeprefix("w=")) for h in header[2:]]
    for task, model, *bests in rows:
        for width, best in zip(widths, bests, strict=True):
            curve = [engines[task].accuracy(parallel(f"sim/{model}", width, depth)) for depth in range(1, 6)]
            assert 1 + int(np.argmax(curve)) == int(best), (task, model, width)


def test_a_strong_reader_of_weak_drafts_scores_as_documented(engines: dict[str, TruthEngine]) -> None:
    """docs/sim.md, 'Choice': llama-1b -> llama-70b critic 61.2% (mmlu) and 54.5% (math); three
    llama-1b drafts fused by llama-70b 48.1% (mmlu)."""
    critic = SimGraph.build([("assistant", "sim/llama-1b"), ("critic", "sim/llama-70b")], [(), (0,)])
    assert _pct(engines["mmlu"], critic) == pytest.approx(61.2, abs=0.051)
    assert _pct(engines["math"], critic) == pytest.approx(54.5, abs=0.051)
    fused = SimGraph.build([("assistant", "sim/llama-1b")] * 3 + [("fuser", "sim/llama-70b")], [(), (), (), (0, 1, 2)])
    assert _pct(engines["mmlu"], fused) == pytest.approx(48.1, abs=0.051)
