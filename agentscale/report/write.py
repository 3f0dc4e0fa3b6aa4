"""Choosing the page for a run and writing it where users find it.

The default place is next to the run's other outputs: `<db folder>/runs/<run_id>/report.html`
(beside `best.yaml` and `search.png` of an optimization).
"""

from __future__ import annotations

import os
from pathlib import Path

from agentscale.errors import AgentScaleError
from agentscale.graphs.io import refuse_unusable_output, write_output
from agentscale.report.eval_page import eval_report
from agentscale.report.optimize_page import optimize_report
from agentscale.storage.db import Store
from agentscale.storage.tables import Run

ITEM_KINDS = ("eval", "run")


def default_report_path(store: Store, run_id: str) -> Path:
    return store.run_folder(run_id) / "report.html"


def render_report(store: Store, run: Run) -> str:
    if run.kind == "optimize":
        return optimize_report(store, run)
    if run.kind in ITEM_KINDS:
        return eval_report(store, run)
    raise AgentScaleError(f"{run.made_by()}; reports cover eval, run and optimize runs")


def write_report(store: Store, run_id: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Render the run's page and write it atomically (a reader never sees half a file); `path` a
    Path or a string (a string failed with an AttributeError)."""
    run = store.get_run(run_id)
    target = Path(path) if path is not None else default_report_path(store, run.id)
    refuse_unusable_output(target, "report.html")
    write_output(target, render_report(store, run))
    return target
