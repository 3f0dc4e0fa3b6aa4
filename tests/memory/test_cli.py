"""`agentscale handbook ...` and `agentscale eval --handbook`: JSON shapes, human output, errors without tracebacks."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentscale import Store
from agentscale.cli.app import main
from agentscale.memory import Handbook
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml, with_default_sigint
from tests.memory.conftest import extraction, script_item, seed_handbook, write_task

BEHAVIORS = [
    ("behavior_estimate_first", "Estimate the sum roughly first so that slips in addition stand out."),
    ("behavior_carry_digits", "Add digits column by column from the right, carrying tens to the next column."),
]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("AGENTSCALE_DB", str(path))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_list_show_search(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7")])
    script_item(scripted, "What is 3 + 4?", solution="Final answer: 7", reflection="ok", reply=extraction(*BEHAVIORS))
    code, out, err = cli(
        capsys, "handbook", "build", "--task", str(task), "--model", "hosted_vllm/scripted",
        "--api-base", scripted.api_base, "--handbook", "math", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    keys = {"run_id", "handbook", "items", "proposed", "added", "merged", "rejected", "malformed", "usage"}
    assert keys <= set(report)
    assert (report["handbook"], report["items"], report["added"], report["behaviors"]) == ("math", 1, 2, 2)

    code, out, _ = cli(capsys, "handbook", "list", "--json")
    assert code == 0 and [(b["handbook"], b["behaviors"]) for b in json.loads(out)] == [("math", 2)]
    assert "T" in json.loads(out)[0]["created"]  # ISO, as every other JSON time (str() wrote a space)
    code, out, _ = cli(capsys, "handbook", "list", "math", "--json")
    listed = json.loads(out)
    assert [b["name"] for b in listed] == ["behavior_estimate_first", "behavior_carry_digits"]
    assert listed[0]["topic"] == "t.jsonl" and listed[0]["source_run"] == report["run_id"]  # the file's name

    code, out, _ = cli(capsys, "handbook", "show", "math", "Carry Digits", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["name"] == "behavior_carry_digits" and shown["sources"][0]["item_id"] == "q0"
    code, out, _ = cli(capsys, "handbook", "show", "math", "behavior_carry_digits")
    assert code == 0 and "provenance" in out and "column by column" in out and "topic t.jsonl" in out

    code, out, err = cli(capsys, "handbook", "search", "math", "add the digits of 58 and 67", "--json")
    best = json.loads(out)[0]
    assert code == 0 and (best["name"], best["method"]) == ("behavior_carry_digits", "bm25")
    code, out, err = cli(capsys, "handbook", "search", "math", "estimate roughly", "--k", "1")
    assert code == 0 and "behavior_estimate_first" in out and "by bm25" in err
    code, out, err = cli(capsys, "handbook", "search", "math", "zebra xylophone")  # an empty table, headers alone
    assert code == 0 and out == "" and "no behavior shares a word with the query (BM25)" in err

    code, out, err = cli(capsys, "runs", "show", report["run_id"], "--json")
    assert code == 0 and [c["node"] for c in json.loads(out)["calls"]] == ["solve", "reflect", "extract"]
    assert json.loads(out).get("accuracy") is None  # its items' verdicts grade the solutions it learnt from
    code, out, err = cli(capsys, "runs", "show", report["run_id"])
    assert code == 0 and "graph None" not in out and "· graph —" in out  # a build has no graph


def test_eval_with_a_handbook_says_how_many_questions_it_reached(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retrieval can find nothing for a question (no word in common with any behavior): the eval says
    how many questions were shown behaviors and how many cited one, instead of only naming the
    handbook (a run that reached no question read the same as one that reached all)."""
    seed_handbook(Store(db), "math", BEHAVIORS)
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    rows = [("Add 3 and 4, carrying digits.", "7"), ("Roughly estimate 5 + 2.", "7"), ("Zebra count?", "7")]
    task = write_task(tmp_path / "t.jsonl", rows)
    scripted.add_rule(Rule(pattern=r"carrying", replies=["By behavior_carry_digits: 7.\nFinal answer: 7"]))
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math")
    assert code == 0, err
    assert "behaviors shown to 2 of 3 questions, cited in 1" in " ".join(out.split())
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math", "--json")
    assert json.loads(out)["handbook_use"] == {"questions_shown_behaviors": 2, "questions_citing": 1}
    run_id, drew_on = json.loads(out)["run_id"], json.loads(out)["handbook"]
    page = " ".join(Path(json.loads(out)["report"]).read_text().split())
    assert "behaviors shown to 2 of 3 questions, cited in 1" in page
    # which behaviors each item was shown and cited was in the database only (a new user's walk)
    code, out, err = cli(capsys, "runs", "show", run_id, "--json")
    assert json.loads(out)["handbook"] == drew_on  # eval --json named it, runs show --json did not (a walk's N5)
    uses = {item["question"]: item["handbook"] for item in json.loads(out)["items"]}
    carried = uses["Add 3 and 4, carrying digits."]
    assert code == 0 and carried["handbook"] == "math" and carried["cited"] == ["behavior_carry_digits"]
    assert "behavior_carry_digits" in carried["behaviors"] and uses["Zebra count?"]["behaviors"] == []
    code, out, err = cli(capsys, "runs", "show", run_id)
    assert code == 0 and "handbook math: shown none; cited none" in out
    assert re.search(r"handbook math: shown [a-z_, ]*behavior_carry_digits[a-z_, ]*; cited behavior_carry_digits", out)
    write_task(task, [rows[2]])
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math")
    flat = " ".join(out.split())
    assert code == 0 and "shown to 0 of 1 questions, cited in 0 (retrieval found none" in flat
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--json")
    assert "handbook_use" not in json.loads(out)  # no handbook, no count


def test_build_from_a_run_takes_its_model_and_topic(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    task = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7")])
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--json")  # default replies: right
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    scripted.reset()
    script_item(scripted, "What is 3 + 4?", solution="unused", reflection="Right.", reply=extraction(BEHAVIORS[0]))
    # no --model: the run's output node's alias `m`, at the endpoint the run's graph gives it
    code, out, err = cli(capsys, "handbook", "build", "--from-run", run_id, "--handbook", "learnt", "--json")
    assert code == 0, err
    assert (json.loads(out)["items"], json.loads(out)["added"]) == (1, 1)
    assert {r["model"] for r in scripted.completion_requests} == {"scripted"}
    code, out, _ = cli(capsys, "handbook", "list", "learnt", "--json")
    # the same topic as a build from the file: its name, not the absolute path the run stores
    assert [(b["name"], b["topic"]) for b in json.loads(out)] == [(BEHAVIORS[0][0], "t.jsonl")]
    # learned from the eval's item: an eval of its question with the handbook is told so
    assert Handbook(Store(db), "learnt", embedder=None).learned_questions() == {"What is 3 + 4?"}


def test_prune_export_import(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = seed_handbook(Store(db), "math", BEHAVIORS)
    for _ in range(2):
        book.record_use(["behavior_estimate_first", "behavior_carry_digits"], ["behavior_carry_digits"])
        book.record_outcome(["behavior_carry_digits"], False)

    code, out, _ = cli(capsys, "handbook", "prune", "math", "--min-uses", "2", "--dry-run", "--json")
    assert code == 0 and json.loads(out) == {
        "handbook": "math",
        "removed": ["behavior_estimate_first"],
        "remaining": 1,  # what would remain: it said 2, the count before the prune
        "dry_run": True,
    }

    # --min-accuracy judges only with --unhelpful: alone with --min-uses it was ignored without a word
    code, _, err = cli(capsys, "handbook", "prune", "math", "--min-uses", "2", "--min-accuracy", "0.9", "--dry-run")
    assert code == 1 and "--min-accuracy judges citing answers only with --unhelpful" in err

    code, out, _ = cli(capsys, "handbook", "export", "math")
    exported = json.loads(out)
    assert exported["format"] == "agentscale-handbook" and len(exported["behaviors"]) == 2
    (tmp_path / "math.json").write_text(out)

    code, out, err = cli(capsys, "handbook", "prune", "math", "--min-uses", "2", "--unhelpful")
    assert code == 0 and "removed behavior_carry_digits" in err and "1 remain" in err

    (tmp_path / "bom.json").write_text(
        "\ufeff" + (tmp_path / "math.json").read_text()
    )  # as Notepad saves it: was "Unexpected UTF-8 BOM"
    code, out, err = cli(capsys, "handbook", "import", str(tmp_path / "bom.json"), "--handbook", "bom", "--json")
    assert code == 0 and json.loads(out)["behaviors"] == 2, err
    code, out, _ = cli(capsys, "handbook", "import", str(tmp_path / "math.json"), "--handbook", "copy", "--json")
    assert code == 0 and json.loads(out)["behaviors"] == 2
    code, out, _ = cli(capsys, "handbook", "export", "copy", "-o", str(tmp_path / "copy.json"))  # -o as draw, report
    copy = json.loads((tmp_path / "copy.json").read_text())
    assert copy["behaviors"] == exported["behaviors"] and copy["handbook"] == "copy"
    blocked = tmp_path / "math.json" / "h.json"  # a folder on the way that is a file: a traceback before
    code, _, err = cli(capsys, "handbook", "export", "copy", "--out", str(blocked))
    assert code == 1 and f"cannot write {blocked} ({tmp_path / 'math.json'} is a file)" in " ".join(err.split())


def test_errors_exit_1_without_traceback(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store(db)  # a database without handbooks (a missing one is the next test's case)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = [
        (["handbook", "list", "nope"], "no handbook 'nope'"),
        (["handbook", "prune", "nope", "--unhelpful"], "no handbook 'nope'"),
        (["handbook", "import", str(bad)], "invalid JSON"),
        (["handbook", "import", str(tmp_path / "missing.json")], "file not found"),
        (["handbook", "build", "--handbook", "x", "--model", "openai/x"], "exactly one of --task or --from-run"),
        (["handbook", "build", "--handbook", "x", "--task", str(bad), "--model", "big"], "neither a litellm route"),
        (["handbook", "build", "--handbook", "x", "--from-run", "0000"], "no run '0000'"),
        (  # every item failed, and the build exited 0 leaving an empty handbook
            ["handbook", "build", "--handbook", "x", "--task", "sim:math", "--n", "2", "--model", "sim/llama-999b"],
            "--model sim/llama-999b: unknown simulated model",
        ),
    ]
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    cases.append((["eval", str(graph), "--task", "sim:math", "--handbook", ""], "bad handbook name ''"))  # a traceback
    utf16 = tmp_path / "utf16.json"  # what PowerShell's `handbook export math > f.json` writes
    utf16.write_text('{"format": "agentscale-handbook"}', encoding="utf-16")
    cases.append((["handbook", "import", str(utf16)], "not UTF-8 text"))  # a traceback before
    cases.append((["handbook", "import", str(tmp_path)], "is a directory"))  # likewise
    no_instruction = tmp_path / "no_instruction.json"
    no_instruction.write_text(
        '{"format": "agentscale-handbook", "version": 1, "handbook": "h", "behaviors": [{"name": "b"}]}'
    )
    # named no file
    cases.append((["handbook", "import", str(no_instruction)], "no_instruction.json: behaviors[0]: needs a string"))
    cases.append((["handbook", "import", str(no_instruction), "--handbook", "Bad Name"], "error: bad handbook name"))
    cases.append((["handbook", "import", str(no_instruction), "--handbook", ""], "error: bad handbook name ''"))
    cases.append((["handbook", "search", "math", " "], "the query is empty"))  # returned behaviors
    schemeless = ["--task", "sim:math", "--model", "openai/x", "--api-base", "localhost:8000/v1"]  # a traceback
    cases.append((["handbook", "build", "--handbook", "x", *schemeless], "--api-base 'localhost:8000/v1' is not"))
    ignored = ["--from-run", "0000", "--n", "3", "--task-option", "a=1"]  # were silently ignored
    cases.append((["handbook", "build", "--handbook", "x", *ignored], "drop --n, --task-option"))
    for args, message in cases:
        code, _, err = cli(capsys, *args)
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
    seed_handbook(Store(db), "math", BEHAVIORS, topic="arithmetic")
    code, _, err = cli(capsys, "handbook", "prune", "math")
    assert code == 1 and "say what to prune" in err
    for command in (["list", "math"], ["search", "math", "carry"], ["list"]):  # an unknown topic listed nothing
        code, _, err = cli(capsys, "handbook", *command, "--topic", "arithmetc")
        assert code == 1 and "Traceback" not in err, (command, err)
        assert ("(its topics: 'arithmetic')" in err) != (command == ["list"]), err  # handbooks have no topic
    code, _, err = cli(capsys, "handbook", "prune", "math", "--unhelpful", "--min-accuracy", "2")  # was taken
    assert code == 2 and "--min-accuracy" in err
    code, _, err = cli(capsys, "handbook", "build", "--handbook", "x", "--task", "sim:math", "--temperature", "5")
    assert code == 2 and "--temperature" in err  # graphs refuse a temperature above 2; the build took it


def test_reading_commands_leave_no_database_at_a_mistyped_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`handbook show math x --db typo.db` said "no handbook" and left an empty database behind."""
    typo = tmp_path / "typo.db"
    readers = [["list", "math"], ["show", "math", "b"], ["search", "math", "q"], ["export", "math"]]
    for args in [*readers, ["prune", "math", "--unhelpful"]]:
        code, _, err = cli(capsys, "handbook", *args, "--db", str(typo))
        assert code == 1 and f"no database at {typo}" in err, (args, err)
    code, out, _ = cli(capsys, "handbook", "list", "--db", str(typo), "--json")
    assert code == 0 and json.loads(out) == []
    assert not typo.exists()


def test_an_unknown_embeddings_setting_is_named(db: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """AGENTSCALE_EMBEDDINGS=bogus was ignored silently (as auto)."""
    seed_handbook(Store(db), "math", BEHAVIORS)
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", "bogus")
    code, _, err = cli(capsys, "handbook", "search", "math", "units")
    assert code == 1 and "AGENTSCALE_EMBEDDINGS='bogus': use auto (the default), minilm or off" in err
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", "")  # set but empty: the default, as before
    code, _, err = cli(capsys, "handbook", "search", "math", "units")
    assert code == 0, err


def test_every_handbook_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("build", "list", "show", "search", "prune", "export", "import"):
        code, out, _ = cli(capsys, "handbook", command, "--help")
        assert code == 0 and "Example" in out, command


def test_eval_with_handbook(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_handbook(Store(db), "math", BEHAVIORS)
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    task = write_task(tmp_path / "t.jsonl", [("What is 38 + 4? Carry the digits.", "42")])
    scripted.add_rule(
        Rule(pattern="Behaviors from the handbook", replies=["behavior_carry_digits gives 42.\nFinal answer: 42"])
    )
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["n"], data["accuracy"]) == (1, 1.0) and set(data) >= {"run_id", "task", "ci95", "usage"}
    assert data["handbook"] == {"name": "math", "top_k": 5, "topic": None}  # the fields design.md promises
    row = Handbook(Store(db), "math", embedder=None).get("behavior_carry_digits")
    assert (row.times_retrieved, row.times_cited, row.times_cited_correct) == (1, 1, 1)
    # the human output and the report name the handbook (neither did)
    code, out, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math")
    assert code == 0 and "handbook math (top 5 behaviors per prompt)" in out
    report = Path(out.split("report: ")[1].split()[0])
    assert 'handbook</div><div class="fact-value">math (top 5 behaviors per prompt)' in report.read_text()
    code, _, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "nope")
    assert code == 1 and "no handbook 'nope'" in err
    code, _, err = cli(capsys, "eval", "--resume", data["run_id"], "--handbook", "math")
    assert code == 1 and "drop --handbook" in err
    runs = len(Store(db).list_runs())  # a topic the handbook has no behavior of: refused before a run is made
    on_topic = tmp_path / "topic.yaml"  # (each attempt left a failed eval run)
    on_topic.write_text(graph.read_text() + "memory: {handbook: math, topic: algebra}\n")
    code, _, err = cli(capsys, "eval", str(on_topic), "--task", str(task))
    assert code == 1 and "memory.topic 'algebra'" in err and len(Store(db).list_runs()) == runs


def test_a_build_by_a_simulated_model_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`runs show --json` of a build by sim/llama-8b said "simulated": false, and no output said SIMULATED."""
    args = ["handbook", "build", "--handbook", "s", "--task", "sim:math", "--n", "2", "--model", "sim/llama-8b"]
    code, out, _ = cli(capsys, *args, "--json")
    assert code == 0 and json.loads(out)["simulated"] is True
    code, _, err = cli(capsys, *args)
    assert code == 0 and "SIMULATED: these numbers" in err
    # the sim's extraction replies hold no behavior: the build says the handbook is empty (it said
    # "0 in the handbook" among its counts, and eval --handbook then refused it; a new user's walk)
    assert "warning: handbook 's' is empty: no item gave a usable behavior" in " ".join(err.split())
    code, out, _ = cli(
        capsys, "runs", "show", json.loads(cli(capsys, "runs", "list", "--json")[1])[0]["run_id"], "--json"
    )
    assert code == 0 and json.loads(out)["simulated"] is True


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_build_exits_130_and_names_its_run(tmp_path: Path, stop: signal.Signals) -> None:
    """An interrupted build exited 1 as an error, said nothing on stdout under --json, and SIGTERM
    printed a traceback; it is an interruption now, as eval's and optimize's are."""
    task = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7")])
    with ScriptedServer(latency_s=30.0) as server:
        command = [
            sys.executable, "-m", "agentscale.cli.app", "handbook", "build", "--task", str(task),
            "--model", "hosted_vllm/scripted", "--api-base", server.api_base, "--handbook", "h", "--json",
        ]  # fmt: skip
        env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "h.db")}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=with_default_sigint
        )
        deadline = time.monotonic() + 60
        while not server.completion_requests:
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=60)
    run = Store(tmp_path / "h.db").list_runs()[0]
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert json.loads(stdout) == {"run_id": run.id, "status": "interrupted", "handbook": "h"}
    assert f"behaviors extracted so far are kept (run {run.id})" in " ".join(stderr.split())
    assert run.status == "interrupted"


def test_an_export_piped_in_with_a_byte_order_mark_imports(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`handbook import - < f.json` refused the mark a file path already accepted."""
    seed_handbook(Store(db), "math", BEHAVIORS)
    code, exported, _ = cli(capsys, "handbook", "export", "math")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(("\ufeff" + exported).encode())))
    code, out, err = cli(capsys, "handbook", "import", "-", "--handbook", "piped", "--json")
    assert code == 0 and json.loads(out)["behaviors"] == len(BEHAVIORS), err


@pytest.mark.parametrize("source", ["/dev/zero", "-"], ids=["device", "stdin"])
def test_an_endless_export_is_refused_at_the_size_limit(
    db: Path, source: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`handbook import /dev/zero` read the whole "file" into memory until the kernel's OOM killer
    stopped it; graph files and JSONL lines already stopped at 64 MiB."""
    with open("/dev/zero", "rb") as zeros:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(zeros))
        code, _, err = cli(capsys, "handbook", "import", source, "--handbook", "endless")
    where = "stdin" if source == "-" else source
    assert code == 1 and f"{where}: over 64 MiB: not a file written by `handbook export`" in err, err


def test_an_empty_handbook_exported_imports(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `export` writes for an empty handbook failed to import: "no handbook 'other'; build one"."""
    Handbook(Store(db), "empty").create()
    code, out, _ = cli(capsys, "handbook", "export", "empty")
    (tmp_path / "empty.json").write_text(out)
    code, out, err = cli(capsys, "handbook", "import", str(tmp_path / "empty.json"), "--handbook", "other", "--json")
    assert code == 0 and json.loads(out)["behaviors"] == 0, err


def test_a_build_whose_every_item_failed_exits_1(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every model call failing (a missing key, a server down) exited 0 with an empty handbook, which
    every later eval --handbook then used without a word."""
    task = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 5 + 6?", "11")])
    scripted.add_rule(Rule(status=500))
    code, out, err = cli(
        capsys, "handbook", "build", "--task", str(task), "--model", "hosted_vllm/scripted",
        "--api-base", scripted.api_base, "--handbook", "math", "--json",
    )  # fmt: skip
    assert code == 1 and json.loads(out)["failed"] == 2
    assert "the model calls of every item failed, so nothing was learned (the errors: agentscale runs show" in err


def test_delete_removes_a_handbook_after_asking(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No command removed a handbook: empty ones left by failed builds stayed listed for good, and
    `eval --handbook` refused them. Without a terminal to ask on, `delete` wants --yes."""
    store = Store(db)
    seed_handbook(store, "math", BEHAVIORS)
    seed_handbook(store, "keep", BEHAVIORS[:1])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    code, _, err = cli(capsys, "handbook", "delete", "math")
    assert code == 1 and "give --yes" in err and len(Handbook(store, "math").behaviors()) == 2
    code, out, err = cli(capsys, "handbook", "delete", "math", "--yes", "--json")
    assert code == 0 and json.loads(out) == {"handbook": "math", "deleted": 2}, err
    code, out, _ = cli(capsys, "handbook", "list", "--json")
    assert [b["handbook"] for b in json.loads(out)] == ["keep"]
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM behaviorsource").fetchone()[0]
    assert rows == len(Handbook(store, "keep").sources(Handbook(store, "keep").behaviors()[0]))  # math's went too
    code, _, err = cli(capsys, "handbook", "delete", "math", "--yes")
    assert code == 1 and "no handbook 'math'" in err and "Traceback" not in err


def test_an_export_imported_twice_is_refused_the_second_time(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A merge adds counters, so the same export imported twice counted every citation twice."""
    book = seed_handbook(Store(db), "math", BEHAVIORS)
    book.record_use(["behavior_carry_digits"], ["behavior_carry_digits"])
    code, out, _ = cli(capsys, "handbook", "export", "math")
    (tmp_path / "math.json").write_text(out)
    code, _, err = cli(capsys, "handbook", "import", str(tmp_path / "math.json"), "--handbook", "copy")
    assert code == 0, err
    code, _, err = cli(capsys, "handbook", "import", str(tmp_path / "math.json"), "--handbook", "copy")
    assert code == 1 and "already holds every behavior source of this export" in err, err
    code, _, err = cli(capsys, "handbook", "import", str(tmp_path / "math.json"), "--handbook", "math")
    assert code == 1, err  # into the handbook it came from: the same
    cited = {b.name: b.times_cited for b in Handbook(Store(db), "copy", embedder=None).behaviors()}
    assert cited == {"behavior_estimate_first": 0, "behavior_carry_digits": 1}


def test_an_import_into_a_handbook_with_behaviors_reports_the_handbooks_total(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`behaviors` in import's --json is how many the handbook holds after it, not how many the
    import added: into a handbook that had one of the two, 1 added and 1 merged leave 2 (it said 1)."""
    seed_handbook(Store(db), "math", BEHAVIORS)
    code, out, _ = cli(capsys, "handbook", "export", "math")
    (tmp_path / "math.json").write_text(out)
    seed_handbook(Store(db), "mixed", BEHAVIORS[:1])
    code, out, err = cli(capsys, "handbook", "import", str(tmp_path / "math.json"), "--handbook", "mixed", "--json")
    assert code == 0, err
    imported = json.loads(out)
    assert (len(imported["added"]), len(imported["merged"]), imported["behaviors"]) == (1, 1, 2)


def test_delete_prune_and_import_refuse_a_handbook_a_live_run_draws_on(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An eval drawing on a handbook failed mid-run, stored failed, when the handbook was deleted under
    it; pruned or imported into, it went on against another handbook (a prune to empty mid-eval left
    22 of 40 items with no behavior, exit 0)."""
    store = Store(db)
    seed_handbook(store, "live", BEHAVIORS)
    Handbook(store, "live", embedder=None).record_use([BEHAVIORS[0][0]], [])  # retrieved, never cited: prunable
    code, out, _ = cli(capsys, "handbook", "export", "live")
    (tmp_path / "live.json").write_text(out.replace("2026-", "2025-"))  # provenance it does not hold yet
    graph = "name: g\nmodels: {m: {model: sim/llama-8b}}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    run = store.create_run("eval", graph_name="g", graph_yaml=graph + "memory: {handbook: live}\n")  # ours, running
    for command, doing in (
        (["delete", "live", "--yes"], "delete"),
        (["prune", "live", "--min-uses", "1"], "prune"),
        (["import", str(tmp_path / "live.json")], "import"),
    ):
        code, _, err = cli(capsys, "handbook", *command)
        assert code == 1 and f"handbook 'live' is in use by run {run.id} (eval, still running)" in err, err
        assert f"then {doing}" in err
    code, out, _ = cli(capsys, "handbook", "prune", "live", "--min-uses", "1", "--dry-run", "--json")
    assert code == 0 and "behavior" in out  # a dry run changes nothing: allowed
    assert len(Handbook(store, "live", embedder=None).behaviors()) == len(BEHAVIORS)
    store.finish_run(run.id, "done", {})
    for command in (["prune", "live", "--min-uses", "1"], ["import", str(tmp_path / "live.json")]):
        code, _, err = cli(capsys, "handbook", *command)
        assert code == 0, err
    code, _, err = cli(capsys, "handbook", "delete", "live", "--yes")
    assert code == 0, err


def test_validate_notes_a_memory_handbook_the_database_lacks(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A graph whose `memory:` names a handbook the database lacks passed validate without a word;
    run and eval then stopped at their first question. A note (exit 0: it may be built first)."""
    graph = tmp_path / "mem.yaml"
    graph.write_text(
        "name: m\nmodels:\n  m: {model: sim/llama-8b}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
        "memory: {handbook: math}\n"
    )
    elsewhere = tmp_path / "none.db"
    code, _, err = cli(capsys, "validate", str(graph), "--db", str(elsewhere))
    assert code == 0 and f"note: memory.handbook: no handbook 'math' in {elsewhere} (no database there)" in " ".join(
        err.split()
    )
    assert not elsewhere.exists()  # validate looked, and left no empty database behind
    Store(db)
    code, out, _ = cli(capsys, "validate", str(graph), "--json")
    build = "agentscale handbook build --handbook math"
    assert code == 0 and json.loads(out)[0]["notes"] == [
        f"memory.handbook: no handbook 'math' in {db}; build it with `{build}`"
    ]
    Handbook(Store(db), "math", embedder=None).create()  # a build that learned nothing leaves it empty
    code, out, _ = cli(capsys, "validate", str(graph), "--json")  # eval refused it; validate said nothing
    assert code == 0 and json.loads(out)[0]["notes"] == [
        "memory.handbook: handbook 'math' holds no behavior; eval refuses an empty handbook"
    ]
    seed_handbook(Store(db), "math", BEHAVIORS, topic="arithmetic")
    code, _, err = cli(capsys, "validate", str(graph))
    assert code == 0 and "note:" not in err, err
    graph.write_text(graph.read_text().replace("{handbook: math}", "{handbook: math, topic: geometry}"))
    code, _, err = cli(capsys, "validate", str(graph))  # a topic none of its behaviors has selects nothing
    said = " ".join(err.split())
    assert code == 0 and "note: memory.topic 'geometry': handbook 'math' has no behaviors of it" in said, said
    assert "'arithmetic'" in said


def test_a_misspelt_handbook_is_named_with_the_one_meant(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`handbook list maths` said "no handbook 'maths'; build one with ..." alone (a new user's walk)."""
    seed_handbook(Store(db), "math", BEHAVIORS)
    code, _, err = cli(capsys, "handbook", "list", "maths")
    assert code == 1 and "no handbook 'maths' in" in err and "(did you mean 'math'?)" in " ".join(err.split())
    code, _, err = cli(capsys, "handbook", "list", "geometry")
    assert code == 1 and "did you mean" not in err


def test_an_eval_on_items_the_handbook_was_built_from_says_so(
    db: Path, tmp_path: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A build of `--n 30` and an eval of `--n 40 --seed 1` on rg:gsm_symbolic shared 5 items (one
    generator pool; the measurement walk): the handbook was measured on what taught it, unsaid."""
    task = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 5 + 6?", "11")])
    for question, answer in (("What is 3 + 4?", "7"), ("What is 5 + 6?", "11")):
        script_item(
            scripted, question, solution=f"Final answer: {answer}", reflection="ok", reply=extraction(*BEHAVIORS)
        )
    code, _, err = cli(
        capsys, "handbook", "build", "--task", str(task), "--n", "1", "--model", "hosted_vllm/scripted",
        "--api-base", scripted.api_base, "--handbook", "math",
    )  # fmt: skip
    assert code == 0, err
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    code, _, err = cli(capsys, "eval", str(graph), "--task", str(task), "--handbook", "math", "--json")
    said = " ".join(err.split())
    assert code == 0 and "1 of the 2 items (first: q" in said and "ask questions handbook 'math' was built from" in said
    # compared as text: the same question under another id (another file, or another generator seed:
    # rg:gsm_symbolic's seeds 0 and 1 share 7 of 200 questions) is the same question
    again = write_task(tmp_path / "again.jsonl", [("What is 1 + 1?", "2"), ("What is 3 + 4?", "7")])
    code, _, err = cli(capsys, "eval", str(graph), "--task", str(again), "--handbook", "math", "--json")
    assert code == 0 and "1 of the 2 items (first: q1) ask questions" in " ".join(err.split())
    other = write_task(tmp_path / "other.jsonl", [("What is 1 + 1?", "2"), ("What is 2 + 2?", "4")])
    code, _, err = cli(capsys, "eval", str(graph), "--task", str(other), "--handbook", "math", "--json")
    assert code == 0 and "built from" not in err
