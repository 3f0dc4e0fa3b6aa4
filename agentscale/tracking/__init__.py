"""Experiment tracking through a maintained tool: an optimization's trials as an Optuna study,
which optuna-dashboard shows (extra `agentscale[optuna]`; see docs/report.md for why Optuna)."""
