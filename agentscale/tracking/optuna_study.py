"""An optimization run written as an Optuna study, so `optuna-dashboard` shows its search.

Each search evaluation (the pilot included) becomes one completed trial with two objectives,
accuracy (maximised) and compute (minimised): the dashboard then draws the history, the Pareto
front and parameter importances. A graph has no fixed set of parameters, so it is described by
`nodes` (how many) and, per node slot, `node<i>.role` and `node<i>.model` (`none` for a vote), plus
`ceo`; the full graph and its edges are user attributes. Crowning and test evaluations run on other
item sets, so they are not trials: the crowned graph's scores are attributes of the study.
Re-exporting a run replaces its study; a study of that name that is not the run's is refused unless
`replace` is given (it was deleted: a user's own study, or another run's exported under one name).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from agentscale.errors import AgentScaleError
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.space import SpaceSpec, stored_space
from agentscale.optimize.trials import candidate_from_json, stage_of
from agentscale.report.optimize_page import crowned_trial
from agentscale.report.simulated import run_is_simulated
from agentscale.storage.db import Store
from agentscale.storage.tables import Run, Trial, as_utc

INSTALL_HINT = "pip install 'agentscale[optuna]'"
NONE = "none"


@dataclass(frozen=True)
class StudyExport:
    storage: str
    study_name: str
    trials: int


def export_study(
    store: Store, run_id: str, storage: str, study_name: str | None = None, *, replace: bool = False
) -> StudyExport:
    """Write the run's search as a study in `storage` (an Optuna storage URL, e.g. sqlite:///optuna.db);
    `replace`: even over a study of that name that another run, or no run, wrote."""
    try:
        import optuna
    except ImportError:
        raise AgentScaleError(f"Optuna export needs optuna: {INSTALL_HINT}") from None
    run = store.get_run(run_id)
    if run.kind != "optimize":
        raise AgentScaleError(f"{run.made_by()}; only optimizations have trials to export")
    space = stored_space(run)
    name = study_name or f"agentscale-{run.id}"
    trials = store.trials(run.id)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shown = shown_storage(storage)
    try:
        if _in_memory(storage):
            raise ValueError("an in-memory database keeps nothing once the command ends: name a file")
        opened = _opened(optuna, storage)
        if name in optuna.study.get_all_study_names(opened):
            owner = optuna.load_study(study_name=name, storage=opened).user_attrs.get("agentscale_run_id")
            if owner != run.id and not replace:
                whose = f"agentscale run {owner}'s" if owner else "not written by agentscale"
                raise AgentScaleError(
                    f"Optuna storage {shown!r} already holds a study named {name!r} ({whose}): "
                    "pass another --study name, or --replace to overwrite it"
                )
            optuna.delete_study(study_name=name, storage=opened)
        study = optuna.create_study(storage=opened, study_name=name, directions=["maximize", "minimize"])
    except (ValueError, ImportError, SQLAlchemyError) as exc:  # a malformed URL, an unknown or missing
        # backend (NoSuchModuleError), a database that cannot be opened (OperationalError)
        raise AgentScaleError(f"Optuna storage {shown!r}: {str(exc).splitlines()[0]}") from None
    with warnings.catch_warnings():  # experimental in Optuna 3.2+, and what the dashboard labels axes with
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "compute"])
    for key, value in _study_attributes(run, space, trials).items():
        study.set_user_attr(key, value)
    distributions = _distributions(optuna, space, trials)
    method = json.loads(run.config_json).get("method")
    search = [t for t in trials if t.kind == "search"]
    for trial in search:
        candidate = candidate_from_json(trial.candidate_json)
        params = _params(candidate, space.max_nodes)
        created = as_utc(trial.created)
        study.add_trial(  # a FrozenTrial rather than create_trial(): it keeps the evaluation's own time
            optuna.trial.FrozenTrial(
                number=0,
                trial_id=0,
                state=optuna.trial.TrialState.COMPLETE,
                value=None,
                values=[trial.accuracy, trial.compute],
                datetime_start=created,
                datetime_complete=created,
                params=params,
                distributions={k: distributions[k] for k in params},
                system_attrs={},
                intermediate_values={},
                user_attrs={
                    "seq": trial.seq,
                    "iteration": trial.iteration,
                    "stage": stage_of(trial.kind, trial.iteration, method),
                    "objective": trial.reward,
                    "latency_s": trial.latency_s,
                    "tokens": trial.tokens,
                    "usd": trial.usd,
                    "items": trial.n_items,
                    "graph": candidate.describe(),
                    "edges": json.dumps(sorted(candidate.edges)),
                },
            )
        )
    return StudyExport(storage, name, len(search))


_CREATION_TRIES = 5


def _opened(optuna: Any, storage: str) -> Any:
    """The storage, its tables made by this process or another: two exports into a fresh storage at
    once (runs of one --db share `<db folder>/optuna.db`) raced to create Optuna's schema, and one
    failed ("UNIQUE constraint failed: alembic_version", "table studies already exists"). The
    loser finds the tables the winner made on a later try."""
    tries = 0
    while True:
        try:
            return optuna.storages.RDBStorage(storage)
        except SQLAlchemyError as exc:
            tries += 1
            racing = "already exists" in str(exc) or "UNIQUE constraint failed" in str(exc) or "locked" in str(exc)
            if not racing or tries == _CREATION_TRIES:
                raise
            time.sleep(0.1 * tries)


def sqlite_storage(path: Path) -> str:
    """The storage URL of an SQLite file, escaped: a folder named `a?b` or `p%41` was read as a query
    string or a percent escape, so the study went to another file or none."""
    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def shown_storage(storage: str) -> str:
    """A storage URL as printed: its password hidden (a PostgreSQL URL's was echoed in errors)."""
    url = _parsed(storage)
    return storage if url is None else url.render_as_string(hide_password=True)


def _in_memory(storage: str) -> bool:
    url = _parsed(storage)
    return url is not None and url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _parsed(storage: str) -> URL | None:
    """The storage URL parsed, None when it is none (Optuna refuses it then, with its reason)."""
    try:
        return make_url(storage)
    except ArgumentError:
        return None


def _params(candidate: CandidateGraph, max_nodes: int) -> dict[str, Any]:
    params: dict[str, Any] = {"nodes": candidate.size, "ceo": candidate.ceo.model if candidate.ceo else NONE}
    for index in range(max_nodes):
        node = candidate.nodes[index] if index < candidate.size else None
        params[f"node{index}.role"] = node.role if node else NONE
        params[f"node{index}.model"] = (node.model or NONE) if node else NONE
    return params


def _distributions(optuna: Any, space: SpaceSpec, trials: list[Trial]) -> dict[str, Any]:
    """One distribution per parameter for the whole study (choices: the space's, plus any stored)."""
    candidates = [candidate_from_json(t.candidate_json) for t in trials]
    roles = sorted({*space.roles, *(n.role for c in candidates for n in c.nodes), NONE})
    models = sorted({*space.models, NONE})
    size = max([space.max_nodes, *(c.size for c in candidates)])
    distributions: dict[str, Any] = {
        "nodes": optuna.distributions.IntDistribution(1, size),
        "ceo": optuna.distributions.CategoricalDistribution(models),
    }
    for index in range(size):
        distributions[f"node{index}.role"] = optuna.distributions.CategoricalDistribution(roles)
        distributions[f"node{index}.model"] = optuna.distributions.CategoricalDistribution(models)
    return distributions


def _study_attributes(run: Run, space: SpaceSpec, trials: list[Trial]) -> dict[str, Any]:
    summary = json.loads(run.summary_json)
    crowned = crowned_trial(trials, summary)
    return {
        "agentscale_run_id": run.id,
        "space": space.name,
        "task": space.task.name or space.task.path,
        "method": json.loads(run.config_json).get("method"),
        "budget_compute": space.budget.compute,
        "simulated": run_is_simulated(run),  # SIMULATED: sim/ models, not real accuracy
        "crowned_graph": candidate_from_json(crowned.candidate_json).describe() if crowned else None,
        "crowned_test": summary.get("best"),
        "baselines_test": summary.get("baselines"),
        "stopped_reason": summary.get("stopped_reason"),
        "status": run.status,  # an interrupted run's study holds what it had searched (maybe nothing)
    }
