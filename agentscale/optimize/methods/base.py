"""The interface every search method implements, and the registry the CLI and benchmarks use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.feedback import AgentCall
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.race import RaceOutcome


class SearchMethod(ABC):
    """Propose candidates, observe their scores, repeat. Deterministic given the seed and what it
    observes: that is what lets a run resume by replaying stored evaluations."""

    name: ClassVar[str]
    uses_agent: ClassVar[bool] = False  # calls `optimizer.agent_model` when the space names one
    needs_agent: ClassVar[bool] = False  # cannot run without it
    # what a feedback step does when the agent gives nothing usable (the run's warning says it)
    without_agent: ClassVar[str] = "went on with the method's own update"

    def __init__(self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, **options: Any):
        self.problem = problem
        self.rng = np.random.default_rng(seed)
        self.agent = agent
        self.history: list[Observation] = []
        self.agent_unused: list[str] = []  # why the agent gave nothing usable, one entry per such feedback step

    def agent_warning(self) -> str | None:
        """How many feedback steps the agent gave nothing usable in, what they did instead, and why
        the first; None when every step used its reply (or there was no agent)."""
        if not self.agent_unused:
            return None
        return (
            f"the feedback agent gave nothing usable in {len(self.agent_unused)} step(s), which "
            f"{self.without_agent} (first: {self.agent_unused[0]})"
        )

    @abstractmethod
    def propose(self, k: int) -> list[CandidateGraph]:
        """The next graphs to evaluate (usually k; a method may add pilot or proposed graphs)."""

    async def observe(self, observations: list[Observation], *, more: bool = True) -> None:
        """Learn from the evaluations of the last proposals; `more` is false after the last round,
        when nothing the method proposes will be evaluated (a feedback agent is then not asked: on
        the real 0.5B its last call took 162 s and 1,733 tokens for a proposal no round measured)."""
        self.history.extend(observations)

    @classmethod
    def agent_calls(cls, iterations: int) -> int:
        """How many times a search of `iterations` rounds asks a feedback agent: after every round
        but the last (`observe(more=False)`), for a method that uses one (the dry run counts them)."""
        return max(0, iterations - 1) if cls.uses_agent else 0

    def learn_from_singles(self, singles: RaceOutcome) -> None:
        """Each model alone, raced on the train split before the search (every method gets them;
        crowning weighs the race's finalists; one clearly behind the best left early, `n_items` says
        on how many). Methods with a model prior start from them; the others ignore them."""
        return None

    def nominees(self) -> list[CandidateGraph]:
        """Graphs the method vouches for beyond its scores, raced for the crown with the search's
        most promising ones (none by default)."""
        return []


METHODS: dict[str, type[SearchMethod]] = {}


def register(method: type[SearchMethod]) -> type[SearchMethod]:
    """Class decorator: make a method available to `--method` and to the benchmark harness."""
    METHODS[method.name] = method
    return method
