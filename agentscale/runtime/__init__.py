"""Running graphs: the public :class:`~agentscale.runtime.graph.Graph`, the executor that starts every
node as soon as its predecessors finish (`execute`), LangGraph compilation (`compile`), CEO-steered
discussions (`discussion`), and the hooks plug-ins register with (`plugins`)."""
