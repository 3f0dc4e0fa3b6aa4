"""`optimize --dry-run`: the projected evaluations, items, calls, tokens and USD, stage by stage, checked
against figures worked out by hand for small spaces (no call is made)."""

from __future__ import annotations

from typing import Any

from agentscale.graphs.located import load_located
from agentscale.optimize.dry_run import project
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.runner import AGENT_MAX_TOKENS
from agentscale.optimize.space import SpaceSpec, space_from_data

# every sampled graph is one assistant under a CEO (l1) for two rounds; a question is 100 prompt
# tokens and an answer 20; minibatch 8 is more than the 4 train items
CEO_SPACE = """\
name: dry
task: {name: "sim:math", train: 4, test: 6, seed: 0, mean_prompt_tokens: 100, mean_completion_tokens: 20}
models:
  l1: {model: sim/llama-1b, params_b: 1.0, price: {input_per_mtok: 1000000, output_per_mtok: 2000000}}
  l3: {model: sim/llama-3b, params_b: 3.0, price: {input_per_mtok: 1000000, output_per_mtok: 2000000}}
roles: [assistant]
max_nodes: 1
budget: {compute: 100}
coordinator: {models: [l1], max_rounds: 2, optional: false}
optimizer: {method: random, iterations: 3, samples: 2, minibatch: 8, seed: 0}
"""


def _space(text: str) -> SpaceSpec:
    return space_from_data(load_located(text, "s.yaml"), "s.yaml")


def _project(text: str, *, score_test: bool = False) -> dict[str, Any]:
    space = _space(text)
    problem = SearchProblem.from_space(space)
    return project(space, problem, "random", 0, space.task.train, space.task.test, score_test=score_test)


def test_the_dry_run_counts_each_stage_by_hand() -> None:
    """What `--dry-run` promises before money is spent; each figure is worked out by hand:

    - evaluations: 2 single calls + 3 iterations x 2 samples + a crowning pool of 6 = 14;
    - items: singles 2 x 4 train items = 8; the search 6 graphs x a minibatch of 4 (8 cut to the 4 train
      items) = 24; the crowning race at half of 6 x 4 = 12; in all 44;
    - calls: 8 x 1 + (24 + 12) x 4 (two rounds of one assistant and one CEO call) = 152;
    - tokens: a single reads 100 and writes 20 = 120; a CEO-led question reads 100, then the CEO
      100 + 2 x 20 + 600 and writes 64; round two reads 100 + 20 (the best answer so far) and writes
      20, the CEO again 740 + 64: 1868 a question; 8 x 120 + 36 x 1868 = 68208;
    - USD at $1 a read token and $2 a written one: 8 x 140 + 36 x (1700 + 2 x 168) = 74416.

    A projection that forgot the CEO's inputs, the crowning race's share, the minibatch cut to the
    split or the samples per iteration misled a user about the run's cost by that much."""
    figures = _project(CEO_SPACE)
    assert {key: figures[key] for key in ("evaluations", "items_answered", "calls", "tokens")} == {
        "evaluations": 14,
        "items_answered": 44,
        "calls": 152,
        "tokens": 68208,
    }
    assert figures["usd"] == 74416.0


def test_an_unknown_price_makes_the_projected_usd_unknown_not_a_partial_sum() -> None:
    """With one model's price unknown, a USD figure would count only the priced model's calls: the
    dry run must say unknown (None) rather than print a spend far below what the run costs."""
    text = CEO_SPACE.replace(
        "l3: {model: sim/llama-3b, params_b: 3.0, price: {input_per_mtok: 1000000, output_per_mtok: 2000000}}",
        "l3: {model: hosted_vllm/unpriced-model, api_base: 'http://127.0.0.1:34199/v1', params_b: 3.0}",
    )
    figures = _project(text)
    assert figures["usd"] is None
    assert figures["calls"] == 152  # the calls are still counted


def test_the_pareto_front_is_noted_as_uncounted_only_when_the_test_split_is_scored() -> None:
    """`objective.pareto` scores each front graph on the test split, which the projection cannot count;
    without test scoring (`--no-test`) no such test evaluations happen, so the note must not say so."""
    text = CEO_SPACE.replace("max_nodes: 1", "max_nodes: 1\nobjective: {pareto: true}")
    assert "not counted: each graph on the Pareto front on the 6 test items" in _project(text, score_test=True)["note"]
    assert "Pareto front" not in _project(text, score_test=False)["note"]
    assert "Pareto front" not in _project(CEO_SPACE, score_test=True)["note"]


def test_the_feedback_agents_calls_are_projected_as_the_search_makes_them() -> None:
    """The dry run left the agent out: on the real 0.5B its two calls were 11% of the run's tokens and
    all of its USD, and a `max_spend.usd` cap its calls crossed was not noted. It is asked after every
    round but the last (`llm`: 2 of 3 rounds), Agent-REINFORCE not after its pilot either (1 of 3),
    each a prompt about the round and a reply at its max_tokens, priced as its calls are."""
    agent = (
        ", agent_model: {model: sim/llama-8b, params_b: 8, price: {input_per_mtok: 1000000, output_per_mtok: 2000000}}"
    )
    plain, with_agent = _space(CEO_SPACE), _space(CEO_SPACE.replace("seed: 0}\n", f"seed: 0{agent}}}\n"))
    problem = SearchProblem.from_space(plain)
    for method, asks in (("llm", 2), ("agent-reinforce", 1)):
        before = project(plain, problem, method, 0, 4, 6, score_test=False)
        after = project(with_agent, problem, method, 0, 4, 6, score_test=False)
        assert (
            after["calls"] - before["calls"]
            == asks
            == after["calls_by_stage"]["search"] - before["calls_by_stage"]["search"]
        )
        per_call = (after["tokens"] - before["tokens"]) / asks
        prompt = per_call - AGENT_MAX_TOKENS
        assert 300 < prompt < 3000, prompt  # the prompt about a round of 2 graphs, at 4 characters a token
        assert after["usd"] - before["usd"] == asks * (prompt * 1 + AGENT_MAX_TOKENS * 2)
        assert after["evaluations"] == before["evaluations"]
    without = project(plain, problem, "llm", 0, 4, 6, score_test=False)["usd"]
    cap = f"minibatch: 8, seed: 0, max_spend: {{usd: {without + 1}}}"  # the graphs fit it, the agent does not
    for text, noted in ((CEO_SPACE, False), (CEO_SPACE.replace("seed: 0}\n", f"seed: 0{agent}}}\n"), True)):
        capped = _space(text.replace("minibatch: 8, seed: 0", cap))
        figures = project(capped, problem, "llm", 0, 4, 6, score_test=False)
        assert ("max_spend.usd=" in figures["note"]) == noted, figures["note"]
