"""How fast a large eval's HTML report is written and opens (figures, not a test).

Writes an eval run of N items (default 10,000) with three node calls each straight into a fresh
database — realistic sizes: a shared system prompt, a ~600-character user prompt and a ~500-character
completion per call, every question and answer distinct — then times `write_report` and opening the
page in headless Chromium until the item table is on screen (goal: < 3 s for 10,000 items), the
first click that opens an item's trace (its JSON is parsed then, not at load), and a filter.
The rows are synthetic because the report only reads the database: no model is involved.

Run: .venv/bin/python benchmarks/report_open.py [--items 10000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from agentscale.graphs.result import Usage
from agentscale.report import write_report
from agentscale.storage.db import Store
from agentscale.storage.tables import NodeCall, RunItem
from agentscale.testing.browser import headless_chromium

GRAPH = """\
name: trio
models:
  m: {model: hosted_vllm/bench, api_base: "http://127.0.0.1:1/v1"}
nodes:
  - {id: s1, role: assistant, model: m}
  - {id: s2, role: assistant, model: m}
  - {id: out, role: fuser, model: m}
edges:
  - s1, s2 -> out
"""
SYSTEM = "You are a careful assistant. " * 14
FILLER = "Let us reason step by step about the quantities involved and check each step. "


def fill(store: Store, items: int) -> str:
    """An eval run of `items` answered and scored items, three calls each, written in batches."""
    run = store.create_run("eval", graph_name="trio", graph_yaml=GRAPH, config={"task": "bench", "n": items})
    batch: list[NodeCall | RunItem] = []
    for i in range(items):
        question = f"Item {i}: a train leaves at {i % 24}:00 and travels {i % 97 + 3} km; " + FILLER * 3
        answer = str(i % 113)
        for node, role in (("s1", "assistant"), ("s2", "assistant"), ("out", "fuser")):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question + FILLER * 3}]
            completion = f"Node {node} on item {i}. {FILLER * 5}\nFinal answer: {answer}"
            batch.append(
                NodeCall(
                    run_id=run.id,
                    item_key=f"i{i}",
                    node_id=node,
                    role=role,
                    route="hosted_vllm/bench",
                    messages_json=json.dumps(messages),
                    completion=completion,
                    answer=answer,
                    prompt_tokens=180,
                    completion_tokens=120,
                    latency_s=0.4 + (i % 50) / 100,
                )
            )
        usage = Usage(calls=3, prompt_tokens=540, completion_tokens=360, flops=None, usd=None, latency_s=1.1)
        batch.append(
            RunItem(
                run_id=run.id,
                item_key=f"i{i}",
                question=question,
                answer=answer,
                usage_json=json.dumps(usage.to_dict()),
                reference=answer if i % 3 else "0",
                correct=bool(i % 3),
                detail="",
            )
        )
        if len(batch) >= 4000:
            store.add_all(batch)
            batch = []
    store.add_all(batch)
    store.finish_run(run.id, "done")
    return run.id


def measure(items: int, repeat: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.db")
        started = time.perf_counter()
        run_id = fill(store, items)
        filled = time.perf_counter() - started
        writes = []
        for _ in range(repeat):
            started = time.perf_counter()
            path = write_report(store, run_id, Path(folder) / "report.html")
            writes.append(time.perf_counter() - started)
        opens, traces, filters = [], [], []
        with headless_chromium() as browser:
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
                page = context.new_page()
                started = time.perf_counter()
                page.goto(path.as_uri())
                page.locator("div.items tr.item-row").first.wait_for(state="visible")
                opens.append(time.perf_counter() - started)
                started = time.perf_counter()
                page.locator("div.items tr.item-row").first.click()
                page.locator("tr.trace-row .node-trace").first.wait_for(state="visible")
                traces.append(time.perf_counter() - started)
                started = time.perf_counter()
                page.click("button[data-filter=wrong]")
                page.locator("div.items .count", has_text=f"{items // 3 + (1 if items % 3 else 0)} of").wait_for()
                filters.append(time.perf_counter() - started)
                context.close()
        return {
            "items": items,
            "node_calls": 3 * items,
            "fill_db_s": round(filled, 2),
            "report_mb": round(path.stat().st_size / 1e6, 2),
            "write_report_s": round(statistics.median(writes), 2),
            "open_to_table_s": round(statistics.median(opens), 2),
            "open_to_table_max_s": round(max(opens), 2),
            "first_trace_click_s": round(statistics.median(traces), 3),
            "filter_wrong_s": round(statistics.median(filters), 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.items, args.repeat)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"report of an eval with {figures['items']:,} items ({figures['node_calls']:,} node calls)")
    print(f"  file size                       {figures['report_mb']} MB")
    print(f"  write_report (median)           {figures['write_report_s']} s")
    print(
        f"  open until the table shows      {figures['open_to_table_s']} s median, "
        f"{figures['open_to_table_max_s']} s max (goal < 3 s)"
    )
    print(f"  first click to a trace          {figures['first_trace_click_s']} s")
    print(f"  filter to wrong answers         {figures['filter_wrong_s']} s")


if __name__ == "__main__":
    main()
