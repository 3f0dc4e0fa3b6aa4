"""The sim tasks' profiles: what distinguishes `sim:math`, `sim:mmlu` and `sim:humaneval`.

Their item banks (`items`) and the models' skills on them (`population`) both read these figures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskProfile:
    """What distinguishes one sim task from another.

    `difficulty_sd` spreads item difficulty: the larger it is, the more items are either easy for
    everyone or hard for everyone, and the less repeated sampling helps. `distractor_concentration`
    is the Dirichlet parameter of the plausibilities: small values put most wrong answers on one
    attractive distractor (MMLU's tempting option), large values scatter them (MATH arithmetic slips).
    """

    key: str
    title: str
    mean_prompt_tokens: float
    mean_completion_tokens: float
    n_distractors: int
    difficulty_sd: float
    distractor_concentration: float
    family_tilt: float
    instruction: str

    @property
    def n_categories(self) -> int:
        """Answer categories: 0 is the right answer, 1..K the distractors."""
        return self.n_distractors + 1


PROFILES: dict[str, TaskProfile] = {
    p.key: p
    for p in (
        TaskProfile("math", "MATH", 202, 275, 4, 1.2, 1.5, 0.8, "Answer with a single integer."),
        TaskProfile(
            "mmlu", "MMLU", 213, 215, 3, 1.8, 0.5, 0.5, "Four options are numbered 1-4; answer with the number."
        ),
        TaskProfile(
            "humaneval",
            "HumanEval",
            180,
            115,
            3,
            1.6,
            0.9,
            0.6,
            "Answer with the integer the reference tests print for your solution.",
        ),
    )
}


def profile(task: str) -> TaskProfile:
    key = task.removeprefix("sim:")
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown sim task {task!r}; valid: {', '.join('sim:' + k for k in PROFILES)}") from None
