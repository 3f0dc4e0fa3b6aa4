"""Ground truth bound to a search space: what an optimizer benchmark and "sim mode" call.

`SimOracle.for_space(space)` loads the space's sim task, splits it exactly as an evaluation would
(`Task.split(seed, train=, dev=, test=)`), and answers, for any `CandidateGraph` of the space:

- `expected_accuracy(c, split)`: the exact expected accuracy on that split's items (what running
  the graph through the gateway converges to; see `truth`),
- `observe(c, n, seed)`: per-item right/wrong outcomes of one simulated run on `n` training items,
  drawn from the exact per-item probabilities (what an optimizer would see from a real minibatch,
  without HTTP, litellm or the database), and `evaluate(c, n, seed)`, the same as the optimizer's
  `Observation` (accuracy, compute, latency) for a "sim mode" that skips the gateway,
- `compute(c)`, `latency(c)`, `tokens(c)`, `within_budget(c)`.

Every number here is simulated. Label it so wherever it is printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from agentscale.graphs.spec import GraphSpec, ModelSpec
from agentscale.graphs.topology import Topology
from agentscale.models.gateway import DEFAULT_TEMPERATURE
from agentscale.optimize.candidate import CandidateGraph, SampledNodes, resolve_models
from agentscale.optimize.space import SpaceSpec
from agentscale.sim.items import ItemBank, make_item, parse_tag
from agentscale.sim.profiles import profile
from agentscale.sim.seeding import stable_hash
from agentscale.sim.tasks import load_sim_task
from agentscale.sim.truth import Estimate, SimGraph, SimGraphError, TruthEngine
from agentscale.tasks import Task

if TYPE_CHECKING:
    from agentscale.optimize.objective import Observation

SPLITS = ("train", "dev", "test", "all")


@dataclass(frozen=True)
class SimObservation:
    """One simulated evaluation on a minibatch: per-item outcomes (simulated, not model accuracy)."""

    item_ids: tuple[str, ...]
    correct: tuple[bool, ...]

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0


# Bounded: each entry holds a truth engine (≈340 KB for a space's oracle), and a process looping over
# generated spaces through `expected_accuracy` kept every one of them
_TRUTH_CACHE_SIZE = 16


@lru_cache(maxsize=_TRUTH_CACHE_SIZE)
def _engine(task: str, seed: int, indices: tuple[int, ...]) -> TruthEngine:
    return TruthEngine(ItemBank.of([make_item(task, seed, index) for index in indices]))


def engine_for(task: Task) -> TruthEngine:
    """The (cached) ground-truth engine over a sim task's items."""
    return _engine_for_items(task.name, tuple(item.question for item in task.items))


@lru_cache(maxsize=_TRUTH_CACHE_SIZE)
def _engine_for_items(name: str, questions: tuple[str, ...]) -> TruthEngine:
    parsed = [parse_tag(question) for question in questions]
    if any(p is None for p in parsed):
        raise SimGraphError(f"task {name!r} has items that are not simulated (no [sim:...] tag)")
    items = [make_item(*p) for p in parsed if p is not None]
    if not items:
        raise SimGraphError(f"task {name!r} has no items")
    keys = {(i.task, i.seed) for i in items}
    if len(keys) != 1:
        raise SimGraphError(f"task {name!r} mixes sim tasks or seeds: {sorted(keys)}")
    (key, seed) = keys.pop()
    return _engine(key, seed, tuple(i.index for i in items))


def _temperature(value: float | None, default: float | None) -> float:
    if value is not None:
        return value
    return default if default is not None else DEFAULT_TEMPERATURE


def candidate_graph(
    candidate: CandidateGraph,
    models: Mapping[str, ModelSpec],
    temperature: float | None = None,
    sampled_nodes: SampledNodes = "all",
) -> SimGraph:
    """The simulator's view of a candidate whose aliases map to sim routes in `models` (its greedy
    nodes at temperature 0, as `CandidateGraph.to_spec` writes them)."""
    if candidate.ceo is not None:
        raise SimGraphError("the simulator's ground truth does not cover coordinator (multi-round) graphs")
    nodes: list[tuple[str, str | None]] = []
    for node in candidate.nodes:
        if node.model is None:
            nodes.append((node.role, None))
            continue
        spec = models.get(node.model)
        route = spec.model if spec is not None else node.model
        if not route.startswith("sim/"):
            raise SimGraphError(f"model {node.model!r} ({route}) is not a simulated model (sim/<name>)")
        nodes.append((node.role, route))
    temp = _temperature(temperature, None)
    greedy = candidate.greedy_nodes(sampled_nodes)
    temperatures = [0.0 if index in greedy else temp for index in range(len(nodes))]
    return SimGraph.build(nodes, list(candidate.predecessors), temperatures)


def spec_graph(spec: GraphSpec) -> SimGraph:
    """The simulator's view of a graph file whose models are all sim routes."""
    if spec.coordinator is not None:
        raise SimGraphError("the simulator's ground truth does not cover coordinator (multi-round) graphs")
    topology = Topology.build([n.id for n in spec.nodes], spec.edge_pairs())
    order = list(topology.order)
    output = spec.output or topology.sinks[0]
    if order[-1] != output:
        raise SimGraphError(f"output {output!r} must be the graph's only sink")
    position = {node_id: i for i, node_id in enumerate(order)}
    nodes: list[tuple[str, str | None]] = []
    temperatures: list[float] = []
    for node_id in order:
        node = spec.node(node_id)
        route: str | None = None
        if node.model is not None:
            alias = spec.models.get(node.model)
            route = alias.model if alias is not None else node.model
            if not route.startswith("sim/"):
                raise SimGraphError(f"node {node_id!r}: model {route!r} is not a simulated model (sim/<name>)")
        nodes.append((node.role, route))
        temperatures.append(_temperature(node.temperature, spec.defaults.temperature))
    preds = [tuple(position[p] for p in topology.predecessors[node_id]) for node_id in order]
    return SimGraph.build(nodes, preds, temperatures)


class SimOracle:
    """Ground truth for one search space over a sim task (see the module docstring)."""

    def __init__(self, space: SpaceSpec) -> None:
        ref = space.task
        if ref.name is None or not ref.name.startswith("sim:"):
            given = ref.name or ref.path
            raise SimGraphError(
                f"space {space.name!r}: task {given!r}: the ground truth needs a sim task (sim:math, sim:mmlu, "
                "sim:humaneval)"
            )
        if space.coordinator is not None:
            raise SimGraphError(
                f"space {space.name!r}: the ground truth does not cover the coordinator dimension "
                "(multi-round graphs); remove `coordinator:` or measure it with `agentscale optimize`"
            )
        if "tester" in space.roles:  # its graphs read "node 2 (tester) has no model"
            raise SimGraphError(
                f"space {space.name!r}: roles: the ground truth does not cover 'tester' (it runs candidate "
                "programs, which simulated answers are not); drop it from roles"
            )
        self.space = space
        try:
            self.profile = profile(ref.name)
        except ValueError as exc:
            raise SimGraphError(f"space {space.name!r}: {exc}") from None
        # The same items as the optimizer's runner (`agentscale.optimize.runner.load_task_split`)
        try:
            task = load_sim_task(ref.name, **ref.load_options())
        except TypeError:
            raise SimGraphError(f"space {space.name!r}: sim tasks accept the options size and seed") from None
        sizes = ref.split_sizes()
        split = task.split(sizes.pop("seed"), **sizes)
        self.tasks: dict[str, Task] = {"train": split.train, "dev": split.dev, "test": split.test, "all": task}
        self.models = dict(space.models)
        self.resolved = resolve_models(self.models)
        self.mean_prompt_tokens = ref.mean_prompt_tokens or self.profile.mean_prompt_tokens
        self.mean_completion_tokens = ref.mean_completion_tokens or self.profile.mean_completion_tokens
        self.temperature = space.defaults.temperature
        self._engines: dict[str, TruthEngine] = {}
        self._positions: dict[str, dict[str, int]] = {}

    @classmethod
    def for_space(cls, space: SpaceSpec) -> SimOracle:
        """A cached oracle per distinct space (cheap to call in a loop)."""
        return _oracle(space.model_dump_json())

    def engine(self, split: str = "test") -> TruthEngine:
        found = self._engines.get(split)
        if found is None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            found = self._engines[split] = engine_for(self.tasks[split])
        return found

    def graph(self, candidate: CandidateGraph) -> SimGraph:
        return candidate_graph(candidate, self.models, self.temperature, self.space.sampled_nodes)

    # accuracy ----------------------------------------------------------------------------------
    def expected_accuracy(self, candidate: CandidateGraph, split: str = "test") -> float:
        """Exact expected accuracy (simulated) of the candidate on a split of the space's task."""
        return self.engine(split).accuracy(self.graph(candidate))

    def estimate(self, candidate: CandidateGraph, split: str = "test") -> Estimate:
        return self.engine(split).estimate(self.graph(candidate))

    def observe(
        self,
        candidate: CandidateGraph,
        n: int | None = None,
        *,
        seed: int = 0,
        split: str = "train",
        item_ids: Sequence[str] | None = None,
    ) -> SimObservation:
        """One simulated run on a minibatch: `n` items of `split` drawn with `seed` (or `item_ids`).

        Outcomes are Bernoulli draws from the exact per-item probabilities, keyed by (seed, graph,
        item), so the same call always observes the same outcomes and different seeds re-sample.
        """
        task = self.tasks[split]
        chosen = task.subset([task.item(i) for i in item_ids]) if item_ids is not None else task.sample(n, seed)
        probabilities, _ = self.engine(split).correct_probability(self.graph(candidate))
        positions = self._positions.setdefault(split, {item.id: i for i, item in enumerate(task.items)})
        key = candidate.canonical_key
        correct = tuple(
            bool(stable_hash("observe", seed, key, item.id) / 2.0**64 < probabilities[positions[item.id]])
            for item in chosen.items
        )
        return SimObservation(tuple(item.id for item in chosen.items), correct)

    def evaluate(
        self, candidate: CandidateGraph, n: int | None = None, *, seed: int = 0, split: str = "train"
    ) -> Observation:
        """The optimizer's observation of one simulated minibatch evaluation ("sim mode"): accuracy
        over `n` items of `split` (see `observe`), compute and expected latency. Simulated numbers."""
        from agentscale.optimize.objective import Observation

        seen = self.observe(candidate, n, seed=seed, split=split)
        return Observation(
            candidate=candidate,
            accuracy=seen.accuracy,
            compute=self.compute(candidate),
            latency_s=self.latency(candidate, split),
            n_items=len(seen.correct),
            usd=0.0,
        )

    # cost ------------------------------------------------------------------------------------
    def compute(self, candidate: CandidateGraph) -> float:
        """The paper's FLOPs cost in 1B-call units (the space budget's `compute`)."""
        return candidate.compute(self.resolved, self.mean_prompt_tokens, self.mean_completion_tokens)

    def latency(self, candidate: CandidateGraph, split: str = "test") -> float:
        """Expected critical-path latency in seconds on the roofline GPU (simulated)."""
        return self.engine(split).latency(self.graph(candidate))

    def tokens(self, candidate: CandidateGraph, split: str = "test") -> float:
        return self.engine(split).tokens(self.graph(candidate))

    def within_budget(self, candidate: CandidateGraph) -> bool:
        """Whether the candidate satisfies the space's per-question budget (USD is always 0 here)."""
        budget = self.space.budget
        if budget.compute is not None and self.compute(candidate) > budget.compute + 1e-9:
            return False
        if budget.max_latency_s is not None and self.latency(candidate) > budget.max_latency_s:
            return False
        return not (budget.max_tokens is not None and self.tokens(candidate) > budget.max_tokens)


@lru_cache(maxsize=_TRUTH_CACHE_SIZE)
def _oracle(space_json: str) -> SimOracle:
    return SimOracle(SpaceSpec.model_validate_json(space_json))


def expected_accuracy(
    graph: CandidateGraph | GraphSpec,
    space_or_task: SpaceSpec | Task | str,
    split: str = "test",
    *,
    models: Mapping[str, ModelSpec] | None = None,
) -> float:
    """Exact expected accuracy (simulated) of a graph on sim items.

    `space_or_task` is a space (its task and split; `split` picks train/dev/test/all), a `Task`
    (all its items) or a sim task name such as `sim:math` (its whole default bank). A
    `CandidateGraph`'s model aliases are looked up in the space's models (or `models`); a
    `GraphSpec` names its own models.
    """
    if isinstance(space_or_task, SpaceSpec):
        oracle = SimOracle.for_space(space_or_task)
        if isinstance(graph, CandidateGraph) and models is None:
            return oracle.expected_accuracy(graph, split)
        engine = oracle.engine(split)
        models = models or oracle.models
    else:
        task = load_sim_task(space_or_task) if isinstance(space_or_task, str) else space_or_task
        engine = engine_for(task)
    if isinstance(graph, GraphSpec):
        return engine.accuracy(spec_graph(graph))
    return engine.accuracy(candidate_graph(graph, models or {}))
