"""The search problem every optimizer sees: which graphs are allowed and what they cost.

Built from a search space; holds the resolved models, the roles, the node limit and the per-question
budget in `compute` units (1B-calls on the task's mean prompt and completion lengths), and decides
whether a candidate fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentscale.errors import SpecError, SpecIssue
from agentscale.models.registry import ResolvedModel
from agentscale.optimize.candidate import CandidateGraph, resolve_models
from agentscale.optimize.space import SpaceSpec

# Mean prompt/completion tokens of the paper's tasks (from its code), used when a space gives none.
DEFAULT_LENGTHS = {"math": (202.0, 275.0), "mmlu": (213.0, 215.0), "humaneval": (180.0, 115.0)}
FALLBACK_LENGTHS = (200.0, 200.0)


def task_lengths(space: SpaceSpec) -> tuple[float, float]:
    """Mean prompt and completion tokens for the compute unit: the space's, else a known default."""
    task = space.task
    if task.mean_prompt_tokens and task.mean_completion_tokens:
        return task.mean_prompt_tokens, task.mean_completion_tokens
    name = (task.name or "").lower()
    for key, lengths in DEFAULT_LENGTHS.items():
        if key in name:
            return lengths
    return FALLBACK_LENGTHS


@dataclass
class SearchProblem:
    models: dict[str, ResolvedModel]
    roles: tuple[str, ...]
    max_nodes: int
    budget: float | None  # compute units per question; None = no compute cap
    mean_prompt_tokens: float
    mean_completion_tokens: float
    _cost: dict[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def from_space(cls, space: SpaceSpec) -> SearchProblem:
        models = resolve_models(space.models)
        unknown = [alias for alias, model in models.items() if model.params_b is None]
        if unknown and space.budget.compute is not None:
            raise SpecError(
                [
                    SpecIssue(f"models.{alias}", "unknown model size: set params_b (the compute budget needs it)")
                    for alias in unknown
                ]
            )
        prompt, completion = task_lengths(space)
        return cls(models, tuple(space.roles), space.max_nodes, space.budget.compute, prompt, completion)

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self.models)

    def compute(self, candidate: CandidateGraph) -> float:
        key = candidate.canonical_key
        if key not in self._cost:
            self._cost[key] = candidate.compute(self.models, self.mean_prompt_tokens, self.mean_completion_tokens)
        return self._cost[key]

    def fits(self, candidate: CandidateGraph) -> bool:
        return (
            candidate.is_valid
            and candidate.size <= self.max_nodes
            and all(n.role in self.roles for n in candidate.nodes)
            and (self.budget is None or self.compute(candidate) <= self.budget + 1e-9)
        )
