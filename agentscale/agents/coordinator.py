"""The CEO coordinator (MAS-TTS): its prompts, its decision, and how model output becomes a safe setting.

Before each discussion round the CEO model returns a JSON decision
``{"decision": "continue"|"stop", "agents": n, "direction": "...", "max_tokens": m}``. The text is
parsed leniently (the last JSON object in the reply that validates wins; prose and code fences
around it are ignored), validated with pydantic and then *clamped* to the ranges the graph's author
configured (:class:`Limits`), so a model can never raise a limit above the graph's caps whatever it
writes. An unusable reply is retried with a correction message; after :data:`MAX_ATTEMPTS` unusable
replies :func:`fallback` applies (continue with the current settings).

The round loop that calls the CEO lives in :mod:`agentscale.runtime.discussion`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from agentscale.agents.json_repair import decode_mending_escapes

MAX_ATTEMPTS = 3  # CEO replies tried per round before the fallback applies
UNUSABLE_REPLIES = f"{MAX_ATTEMPTS} unusable CEO replies"  # how such a fallback's reason begins
MAX_DIRECTION_CHARS = 500  # a direction is a hint, not a second prompt: longer text is cut
NO_SOLUTION = "No solution yet."
NO_FEEDBACK = "No feedback yet."

_PLACEHOLDER = re.compile(
    r"\{(question|solution|feedback|resources|settings|min_agents|max_agents|min_tokens|max_tokens|error|decision)\}"
)


@cache
def prompts() -> dict[str, Any]:
    """The CEO and evaluator prompts (package data `agents/prompts/coordinator.yaml`)."""
    text = resources.files("agentscale.agents").joinpath("prompts/coordinator.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the known placeholders in one pass (text inserted is never re-expanded)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


class RawDecision(BaseModel):
    """The CEO's reply as the model wrote it, validated but not yet clamped.

    `agents` and `max_tokens` may be missing (keep the current setting) and may be out of range
    (clamped later); `decision` is required, case-insensitive.
    """

    model_config = ConfigDict(extra="ignore")

    decision: Literal["continue", "stop"]
    agents: int | None = None
    direction: str = ""
    max_tokens: int | None = None

    @field_validator("decision", mode="before")
    @classmethod
    def _normalise_decision(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("agents", "max_tokens", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        # 3.0 and "3" are fine; 2.5, "many", true are not (bool is an int subclass in Python)
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
            return int(value)
        return value

    @field_validator("direction", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else value


@dataclass(frozen=True)
class Limits:
    """What the CEO may choose from; fixed by the graph, never by the model."""

    min_agents: int
    max_agents: int
    min_tokens: int
    max_tokens: int

    def __post_init__(self) -> None:
        if not (1 <= self.min_agents <= self.max_agents and 1 <= self.min_tokens <= self.max_tokens):
            raise ValueError(f"inconsistent coordinator limits: {self}")


@dataclass(frozen=True)
class Decision:
    """A decision as applied: in range, with where it came from (`ceo`, `fallback`, `initial`)."""

    decision: Literal["continue", "stop"]
    agents: int
    direction: str
    max_tokens: int
    source: str = "ceo"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def decision_schema(limits: Limits) -> dict[str, Any]:
    """The decision as a JSON schema, for structured output: a server that constrains decoding to it
    makes every reply parse (small models otherwise wrap, truncate or invent the JSON). The ranges
    are the graph's; the reply is still validated and clamped like any other."""
    return {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["continue", "stop"]},
            "agents": {"type": "integer", "minimum": limits.min_agents, "maximum": limits.max_agents},
            "direction": {"type": "string", "maxLength": MAX_DIRECTION_CHARS},
            "max_tokens": {"type": "integer", "minimum": limits.min_tokens, "maximum": limits.max_tokens},
        },
        "required": ["decision", "agents", "direction", "max_tokens"],
        "additionalProperties": False,
    }


VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correct": {"type": "integer", "enum": [0, 1]},
        "advice": {"type": "string", "maxLength": MAX_DIRECTION_CHARS},
    },
    "required": ["correct", "advice"],
    "additionalProperties": False,
}


class DecisionParseError(ValueError):
    """The reply holds no JSON object that is a valid decision."""


def parse_decision(text: str) -> RawDecision:
    """The last JSON object in `text` that validates as a decision (JSON may sit inside prose).

    >>> parse_decision('Sure! {"decision": "Stop", "agents": "2"} done').decision
    'stop'
    """
    errors: list[str] = []
    for obj in reversed(json_objects(text)):
        try:
            return RawDecision.model_validate(obj)
        except ValidationError as exc:
            errors.append("; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()))
    if errors:
        raise DecisionParseError(f"invalid decision: {errors[0]}")
    raise DecisionParseError("no JSON object found")


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object embedded in `text`, in order (arrays and scalars are skipped); a
    backslash that starts no JSON escape (LaTeX's `\\(`) is read as a backslash (`json_repair`)."""
    found: list[dict[str, Any]] = []
    index = text.find("{")
    while index != -1:
        try:
            value, end = decode_mending_escapes(text, index)
        except (json.JSONDecodeError, RecursionError):  # not JSON here, or nested beyond the parser's depth
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        index = text.find("{", end)
    return found


def clamp(raw: RawDecision, limits: Limits, current: Decision, *, token_cap: int | None = None) -> Decision:
    """Bring a parsed decision into `limits` (and under `token_cap`: each call's share of what the budget has left).

    Missing numbers keep the current setting. Every adjustment is noted, so the trace shows both
    what the model asked for and what was applied.
    """
    notes: list[str] = []
    agents = current.agents if raw.agents is None else raw.agents
    bounded_agents = min(max(agents, limits.min_agents), limits.max_agents)
    if bounded_agents != agents:
        notes.append(f"agents {agents} clamped to {bounded_agents}")
    tokens = current.max_tokens if raw.max_tokens is None else raw.max_tokens
    bounded_tokens = min(max(tokens, limits.min_tokens), limits.max_tokens)
    if bounded_tokens != tokens:
        notes.append(f"max_tokens {tokens} clamped to {bounded_tokens}")
    if token_cap is not None and bounded_tokens > max(1, token_cap):
        notes.append(
            f"max_tokens {bounded_tokens} cut to {max(1, token_cap)} (the budget left, shared by the round's calls)"
        )
        bounded_tokens = max(1, token_cap)
    direction = " ".join(raw.direction.split())
    if len(direction) > MAX_DIRECTION_CHARS:
        direction = direction[:MAX_DIRECTION_CHARS].rstrip() + "..."
        notes.append(f"direction cut to {MAX_DIRECTION_CHARS} characters")
    return Decision(raw.decision, bounded_agents, direction, bounded_tokens, "ceo", tuple(notes))


def fallback(current: Decision, reason: str) -> Decision:
    """The safe default when the CEO gave no usable answer: continue with the current team and depth
    (no direction: the last one was written for an earlier state)."""
    return Decision("continue", current.agents, "", current.max_tokens, "fallback", (reason,))


def ceo_messages(
    question: str,
    solution: str | None,
    feedback: str | None,
    resources_text: str,
    current: Decision,
    limits: Limits,
) -> list[dict[str, str]]:
    """The CEO's chat messages for one round."""
    data = prompts()["ceo"]
    values = _limit_values(limits)
    values.update(
        question=question.strip(),
        solution=solution.strip() if solution else NO_SOLUTION,
        feedback=feedback.strip() if feedback else NO_FEEDBACK,
        resources=resources_text,
        settings=f"agents: {current.agents}, max_tokens: {current.max_tokens}",
    )
    return [
        {"role": "system", "content": data["system"].strip()},
        {"role": "user", "content": fill(data["user"], values).strip()},
    ]


def retry_messages(messages: list[dict[str, str]], reply: str, error: str, limits: Limits) -> list[dict[str, str]]:
    """The conversation extended by the unusable reply and a correction (also a new cache key). The
    correction's example keeps the decision the unusable reply wrote, if it wrote one: a real 0.5B
    CEO copied the example word for word, and its "continue" turned each of 8 stops into a paid round."""
    values = _limit_values(limits)
    values["error"] = error
    said = _DECISION_WRITTEN.search(reply)
    values["decision"] = said.group(1).lower() if said else "continue"
    correction = fill(prompts()["ceo"]["retry"], values).strip()
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": correction}]


_DECISION_WRITTEN = re.compile(r'"decision"\s*:\s*"(stop|continue)"', re.IGNORECASE)


def _limit_values(limits: Limits) -> dict[str, str]:
    return {
        "min_agents": str(limits.min_agents),
        "max_agents": str(limits.max_agents),
        "min_tokens": str(limits.min_tokens),
        "max_tokens": str(limits.max_tokens),
    }


@dataclass(frozen=True)
class Verdict:
    """The evaluator's judgement of a round's answer (`correct` None when unreadable)."""

    correct: bool | None
    advice: str


def evaluator_messages(question: str, solution: str) -> list[dict[str, str]]:
    data = prompts()["evaluator"]
    values = {"question": question.strip(), "solution": solution.strip()}
    return [
        {"role": "system", "content": data["system"].strip()},
        {"role": "user", "content": fill(data["user"], values).strip()},
    ]


def parse_verdict(text: str) -> Verdict:
    """The evaluator's `{"correct": 0|1, "advice": "..."}`; without JSON, the reply itself is the advice."""
    for obj in reversed(json_objects(text)):
        if "correct" in obj or "advice" in obj:
            flag = _correctness(obj.get("correct"))
            advice = str(obj.get("advice") or "").strip()
            return Verdict(flag, advice[:MAX_DIRECTION_CHARS])
    return Verdict(None, " ".join(text.split())[:MAX_DIRECTION_CHARS])


_CORRECT_WORDS = {"1": True, "true": True, "yes": True, "correct": True}
_INCORRECT_WORDS = {"0": False, "false": False, "no": False, "incorrect": False, "wrong": False}


def _correctness(value: object) -> bool | None:
    """The verdict's 0/1 as models write it: 1, 0, true, "1", "false", "Correct"; anything else
    (-1, 0.3, "maybe") is unclear, not a judgement (`bool(-1)` had told the CEO "correct").

    >>> [_correctness(v) for v in (1, 0.0, True, "0", " Yes ", -1, 0.3, "maybe", None)]
    [True, False, True, False, True, None, None, None, None]
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        word = value.strip().lower()
        return _CORRECT_WORDS.get(word, _INCORRECT_WORDS.get(word))
    return None
