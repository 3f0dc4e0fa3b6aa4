"""How a simulated model acts as the CEO coordinator or its evaluator, so the CEO can be measured.

Without this, a simulated model answers every prompt with a number and never writes a decision,
so every CEO call would fall back and no figure could show the CEO's judgement. The behaviour is a
judge on the same item-response scale as the workers (see `behavior`):

- **Judgement.** The judge's competence on the item is q = σ(skill + JUDGE_BOOST − difficulty). It
  calls a right solution right with probability q + (1 − q)/2 and a wrong one right with
  probability (1 − q)/2: a competent judge tells them apart, an incompetent one guesses. A solution
  the simulator does not recognise is judged wrong.
- **CEO.** Before round 1 (no solution) it continues. Later it stops when it judges the solution
  right; when the last round's feedback carries an evaluator's verdict, it follows the verdict with
  probability EVALUATOR_TRUST instead of its own judgement. On `continue` it recruits agents in
  proportion to how hard it finds the item: min + round((1 − q)·(max − min)) of the offered range.
  It keeps the current `max_tokens` (the simulator does not model reasoning depth).
- **Evaluator.** Writes `{"correct": 0|1, "advice": ...}` from its judgement.

Draws are a hash of the model and the messages (a fixed idiosyncrasy per prompt, as greedy decoding
of a real model is), so re-runs agree and each round's new prompt gets a fresh draw.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache

from agentscale.agents.coordinator import NO_SOLUTION, prompts
from agentscale.sim.items import SimItem, item_for_text
from agentscale.sim.population import SimModel, skill
from agentscale.sim.profiles import profile
from agentscale.sim.seeding import unit_uniform

JUDGE_BOOST = 0.3  # judging a given solution is easier than producing one (as for a verifier)
EVALUATOR_TRUST = 0.7  # how often the CEO follows an evaluator's verdict over its own judgement
REPLY_TOKENS = 40  # a decision or a verdict is one short JSON object

_SECTION = re.compile(r"(?ms)^## (?P<title>[^\n]+)\n(?P<body>.*?)(?=^## |\Z)")
_RANGE = re.compile(r'"(?P<key>agents|max_tokens)": <integer from (?P<low>\d+) to (?P<high>\d+)>')
_SETTINGS = re.compile(r"agents: (?P<agents>\d+), max_tokens: (?P<tokens>\d+)")
_VERDICT = re.compile(r"Evaluator: the solution is (?P<judged>correct|incorrect|unclear)\.")


@dataclass(frozen=True)
class JudgeReply:
    """A simulated CEO or evaluator reply: the text and its modelled token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int


@cache
def _system_prompts() -> dict[str, str]:
    data = prompts()
    return {data["ceo"]["system"].strip(): "ceo", data["evaluator"]["system"].strip(): "evaluator"}


def judge_kind(system: str) -> str | None:
    """`ceo` or `evaluator` when `system` is one of their system prompts, else None."""
    return _system_prompts().get(system.strip())


def _competence(model: SimModel, item: SimItem) -> float:
    theta = skill(model.name, profile(item.task).key) + JUDGE_BOOST
    return 1.0 / (1.0 + math.exp(-(theta - item.difficulty)))


def _judged_right(model: SimModel, item: SimItem, solution: str, draw: float) -> bool:
    q = _competence(model, item)
    right = item.category(solution) == 0
    return draw < (q + (1.0 - q) / 2.0 if right else (1.0 - q) / 2.0)


def _sections(text: str) -> dict[str, str]:
    return {m.group("title").strip(): m.group("body").strip() for m in _SECTION.finditer(text)}


def judge_reply(kind: str, model: SimModel, messages: list[dict[str, str]]) -> JudgeReply:
    """The reply of simulated `model` acting as `kind` (`ceo` or `evaluator`) to these messages."""
    user = str(messages[1].get("content") or "") if len(messages) > 1 else ""
    sections = _sections(user)
    item = item_for_text(sections.get("Task", user))
    draw = unit_uniform("judge", item.seed, model.name, json.dumps(messages, sort_keys=True))
    if kind == "evaluator":
        solution = sections.get("Proposed solution", "").partition("\n\nReply with")[0]  # the prompt's tail
        right = _judged_right(model, item, solution, draw)
        advice = "Keep this answer." if right else "Recheck each step; the result looks wrong."
        text = json.dumps({"correct": int(right), "advice": advice})
    else:
        text = json.dumps(_decision(model, item, sections, user, draw))
    prompt_tokens = max(1, sum(len(str(m.get("content") or "")) for m in messages) // 4)
    return JudgeReply(text, prompt_tokens, REPLY_TOKENS)


def _decision(model: SimModel, item: SimItem, sections: dict[str, str], user: str, draw: float) -> dict[str, object]:
    ranges = {m.group("key"): (int(m.group("low")), int(m.group("high"))) for m in _RANGE.finditer(user)}
    settings = _SETTINGS.search(sections.get("Current settings", ""))
    current_tokens = int(settings.group("tokens")) if settings else ranges.get("max_tokens", (1, 512))[1]
    low, high = ranges.get("agents", (1, 1))
    agents = low + round((1.0 - _competence(model, item)) * (high - low))
    solution = sections.get("Current solution", NO_SOLUTION)
    stop = False
    if solution != NO_SOLUTION:
        verdict = _VERDICT.search(sections.get("Feedback from the last round", ""))
        usable = verdict is not None and verdict.group("judged") != "unclear"
        if usable and draw < EVALUATOR_TRUST:  # one draw decides both: follow the verdict, or judge
            stop = verdict is not None and verdict.group("judged") == "correct"
        else:
            own = (draw - EVALUATOR_TRUST) / (1.0 - EVALUATOR_TRUST) if usable else draw
            stop = _judged_right(model, item, solution, own)
    return {
        "decision": "stop" if stop else "continue",
        "agents": agents,
        "direction": "Check the current answer step by step." if solution != NO_SOLUTION else "Solve it carefully.",
        "max_tokens": current_tokens,
    }
