"""The cost model's formulas and the budget ledger's reservations."""

from __future__ import annotations

import pytest

from agentscale.errors import BudgetExceeded
from agentscale.graphs.spec import Budget, ModelSpec, Price
from agentscale.models.budget import RunLedger, Spend
from agentscale.models.cost import call_flops, call_usd, compute_unit, estimate_prompt_tokens, known_total, model_flops
from agentscale.models.litellm_loader import get_litellm
from agentscale.models.registry import ResolvedModel, params_from_name, resolve


def test_flops_formula_matches_the_paper() -> None:
    # prefill = 2P·Np + 2LD·Np(Np+1); decode = 2P·Nd + 2LD·Nd(2Np+Nd+1)
    p, layers, width, np_, nd = 1e9, 16, 2048, 202, 275
    expected = (
        2 * p * np_ + 2 * layers * width * np_ * (np_ + 1) + 2 * p * nd + 2 * layers * width * nd * (2 * np_ + nd + 1)
    )
    assert call_flops(1.0, np_, nd, n_layers=layers, d_model=width) == pytest.approx(expected)
    assert compute_unit(202, 275) == pytest.approx(expected)


def test_flops_shape_estimate_is_close_to_known_models() -> None:
    known = call_flops(8.0, 500, 300, n_layers=32, d_model=4096)
    estimated = call_flops(8.0, 500, 300)
    assert estimated == pytest.approx(known, rel=0.05)


def test_params_read_from_names() -> None:
    assert params_from_name("hosted_vllm/Qwen/Qwen2.5-7B-Instruct") == 7.0
    assert params_from_name("local/smollm2-135m") == pytest.approx(0.135)
    assert params_from_name("openai/gpt-4o-mini") is None
    assert params_from_name("groq/llama-3.1-8b-instant") == 8.0


def test_registry_then_alias_overrides() -> None:
    bundled = resolve("local/smollm2-135m", None)
    assert bundled.params_b == pytest.approx(0.135) and bundled.n_layers == 30
    override = resolve("x", ModelSpec(model="local/smollm2-135m", params_b=0.2))
    assert override.params_b == 0.2 and model_flops(override, 10, 10) is not None
    unknown = resolve("x", ModelSpec(model="hosted_vllm/mystery"))
    assert model_flops(unknown, 10, 10) is None


def test_usd_override_registry_litellm_and_unknown() -> None:
    priced = resolve("x", ModelSpec(model="hosted_vllm/m", price=Price(input_per_mtok=2, output_per_mtok=4)))
    assert call_usd(priced, 1_000_000, 500_000) == pytest.approx(4.0)
    assert call_usd(resolve("local/smollm2-135m", None), 1000, 1000) == 0.0
    assert call_usd(resolve("openai/gpt-4o-mini", None), 1_000_000, 0) == pytest.approx(0.15)
    assert call_usd(resolve("hosted_vllm/mystery", None), 1000, 1000) is None


def test_ledger_reserves_worst_case_and_settles_actuals() -> None:
    ledger = RunLedger(Budget(max_tokens=1000))
    first = ledger.reserve(Spend(100, 400))
    second = ledger.reserve(Spend(100, 400))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Spend(100, 400))
    assert info.value.cap == "max_tokens"
    ledger.settle(first, Spend(100, 20))
    ledger.settle(second, None)
    assert ledger.spent.tokens == 120
    ledger.reserve(Spend(100, 400))  # fits again once actuals are known


def test_ledger_latency_cap() -> None:
    ledger = RunLedger(Budget(max_latency_s=0.001))
    ledger.started -= 1.0
    with pytest.raises(BudgetExceeded, match="max_latency_s"):
        ledger.reserve(Spend(1, 1))


def test_a_known_layer_count_or_width_alone_is_used_and_the_other_estimated() -> None:
    """A graph may give `n_layers` without `d_model` (or the reverse): the given one must be used and
    the other estimated from the size, not the whole shape thrown away or a crash on the missing one."""
    layers_only = call_flops(8.0, 500, 300, n_layers=32)
    width_only = call_flops(8.0, 500, 300, d_model=4096)
    known = call_flops(8.0, 500, 300, n_layers=32, d_model=4096)
    assert layers_only == pytest.approx(known, rel=0.05) and width_only == pytest.approx(known, rel=0.05)
    assert layers_only != call_flops(8.0, 500, 300, n_layers=64)  # the layer count given is the one used


def test_a_tiny_model_has_at_least_one_layer() -> None:
    """The estimated layer count of a very small model is never below one (its attention FLOPs vanished)."""
    params = 1e-6 * 1e9
    width = (32.0 * params / 3.0) ** (1.0 / 3.0)
    np_, nd = 100, 50
    expected = 2 * params * (np_ + nd) + 2 * width * np_ * (np_ + 1) + 2 * width * nd * (2 * np_ + nd + 1)
    assert call_flops(1e-6, np_, nd) == pytest.approx(expected)


def test_half_a_price_override_falls_back_to_the_price_map() -> None:
    """Only an input price given: the call is priced like one without an override (litellm's map),
    never a crash nor half a price computed with a missing output price."""
    model = ResolvedModel("x", "openai/gpt-4o-mini", input_per_mtok=100.0)
    assert call_usd(model, 1_000_000, 0) == pytest.approx(0.15)


def test_a_total_with_an_unknown_part_is_unknown() -> None:
    """A USD total over calls with one unpriced model must read unknown, not a partial sum shown as the cost."""
    assert known_total([0.5, None, 1.0]) is None
    assert known_total([0.5, 1.0]) == pytest.approx(1.5) and known_total([]) == 0.0


def test_the_compute_unit_rounds_mean_lengths_to_the_nearest_token() -> None:
    assert compute_unit(201.6, 274.7) == pytest.approx(compute_unit(202, 275))


def test_the_prompt_estimate_is_generous() -> None:
    """Budget projections assume 3 characters a token plus 8 a message, so a projection never
    under-reserves (4 characters a token let runs overshoot their budget)."""
    messages = [{"role": "system", "content": "x" * 300}, {"role": "user", "content": "y" * 30}, {"role": "user"}]
    assert estimate_prompt_tokens(messages) == 330 // 3 + 8 * 3


def test_dollars_below_a_hundredth_of_a_cent_are_not_shown_as_free() -> None:
    """Ten items at $0.05 per million tokens cost $0.0000482: four decimals showed $0.0000 (the
    reports audit), in the report's USD card, eval's summary and runs show."""
    from agentscale.models.cost import usd_text

    assert usd_text(4.82e-05) == "$0.000048"
    assert usd_text(3e-9) == "$0.0000000030"
    assert (usd_text(0.0), usd_text(0.0001), usd_text(1234.5)) == ("$0.0000", "$0.0001", "$1,234.5000")


def test_a_call_of_unknown_price_makes_the_runs_usd_unknown() -> None:
    """An unpriced call counted as $0 (a mutation audit's) would report a USD total that leaves it
    out, and `max_usd` would be checked against that."""
    spent = Spend(10, 10, 0.0, 0.002)
    spent.add(Spend(10, 10, 0.0, None))
    assert spent.usd is None
    spent.add(Spend(1, 1, 0.0, 0.001))
    assert spent.usd is None  # stays unknown


def test_spending_exactly_the_cap_is_not_an_overrun() -> None:
    """`used > limit` -> `>=` (a mutation audit's): a run that used exactly its cap kept within it."""
    ledger = RunLedger(Budget(max_tokens=100))
    ledger.settle(ledger.reserve(Spend(50, 50)), Spend(60, 40))
    assert ledger.overrun() is None
    ledger.settle(ledger.reserve(Spend(0, 0)), Spend(1, 0))
    overrun = ledger.overrun()
    assert overrun is not None and "max_tokens" in overrun


def test_a_call_starting_exactly_at_the_time_cap_is_refused() -> None:
    """`remaining <= 0` -> `< 0` (a mutation audit's): no time left is no time; a call starting at the
    cap on the modelled clock would end past it."""
    ledger = RunLedger(Budget(max_latency_s=5.0))
    with pytest.raises(BudgetExceeded, match="max_latency_s"):
        ledger.reserve(Spend(1, 1), modelled_s=5.0)
    ledger.reserve(Spend(1, 1), modelled_s=4.9)  # a little time left: allowed


def test_the_price_map_prices_completion_tokens_at_the_output_rate() -> None:
    """Output tokens cost several times input tokens on hosted models (gpt-4o-mini: 4x). Priced at
    zero, or at the input rate, every hosted run's USD and its `max_usd` cap were off by that much.
    Existing tests priced prompt tokens only (`completion_tokens=0`)."""
    prices = get_litellm().model_cost["gpt-4o-mini"]
    model = resolve("openai/gpt-4o-mini", None)
    assert call_usd(model, 0, 1_000_000) == pytest.approx(prices["output_cost_per_token"] * 1e6)
    assert call_usd(model, 1_000_000, 1_000_000) == pytest.approx(
        (prices["input_cost_per_token"] + prices["output_cost_per_token"]) * 1e6
    )
    assert prices["output_cost_per_token"] != prices["input_cost_per_token"]  # the test tells them apart


def test_an_alias_keeps_the_registrys_size_and_takes_its_own_concurrency() -> None:
    """An alias for a bundled model that gives no `params_b` keeps the registry's size: lost, its calls
    had no FLOPs and a `max_flops` budget never bit. Its `max_concurrency` is the gateway's limit."""
    alias = resolve("small", ModelSpec(model="local/smollm2-135m", max_concurrency=2))
    assert alias.params_b == pytest.approx(0.135) and alias.n_layers == 30
    assert model_flops(alias, 10, 10) is not None
    assert alias.max_concurrency == 2
    assert resolve("small", ModelSpec(model="local/smollm2-135m")).max_concurrency is None
