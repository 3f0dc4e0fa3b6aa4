"""A hub id is asked of the Hugging Face cache and the hub before vLLM starts on it (`serving.hub`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
from agentscale.errors import ServingError
from agentscale.models.serving.server import resolve_target
for name in ("openai/gpt-4o", "some-org/cached-model"):
    try:
        print(name, "->", resolve_target(name, None, None).model)
    except ServingError as exc:
        print(name, "refused:", exc)
"""


def test_a_hub_id_neither_cached_nor_reachable_is_refused_before_vllm_starts(tmp_path: Path) -> None:
    """`agentscale serve openai/gpt-4o` (a litellm route) started vLLM on it as a hub id: without the
    hub it failed after about 20 s with a 100-line traceback. Now one line, at once; a model in the
    cache is served as before (a hub id's cache entry: refs/main and its snapshot's config.json)."""
    snapshot = tmp_path / "models--some-org--cached-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--some-org--cached-model" / "refs").mkdir()
    (tmp_path / "models--some-org--cached-model" / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    refused, served = done.stdout.splitlines()
    assert refused == (
        "openai/gpt-4o refused: 'openai/gpt-4o' is not local/<name>, a model folder, or a model in the Hugging "
        "Face cache, and HF_HUB_OFFLINE is set: give a bundled model (agentscale models list) or a folder"
    )
    assert served == "some-org/cached-model -> some-org/cached-model"


def test_serving_beyond_loopback_without_a_key_is_warned_of(tmp_path: Path) -> None:
    """`agentscale serve MODEL --host 0.0.0.0` starts vLLM without an API key and said nothing of it
    (a security review); on the loopback it says nothing. (The id here is refused at once after.)"""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    warned = "is reachable from other machines and no key is asked"
    for host, warns in (("0.0.0.0", True), ("127.0.0.1", False)):
        command = [sys.executable, "-m", "agentscale.cli.app", "serve", "openai/gpt-4o", "--host", host]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 1 and (warned in " ".join(done.stderr.split())) == warns, done.stderr
