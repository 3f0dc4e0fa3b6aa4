"""agentscale: find and run the best collaboration graph of LLM calls under a compute budget.

>>> import agentscale
>>> callable(agentscale.load)
True
"""

from agentscale.errors import (
    AgentScaleError,
    BudgetExceeded,
    ModelCallError,
    RunNotFound,
    SpecError,
    SpecIssue,
)
from agentscale.graphs.result import GraphEvent, NodeTrace, RunResult, Usage
from agentscale.graphs.spec import GraphSpec
from agentscale.models.gateway import Gateway, GatewaySettings
from agentscale.runtime.graph import Graph, load
from agentscale.storage.db import Store

# isort: split
# Plug-ins register themselves when imported (docs/design.md, "Layers"): the behavior handbook serves
# graphs' `memory:` in the runtime, the simulated population serves `sim/` routes in the models layer.
from agentscale.memory import inject as _memory_plugin  # noqa: F401
from agentscale.sim import provider as _sim_routes  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "AgentScaleError",
    "BudgetExceeded",
    "Gateway",
    "GatewaySettings",
    "Graph",
    "GraphEvent",
    "GraphSpec",
    "ModelCallError",
    "NodeTrace",
    "RunNotFound",
    "RunResult",
    "SpecError",
    "SpecIssue",
    "Store",
    "Usage",
    "load",
]
