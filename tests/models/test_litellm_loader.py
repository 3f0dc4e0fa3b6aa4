"""litellm's import in the background: a Ctrl-C during it does not wait for it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio
from agentscale.models.litellm_loader import get_litellm, import_litellm

async def main():
    asyncio.get_running_loop().create_task(import_litellm())
    await asyncio.sleep(0.05)
    raise KeyboardInterrupt  # what Ctrl-C raises in asyncio.run, seconds before the import ends

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
print("imported" if get_litellm.cache_info().currsize else "left behind")
"""


def test_an_interrupt_during_the_import_does_not_wait_for_it() -> None:
    """With `asyncio.to_thread`, `asyncio.run` joined the importing thread on the way out, so every
    Ctrl-C in an eval's first seconds waited 2-5 s for litellm's import; the daemon thread is left."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "left behind"
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr


def test_the_import_completes_when_awaited() -> None:
    script = (
        "import asyncio\nfrom agentscale.models.litellm_loader import get_litellm, import_litellm\n"
        "asyncio.run(import_litellm())\nprint(get_litellm().drop_params)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
