"""Fixtures for report tests: real runs (scripted server, simulated population) and a real headless
Chromium (Debian's, installed by `make test`), driven by Playwright without its own browser download."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from agentscale.cli.app import main
from agentscale.testing import Rule, ScriptedServer
from agentscale.testing.browser import headless_chromium

SCRIPT_PAYLOAD = "<script>window.__pwned = 'script'</script>"
IMG_PAYLOAD = "<img src=x onerror=\"window.__pwned='img'\">"
GRAPH = """\
name: trio
nodes:
  - {id: s1, role: assistant, model: m}
  - {id: s2, role: assistant, model: m}
  - {id: out, role: fuser, model: m}
edges:
  - s1, s2 -> out
"""


@pytest.fixture
def open_page(request: pytest.FixtureRequest) -> Iterator[object]:
    """Open a report file in headless Chromium (agentscale.testing.browser: Debian's build, no download).

    The browser starts at the first page a test opens, not as a fixture: Playwright's sync API keeps
    an event loop running in this thread, and the runs a test reports on (`asyncio.run` inside the
    CLI) must be made before. Pages are offline; the page's own errors fail the test, and a
    screenshot is kept as an artifact in pytest's cache folder (.pytest_cache/d/report-screenshots/).
    """
    with ExitStack() as stack:
        browser: list[Browser] = []
        contexts: list[BrowserContext] = []

        def load(path: Path, *, bypass_csp: bool = False) -> Page:
            if not browser:
                browser.append(stack.enter_context(headless_chromium()))
            context = browser[0].new_context(
                viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp, offline=True
            )
            contexts.append(context)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.resolve().as_uri())
            page.locator("html[data-ready='1']").wait_for(state="attached", timeout=10_000)
            assert errors == [], errors
            return page

        yield load
        cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
        folder = cache.mkdir("report-screenshots") if cache is not None else None
        for index, context in enumerate(contexts):
            for page in context.pages:
                if folder is not None:
                    page.screenshot(path=str(folder / f"{request.node.name}-{index}.png"), full_page=True)
            context.close()


def write_items(path: Path) -> Path:
    """Six questions; the fourth carries markup in its question, the fifth gets markup answers."""
    rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]
    rows.append({"id": "q3", "question": f"Say hi {IMG_PAYLOAD}", "answer": "hi"})
    rows.append({"id": "q4", "question": "Echo the payload", "answer": "safe"})
    rows.append({"id": "q5", "question": "What is 7 + 1?", "answer": "9"})  # scored wrong
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def eval_run(tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """An eval of a 3-node graph against the scripted server, through the CLI; returns its JSON."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "runs.db"))
    scripted.add_rule(Rule(pattern="Echo the payload", replies=[f"{SCRIPT_PAYLOAD}\nFinal answer: {SCRIPT_PAYLOAD}"]))
    # one slow item: the latency spread's mean, median and 95th percentile differ
    scripted.add_rule(Rule(pattern="Say hi", replies=[f"Final answer: {IMG_PAYLOAD}"], latency_s=0.4))
    graph = tmp_path / "trio.yaml"
    graph.write_text(f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n' + GRAPH)
    data = write_items(tmp_path / "items.jsonl")
    assert main(["eval", str(graph), "--task", str(data), "--scorer", "exact", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    return {**result, "db": tmp_path / "runs.db", "tmp": tmp_path}


def fact(html: str, label: str) -> str:
    """The value of the page's figure card `label`."""
    match = re.search(rf'<div class="fact-label">{re.escape(label)}</div><div class="fact-value">([^<]*)</div>', html)
    assert match is not None, label
    return match.group(1)
