"""Which executor a run uses, as stored with the run: kept apart from the executors themselves, which
say theirs (`Executor.config`) and so import it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from agentscale.errors import AgentScaleError

ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = get_args(ExecutorKind)


@dataclass(frozen=True)
class ExecutorConfig:
    """Which executor a run uses; stored with eval and optimize runs so `--resume` reuses it."""

    kind: ExecutorKind = "local"
    address: str | None = None  # ray: `ray://host:10001`, `auto` (a cluster on this host), None = start one
    workers: int | None = None  # ray: worker actors (default: one per CPU of the cluster)

    def __post_init__(self) -> None:
        """An unknown kind ran locally without a word (`kind="rya"`) and was stored so."""
        if self.kind not in EXECUTOR_KINDS:
            raise AgentScaleError(f"unknown executor {self.kind!r}; choose from {', '.join(EXECUTOR_KINDS)}")
        workers = self.workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise AgentScaleError(f"executor workers must be a whole number of at least 1 (got {workers!r})")
        if self.kind != "ray" and (self.address is not None or workers is not None):  # taken, and ignored
            raise AgentScaleError(f"executor address and workers are for the ray executor, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "workers": self.workers}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExecutorConfig:
        """Runs stored before executors existed have no entry: they ran locally. Anything but such a
        dict ("ray", a misspelt key) is said, not a TypeError about `**`."""
        if data is not None and not isinstance(data, dict):
            raise AgentScaleError(
                f"an executor is ExecutorConfig(kind, address=, workers=) or its dict, not {type(data).__name__} "
                f"{data!r}"
            )
        unknown = sorted(set(data or {}) - {"kind", "address", "workers"})
        if unknown:
            raise AgentScaleError(f"unknown executor key {unknown[0]!r}; valid keys: kind, address, workers")
        return cls(**data) if data else cls()

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> ExecutorConfig:
        """A run's stored executor, read leniently: releases before 2026-12-07 took (and ignored) an
        address or workers with the local executor, which `from_dict` now refuses; such a run could
        not be resumed, not even with `--executor local`."""
        if data and data.get("kind", "local") != "ray":
            data = {"kind": data.get("kind", "local")}
        return cls.from_dict(data)

    def override(
        self, kind: str | None = None, address: str | None = None, workers: int | None = None
    ) -> ExecutorConfig:
        """This config with the options a user gave on the command line (None = keep)."""
        config = self
        if kind is not None and kind != self.kind:
            config = ExecutorConfig(kind)  # type: ignore[arg-type]  # checked by the new config
        if config.kind != "ray" and (address is not None or workers is not None):
            raise AgentScaleError("--ray-address and --ray-workers need --executor ray")
        if address is not None:
            config = replace(config, address=address)
        if workers is not None:
            config = replace(config, workers=workers)
        return config
