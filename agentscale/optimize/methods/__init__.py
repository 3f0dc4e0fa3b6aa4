"""Search methods; importing this package registers all of them in `METHODS`."""

from agentscale.optimize.methods import agent_reinforce, bayes, llm_optimizer, random_search, reinforce
from agentscale.optimize.methods.base import METHODS, AgentCall, SearchMethod

__all__ = [
    "METHODS",
    "AgentCall",
    "SearchMethod",
    "agent_reinforce",
    "bayes",
    "llm_optimizer",
    "random_search",
    "reinforce",
]
