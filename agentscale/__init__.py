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
from agentscale.graphs.graph import Graph, load
from agentscale.graphs.result import GraphEvent, NodeTrace, RunResult, Usage
from agentscale.graphs.spec import GraphSpec
from agentscale.models.gateway import Gateway, GatewaySettings
from agentscale.storage.db import Store

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
