"""What `local/<name>` names, and the up-front error for a name that names nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentscale.models.local_names import UnknownLocalModel, known_routes, local_route_problem, resolve_local


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_bundled_names_with_or_without_prefix() -> None:
    assert resolve_local("local/qwen2.5-coder-1.5b").kind == "bundled"
    assert resolve_local("smollm2-135m").kind == "bundled"


def test_a_folder_a_cached_conversion_and_a_hub_id(tmp_path: Path, cache: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_local(f"local/{folder}") == resolve_local(str(folder))
    assert resolve_local(str(folder)).kind == "folder" and resolve_local(str(folder)).path == folder

    mine = cache / "models" / "my-conversion"
    mine.mkdir(parents=True)
    (mine / "config.json").write_text(json.dumps({}))
    resolved = resolve_local("local/my-conversion")
    assert (resolved.kind, resolved.path) == ("cached", mine)
    assert "local/my-conversion" in known_routes()

    assert resolve_local("local/Qwen/Qwen2.5-7B-Instruct").kind == "hub"


def test_an_unknown_name_lists_the_known_routes(cache: Path) -> None:
    with pytest.raises(UnknownLocalModel) as info:
        resolve_local("local/no-such-model")
    message = str(info.value)
    assert message.startswith("local/no-such-model is neither a bundled model, nor a model folder")
    assert str(cache / "models") in message
    assert "local/qwen2.5-coder-0.5b, local/qwen2.5-coder-1.5b, local/smollm2-135m" in message
    assert local_route_problem("local/no-such-model") == message
    assert local_route_problem("openai/gpt-4o-mini") is None
    assert local_route_problem("local/smollm2-135m") is None


def test_a_missing_absolute_folder_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    assert local_route_problem(f"local/{tmp_path / 'gone'}") is not None
