"""Run one Python program in a fresh sandbox process and report how it ended.

The parent side of the sandbox: it writes the program into a private job directory, starts the
bootstrap (under ``unshare`` when the mode asks for it) in a new session with a scrubbed environment,
enforces the wall-clock timeout, kills whatever the program left behind and removes the job directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from agentscale.tasks.sandbox._bootstrap import namespace_ids
from agentscale.tasks.sandbox.isolation import Isolation, candidates, interpreter, interpreter_dirs
from agentscale.tasks.sandbox.limits import DEFAULT_LIMITS, SandboxError, SandboxLimits, SandboxResult

T = TypeVar("T")
_REAP_WAIT_S = 2.0  # how long `unshare` is given to reap its killed child before the group is killed

_BOOTSTRAP = str(Path(__file__).with_name("_bootstrap.py"))
_TAIL_CHARS = 2000
_SOLUTION = "solution.py"
_HARNESS = "_agentscale_harness.py"
# Runs the program with runpy, then prints the token read from stdin before the program started.
# A program that exits early (sys.exit(0), os._exit(0)) never reaches the token, so it cannot pass.
_HARNESS_SOURCE = f"""\
import os, runpy, sys
def _agentscale_run():
    token = sys.stdin.readline().strip()
    sys.argv = [{_SOLUTION!r}]
    runpy.run_path({_SOLUTION!r}, run_name="__main__")
    sys.stdout.flush()
    os.write(1, ("\\n" + token + "\\n").encode())
_agentscale_run()
"""
_UID_BASE = 2_000_000_000
_UID_SPAN = 100_000_000


def _minimal_env(home: str) -> dict[str, str]:
    """Built from scratch, never from ``os.environ``: no API keys or tokens reach the program. A fixed
    hash seed: a set's order changed from run to run, so one answer (`list({'apple', 'banana'})`)
    scored right in 4 runs of 10, and a resumed or cached eval could score it differently."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _tail(handle: IO[bytes], limit: int = _TAIL_CHARS) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - 4 * limit))
    return handle.read().decode("utf-8", "replace")[-limit:]


def _processes_with(field: str, value: int) -> list[int]:
    """The processes whose ``/proc/PID/status`` line ``field`` starts with ``value`` (``Uid`` gives
    the real uid first)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith(f"{field}:"):
                        if int(line.split()[1]) == value:
                            found.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return found


def _kill_uid(uid: int) -> None:
    """SIGKILL every process owned by ``uid`` (a run's private uid: nothing else uses it)."""
    for pid in _processes_with("Uid", uid):
        with contextlib.suppress(OSError):  # gone meanwhile
            os.kill(pid, signal.SIGKILL)


def _end_namespace_first(proc: subprocess.Popen[bytes]) -> None:
    """A program still running when its time is up: SIGKILL the namespace's first process (the
    bootstrap, ``unshare``'s child; the kernel then takes every other process in its namespace
    down) and give ``unshare`` a moment to reap it and exit. Killing the whole group at once let
    ``unshare`` die first, now and then, and the bootstrap's zombie passed to the machine's first
    process: in a container whose first process reaps nothing, one zombie per few dozen timeouts
    stayed, each holding a pid (measured: 3 of 48 timeouts here)."""
    for child in _processes_with("PPid", proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + _REAP_WAIT_S
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.005)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    if hasattr(os, "waitid"):  # Linux: look without reaping, so the group id cannot be reused yet
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    return proc.poll() is not None


# one program per core (see `run_python`)
_CORES = threading.BoundedSemaphore(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))

# set by `in_worker_thread` for the thread it runs: the awaiting task was cancelled
_CANCELLED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("sandbox_cancelled", default=None)


async def in_worker_thread(function: Callable[..., T], /, *args: Any) -> T:
    """`asyncio.to_thread(function, *args)` for work that runs sandboxes (scoring code, the tester):
    when the awaiting task is cancelled (Ctrl-C, SIGTERM, a caller's cancel), the sandboxes the
    thread runs are killed at once. A thread cannot be interrupted, and `asyncio.run` waits for its
    worker threads on the way out: an interrupted eval waited for every running program to reach its
    timeout (7.9 s for a 10 s one; a task's timeout may be an hour)."""
    cancelled = threading.Event()
    token = _CANCELLED.set(cancelled)  # the thread runs in a copy of this context
    try:
        return await asyncio.to_thread(function, *args)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    finally:
        _CANCELLED.reset(token)


def _wait_exit(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until the process exits; False when the deadline passed first, or the work that started
    it was cancelled (`in_worker_thread`)."""
    cancelled = _CANCELLED.get()
    delay = 0.001
    while True:
        if _exited(proc):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (cancelled is not None and cancelled.is_set()):
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


def _prepare_job(job: Path, isolation: Isolation, files: dict[str, str], uid: int | None) -> str:
    """Lay out the job directory; returns the program's work dir as the program will see it.

    In the namespace modes the bootstrap copies ``files`` into a tmpfs mounted at ``/work``; in the
    plain mode they go to ``job/work``, owned by the run's uid when there is one.
    """
    (job / "root").mkdir()
    if isolation.mode != "plain":
        return "/work"
    work = job / "work"
    work.mkdir(mode=0o700)
    for name, text in files.items():
        (work / name).write_text(text, encoding="utf-8")
    if uid is not None:
        job.chmod(0o711)
        for path in (work, *work.iterdir()):
            os.chown(path, uid, uid)
    return str(work)


def _config(
    isolation: Isolation,
    job: Path,
    work: str,
    files: dict[str, str],
    uid: int | None,
    limits: SandboxLimits,
    status_fd: int,
) -> dict[str, object]:
    return {
        "mode": isolation.mode,
        "new_root": str(job / "root"),
        "work_dir": work,
        "bind_dirs": interpreter_dirs(),
        "files": files,
        "python": interpreter(),
        # isolated as `-I` is (no user site, no script dir on the path), but reading the environment,
        # built from scratch: `-I` ignored its fixed hash seed
        "argv": [interpreter(), "-s", "-P", _HARNESS],
        "env": _minimal_env(work),
        "uid": uid,
        "gid": uid,
        "limits": limits.rlimits(),
        "work_bytes": limits.work_dir_bytes,
        "status_fd": status_fd,
        "host_namespaces": namespace_ids() if isolation.mode != "plain" else {},
    }


def _spawn(command: list[str], out: IO[bytes], err: IO[bytes], status_fd: int, stdin: str) -> subprocess.Popen[bytes]:
    """The jail's process; `stdin`: the harness's token line, then the program's own input."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=err,
        pass_fds=(status_fd,),
        start_new_session=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd="/",
    )
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    return proc


def run_python(
    source: str,
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    isolation: Isolation | None = None,
    extra_files: dict[str, str] | None = None,
    stdin: str = "",
) -> SandboxResult:
    """Run ``source`` as ``__main__`` in a fresh sandbox and report how it ended; ``stdin`` is what
    the program reads on its standard input (a secret kept out of its files: they are readable by
    the code it runs).

    Blocking and thread-safe: run many at once from a thread pool; at most one program per CPU core
    runs at a time, the others wait for a core before their clock starts (six CPU-bound programs at
    once on two cores each got a third of a core, and a right answer needing 1.5 s of CPU timed out
    at 5 s: an eval's accuracy depended on how many items it scored at once). Raises
    :class:`SandboxError` only when the sandbox could not be built; anything the program does (crash,
    hang, fork bomb, exit 0 early) comes back as a non-passing :class:`SandboxResult`.
    """
    isolation = isolation or probe()  # before taking a core: the probe runs a program itself
    cancelled = _CANCELLED.get()
    while not _CORES.acquire(timeout=0.05):
        if cancelled is not None and cancelled.is_set():  # the work that wanted it was cancelled
            return SandboxResult(False, False, None, "cancelled before it ran", "", 0.0, isolation.mode)
    try:
        return _run(source, limits, isolation, extra_files, stdin)
    finally:
        _CORES.release()


def _run(
    source: str, limits: SandboxLimits, isolation: Isolation, extra_files: dict[str, str] | None, stdin: str
) -> SandboxResult:
    files = {**(extra_files or {}), _SOLUTION: source, _HARNESS: _HARNESS_SOURCE}
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if isolation.private_uid else None
    token = secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    job = _new_job_dir()
    started = time.monotonic()
    try:
        work = _prepare_job(job, isolation, files, uid)
        config_path = job / "config.json"
        config_path.touch(mode=0o600)
        cfg = _config(isolation, job, work, files, uid, limits, write_fd)
        config_path.write_text(json.dumps(cfg), encoding="utf-8")
        command = [*isolation.unshare_args(), interpreter(), "-I", "-S", _BOOTSTRAP, str(config_path)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = _spawn(command, out, err, write_fd, token + "\n" + stdin)
            os.close(write_fd)
            write_fd = -1
            finished = _wait_exit(proc, started + limits.timeout_s)
            if not finished and isolation.pid_namespace:
                _end_namespace_first(proc)
            # Before reaping, so the group id cannot have been reused: take down everything left.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if uid is not None:
                _kill_uid(uid)
            returncode = proc.wait()
            duration = time.monotonic() - started
            try:
                status = os.read(read_fd, 64)
            except BlockingIOError:
                status = b""
            stderr_tail, stdout_tail = _tail(err), _tail(out)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        shutil.rmtree(job, ignore_errors=True)
    if not status.startswith(b"ok") and finished:
        raise SandboxError(f"sandbox ({isolation.mode}) could not start the program: {stderr_tail.strip()}")
    return SandboxResult(
        signal=_ending_signal(status, returncode) if finished else None,
        passed=finished and returncode == 0 and token in stdout_tail,
        timed_out=not finished,
        returncode=returncode if finished else None,
        stderr_tail=stderr_tail,
        stdout_tail=stdout_tail.replace(token, "").rstrip("\n"),
        duration_s=duration,
        isolation=isolation.mode,
    )


def _ending_signal(status: bytes, returncode: int) -> int | None:
    """The signal that ended the program: said on the status pipe by the namespace's first process
    (``ok`` then ``signal N``), or the exit of the program itself (plain mode, where it is our child)."""
    said = status.removeprefix(b"ok").decode(errors="replace")
    if said.startswith("signal ") and said[7:].isdigit():
        return int(said[7:])
    return -returncode if returncode < 0 else None


_JOB_PREFIX = "agentscale-sbx-"
_STALE_AFTER_S = 2 * 3600  # older than any run's timeout: a job dir that old is no live run's
_swept = threading.Event()


def _new_job_dir() -> Path:
    """A private job directory named after this process, after removing (once per process) those of
    processes that are gone: a process killed with SIGKILL cannot remove its own."""
    if not _swept.is_set():
        _swept.set()
        _remove_stale_job_dirs()
    return Path(tempfile.mkdtemp(prefix=f"{_JOB_PREFIX}{os.getpid()}-"))


def _remove_stale_job_dirs() -> None:
    """Job directories of processes that no longer run, and old enough to be no live run's (a
    process of another pid namespace sharing this temp dir is not visible here)."""
    now = time.time()
    for path in Path(tempfile.gettempdir()).glob(f"{_JOB_PREFIX}*-*"):
        pid = path.name[len(_JOB_PREFIX) :].partition("-")[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and not _process_runs(int(pid)) and now - path.stat().st_mtime > _STALE_AFTER_S:
                shutil.rmtree(path, ignore_errors=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def probe_mode(isolation: Isolation) -> bool:
    """True when ``isolation`` can run a trivial program on this machine."""
    try:
        return run_python("pass", limits=SandboxLimits(timeout_s=20), isolation=isolation).passed
    except (SandboxError, OSError):
        return False


_probe_lock = threading.Lock()
_probed: Isolation | None = None


REQUIRE = "AGENTSCALE_SANDBOX"  # `isolated`: refuse to run programs where only the plain mode works
_log = logging.getLogger("agentscale.sandbox")


def probe() -> Isolation:
    """The strongest mode that really works here (cached; the first call runs a ~0.1 s sandbox).

    The plain mode shares the host's files and network: it ran model-written code without a word (a
    container without `unshare`, a security review: an answer sent files to a local listener while
    the eval said "accuracy 100%"). It is said once, in the log's warning, and refused when
    `AGENTSCALE_SANDBOX=isolated`, as a SandboxError: the items fail, they are not scored."""
    global _probed
    required = os.environ.get(REQUIRE, "").strip().lower()
    if required not in ("", "isolated"):
        raise SandboxError(f"{REQUIRE}={os.environ[REQUIRE]!r}: use isolated (refuse the unisolated mode) or unset it")
    with _probe_lock:
        if _probed is None:
            chosen = next(iso for iso in candidates() if probe_mode(iso))
            if chosen.mode == "plain" and not required:
                _log.warning(
                    "code answers run WITHOUT isolation on this machine (no working `unshare`): %s; "
                    "set %s=isolated to refuse to run them",
                    chosen.notes,
                    REQUIRE,
                )
            _probed = chosen
    if _probed.mode == "plain" and required:
        raise SandboxError(
            f"{REQUIRE}=isolated, but no isolating sandbox works on this machine (no working `unshare`): "
            "code answers are not run"
        )
    return _probed
