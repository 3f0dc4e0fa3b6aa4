"""What a sandboxed run may use, what it reports back, and the error for a broken sandbox."""

from __future__ import annotations

import math
import signal as signal_names
from dataclasses import dataclass

from agentscale.errors import AgentScaleError


class SandboxError(AgentScaleError, RuntimeError):
    """The sandbox itself could not be set up (not the program failing): never score this as 0. An
    AgentScaleError, so an eval stops on it with its message (`AGENTSCALE_SANDBOX=bogus` ended one in
    a 29-frame traceback, a new user's walk); its stored answers are scored by a resume."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. The defaults suit unit-test style checks such as HumanEval's.

    ``max_processes`` counts threads too (it is ``RLIMIT_NPROC`` for the run's private uid), and the
    worst-case memory of one run is about ``max_processes * memory_bytes``, so keep both small.
    """

    timeout_s: float = 10.0
    cpu_seconds: int | None = None  # default: the wall-clock timeout rounded up
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 16 << 20
    work_dir_bytes: int = 64 << 20
    max_processes: int = 8
    open_files: int = 256

    def rlimits(self) -> dict[str, int]:
        """The values the child applies with ``setrlimit`` (keys match the bootstrap's config)."""
        return {
            "cpu_seconds": self.cpu_seconds or max(1, math.ceil(self.timeout_s)),
            "memory_bytes": self.memory_bytes,
            "file_size_bytes": self.file_size_bytes,
            "max_processes": self.max_processes,
            "open_files": self.open_files,
        }


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run. ``passed`` means the program ran to its end: exit status 0 *and* the
    harness printed its per-run token afterwards (so ``sys.exit(0)``/``os._exit(0)`` halfway through a
    test does not count as passing)."""

    passed: bool
    timed_out: bool
    returncode: int | None
    stderr_tail: str
    stdout_tail: str
    duration_s: float
    isolation: str
    signal: int | None = None  # the signal that ended the program (a limit's, a crash's), if one did

    def ended_by(self) -> str | None:
        """The signal that ended the program in words: SIGXCPU (its CPU time limit), SIGSEGV, ..."""
        if self.signal is None:
            return None
        try:
            name = signal_names.Signals(self.signal).name
        except ValueError:
            name = f"signal {self.signal}"
        return f"{name} (its CPU time limit)" if self.signal == signal_names.SIGXCPU else name
