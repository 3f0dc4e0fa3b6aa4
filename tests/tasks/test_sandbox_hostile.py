"""A corpus of hostile completions is contained: each scores 0, the eval goes on, time is bounded,
no marker file appears outside the sandbox, nothing reaches the network and no process survives.

Only run where the sandbox has namespaces: in plain mode (no unshare) these programs would really
write to /tmp, reach the network, and - as root - ``kill(-1)`` would take down the machine.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentscale.tasks import Task, TaskItem
from agentscale.tasks.sandbox import SandboxLimits, probe
from agentscale.tasks.scorers import code_scorer

pytestmark = pytest.mark.skipif(probe().mode == "plain", reason="hostile code is only run inside a namespaced sandbox")

LIMITS = SandboxLimits(timeout_s=3)
PROMPT = 'import os\n\n\ndef solve():\n    """Return 42."""\n'
TEST = "def check(candidate):\n    assert candidate() == 42\n"
SANDBOX_UID_RANGE = range(2_000_000_000, 2_100_000_000)


@dataclass
class Traps:
    """Host-side things a hostile program must not be able to touch."""

    markers: list[Path]
    secret_file: Path
    secret: str
    port: int
    connections: list[bytes]


@pytest.fixture
def traps(tmp_path: Path) -> Iterator[Traps]:
    tag = f"agentscale-hostile-{uuid.uuid4().hex}"
    markers = [
        Path("/tmp") / tag,
        Path("/var/tmp") / tag,
        Path("/dev/shm") / tag,
        Path.home() / tag,
        tmp_path / tag,
    ]
    secret = uuid.uuid4().hex
    secret_file = tmp_path / "secret.env"
    secret_file.write_text(f"OPENAI_API_KEY={secret}\n")
    secret_file.chmod(0o644)
    tmp_path.chmod(0o755)

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"42")
                connections.append(conn.recv(100))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Traps(markers, secret_file, secret, server.getsockname()[1], connections)
    stop.set()
    thread.join(2)
    server.close()
    for marker in markers:
        marker.unlink(missing_ok=True)


def _corpus(traps: Traps) -> dict[str, str]:
    """name -> completion body for ``solve()``. Each returns 42 only if its attack succeeded."""
    paths = [str(m) for m in traps.markers]
    return {
        "infinite_loop": "    while True:\n        pass\n",
        "sleep_forever": "    import time\n    time.sleep(3600)\n",
        "fork_bomb": "    while True:\n        os.fork()\n",
        "fork_bomb_spinning": "    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n",
        "memory_bomb": "    hog = []\n    while True:\n        hog.append(bytearray(50 << 20))\n",
        "fork_and_memory_bomb": (
            "    for _ in range(64):\n        try:\n            os.fork()\n        except OSError:\n            break\n"
            "    hog = []\n    while True:\n        hog.append(bytearray(50 << 20))\n"
        ),
        "write_markers": (
            f"    for path in {paths!r}:\n"
            "        try:\n            open(path, 'w').write('pwned')\n        except OSError:\n            pass\n"
            f"    return 42 if all(os.path.exists(p) for p in {paths!r}) and False else 0\n"
        ),
        "os_system": (
            f"    for path in {paths!r}:\n        os.system('touch ' + path + ' 2>/dev/null')\n    return 0\n"
        ),
        "daemonised_writer": (
            "    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
            "            import time\n            time.sleep(4)\n"
            f"            for path in {paths!r}:\n"
            "                try:\n                    open(path, 'w').write('late')\n"
            "                except OSError:\n                    pass\n"
            "            os._exit(0)\n        os._exit(0)\n"
            "    return 0\n"
        ),
        "socket_to_host_service": (
            "    import socket\n"
            f"    with socket.create_connection(('127.0.0.1', {traps.port}), timeout=2) as s:\n"
            "        s.sendall(b'exfiltrated')\n        return int(s.recv(10))\n"
        ),
        "socket_to_internet": (
            "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return 42\n"
        ),
        "read_host_secret": f"    return 42 if {traps.secret!r} in open({str(traps.secret_file)!r}).read() else 0\n",
        "read_parent_environment": (
            "    import glob\n    for f in glob.glob('/proc/*/environ'):\n        try:\n"
            "            if b'AGENTSCALE_HOSTILE_SECRET' in open(f, 'rb').read():\n                return 42\n"
            "        except OSError:\n            pass\n    return 0\n"
        ),
        "kill_everything": "    import signal\n    os.kill(-1, signal.SIGKILL)\n    return 42\n",
        "become_root": "    os.setuid(0)\n    return 42\n",
        "chroot_escape_via_user_namespace": (
            "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    if libc.unshare(0x10000000) != 0:\n        return 0\n"
            "    os.makedirs('jail', exist_ok=True)\n    os.chroot('jail')\n"
            "    for _ in range(64):\n        os.chdir('..')\n    os.chroot('.')\n"
            f"    return 42 if os.path.exists({str(traps.secret_file)!r}) else 0\n"
        ),
        "fill_the_disk": (
            "    for i in range(10000):\n        open(f'fill{i}', 'wb').write(b'x' * (1 << 20))\n    return 0\n"
        ),
        "exit_zero_early": "    raise SystemExit(0)\n",
    }


def _sandbox_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = int(Path(f"/proc/{entry}/status").read_text().split("Uid:")[1].split()[0])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if uid in SANDBOX_UID_RANGE or b"_agentscale_harness" in cmdline:
            found.append(int(entry))
    return found


def test_hostile_corpus_is_contained(traps: Traps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSCALE_HOSTILE_SECRET", "do-not-leak")
    corpus = _corpus(traps)
    items = [
        TaskItem(
            id=name,
            question=PROMPT,
            reference="    return 42\n",
            metadata={"prompt": PROMPT, "test": TEST, "entry_point": "solve"},
        )
        for name in [*corpus, "honest"]
    ]
    task = Task("hostile", "hostile completions", "code", code_scorer(LIMITS), "code", tuple(items))
    answers = [*corpus.values(), "    return 42\n"]

    with ThreadPoolExecutor(4) as pool:
        scores = dict(zip([i.id for i in items], pool.map(task.score, answers, items), strict=True))

    assert scores.pop("honest").correct, "the eval must go on and score honest code normally"
    assert {name: s.detail for name, s in scores.items() if s.correct} == {}

    time.sleep(4.5)  # give the daemonised writer time to act, had it survived
    assert [str(m) for m in traps.markers if m.exists()] == []
    assert traps.connections == []
    deadline = time.monotonic() + 5
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes() == []


def test_fork_bomb_is_bounded_by_the_process_limit() -> None:
    from agentscale.tasks.sandbox import run_python

    source = (
        "import os, time\ncount = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(60)\n            os._exit(0)\n        count += 1\n"
        "except OSError:\n    print(count)\n"
    )
    result = run_python(source, limits=SandboxLimits(timeout_s=10, max_processes=8))
    assert result.passed, result.stderr_tail
    assert int(result.stdout_tail) < 8  # the harness itself counts as one
    assert result.duration_s < 5  # the sleeping children died with the run instead of holding it
