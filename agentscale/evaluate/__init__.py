"""Evaluating graphs on tasks: the engine shared by `agentscale eval` and the optimizer."""
