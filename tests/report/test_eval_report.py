"""The report of a scripted-server eval, opened in a real headless Chromium: figures, items, filters,
traces that expand, and stored markup shown as text that runs nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from html import escape
from pathlib import Path

import pytest

from agentscale.cli.app import main
from agentscale.evaluate.stats import wilson_interval
from agentscale.models.cost import usd_text
from agentscale.storage.db import Store
from agentscale.storage.owner import current_owner
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml
from tests.report.conftest import IMG_PAYLOAD, SCRIPT_PAYLOAD, fact


def write(run: dict[str, object], capsys: pytest.CaptureFixture[str]) -> Path:
    path = Path(str(run["tmp"])) / "report.html"
    assert main(["report", str(run["run_id"]), "-o", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": run["run_id"], "path": str(path)}
    return path


def test_eval_report_shows_figures_items_and_traces(eval_run, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    page = open_page(write(eval_run, capsys))
    assert page.locator(".fact", has_text="accuracy").first.inner_text().endswith("50.0%")
    assert "[" in page.locator(".fact", has_text="95% interval").inner_text()
    # the critical path too (a sim's calls take no wall time: the report showed only the wall clock)
    mean = eval_run["latency"]["critical_path_mean_s"]
    assert f"{mean:.2f} s ·" in page.locator(".fact", has_text="critical path").inner_text()
    assert page.locator("svg.graph-drawing g.node").count() == 3
    assert page.locator("svg.histogram rect.bar").count() > 0
    rows = page.locator("div.items tr.item-row")
    assert rows.count() == 6
    page.click("button[data-filter=wrong]")
    assert rows.count() == 3 and all("✗" in rows.nth(i).inner_text() for i in range(3))
    page.click("button[data-filter=right]")
    assert rows.count() == 3
    page.click("button[data-filter=all]")
    page.fill("input.search", "2 + 1")
    assert rows.count() == 1
    rows.first.click()
    traces = page.locator("tr.trace-row .node-trace")
    assert traces.count() == 3
    assert [traces.nth(i).locator(".node-id").inner_text() for i in range(3)] == ["s1", "s2", "out"]
    fuser = traces.nth(2)
    assert "fuser" in fuser.inner_text() and "Final answer: 3" in fuser.locator(".completion pre").inner_text()
    assert re.search(r"\d+ \+ \d+ tokens", fuser.locator(".node-figures").inner_text())
    fuser.locator("details.message summary").last.click()
    assert "What is 2 + 1?" in fuser.locator("details.message pre").last.inner_text()  # the prompt it was sent
    rows.first.click()
    assert page.locator("tr.trace-row").count() == 0


def test_markup_in_questions_and_answers_shows_as_text_and_runs_nothing(eval_run, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    # Without the page's Content-Security-Policy, so escaping alone must hold
    page = open_page(write(eval_run, capsys), bypass_csp=True)
    page.fill("input.search", "payload")
    row = page.locator("div.items tr.item-row")
    assert row.count() == 1 and row.locator("td.answer").inner_text() == SCRIPT_PAYLOAD
    row.click()
    assert SCRIPT_PAYLOAD in page.locator("tr.trace-row .completion pre").last.inner_text()
    page.fill("input.search", "Say hi")
    row = page.locator("div.items tr.item-row")
    assert IMG_PAYLOAD in row.locator("td.question").inner_text()
    assert row.locator("td.answer").inner_text() == IMG_PAYLOAD
    row.click()
    page.wait_for_timeout(200)  # time for an injected image's error handler, were there one
    assert page.evaluate("window.__pwned") is None
    injected = "main img, main script:not([type='application/json']), div.items script"
    assert page.evaluate(f"document.querySelectorAll({injected!r}).length") == 0


def test_the_page_runs_under_its_own_policy_and_needs_no_network(eval_run, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(eval_run, capsys)
    html = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing to fetch
    assert "Content-Security-Policy" in html and "'unsafe-inline'" not in html.split("script-src")[1][:80]
    page = open_page(path)  # offline context, CSP enforced: the script still renders the table
    assert page.locator("div.items tr.item-row").count() == 6


def test_report_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "empty.db"))
    assert main(["report", "nosuchrun"]) == 1
    err = capsys.readouterr().err
    assert "no database at" in err and "Traceback" not in err
    Store(tmp_path / "empty.db")
    assert main(["report", "nosuchrun"]) == 1
    err = capsys.readouterr().err
    assert "no run 'nosuchrun'" in err and "Traceback" not in err


def test_eval_output_and_runs_show_name_the_report(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    default = Path(str(eval_run["db"])).parent / "runs" / str(eval_run["run_id"]) / "report.html"
    assert eval_run["report"] == str(default) and default.exists()
    assert main(["runs", "show", str(eval_run["run_id"]), "--html"]) == 0
    assert str(default) in capsys.readouterr().err.replace("\n", "")
    assert main(["runs", "show", str(eval_run["run_id"]), "--html", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(default)  # scripts read it from the JSON
    assert main(["runs", "show", str(eval_run["run_id"]), "--json"]) == 0  # without --html: the one eval wrote
    assert json.loads(capsys.readouterr().out)["report"] == str(default)
    blocked = default / "again.html"  # a folder on the way that is a file: a traceback before
    assert main(["report", str(eval_run["run_id"]), "-o", str(blocked)]) == 1
    assert f"cannot write {blocked} ({default} is a file)" in " ".join(capsys.readouterr().err.split())


def island(html: str, element_id: str) -> dict[str, object]:
    """A JSON island of the page, read as the page's script reads it."""
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _plain_run(tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch, capsys) -> str:  # type: ignore[no-untyped-def]
    """`agentscale run` of one question through a one-node graph, in the database r.db: its run id."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "r.db"))
    graph = tmp_path / "one.yaml"
    graph.write_text(
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n'
        "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    assert main(["run", str(graph), "-q", "What is 40 + 2?", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    return str(run_id)


def test_a_plain_run_has_a_report_too_and_open_hands_it_to_the_browser(  # type: ignore[no-untyped-def]
    tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    run_id = _plain_run(tmp_path, scripted, monkeypatch, capsys)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert main(["report", run_id[:6], "--open"]) == 0
    printed = capsys.readouterr()
    path = Path(printed.out.strip())
    assert path == tmp_path / "runs" / run_id / "report.html" and opened == [path.resolve().as_uri()]
    assert "no browser to open it here" in printed.err  # open() said False (None here): it was silent
    assert main(["report", run_id, "-o", str(tmp_path / "r.pdf")]) == 1  # an HTML page named .pdf was written
    assert "a report is an HTML page; name it .html" in capsys.readouterr().err and not (tmp_path / "r.pdf").exists()
    html = path.read_text()
    rows = island(html, "data-items")["rows"]
    assert rows == [["0", "What is 40 + 2?", None, "42", None, None, rows[0][6], rows[0][7], None]]  # type: ignore[index]
    assert "not scored" in html and "SIMULATED" not in html
    assert f"<h1>run {run_id}</h1>" in html  # it said "run run"


def test_the_eval_pages_latency_and_calls_are_the_evals_own(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """The page's wall-clock spread is the one eval --json printed (its 95th percentile was the
    median once), and an eval that nothing cut short has no calls "paid by items cut short"."""

    from agentscale.evaluate.stats import percentile

    store = Store(eval_run["db"])
    run_id = str(eval_run["run_id"])
    latencies = [json.loads(row.usage_json)["latency_s"] for row in store.run_items(run_id)]
    mean, p50, p95 = eval_run["latency"]["mean_s"], percentile(latencies, 50), eval_run["latency"]["p95_s"]
    assert f"{p50:.2f}" != f"{p95:.2f}"  # the slow item sets the 95th percentile apart from the median
    text = write(eval_run, capsys).read_text()
    assert fact(text, "latency mean · p50 · p95 (wall clock)") == f"{mean:.2f} s · {p50:.2f} s · {p95:.2f} s"
    calls = store.spend(run_id)["calls"]
    assert fact(text, "model calls") == f"{calls} (+0 cache hits)"  # no "; N paid in all, 0 by items cut short"

    # a kill between an item's paid calls and its row: the resume answers it from the run's own cache
    with sqlite3.connect(store.path) as killed:
        killed.execute("DELETE FROM runitem WHERE run_id = ? AND item_key = 'q0'", (run_id,))
    assert main(["eval", "--resume", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["usage"]["calls"] == calls == store.spend(run_id)["calls"]
    assert fact(write(eval_run, capsys).read_text(), "model calls") == f"{calls} (+0 cache hits)"


def test_calls_paid_by_items_cut_short_are_counted(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """An interrupted eval's page said 218 model calls where its ledger held 243: the calls of items an
    interruption cut short belong to no answered item (the reports review)."""
    from agentscale import Store

    store = Store(eval_run["db"])
    calls = store.spend(str(eval_run["run_id"]))["calls"]
    cut = {"run_id": eval_run["run_id"], "item_key": "cut", "route": "r", "prompt_tokens": 1, "completion_tokens": 1}
    store.record_call(None, {**cut, "flops": 0.0})
    text = write(eval_run, capsys).read_text()
    assert f"; {calls + 1} paid in all, 1 by items cut short" in text


def test_the_page_says_which_items_did_not_finish(eval_run, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The page said "9/10 right" and nothing of the item whose calls failed, where the command said
    it did not finish and how to ask it again (the reports audit); a cap passed by calls already
    made is no cut, as in the command's summary."""

    run_id = str(eval_run["run_id"])
    assert "did not finish" not in write(eval_run, capsys).read_text()
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        overrun = "budget max_tokens=10 exceeded by the calls' actual usage (12; prompts were estimated)"
        stored.execute("UPDATE runitem SET stopped_reason = ? WHERE item_key = 'q0'", (overrun,))
    assert "did not finish" not in write(eval_run, capsys).read_text()
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        stored.execute("UPDATE runitem SET stopped_reason = 'node a failed: 500' WHERE item_key = 'q1'")
    text = " ".join(write(eval_run, capsys).read_text().split())
    n = len(Store(eval_run["db"]).run_items(run_id))
    assert f"1 of {n} items did not finish and were scored as they ended; first: q1: node a failed: 500" in text
    assert "--retry-errors" not in text  # no call failed: a retry would ask nothing (as the command says)
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        stored.execute(
            "UPDATE nodecall SET status = 'failed', error = '500' WHERE id = "
            "(SELECT min(id) FROM nodecall WHERE item_key = 'q1' AND run_id = ?)",
            (run_id,),
        )
    text = " ".join(write(eval_run, capsys).read_text().split())
    assert f"ask the 1 item with failed calls again: agentscale eval --resume {run_id} --retry-errors" in text
    # from another database than the default, the command names it (pasted, it found no such run)
    monkeypatch.delenv("AGENTSCALE_DB")
    path = Path(str(eval_run["tmp"])) / "again.html"
    assert main(["report", run_id, "-o", str(path), "--db", str(eval_run["db"])]) == 0
    text = " ".join(path.read_text().split())
    assert f"agentscale eval --resume {run_id} --retry-errors --db {Path(str(eval_run['db'])).resolve()}" in text
    assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)  # read as the reader's own clock


def test_the_page_says_which_replies_stopped_at_max_tokens(
    tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval` says how many replies stopped at their max_tokens; its page said nothing of them."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "runs.db"))
    scripted.add_rule(Rule(pattern="What is 2 \\+", replies=["2 + 1 = 3, so first I"], finish_reason="length"))
    graph = tmp_path / "one.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(3)))
    assert main(["eval", str(graph), "--task", str(data), "--json"]) == 0
    run = {**json.loads(capsys.readouterr().out), "tmp": tmp_path}
    page = " ".join(write(run, capsys).read_text().split())
    assert "1 of 3 items had a reply stopped at its max_tokens" in page and "a: cut at " in page


def test_the_figures_cards_are_the_stored_items_own(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """Accuracy, its interval, the right/scored count and the tokens, as the items hold them; with
    4 of 5 scored items right (one unscored), a mirrored interval, a count over all items or tokens
    in and out swapped show (the existing test read only "[" in the interval card, and its 3/6 is
    the one count whose Wilson interval is its own mirror). Kills I6, EP2, EP3, H7."""
    run_id = str(eval_run["run_id"])
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        stored.execute("UPDATE runitem SET correct = 1 WHERE run_id = ? AND item_key = 'q5'", (run_id,))
        stored.execute("UPDATE runitem SET correct = NULL WHERE run_id = ? AND item_key = 'q4'", (run_id,))
    text = write(eval_run, capsys).read_text()
    low, high = wilson_interval(4, 5)
    assert fact(text, "accuracy") == "80.0%"
    assert fact(text, "95% interval (Wilson)") == f"[{low:.1%}, {high:.1%}]" == "[37.6%, 96.4%]"
    assert fact(text, "items") == "4/5 right"
    items = Store(eval_run["db"]).run_items(run_id)
    prompt = sum(json.loads(i.usage_json)["prompt_tokens"] for i in items)
    completion = sum(json.loads(i.usage_json)["completion_tokens"] for i in items)
    assert prompt != completion
    assert fact(text, "tokens") == f"{prompt:,} in + {completion:,} out"
    usd = eval_run["usage"]["usd"]  # the scripted model has no price: unknown, not $0
    assert fact(text, "USD") == ("unknown" if usd is None else usd_text(usd))


def test_a_reply_cut_at_max_tokens_reads_ok_cut_in_its_trace(
    tmp_path, scripted, monkeypatch, open_page, capsys
) -> None:  # type: ignore[no-untyped-def]
    """`runs show` marks a node whose reply ended at its max_tokens `ok, cut`, as design.md says the
    trace tables do; the report's trace said a plain `ok` (a report walk)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "runs.db"))
    scripted.add_rule(Rule(pattern="What is 1 \\+ 1", replies=["Let me think about"], finish_reason="length"))
    graph = tmp_path / "one.yaml"
    graph.write_text(
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n'
        "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    data = tmp_path / "items.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(3)
        )
    )
    assert main(["eval", str(graph), "--task", str(data), "--scorer", "exact", "--json"]) == 0
    run = {**json.loads(capsys.readouterr().out), "tmp": tmp_path}
    page = open_page(write(run, capsys))
    rows = page.locator("div.items tr.item-row")
    statuses = []
    for index in range(rows.count()):
        rows.nth(index).click()
        statuses.append(page.locator("tr.trace-row .node-status").inner_text())
        rows.nth(index).click()
    assert sorted(statuses) == ["ok", "ok", "ok, cut"], statuses


def test_a_skipped_nodes_trace_names_no_route_rather_than_no_model(eval_run, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    """A skipped fuser (its model named in the graph) read "out · fuser · no model · skipped", the
    words of a model-free node; `runs show` prints "—" (the report walk)."""
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:  # as a node skipped after its inputs failed
        stored.execute(
            "UPDATE nodecall SET status = 'skipped', route = NULL WHERE node_id = 'out' AND item_key = 'q0' AND run_id = ?",
            (eval_run["run_id"],),
        )
    page = open_page(write(eval_run, capsys))
    page.fill("input.search", "0 + 1")
    page.locator("div.items tr.item-row").first.click()
    fuser = page.locator("tr.trace-row .node-trace").nth(2)
    assert fuser.locator(".node-status").inner_text() == "skipped"
    assert fuser.locator(".node-route").inner_text() == "—"


def test_an_eval_answered_from_the_cache_counts_hits_apart_and_its_traces_say_so(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """The same eval again: every call a cache hit. The card says 0 calls (+18 cache hits), as the
    command does, and each node's trace says "cache hit" with its own prompt and completion tokens.
    Kills EP5, I12, I14."""
    tmp = Path(str(eval_run["tmp"]))
    assert (
        main(["eval", str(tmp / "trio.yaml"), "--task", str(tmp / "items.jsonl"), "--scorer", "exact", "--json"]) == 0
    )
    again = {**json.loads(capsys.readouterr().out), "tmp": tmp}
    usage = again["usage"]
    assert usage["calls"] == 0 and usage["cached_calls"] == 18
    text = write(again, capsys).read_text()
    assert fact(text, "model calls") == "0 (+18 cache hits)"
    traces = island(text, "data-items-traces")["calls"]
    rows = island(text, "data-items")["rows"]
    stored = {
        (key, node): (pt, ct, cached)
        for key, node, pt, ct, cached in sqlite3.connect(Store(eval_run["db"]).path).execute(
            "SELECT item_key, node_id, prompt_tokens, completion_tokens, cached FROM nodecall WHERE run_id = ?",
            (again["run_id"],),
        )
    }
    shown = {
        (row[0], call[0]): (call[7], call[8], call[10])
        for row, calls in zip(rows, traces, strict=True)
        for call in calls
    }  # type: ignore[arg-type]
    assert shown == stored and len(shown) == 18
    assert all(cached == 1 for _, _, cached in shown.values())
    assert any(pt != ct for pt, ct, _ in shown.values())


def test_the_item_tables_rows_are_the_stored_items_in_answer_order(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """Each row's tokens (in + out) and wall-clock latency are its item's, rows in the order the
    items were answered. Kills I10, I15, I17."""
    store = Store(eval_run["db"])
    items = store.run_items(str(eval_run["run_id"]))
    rows = island(write(eval_run, capsys).read_text(), "data-items")["rows"]
    assert [row[0] for row in rows] == [item.item_key for item in items]  # type: ignore[index]
    for row, item in zip(rows, items, strict=True):  # type: ignore[arg-type]
        usage = json.loads(item.usage_json)
        assert row[6] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert row[7] == round(usage["latency_s"], 4)
    assert any(
        round(json.loads(i.usage_json)["critical_path_s"], 4) != row[7] for i, row in zip(items, rows, strict=True)
    )  # type: ignore[arg-type]


def test_stored_text_in_the_title_and_error_lines_is_shown_as_text(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """A run's error and an item's stopped reason hold text from a model or a server, the title the
    task's path: written into the page unescaped, a `</title>` or `<img onerror>` in them became
    markup (the page's CSP is a second line, not the only one). Kills H8, H10, EP13."""
    run_id = str(eval_run["run_id"])
    evil = '<img src=x onerror="window.__pwned=1">'
    store = Store(eval_run["db"])
    config = {**json.loads(store.get_run(run_id).config_json), "task": f"</title>{evil}"}
    with sqlite3.connect(store.path) as stored:
        stored.execute(
            "UPDATE run SET error = ?, config_json = ? WHERE id = ?", (f"boom {evil}", json.dumps(config), run_id)
        )
        stored.execute("UPDATE runitem SET stopped_reason = ? WHERE item_key = 'q1'", (f"node s1 failed: {evil}",))
    text = write(eval_run, capsys).read_text()
    assert evil not in text and "</title><img" not in text
    assert f"error: boom {escape(evil)}" in text
    assert f"; first: q1: node s1 failed: {escape(evil)}</p>" in text
    assert re.search(r"<title>[^<]*&lt;/title&gt;", text)


def test_the_did_not_finish_line_names_the_first_such_item(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """Two items that did not finish: the line counts both and names the first answered. Kills EP11."""
    run_id = str(eval_run["run_id"])
    store = Store(eval_run["db"])
    keys = [item.item_key for item in store.run_items(run_id)]
    with sqlite3.connect(store.path) as stored:
        for key in (keys[1], keys[4]):
            stored.execute("UPDATE runitem SET stopped_reason = ? WHERE item_key = ?", (f"node s1 failed: {key}", key))
    text = " ".join(write(eval_run, capsys).read_text().split())
    assert (
        f"2 of 6 items did not finish and were scored as they ended; first: {keys[1]}: node s1 failed: {keys[1]}"
        in text
    )


def test_the_page_shows_what_went_wrong_in_the_error_colour(eval_run, open_page, capsys) -> None:  # type: ignore[no-untyped-def]
    """The lines saying what did not finish were styled like the text around them (the page's CSS had
    no rule for their class): a reader scrolling past the figures missed them (a new user's walk)."""
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        stored.execute("UPDATE runitem SET stopped_reason = 'node a failed: 500' WHERE item_key = 'q1'")
    page = open_page(write(eval_run, capsys))
    said = page.locator("p.error", has_text="did not finish")
    assert said.evaluate("e => getComputedStyle(e).color") == "rgb(217, 48, 37)"


def test_the_page_offers_no_retry_for_items_a_budget_stopped(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Items a budget stopped are not asked again by `--retry-errors` (the budget would stop them
    again): the page said "ask them again with: ... --retry-errors" for them, and the retry then
    asked nothing (a new user's walk through the CLI). The command's summary offers no retry either."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "b.db"))
    graph = tmp_path / "capped.yaml"
    graph.write_text(
        "name: capped\nmodels: {m: {model: sim/llama-8b}}\ndefaults: {temperature: 0.8, max_tokens: 512}\n"
        "budget: {max_tokens: 1800}\nnodes:\n"
        + "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(3))
        + "  - {id: vote, role: vote}\nedges: ['s0, s1, s2 -> vote']\n"
    )
    main(["eval", str(graph), "--task", "sim:math", "--n", "3", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["unfinished"] == 3 and summary["items_to_retry"] == 0, summary
    path = tmp_path / "capped.html"
    assert main(["report", summary["run_id"], "-o", str(path)]) == 0
    text = " ".join(path.read_text().split())
    assert "3 of 3 items did not finish" in text and "budget max_tokens=1800 would be exceeded" in text
    assert "--retry-errors" not in text


def test_a_plain_runs_page_does_not_offer_an_eval_resume(
    tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """`eval --resume` takes an eval: a plain `run` that did not finish is named, with no command that
    would fail on it. Kills EP10."""
    run_id = _plain_run(tmp_path, scripted, monkeypatch, capsys)
    with sqlite3.connect(tmp_path / "r.db") as stored:
        stored.execute("UPDATE runitem SET stopped_reason = 'node a failed: 500' WHERE run_id = ?", (run_id,))
    path = tmp_path / "p.html"
    assert main(["report", run_id, "-o", str(path)]) == 0
    text = " ".join(path.read_text().split())
    assert "1 of 1 items did not finish" in text and "--retry-errors" not in text and "eval --resume" not in text


def test_report_json_names_the_whole_run_id_of_a_prefix_and_takes_an_upper_case_suffix(
    tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report 3f2a -o run.HTML --json`: the JSON's run_id is the run's id, not the prefix typed (mutant
    T2: the prefix was echoed, which names no run for `runs show` in a larger database; the existing
    test passed the whole id), and `.HTML` is an HTML page's name (mutant T1: refused as not .html)."""
    run_id = _plain_run(tmp_path, scripted, monkeypatch, capsys)
    page = tmp_path / "run.HTML"
    assert main(["report", run_id[:6], "-o", str(page), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": run_id, "path": str(page)}
    assert page.exists()


def test_the_page_of_an_eval_that_did_not_finish_says_its_figures_are_partial(eval_run, capsys) -> None:  # type: ignore[no-untyped-def]
    """An interrupted eval's page read "100.0%, 8/8 right" with "interrupted" in its grey line only and
    no resume command (the CLI prints one), and a running eval's looked finished (the report walk)."""
    run_id = str(eval_run["run_id"])
    n = len(Store(eval_run["db"]).run_items(run_id))
    assert "not finished" not in write(eval_run, capsys).read_text()
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:
        stored.execute("UPDATE run SET status = 'interrupted' WHERE id = ?", (run_id,))
    text = " ".join(write(eval_run, capsys).read_text().split())
    said = f"not finished: these figures are of the {n} items recorded before it stopped; continue with: agentscale eval --resume {run_id}"
    assert said in text
    with sqlite3.connect(Store(eval_run["db"]).path) as stored:  # running, in this (live) process
        stored.execute("UPDATE run SET status = 'running', owner = ? WHERE id = ?", (current_owner(), run_id))
    text = " ".join(write(eval_run, capsys).read_text().split())
    assert f"still running: these figures are of the {n} items recorded so far" in text
