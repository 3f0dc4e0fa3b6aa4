"""Probes that never start anything: which models a port serves, whether a port is free, whether a
process is alive."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agentscale.models.serving.engine import DEFAULT_HOST


def base_url(host: str, port: int) -> str:
    """``http://host:port`` where a client on this machine reaches a server listening on ``host``: a
    wildcard bind answers on loopback, an interface's address only there (an IPv6 one in brackets)."""
    reach = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def served_names(
    port: int, host: str = DEFAULT_HOST, timeout_s: float = 2.0, api_key: str | None = None
) -> set[str] | None:
    """Model ids listed by ``GET /v1/models`` on the port, or ``None`` if nothing answers like vLLM
    (a server started with an API key lists them only to a request bearing ``api_key``)."""
    try:
        with _get_models(port, host, api_key, timeout_s) as response:
            payload = json.loads(response.read())
        return {str(item["id"]) for item in payload.get("data", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def refuses_key(port: int, host: str, api_key: str, timeout_s: float = 2.0) -> bool:
    """Whether the server on the port answers a request bearing ``api_key`` with HTTP 401 (a vLLM
    started with another key), rather than not answering at all."""
    try:
        with _get_models(port, host, api_key, timeout_s):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


def _get_models(port: int, host: str, api_key: str | None, timeout_s: float) -> Any:
    """The open reply to ``GET /v1/models`` on the port, bearing ``api_key`` when given."""
    # No proxy: an http_proxy in the environment must not swallow requests to localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{base_url(host, port)}/v1/models")
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    return opener.open(request, timeout=timeout_s)


def serves(port: int, served_name: str, host: str, api_key: str | None = None) -> bool:
    names = served_names(port, host, api_key=api_key)
    return names is not None and served_name in names


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and -1 would probe our own group or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped: common in containers) answers signal 0 too
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :][:1] != "Z"
