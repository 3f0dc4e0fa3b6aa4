"""`benchmarks/serving.py` labels each run with the dtype its server really serves in (the memory
check may have fallen back to bfloat16 from the CPU's float32), read from the server's command line."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("serving")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line names a dtype, as a vLLM server's does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--dtype", "bfloat16"])
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while not cmdline.read_bytes() and time.monotonic() < deadline:  # empty until the exec has finished
        time.sleep(0.01)
    yield process
    process.kill()
    process.wait()


def test_the_served_dtype_comes_from_the_server_command_line(
    bench: ModuleType, sleeper: subprocess.Popen[bytes]
) -> None:
    assert bench._served_dtype(sleeper.pid) == "bfloat16"


def test_an_unknown_server_process_has_no_served_dtype(bench: ModuleType) -> None:
    assert bench._served_dtype(None) is None
    assert bench._served_dtype(2**22 + 1) is None  # above Linux's pid_max: no such process
