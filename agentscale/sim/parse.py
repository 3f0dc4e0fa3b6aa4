"""Reading a chat request the way a simulated model needs it: role, item and the inputs shown.

The simulator sees exactly what a real model would: the messages the executor built from the role
prompts in `agentscale/agents/prompts/roles.yaml`. The role is recognised from the system prompt
(custom roles act as assistants), the item from the `[sim:task#NNNN]` tag in the question, and the
inputs from the `Candidate N:` blocks the executor writes for a node's predecessors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from agentscale.agents.roles import builtin_roles
from agentscale.sim.behavior import behavior_role
from agentscale.sim.items import SimItem, item_for_text

_CANDIDATE = re.compile(r"(?m)^Candidate (\d+):\n(.*)$")


@dataclass(frozen=True)
class SimRequest:
    """A parsed request: the graph role, the behaviour it gets, the item and the inputs' answers."""

    role: str
    behaviour: str
    item: SimItem
    answers: tuple[str, ...]  # the inputs' answers as shown, in order
    categories: tuple[int | None, ...]  # their answer categories (None: not an answer to this item)


@cache
def _roles_by_system() -> dict[str, str]:
    table: dict[str, str] = {}
    for name, role in builtin_roles().items():
        if role.system:
            table[role.system.strip()] = name
        if role.system_with_inputs:
            table[role.system_with_inputs.strip()] = name
    return table


def recognise_role(system: str) -> str:
    """The built-in role whose system prompt this is; `assistant` for custom roles."""
    return _roles_by_system().get(system.strip(), "assistant")


def read_request(messages: list[dict[str, str]]) -> SimRequest:
    """Parse the messages of one call."""
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    user = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") != "system")
    role = recognise_role(system)
    item = item_for_text(user)
    answers = tuple(body.strip() for _, body in _CANDIDATE.findall(user))
    categories = tuple(item.category(answer) for answer in answers)
    return SimRequest(role, behavior_role(role, bool(answers)), item, answers, categories)
