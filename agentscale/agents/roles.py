"""Roles: how a node turns the question and its predecessors' answers into its own answer.

Prompt texts live in `prompts/roles.yaml` (package data) so they can be read and tuned without
touching code. Three kinds of role exist: *generating* roles (assistant, critic, fuser and custom
roles) call a model and extract an answer from its completion; the *verifier* calls a model to score
the candidates and passes the best one on; *vote* and *tester* call no model (the tester runs the
candidates on the question's stated examples, :mod:`agentscale.agents.tester`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from agentscale.agents.extract import extract_answer, normalize_for_vote
from agentscale.agents.tester import pick_tested
from agentscale.graphs.spec import ROLE_PLACEHOLDERS, AnswerFormat, AnswerStyle, RoleSpec

_PLACEHOLDER = re.compile(r"\{(" + "|".join(ROLE_PLACEHOLDERS) + r")\}")
# possessive runs: "Candidate 1:" and 20,000 blanks in a verifier's reply backtracked for 7 s
_SCORE_LINE = re.compile(r"candidate\s*+#?\s*+(\d+)\s*+[:=\-]\s*+\**+\s*+(\d+(?:\.\d+)?)", re.IGNORECASE)


@cache
def _prompt_file() -> dict[str, Any]:
    text = resources.files("agentscale.agents").joinpath("prompts/roles.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def fill(template: str, values: dict[str, str]) -> str:
    """Replace only the known placeholders, leaving other braces (code, JSON) untouched."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


@dataclass(frozen=True)
class Candidate:
    """A predecessor's answer as another node sees it."""

    node_id: str
    answer: str


def format_inputs(candidates: list[Candidate], answer_format: AnswerFormat) -> str:
    """Number the predecessors' answers; node ids are hidden so no source is favoured by name."""
    blocks = []
    for index, candidate in enumerate(candidates, start=1):
        body = candidate.answer.strip()
        if answer_format == "code" and "```" not in body:
            body = f"```python\n{body}\n```"
        blocks.append(f"Candidate {index}:\n{body}")
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class Role:
    """A role's prompts and how its answer is derived."""

    name: str
    system: str
    user: str
    kind: str = "generate"  # "generate" | "verify" | "vote" | "test"
    system_with_inputs: str | None = None
    user_with_inputs: str | None = None

    @property
    def calls_model(self) -> bool:
        return self.kind not in ("vote", "test")

    def messages(
        self,
        question: str,
        candidates: list[Candidate],
        answer_format: AnswerFormat,
        *,
        direction: str | None = None,
        behaviors: str | None = None,
        answer_style: AnswerStyle = "final_line",
    ) -> list[dict[str, str]]:
        """The chat messages for one call of this role; ``answer_style`` is the model's (see ``formats``)."""
        prompts = _prompt_file()
        use_inputs = bool(candidates) and self.user_with_inputs is not None
        system = self.system_with_inputs if use_inputs and self.system_with_inputs else self.system
        user = self.user_with_inputs if use_inputs and self.user_with_inputs else self.user
        values = {
            "question": question.strip(),
            "inputs": format_inputs(candidates, answer_format),
            "format": prompts["formats"][answer_style][answer_format],
            "direction": fill(prompts["direction"], {"direction": direction}) + "\n\n" if direction else "",
            "behaviors": (behaviors.strip() + "\n\n") if behaviors else "",
        }
        return [
            {"role": "system", "content": fill(system, values).strip()},
            {"role": "user", "content": fill(user, values).strip()},
        ]

    def answer(self, completion: str, candidates: list[Candidate], answer_format: AnswerFormat) -> str | None:
        """The node's answer: extracted from its completion, or the verifier's pick."""
        if self.kind == "verify":
            return pick_verified(completion, candidates)
        return extract_answer(completion, answer_format)


def pick_verified(completion: str, candidates: list[Candidate]) -> str | None:
    """The best-scored candidate; unscored candidates count 0, ties go to the earliest candidate."""
    if not candidates:
        return None
    scores = [0.0] * len(candidates)
    for number, score in _SCORE_LINE.findall(completion):
        index = int(number) - 1
        if 0 <= index < len(candidates):
            scores[index] = float(score)
    best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    return candidates[best].answer


def majority_vote(candidates: list[Candidate], answer_format: AnswerFormat) -> str | None:
    """Most common answer, in its most common spelling ('7' over '007' when they vote together: a
    scorer may tell them apart); candidates arrive in finishing order, so ties go to the first finished."""
    voters = [(c.answer, normalize_for_vote(c.answer, answer_format)) for c in candidates]
    if answer_format == "choice":  # a letter outvotes any text: prose ("hard to say") won ties, and an
        # option's text ("Rome") split its letter's votes (the vote cannot map it to its option)
        voters = [(answer, key) for answer, key in voters if len(key) == 1] or voters
    if not voters:
        return None
    counts = Counter(key for _, key in voters)
    top = max(counts.values())
    winner = next(key for _, key in voters if counts[key] == top)
    spellings = Counter(answer.strip() for answer, key in voters if key == winner)
    most = max(spellings.values())
    return next(answer for answer, key in voters if key == winner and spellings[answer.strip()] == most)


async def answer_without_model(
    role: Role, question: str, candidates: list[Candidate], answer_format: AnswerFormat
) -> tuple[str | None, str | None]:
    """A model-free role's answer and, for the tester, its report of what each candidate passed."""
    if role.kind == "test":
        return await pick_tested(question, [c.answer for c in candidates])
    return majority_vote(candidates, answer_format), None


@cache
def builtin_roles() -> dict[str, Role]:
    prompts = _prompt_file()
    assistant = prompts["assistant"]
    with_inputs = prompts["assistant_with_inputs"]
    return {
        "assistant": Role(
            "assistant",
            assistant["system"],
            assistant["user"],
            system_with_inputs=with_inputs["system"],
            user_with_inputs=with_inputs["user"],
        ),
        "critic": Role("critic", prompts["critic"]["system"], prompts["critic"]["user"]),
        "fuser": Role("fuser", prompts["fuser"]["system"], prompts["fuser"]["user"]),
        "verifier": Role("verifier", prompts["verifier"]["system"], prompts["verifier"]["user"], kind="verify"),
        "vote": Role("vote", "", "", kind="vote"),
        "tester": Role("tester", "", "", kind="test"),
    }


def resolve_roles(custom: dict[str, RoleSpec]) -> dict[str, Role]:
    """Built-in roles plus a graph's custom roles (validation forbids shadowing built-ins).

    A template without `{format}` gets the format instruction appended (answers must be
    extractable), and one without `{direction}` gets the coordinator's direction in front, as the
    built-in roles have it: a CEO's direction is for the whole team (empty without a coordinator)."""
    roles = dict(builtin_roles())
    for name, spec in custom.items():
        written = spec.system + spec.user  # a placeholder in either template is filled there
        user = spec.user if "{format}" in written else spec.user.rstrip() + "\n\n{format}"
        user = user if "{direction}" in written else "{direction}" + user
        roles[name] = Role(name, spec.system, user)
    return roles
