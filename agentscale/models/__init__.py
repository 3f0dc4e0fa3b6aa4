"""Models: registry, litellm gateway, cost model, budget ledger and local vLLM serving."""
