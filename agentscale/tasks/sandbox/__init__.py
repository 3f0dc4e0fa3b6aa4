"""Run untrusted Python (model-written code and its tests) without letting it touch the host.

Each run is a separate process tree started from a fresh interpreter (``python -s -P``: no user
site, no script directory on the path; ``PYTHONHASHSEED=0``, so a set's order is the same in every
run) in a new session, with a wall-clock timeout after which the whole tree is killed, the pid
namespace's first process before the rest, so ``unshare`` reaps it (no zombie is left to a
container's first process, which may reap nothing), and killed with the process that started it,
even by SIGKILL (``setpriv --pdeathsig``), ``setrlimit`` caps
(CPU seconds, 1 GiB address space, 16 MiB per written file, no core dumps, a process/thread cap,
open files), a fresh work directory deleted afterwards (a killed process's, by the next process to
run one), and an environment built from scratch (``PATH``, ``LANG``, ``HOME`` and ``TMPDIR``
pointing at the work dir, ``PYTHONDONTWRITEBYTECODE``, ``PYTHONHASHSEED``; nothing from
``os.environ``, so no API keys). A run passes only if the program reaches its end: the harness
prints a random per-run token after the program returns, which ``sys.exit(0)`` or ``os._exit(0)``
mid-test never reaches.

What is isolated on Linux, by mode (see :mod:`agentscale.tasks.sandbox.isolation`; the strongest
mode that works is probed once per process with :func:`probe`):

``root-ns`` (root; the mode used on our CI and dev VMs)
    - file system: the program sees a new root (tmpfs) holding read-only binds of ``/usr``,
      ``/bin``, ``/lib*``, ``/sbin``, the Python prefix, ``/etc/ld.so.cache``, five ``/dev`` nodes, a
      private ``/proc``, and a 64 MiB tmpfs ``/work`` (``/tmp`` links to it). The host tree is
      detached after ``pivot_root``: no host path (``/tmp``, ``$HOME``, the project, its ``.env``)
      can be read or written. Only ``/work`` is writable and it disappears with the run.
    - network: an empty network namespace (loopback down): no sockets to the host or the internet,
      including ``127.0.0.1`` services and abstract Unix sockets.
    - processes: a private pid namespace whose first process waits for the program and ends as it
      did (so the program gets its signals: a CPU limit's SIGXCPU, its own kill; a first process gets
      none it has no handler for), then the kernel kills every descendant, even daemonised ones;
      and a one-off uid in 2e9..2.1e9 with ``RLIMIT_NPROC``, so a fork bomb stops at
      ``max_processes``. No capabilities, ``no_new_privs``.
    - also private: SysV IPC and hostname (ipc/uts namespaces).
``user-ns`` (not root, unprivileged user namespaces allowed)
    - the same jail built in a user namespace; the program keeps the caller's uid but has no
      capabilities (empty bounding set, ``SECBIT_NOROOT``), so it cannot undo the read-only mounts.
      ``RLIMIT_NPROC`` is counted per user namespace on Linux >= 5.14.
``plain`` (no usable ``unshare``: e.g. containers without ``CAP_SYS_ADMIN``)
    - only rlimits, the new session, the scrubbed environment and the private work dir (cwd, HOME,
      TMPDIR). As root, a one-off unprivileged uid if the interpreter is readable by other users.
      NOT isolated: writes to world-writable paths (``/tmp``, ``/var/tmp``, ``/dev/shm``) and, if
      running as root without the private uid, anywhere; reads of world-readable files; the network;
      descendants that leave the process group (``setsid``) when there is no private uid to sweep by.
      Chosen, it is said once in the log's warning (logger ``agentscale.sandbox``);
      ``AGENTSCALE_SANDBOX=isolated`` refuses it (a SandboxError: the items fail, unscored).

Runs wait for a CPU core: at most one program per core runs at a time, and a run's clock starts
when its program does (six CPU-bound runs at once on two cores timed out a right answer).

Not isolated in any mode: CPU time is shared with whatever else the machine runs, memory is
capped per process not per run (worst case ``max_processes * memory_bytes``), the kernel itself (no
seccomp filter), and timing side channels. The token check is a guard against programs exiting early,
not against code that deliberately inspects the harness's memory.
"""

from agentscale.tasks.sandbox.isolation import Isolation
from agentscale.tasks.sandbox.limits import DEFAULT_LIMITS, SandboxError, SandboxLimits, SandboxResult
from agentscale.tasks.sandbox.runner import in_worker_thread, probe, run_python

__all__ = [
    "DEFAULT_LIMITS",
    "Isolation",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "in_worker_thread",
    "probe",
    "run_python",
]
