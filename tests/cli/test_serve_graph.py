"""`agentscale serve-graph` as a user starts it: it serves on the port it names, and a port it cannot
listen on is an error before anything says "serving"."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml, with_default_sigint

GRAPH = "name: served\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n"


def _command(tmp_path: Path, port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    (tmp_path / "g.yaml").write_text(GRAPH)
    command = [sys.executable, "-m", "agentscale.cli.app", "serve-graph", str(tmp_path / "g.yaml")]
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "runs.db")}
    return [*command, "--host", host, "--port", str(port)], env


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def _wait_until_serving(process: subprocess.Popen[str], port: int, loopback: str = "127.0.0.1") -> list[str]:
    """The served models' ids, once the server answers on `loopback`."""
    deadline = time.monotonic() + 60
    while True:
        try:
            models = httpx.get(f"http://{loopback}:{port}/v1/models", timeout=2).json()
            return [model["id"] for model in models["data"]]
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, f"nothing serves on {loopback}"
            time.sleep(0.1)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job has it


@pytest.mark.parametrize(
    ("host", "stop", "background"),
    [("127.0.0.1", signal.SIGINT, False), ("", signal.SIGTERM, False), ("127.0.0.1", signal.SIGTERM, True)],
)
def test_serve_graph_answers_on_its_port_and_stops_on_a_signal(
    tmp_path: Path, host: str, stop: signal.Signals, background: bool
) -> None:
    """`--host ""` is every interface, IPv4 and IPv6 (uvicorn bound each address; one socket bound
    here took only the first); SIGTERM stops it as Ctrl-C does, exit 0, also as a background job
    (SIGINT ignored), where every `kill` ended in "Event loop is closed" tracebacks, exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = _command(tmp_path, port, host=host)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_ignore_sigint if background else None
    )
    loopbacks = ["127.0.0.1"] + (["[::1]"] if host == "" and _ipv6_loopback() else [])
    try:
        for loopback in loopbacks:
            assert _wait_until_serving(process, port, loopback) == ["served"]
        question = {"model": "served", "messages": [{"role": "user", "content": "[sim:math#0001] q"}]}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=question, timeout=30)
        assert reply.status_code == 200 and reply.json()["agentscale"]["simulated"] is True  # sim/ models answered
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"serving graph 'served' at http://{host}:{port}/v1" in " ".join(stderr.split())
    assert "SIMULATED models (sim/)" in " ".join(stderr.split())  # it said nothing of it (an audit)
    # a line per request for the operator (nothing was said of any request, a 502 neither)
    run_id = reply.json()["agentscale"]["run_id"]
    assert re.search(rf"\d\d:\d\d:\d\d 127\.0\.0\.1:\d+ POST /v1/chat/completions 200 [\d.]+ s run {run_id}\n", stderr)
    assert "Traceback" not in stderr and "interrupted" not in stderr
    # every interface and no key: anyone reaching it spends the models (a security review)
    assert ("is reachable from other machines and no key is asked" in " ".join(stderr.split())) == (host == "")


def test_a_key_variable_unset_here_is_warned_of_at_start(tmp_path: Path) -> None:
    """validate notes it; serve-graph started without a word and answered 502 to every question its
    cache did not hold (a new user's walk)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = _command(tmp_path, port)
    env.pop("AGENTSCALE_TEST_UNSET_KEY", None)
    keyed = "models:\n  k: {model: openai/gpt-4o-mini, api_key_env: AGENTSCALE_TEST_UNSET_KEY}\n"
    (tmp_path / "g.yaml").write_text(GRAPH + keyed)
    process = subprocess.Popen([*command, "--no-access-log"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert _wait_until_serving(process, port) == ["served"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    said = " ".join(stderr.split())
    assert "warning: models.k.api_key_env: AGENTSCALE_TEST_UNSET_KEY is not set in this environment" in said
    assert "GET /v1/models" not in said  # --no-access-log: the polls that found it serving print no line


def test_a_taken_port_or_an_unknown_host_is_an_error_before_serving(tmp_path: Path) -> None:
    """uvicorn printed the "serving" line, then its own error, and exited 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        command, env = _command(tmp_path, port)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "choose another --port" in done.stderr
    assert "serving graph" not in done.stderr and "Traceback" not in done.stderr
    command, env = _command(tmp_path, 8080, host="nosuchhost.invalid")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "--host nosuchhost.invalid" in done.stderr, done.stderr
    assert "serving graph" not in done.stderr and "Traceback" not in done.stderr


def _serving_scripted(tmp_path: Path, scripted: ScriptedServer, *options: str) -> tuple[subprocess.Popen[str], int]:
    """`serve-graph` of a one-call graph of the scripted server's model, on a free port (started;
    wait for it with `_wait_until_serving`); its stderr piped, Ctrl-C at its default."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = _command(tmp_path, port)
    (tmp_path / "g.yaml").write_text(graph_yaml(scripted.api_base, GRAPH.replace("sim/llama-8b", "m")))
    process = subprocess.Popen(
        [*command, *options], stderr=subprocess.PIPE, text=True, env=env, preexec_fn=with_default_sigint
    )
    return process, port


def _wait_for_a_model_call(scripted: ScriptedServer) -> None:
    """Until a served run is at its model call."""
    deadline = time.monotonic() + 60
    while not scripted.completion_requests:
        assert time.monotonic() < deadline, "the request never reached the model"
        time.sleep(0.05)


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path: Path, scripted: ScriptedServer) -> None:
    """A second Ctrl-C skips the graceful wait: the request in flight gets its 503 and the process
    exits, with no traceback (uvicorn's lifespan task, cancelled on the way out, logged one though
    the app has no lifespan)."""
    scripted.latency_s = 30.0
    process, port = _serving_scripted(tmp_path, scripted)
    replies: list[httpx.Response] = []
    question = {"model": "served", "messages": [{"role": "user", "content": "q"}]}
    asking = threading.Thread(
        target=lambda: replies.append(
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=question, timeout=60)
        )
    )
    try:
        _wait_until_serving(process, port)
        asking.start()
        _wait_for_a_model_call(scripted)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
        asking.join(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert [reply.status_code for reply in replies] == [503]
    # the first Ctrl-C said nothing for the 30 s it waited (a new user's walk)
    said = " ".join(stderr.split())
    assert "stopping: 1 request(s) in flight get up to 30 s to finish; Ctrl-C again stops them now" in said


def test_requests_waiting_for_a_turn_are_answered_at_once_when_the_server_stops(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    """With --max-concurrency 1, a stop said "3 request(s) in flight ... get up to 30 s" and the two
    waiting for a turn waited the grace out for their 503 when the running one took it all (the
    serve-graph walk), or started runs the grace could cut. They get it at once; the running one
    still finishes."""
    scripted.latency_s = 4.0
    process, port = _serving_scripted(tmp_path, scripted, "--max-concurrency", "1")
    replies: dict[str, tuple[int, str | None, float]] = {}

    def ask(question: str) -> None:
        streamed = question == "third"  # a streamed reply ends with the error event instead
        body = {"model": "served", "messages": [{"role": "user", "content": question}], "stream": streamed}
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
        if streamed:
            events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
            code, status = events[-1].get("error", {}).get("code"), 503 if "error" in events[-1] else 200
        else:
            status, code = (
                reply.status_code,
                reply.json().get("error", {}).get("code") if reply.status_code != 200 else None,
            )
        replies[question] = (status, code, time.monotonic())

    askers = [threading.Thread(target=ask, args=(question,)) for question in ("first", "second", "third")]
    try:
        _wait_until_serving(process, port)
        askers[0].start()
        _wait_for_a_model_call(scripted)
        for asker in askers[1:]:
            asker.start()
        time.sleep(0.5)  # both waiting for the one turn
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        for asker in askers:
            asker.join(timeout=60)
    assert replies["first"][:2] == (200, None), replies
    assert replies["second"][:2] == replies["third"][:2] == (503, "server_stopping"), replies
    assert (
        replies["second"][2] < replies["first"][2] and replies["third"][2] < replies["first"][2]
    )  # not after the grace
    said = " ".join(stderr.split())
    assert "stopping: 1 request(s) in flight get up to 30 s" in said and "2 request(s) waiting for a turn" in said, said
    assert len(scripted.completion_requests) == 1 and "Traceback" not in stderr


def test_litellm_is_imported_before_the_server_says_it_is_serving(tmp_path: Path) -> None:
    """The first request paid litellm's import (8.5 s where the next took 0.03 s): the import now
    comes before the "serving" line (`-X importtime` writes each import to stderr as it happens)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = _command(tmp_path, port)
    process = subprocess.Popen(
        [command[0], "-X", "importtime", *command[1:]], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stderr is not None
        imported = False
        for line in process.stderr:
            imported = imported or line.rstrip().endswith("| litellm")
            if "serving graph 'served'" in line:
                break
        else:
            pytest.fail("serve-graph ended without serving")
        assert imported
    finally:
        process.kill()
        process.wait(10)
