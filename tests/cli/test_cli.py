"""The `agentscale` command: exit codes, --json shapes, errors without tracebacks."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperCommand, TyperGroup

from agentscale.cli.app import main
from agentscale.cli.commands import app
from agentscale.graphs.result import NodeTrace
from agentscale.runtime.calls import record_broken, record_rows
from agentscale.storage.db import Store
from agentscale.storage.tables import utcnow
from agentscale.testing import Rule, ScriptedServer
from agentscale.testing.scripted_server import default_reply
from tests.conftest import graph_yaml

USAGE_KEYS = {"calls", "cached_calls", "prompt_tokens", "completion_tokens", "flops", "usd", "latency_s"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> Path:
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "cli.db"))
    graph = tmp_path / "g.yaml"
    graph.write_text(
        graph_yaml(
            scripted.api_base,
            "name: cli\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
            "  - {id: v, role: vote}\nedges: ['a, b -> v']\nanswer_format: number\n",
        )
    )
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_stdout_holds_the_json_alone_when_another_thread_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ray's driver prints its raylet's errors on stdout from a thread of its own ("(raylet) A worker
    died or was killed ..."), and after a worker killed mid-eval, which the executor survives,
    `eval --json`'s stdout was no JSON document. Here the model server's thread prints as it answers."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "cli.db"))

    def noisy(request: dict[str, Any]) -> str:
        print("(raylet) A worker died or was killed while executing a task")
        return default_reply(request)

    with ScriptedServer(reply=noisy) as server:
        graph = tmp_path / "g.yaml"
        graph.write_text(graph_yaml(server.api_base, "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
        code, out, err = run_cli(capsys, "run", str(graph), "-q", "What is 17 + 25?", "--json")
        assert code == 0 and json.loads(out)["answer"] == "42", (out, err)
        assert "(raylet) A worker died" in err
        task = tmp_path / "sums.jsonl"
        task.write_text(
            '{"question": "What is 1 + 2?", "answer": "3"}\n{"question": "What is 2 + 2?", "answer": "4"}\n'
        )
        code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(task), "--json")
        assert code == 0 and json.loads(out)["accuracy"] == 1.0, (out, err)
        assert "(raylet) A worker died" in err
    print("after")  # stdout is the process's own again once the command ended
    assert capsys.readouterr().out == "after\n"


def test_run_json(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 17 + 25?", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["answer"] == "42"
    assert set(data["usage"]) >= USAGE_KEYS
    assert [t["node_id"] for t in data["trace"]] == ["a", "b", "v"]
    assert data["run_id"]
    assert "What is 17 + 25?" in data["trace"][0]["messages"][-1]["content"]  # the contract's trace has the prompt


def test_run_human_output_prints_answer_on_stdout_and_trace_on_stderr(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 2?")
    assert code == 0
    assert out.strip() == "3"
    assert "node" in err and "latency" in err and "vote" in err
    assert "FLOPs unknown · unknown USD ·" in " ".join(err.split())  # a bare "unknown" named nothing


def test_run_input_jsonl_prints_one_line_per_question_in_order(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = env / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?"}) for i in range(6)))
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions), "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == [f"q{i}" for i in range(6)]
    assert [line["answer"] for line in lines] == [str(i + 1) for i in range(6)]
    assert len({line["run_id"] for line in lines}) == 1
    assert all(line["trace"][0]["messages"] for line in lines)


def test_run_input_says_which_questions_got_no_answer(
    env: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Questions whose calls all failed printed "(no answer)" with no reason, then "4 questions
    answered", exit 0, when none was answered (a provider-fault audit: a 401 on every call). One of
    four fails, so that the answered count and the unanswered one differ (a mutation audit's R6)."""
    questions = env / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"question": f"What is {i} + 1?"}) for i in range(4)))
    scripted.add_rule(Rule(pattern=r"What is 0 \+", status=401))
    code, out, err = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions))
    flat = " ".join(err.split())
    assert code == 0 and out.count("(no answer)") == 1
    assert "3 of 4 questions answered" in flat and "1 got no answer, the first: " in flat and "HTTP 401" in flat
    scripted.add_rule(Rule(status=401))  # (the cache holds the answers above)
    code, out, err = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions), "--no-cache")
    flat = " ".join(err.split())
    assert code == 1 and out.count("(no answer)") == 4
    assert "no question got an answer (run " in flat and "HTTP 401" in flat and "questions answered" not in flat


def test_the_call_timeout_and_retries_are_set_from_the_environment(
    env: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command could not change the gateway's 120 s timeout nor its 3 retries: a dead server took
    4 x 120 s a call to fail, and a slow local model could not be waited for longer."""
    run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 1?")  # litellm's first call sets up its client
    scripted.latency_s = 3.0
    monkeypatch.setenv("AGENTSCALE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("AGENTSCALE_MAX_RETRIES", "0")
    before = len(scripted.completion_requests)
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 2 + 2?", "--no-cache")
    assert code == 1 and "after 1 attempt(s): timed out" in " ".join(err.split())
    assert len(scripted.completion_requests) - before == 2  # the graph's two assistants, once each
    for variable, value, said in (
        ("AGENTSCALE_TIMEOUT_S", "soon", "give a number of seconds"),
        ("AGENTSCALE_TIMEOUT_S", "0", "GatewaySettings.timeout_s must be positive"),
        ("AGENTSCALE_MAX_RETRIES", "1.5", "give a whole number"),
    ):
        monkeypatch.setenv(variable, value)
        code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 2 + 2?")
        assert code == 1 and f"{variable}='{value}': {said}" in err and "Traceback" not in err
        monkeypatch.delenv(variable)


@pytest.mark.parametrize("words", [["tasks", "list"], ["tasks", "list", "--json"], ["schema"]])
def test_a_reader_that_leaves_early_or_a_full_stdout_is_said_as_such(words: list[str]) -> None:
    """`| true` said "error: interrupted" and exited 130 (typer turned the reader leaving, a
    KeyboardInterrupt, into a Ctrl-C's status), Rich's tables exited 1 in silence, and `> /dev/full`
    was a traceback ending in OSError (an audit of the sim, tasks and schema commands)."""
    command = [sys.executable, "-m", "agentscale.cli.app", *words]
    gone = subprocess.run(
        f"{shlex.join(command)} | true; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (gone.returncode, gone.stderr) == (141, "")
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        assert (done.returncode, done.stderr) == (1, "error: cannot write to stdout: No space left on device\n")


def test_a_batch_whose_reader_leaves_stops_and_keeps_its_answers(tmp_path: Path, scripted: ScriptedServer) -> None:
    """`agentscale run --input q.jsonl | head -2`: the batch failed ("Broken pipe", exit 1, not a word
    said) after paying for answers nobody read. It stops as an interruption, with SIGPIPE's status."""
    scripted.latency_s = 0.05
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"What is {i} + 1?"}) + "\n" for i in range(200)))
    environment = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "b.db")}
    command = [
        sys.executable,
        "-m",
        "agentscale.cli.app",
        "run",
        str(graph),
        "--input",
        str(questions),
        "--concurrency",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, text=True)
    assert process.stdout is not None and process.stderr is not None
    assert [process.stdout.readline() for _ in range(2)][1].startswith("2\t")
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(60) == 141, err[-2000:]
    assert "stdout was closed; run" in err and "Traceback" not in err and "Exception ignored" not in err
    (run,) = Store(tmp_path / "b.db").list_runs()
    assert run.status == "interrupted"
    assert len(scripted.completion_requests) < 200


def test_run_refuses_the_flags_it_would_ignore(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--show-prompts` with --input printed no prompt, `--concurrency` with -q did nothing: said now."""
    questions = env / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 1 + 1?"}) + "\n")
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 1?", "--concurrency", "3")
    assert code == 1 and "-q answers one question; drop --concurrency" in err
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions), "--show-prompts")
    assert code == 1 and "drop --show-prompts" in " ".join(err.split())
    assert run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions), "--concurrency", "3")[0] == 0


def test_runs_show_writes_out_control_characters_of_stored_text(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A question holding `ESC ]0;...BEL` and `ESC [2J` set the terminal's title and cleared its screen
    when `runs show` printed it (the reports audit)."""
    questions = env / "q.jsonl"
    questions.write_text(json.dumps({"id": "m2", "question": "Q8: \x1b]0;HACKED\x07 \x1b[2J What is 1 + 1?"}) + "\n")
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions), "--json")
    assert code == 0
    run_id = json.loads(out)["run_id"]
    code, out, err = run_cli(capsys, "runs", "show", run_id)
    assert code == 0 and "\x1b" not in out + err and "\x07" not in out + err
    assert "Q8: \\x1b]0;HACKED\\x07 \\x1b[2J What" in out
    assert re.search(r"\d\d:\d\d:\d\d UTC · graph", out)  # stored times are UTC: said (read as local before)


def test_run_input_errors_name_the_line(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = env / "bad.jsonl"
    questions.write_text('{"question": "ok"}\n{"question": \n')
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions))
    assert code == 1 and "bad.jsonl:2: invalid JSON" in err
    questions.write_text('{"question": "ok"}\n\n{"q": "missing"}\n')
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "--input", str(questions))
    assert code == 1 and "bad.jsonl:3:" in err and "'question'" in err


def test_run_needs_exactly_one_source_of_questions(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"))
    assert code == 1 and "exactly one of" in err
    for empty in ("", "   "):  # answered before (a local model's server started for it), unlike --input's
        code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", empty)
        assert code == 1 and "-q/--question is empty" in err
    code, out, err = run_cli(capsys, "runs", "list", "--json")
    assert (code, json.loads(out)) == (0, [])
    assert f"no database at {env / 'cli.db'}" in " ".join(err.split())  # a mistyped --db listed nothing, unsaid


def test_runs_list_and_show(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 2 + 2?", "--json")
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 3 + 3?", "--json")
    newest = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "runs", "list", "--json")
    runs = json.loads(out)
    assert code == 0 and runs[0]["run_id"] == newest and len(runs) == 2
    assert set(runs[0]) >= {"run_id", "kind", "status", "created"}
    assert "runs shown" not in run_cli(capsys, "runs", "list", "--limit", "2")[2]
    code, out, err = run_cli(capsys, "runs", "list", "--limit", "1", "--json")  # the cut was silent, --json too
    assert (code, len(json.loads(out))) == (0, 1)
    assert "1 of 2 runs shown, newest first; --limit 2 shows them all" in " ".join(err.split())
    code, out, _ = run_cli(capsys, "runs", "show", newest[:6], "--json")
    shown = json.loads(out)
    assert shown["run_id"] == newest and shown["items"][0]["answer"] == "6"
    assert {c["node"] for c in shown["calls"]} == {"a", "b", "v"}
    code, out, _err = run_cli(capsys, "runs", "show", newest)
    assert code == 0 and "answer: 6" in out


def test_runs_show_lists_a_batch_in_input_order(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Items are stored as they finish: a batch answered side by side read `item 3, 2, 4, 1, 5`."""
    store = Store(env / "cli.db")
    run = store.create_run("run", graph_name="cli")
    for key in ("2", "10", "1"):  # the order they finished in
        record_rows(store, run.id, key, [], item={"run_id": run.id, "item_key": key, "question": f"q{key}"})
    code, out, _ = run_cli(capsys, "runs", "show", run.id, "--json")
    assert code == 0 and [item["item"] for item in json.loads(out)["items"]] == ["1", "2", "10"]


def test_resuming_a_run_of_another_command_names_the_command_that_made_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal read "is a 'run' run, not an optimization"; it now names the commands."""
    _, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 2 + 2?", "--json")
    run_id = json.loads(out)["run_id"]
    code, _, err = run_cli(capsys, "optimize", "--resume", run_id)
    assert code == 1 and f"run {run_id} was made by `agentscale run`, not `agentscale optimize`" in err
    code, _, err = run_cli(capsys, "eval", "--resume", run_id)
    assert code == 1 and f"run {run_id} was made by `agentscale run`, not `agentscale eval`" in err


def test_runs_show_unknown_id(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 2?")[0] == 0  # a database with a run
    code, _, err = run_cli(capsys, "runs", "show", "nope")
    assert code == 1 and "no run 'nope'" in err


def test_validate_exit_codes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {id: a, role: critik, model: o/x}\n")
    code, out, _ = run_cli(capsys, "validate", str(env / "g.yaml"), "--json")
    assert code == 0 and json.loads(out)[0]["valid"] is True
    code, _, err = run_cli(capsys, "validate", str(env / "g.yaml"), str(bad))
    assert code == 1
    assert "✓" in err and "nodes[0].role (line 3): unknown role 'critik'" in err


def test_validate_reads_a_file_from_stdin_given_as_a_dash(tmp_path: Path) -> None:
    """`make-graph | agentscale validate -` said "-: file not found": a generated graph had to be
    written to a file first. Read from stdin, it gets every check, its lines named."""
    command = [sys.executable, "-c", "import sys; from agentscale.cli.app import main; sys.exit(main())", "validate"]
    graph = "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    done = subprocess.run([*command, "-"], input=graph, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "✓ -: graph 'g', 1 node" in done.stderr, done.stderr
    wrong = graph.replace("sim/llama-1b}", "sim/llama-1b, x: 1}")
    done = subprocess.run([*command, "-", "--json"], input=wrong, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and json.loads(done.stdout)[0]["issues"][0].startswith(
        "nodes[0].x (line 3): unknown key"
    )


def test_validate_notes_a_compute_unit_on_guessed_task_lengths(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A space over a task file without mean lengths has its `compute` unit priced on 200 + 200 tokens
    a call, whatever the task: a file of 20-token sums was budgeted so without a word (the contract
    audit: compute is on "the task's mean prompt and completion lengths")."""
    (env / "sums.jsonl").write_text(
        "".join(json.dumps({"question": f"What is {i} + {i + 3}?", "answer": str(2 * i + 3)}) + "\n" for i in range(30))
    )
    space = env / "space.yaml"
    body = "models:\n  l1: {model: sim/llama-1b}\nroles: [assistant]\nmax_nodes: 1\nbudget: {compute: 5}\n"
    space.write_text("name: s\ntask: {path: sums.jsonl, train: 10, test: 20, scorer: numeric}\n" + body)
    code, out, _ = run_cli(capsys, "validate", str(space), "--json")
    notes = json.loads(out)[0]["notes"]
    assert code == 0 and len(notes) == 2 and notes[1].startswith("sim/ models answer only the sim: tasks' items")
    assert "budget.compute counts 1B calls of 200 prompt and 200 completion tokens" in notes[0]
    assert "its train questions average ≈ 13 tokens" in notes[0]
    given = "mean_prompt_tokens: 20, mean_completion_tokens: 10, "
    space.write_text(f"name: s\ntask: {{path: sums.jsonl, {given}train: 10, test: 20, scorer: numeric}}\n" + body)
    assert json.loads(run_cli(capsys, "validate", str(space), "--json")[1])[0]["notes"] == notes[1:]
    space.write_text('name: s\ntask: {name: "sim:math", train: 10, test: 20}\n' + body)  # the paper's lengths
    assert json.loads(run_cli(capsys, "validate", str(space), "--json")[1])[0]["notes"] == []


_NOTED_SPACE = (
    'name: mb\ntask: {name: "sim:math", train: 8, test: 12, seed: 0}\nmodels:\n  l1: {model: sim/llama-1b}\n'
    "roles: [assistant]\nmax_nodes: 1\n"
)


@pytest.mark.parametrize(
    ("settings", "said", "fixed"),
    [
        (  # the search takes the train items there are: each evaluation answered 8 (an input audit's)
            "budget: {compute: 5}\noptimizer: {method: random, iterations: 2, samples: 2, minibatch: 50, seed: 0}\n",
            ["note: optimizer.minibatch: 50 is more than the 8 train items"],
            ("minibatch: 50", "minibatch: 8"),
        ),
        (  # without budget.compute the cost term is raw compute units, not a share of the budget: cost 0.1
            # under max_tokens took 10 accuracy points a 1B-model call and crowned the weakest single call
            # (the Pareto/llm walk's B1)
            "budget: {max_tokens: 6000}\nobjective: {cost: 0.1}\n"
            "optimizer: {method: random, iterations: 2, samples: 2, minibatch: 8, seed: 0}\n",
            ["note: objective.cost: 0.1 weighs each compute unit", "a graph of 3 units loses 0.3 of reward"],
            ("{max_tokens: 6000}", "{max_tokens: 6000, compute: 4}"),
        ),
    ],
    ids=["minibatch-above-train", "cost-without-compute"],
)
def test_validate_notes_what_a_valid_space_would_do_unseen(
    env: Path, capsys: pytest.CaptureFixture[str], settings: str, said: list[str], fixed: tuple[str, str]
) -> None:
    """Each passed without a word; the note goes once the space is fixed."""
    space = env / "space.yaml"
    space.write_text(_NOTED_SPACE + settings)
    code, _, err = run_cli(capsys, "validate", str(space))
    shown = " ".join(err.split())
    assert code == 0 and all(words in shown for words in said), shown
    space.write_text(space.read_text().replace(*fixed))
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 0 and "note:" not in err


def test_validate_notes_a_bundled_local_model_not_pulled_here(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph on a bundled `local/` model whose weights are not here passed validate (and a space
    `optimize --dry-run`) without a word; its run then stopped at the first call naming `models pull`
    (a new user's walk). A note, exit 0: validate may run where the models are not needed."""
    from agentscale.models import catalog
    from tests.models.test_weights import fake_model

    model = fake_model("unpulled_here")  # its parts' packages exist nowhere
    monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    local = env / "local.yaml"
    local.write_text(
        f"name: l\nmodels:\n  m: {{model: local/{model.name}}}\nnodes:\n  - {{id: a, role: assistant, model: m}}\n"
    )
    code, _, err = run_cli(capsys, "validate", str(local))
    said = " ".join(err.split())
    assert code == 0 and f"note: models.m: local/{model.name} is not pulled (3 of 3 packages missing) here" in said
    assert f"get it with `agentscale models pull local/{model.name}`" in said
    code, _, err = run_cli(capsys, "validate", str(env / "g.yaml"))
    assert code == 0 and "note:" not in err
    # its eval is refused before a run exists (it stored one whose every item failed naming the pull)
    (env / "t.jsonl").write_text('{"id": "a", "question": "1 + 1?", "answer": "2"}\n')
    code, _, err = run_cli(capsys, "eval", str(local), "--task", str(env / "t.jsonl"))
    said = " ".join(err.split())
    assert code == 1 and f"local/{model.name} is not pulled" in said and "nothing was evaluated" in said
    assert Store(env / "cli.db").list_runs() == []
    # a route written on a node, and a CEO given as a route (docs/coordinator.md's form): checked too
    ceo = env / "ceo.yaml"
    ceo.write_text(
        f"name: c\nmodels:\n  m: {{model: sim/llama-8b}}\nnodes:\n  - {{id: a, role: assistant, model: m}}\n"
        f"  - {{id: b, role: critic, model: local/{model.name}}}\nedges: ['a -> b']\n"
        f"coordinator: {{model: local/{model.name}}}\n"
    )
    code, _, err = run_cli(capsys, "validate", str(ceo))
    said = " ".join(err.split())
    assert code == 0 and f"note: nodes.b: local/{model.name} is not pulled" in said, said
    assert f"note: coordinator.model: local/{model.name} is not pulled" in said
    code, _, err = run_cli(capsys, "eval", str(ceo), "--task", "sim:math", "--n", "2")
    assert code == 1 and "nothing was evaluated" in err and Store(env / "cli.db").list_runs() == []


def test_validate_notes_an_api_key_variable_unset_here(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph whose key variable is unset passed validate without a word, and its eval then failed
    item by item; validate says so in a note (exit 0: CI may validate without the secrets)."""
    monkeypatch.delenv("AS_TEST_UNSET_KEY", raising=False)
    keyed = env / "keyed.yaml"
    keyed.write_text(
        "name: k\nmodels:\n  m: {model: openai/gpt-4o-mini, api_key_env: AS_TEST_UNSET_KEY}\n"
        "nodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    code, _, err = run_cli(capsys, "validate", str(keyed))
    assert code == 0 and "note: models.m.api_key_env: AS_TEST_UNSET_KEY is not set in this environment" in err
    code, out, _ = run_cli(capsys, "validate", str(keyed), str(env / "g.yaml"), "--json")
    assert code == 0 and [entry["notes"] for entry in json.loads(out)] == [
        ["models.m.api_key_env: AS_TEST_UNSET_KEY is not set in this environment"],
        [],
    ]
    monkeypatch.setenv("AS_TEST_UNSET_KEY", "k")
    code, _, err = run_cli(capsys, "validate", str(keyed))
    assert code == 0 and "note:" not in err


def test_validate_notes_a_graph_that_answers_in_code_unsaid(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`stop_guard: stated_examples` (or a tester) with answer_format unset makes a graph answer in
    code: validate passed it, and a math question then ended "no node gave an answer" (a walk)."""
    guarded = env / "guarded.yaml"
    body = "name: guard\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n"
    guarded.write_text(body + "coordinator: {model: sim/llama-8b, stop_guard: stated_examples}\n")
    code, out, _ = run_cli(capsys, "validate", str(guarded), "--json")
    note = (
        "answer_format: unset, and coordinator.stop_guard 'stated_examples' runs the answer: the graph answers in code"
    )
    assert code == 0 and [n[: len(note)] for n in json.loads(out)[0]["notes"]] == [note]
    tested = env / "tested.yaml"
    tested.write_text(body.replace("name: guard", "name: t") + "  - {id: t, role: tester}\nedges: ['a -> t']\n")
    code, out, _ = run_cli(capsys, "validate", str(tested), "--json")
    assert code == 0 and "node 't' is a tester: the graph answers in code" in json.loads(out)[0]["notes"][0]
    guarded.write_text(guarded.read_text() + "answer_format: code\n")  # said: no note
    code, out, _ = run_cli(capsys, "validate", str(guarded), "--json")
    assert code == 0 and json.loads(out)[0]["notes"] == []


def test_a_budget_below_every_single_call_is_named_by_validate_and_optimize(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` passed such a space and `optimize` (or `--dry-run`) died with a ValueError traceback
    from the graph sampler; now both name the budget, its line and the cheapest call's cost."""
    space = env / "space.yaml"
    space.write_text(
        'name: tight\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  l1: {model: sim/llama-1b}\n'
        "roles: [assistant]\nmax_nodes: 3\nbudget: {compute: 0.1}\n"
    )
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 1 and "budget.compute (line 7): 0.1 is below the cheapest single call ('l1': 1.00" in err
    for dry_run in (["--dry-run"], []):
        code, _, err = run_cli(capsys, "optimize", str(space), *dry_run)
        assert code == 1 and "Traceback" not in err
        assert f"{space}: budget.compute (line 7): 0.1 is below the cheapest single call" in err


def test_a_budget_of_one_unit_names_the_estimated_shape_of_a_1b_model(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compute: 1` with a 1B model was refused as "1 is below ... 1.00 compute units": the unit is a
    call of Llama-3.2-1B's shape and the model's is estimated from its size (1.0024 units). The
    figure reads above the budget and the fix is named; with the shape given, one unit is one call."""
    space = env / "space.yaml"
    text = (
        'name: one\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  l1: {model: sim/llama-1b}\n'
        "roles: [assistant]\nmax_nodes: 3\nbudget: {compute: 1}\n"
    )
    space.write_text(text)
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 1 and "1 is below the cheapest single call ('l1': 1.002 compute units" in err
    assert "the shape of 'l1' is estimated from its size: set its n_layers and d_model" in err
    space.write_text(text.replace("sim/llama-1b}", "sim/llama-1b, n_layers: 16, d_model: 2048}"))
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 0, err


def test_an_unknown_task_in_a_space_is_named_by_validate_and_optimize_with_its_line(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` passed `sim:nope` and `rg:nosuch`, which only `optimize` refused, without file or
    line; a task too small for the split, a tester on a task that answers in numbers and an option the
    task refuses (placed at `task.options`, not `task.name`) likewise."""
    space = env / "space.yaml"
    template = (
        "name: t\ntask: {{name: {task}, train: {train}, test: 30}}\nmodels:\n  l1: {{model: sim/llama-1b}}\n"
        "roles: [{roles}]\nmax_nodes: 3\nbudget: {{compute: 4}}\n"
    )
    cases = [
        ({"task": '"sim:nope"', "train": 10, "roles": "assistant"}, "task.name (line 2): unknown sim task 'sim:nope'"),
        ({"task": '"rg:nosuch"', "train": 10, "roles": "assistant"}, "task.name (line 2): unknown reasoning-gym task"),
        ({"task": '"sim:math"', "train": 10, "roles": "assistant, tester"}, "roles (line 5): 'tester' runs candidate"),
        ({"task": "humaneval", "train": 150, "roles": "assistant"}, "task (line 2): task 'humaneval' has 164 items"),
        (
            {"task": '"rg:chain_sum", options: {max_termz: 3}', "train": 10, "roles": "assistant"},
            "task.options (line 2): task 'rg:chain_sum': unknown option 'max_termz' (did you mean 'max_terms'?)",
        ),
        (
            {"task": '"sim:math", options: {temperature: 3}', "train": 10, "roles": "assistant"},
            "task.options (line 2): task 'sim:math' does not accept option(s) temperature",
        ),
        ({"task": '"sim:math"', "train": 10, "roles": "vote"}, "roles (line 5): must include 'assistant'"),
        ({"task": '"sim:math", dev: 5', "train": 10, "roles": "assistant"}, "task.dev (line 2): optimize holds out no"),
        (
            {"task": '"sim:math", scorer: choice', "train": 10, "roles": "assistant"},
            "task.scorer (line 2): task 'sim:math' answers in 'number' and scorer 'choice' reads 'choice'",
        ),
    ]
    for fields, message in cases:
        space.write_text(template.format(**fields))
        for command in (["validate"], ["optimize", "--dry-run"], ["optimize"]):
            code, _, err = run_cli(capsys, *command, str(space))
            assert code == 1 and message in err and "Traceback" not in err, (command, err)
    assert "optimize" not in [run["kind"] for run in json.loads(run_cli(capsys, "runs", "list", "--json")[1])]


def test_an_unknown_sim_model_is_refused_when_the_file_loads(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sim/llama-2b` passed `validate`; `optimize` then ran with every call of it failing and
    reported `single call of big: 0.0%` with exit 0, and `run` answered nothing with exit 0."""
    space, graph = env / "space.yaml", env / "bad-graph.yaml"
    space.write_text(
        'name: s\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  big: {model: sim/llama-2b}\n'
        "roles: [assistant]\nmax_nodes: 3\nbudget: {compute: 4}\n"
    )
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-999b}\n")
    unknown = "unknown simulated model 'sim/llama-{}'; valid: sim/llama-1b"
    for command in (["validate"], ["optimize", "--dry-run"], ["optimize"]):
        code, _, err = run_cli(capsys, *command, str(space))
        assert code == 1 and f"models.big.model (line 4): {unknown.format('2b')}" in err, (command, err)
    code, _, err = run_cli(capsys, "validate", str(graph))
    assert code == 1 and f"nodes[0].model (line 3): {unknown.format('999b')}" in err
    for command in (["run", str(graph), "-q", "1 + 1?"], ["eval", str(graph), "--task", "sim:math", "--n", "2"]):
        code, _, err = run_cli(capsys, *command)  # the line too (run named the YAML path only)
        assert code == 1 and f"nodes[0].model (line 3): {unknown.format('999b')}" in err, (command, err)


def test_a_model_no_graph_could_afford_is_named_not_dropped(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """llama-70b under budget 20 passed `validate`, and `optimize` left it out without a word."""
    space = env / "space.yaml"
    space.write_text(
        'name: s\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  l1: {model: sim/llama-1b}\n'
        "  big: {model: sim/llama-70b}\nroles: [assistant]\nmax_nodes: 3\nbudget: {compute: 20}\n"
    )
    for command in (["validate"], ["optimize", "--dry-run"], ["optimize"]):
        code, _, err = run_cli(capsys, *command, str(space))
        assert code == 1 and "models.big (line 5): one call of 'big' costs" in err, (command, err)
        assert "over budget.compute=20: no graph could use it" in err


def test_a_tester_graph_evaluates_on_a_code_task_and_resumes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The task's answer format overrides the graph's, but `eval` built the graph before loading the
    task: a tester graph without `answer_format: code` was refused on HumanEval (and on resume)."""
    graph = env / "tester.yaml"
    graph.write_text(
        "name: t\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n"
        "  - {id: b, role: assistant, model: sim/llama-8b}\n  - {id: t, role: tester}\nedges: ['a, b -> t']\n"
    )
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", "humaneval", "--n", "2", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, _, err = run_cli(capsys, "eval", "--resume", run_id)
    assert code == 0, err
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2")
    assert code == 1 and "node 't' is a tester" in err  # answers in numbers: still refused


def test_a_sandbox_that_cannot_be_set_up_stops_an_eval_with_its_message(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    """`AGENTSCALE_SANDBOX=bogus` (a typo of `isolated`) ended a code task's eval in a traceback."""
    monkeypatch.setenv("AGENTSCALE_SANDBOX", "bogus")
    scripted.add_rule(Rule(replies=["```python\ndef f(x):\n    return x\n```"]))
    graph = env / "one.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "humaneval", "--n", "2")
    assert code == 1 and "AGENTSCALE_SANDBOX='bogus': use isolated" in err and "Traceback" not in err, err
    run_id = json.loads(run_cli(capsys, "runs", "list", "--json")[1])[0]["run_id"]
    assert f"what finished is kept; continue with: agentscale eval --resume {run_id}" in err
    code, out, err = run_cli(capsys, "eval", "--resume", run_id, "--json")  # still unset: said to a script too
    assert code == 1 and json.loads(out) == {
        "run_id": run_id,
        "status": "failed",
        "resume": json.loads(out)["resume"],
        "error": "AGENTSCALE_SANDBOX='bogus': use isolated (refuse the unisolated mode) or unset it",
    }
    monkeypatch.delenv("AGENTSCALE_SANDBOX")
    code, _, err = run_cli(capsys, "eval", "--resume", run_id)
    assert code == 0, err


def test_sim_models_on_a_task_that_is_no_sim_task_are_warned_of(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """sim/ models answer a real task's questions with a made-up item's answers: a whole search ran to
    0.0% everywhere without a word (a new user's walk)."""
    task = env / "sums.jsonl"
    task.write_text(
        "".join(json.dumps({"question": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n" for i in range(8))
    )
    graph = env / "one.yaml"
    graph.write_text("name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    said = "warning: sim/ models answer only the sim: tasks' items (sim:math, sim:mmlu, sim:humaneval); on 'sums'"
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", str(task), "--n", "2")
    assert code == 0 and said in " ".join(err.split()), err
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2")
    assert code == 0 and "warning: sim/ models" not in err
    space = env / "space.yaml"
    space.write_text(
        f'name: s\ntask: {{path: "{task}", train: 4, test: 4}}\nmodels:\n  l1: {{model: sim/llama-1b}}\n'
        "roles: [assistant]\nmax_nodes: 1\nbudget: {compute: 2}\n"
        "optimizer: {method: random, iterations: 1, samples: 1, minibatch: 8}\n"
    )
    code, _, err = run_cli(capsys, "optimize", str(space))
    assert code == 0 and said in " ".join(err.split()), err
    # validate's notes on the space, said as the search starts (it ran without a word)
    assert "optimizer.minibatch: 8 is more than the 4 train items" in " ".join(err.split())
    code, out, _ = run_cli(capsys, "validate", str(space), "--json")
    assert code == 0 and any(note.startswith("sim/ models answer only") for note in json.loads(out)[0]["notes"])


def test_optimize_refuses_an_out_directory_before_it_searches(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out DIR` ran the whole search, then crashed copying the best graph (a traceback)."""
    space = env / "space.yaml"
    space.write_text(
        'name: s\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  l1: {model: sim/llama-1b}\n'
        "roles: [assistant]\nmax_nodes: 3\nbudget: {compute: 4}\n"
    )
    code, _, err = run_cli(capsys, "optimize", str(space), "--out", str(env))
    assert code == 1 and f"--out {env} is a directory; give a file path" in err and "Traceback" not in err
    # a folder no file can be made in (the kernel's /proc, whoever runs this): ran the search, then failed
    code, _, err = run_cli(capsys, "optimize", str(space), "--out", "/proc/best.yaml")
    assert code == 1 and "cannot write --out /proc/best.yaml (no file can be made in /proc: " in err, err
    assert not list(Path("/proc").glob(".agentscale-probe-*"))
    assert "optimize" not in [run["kind"] for run in json.loads(run_cli(capsys, "runs", "list", "--json")[1])]
    fresh = env / "new" / "best.yaml"  # a folder not made yet: the search was paid, then the copy failed
    code, out, err = run_cli(capsys, "optimize", str(space), "--out", str(fresh), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["best"]["path"] == str(fresh) and Path(result["report"]).exists()
    assert fresh.read_text() == (Path(result["report"]).parent / "best.yaml").read_text()


def test_a_graph_given_for_a_space_and_a_space_for_a_graph_are_named_as_such(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`optimize graph.yaml` listed the graph's keys as unknown space keys (and `run space.yaml` the
    space's as unknown graph keys); each now says what the file is and which command takes it."""
    space = env / "space.yaml"
    space.write_text(
        'name: s\ntask: {name: "sim:math", train: 10, test: 30}\nmodels:\n  l1: {model: sim/llama-1b}\n'
        "roles: [assistant]\nmax_nodes: 3\nbudget: {compute: 4}\n"
    )
    for command in (["optimize", "--dry-run"], ["optimize"]):
        code, _, err = run_cli(capsys, *command, str(env / "g.yaml"))
        assert code == 1 and "nodes (line" in err and "is a graph file (`nodes:`, no `task:`)" in err
        assert "unknown key" not in err
    for command in (["run", str(space), "-q", "1 + 1?"], ["eval", str(space), "--task", "sim:math"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and "task (line 2): this is a search-space file" in err and "unknown key" not in err
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 0 and "search space 's', 1 model, up to 3 nodes" in err
    stray = space.read_text() + "nodes: []\n"  # a fuzzer's: validate gave it five graph errors
    space.write_text(stray)
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 1 and "nodes (line 8): unknown key 'nodes'" in " ".join(err.split()) and "problems" not in err
    code, _, err = run_cli(capsys, "run", str(space), "-q", "1 + 1?")
    assert code == 1 and "task (line 2): this is a search-space file (`task:`), not a graph" in " ".join(err.split())
    record = Path(__file__).parents[2] / "benchmarks" / "spaces" / "math-b18-large.best-known.yaml"
    for command in (["draw", str(record), "-o", str(env / "r.svg")], ["run", str(record), "-q", "1 + 1?"]):
        code, _, err = run_cli(capsys, *command)  # draw listed each of the record's keys as unknown
        assert code == 1 and "this is a best-known record of space 'math-b18-large'" in " ".join(err.split())
        assert "unknown key" not in err
    space.write_text("42\n")  # either kind: the message named a graph alone
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 1 and "a graph or search-space file must be a YAML mapping, not the value 42" in err
    space.write_text(
        stray.replace("task:", "tasks:").replace("nodes: []\n", "")
    )  # validated as a graph: 6 wrong problems
    code, _, err = run_cli(capsys, "validate", str(space))
    assert code == 1 and "unknown key 'tasks' (did you mean 'task'?)" in err and "'nodes'" not in err


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0 and json.loads(out)["title"].startswith("agentscale graph")


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["validate"],
        ["schema"],
        ["runs", "list"],
        ["runs", "show"],
        ["serve-graph"],
        ["eval"],
        ["tasks", "list"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0 and "Example" in out


def test_errors_exit_1_without_traceback_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "x.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "agentscale.cli.app", "run", str(tmp_path / "missing.yaml"), "-q", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"{tmp_path / 'missing.yaml'}: file not found" in proc.stderr and "Traceback" not in proc.stderr
    assert "<root>" not in proc.stderr  # a file-level issue has no YAML path to name
    proc = subprocess.run(
        [sys.executable, "-m", "agentscale.cli.app", "run", "--bogus"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_serve_graph_refuses_an_unset_key_variable(env: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    code, _, err = run_cli(capsys, "serve-graph", str(env / "g.yaml"), "--api-key-env", "NOT_SET_KEY")
    assert code == 1 and "NOT_SET_KEY" in err


def test_serve_graph_refuses_a_handbook_the_database_lacks_before_serving(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It served, /health said ok, and every request got a bare 500 "internal error while running the
    graph" (HandbookNotFound was in the server's log only): eval and run refuse the graph at once."""
    graph = env / "mem.yaml"
    graph.write_text((env / "g.yaml").read_text().replace("name: cli\n", "name: cli\nmemory: {handbook: math}\n"))
    code, _, err = run_cli(capsys, "serve-graph", str(graph), "--port", "9")
    assert code == 1 and "no handbook 'math'" in err and "agentscale handbook build --handbook math" in err, err
    assert "Traceback" not in err


def test_runs_show_prints_a_dash_for_an_item_with_no_answer(
    env: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An item whose calls all failed printed "answer: None" (a report walk)."""
    scripted.add_rule(Rule(pattern="What is 1 \\+", status=400))
    data = env / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(2)
        )
    )
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json")
    run_id = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "runs", "show", run_id)
    assert code == 0 and "answer: None" not in out and "answer: — · reference 2" in " ".join(out.split()), out


def test_runs_show_picks_the_wrong_items_and_limits_them(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`runs show` printed every item of a run (6.4 MB for a 5,000-item eval), with no way to see only
    what went wrong (a scale audit)."""
    data = env / "d.jsonl"
    wrong = {1, 3}  # references the scripted sums do not match
    data.write_text(
        "\n".join(
            json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1 + (i in wrong))})
            for i in range(5)
        )
    )
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json")
    run_id = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "runs", "show", run_id, "--wrong", "--json")
    shown = json.loads(out)
    assert code == 0 and [item["item"] for item in shown["items"]] == ["i1", "i3"]
    assert {call["item"] for call in shown["calls"]} == {"i1", "i3"}
    assert shown["accuracy"]["correct"] == 3 and shown["accuracy"]["n"] == 5  # the run's figures stay whole
    assert shown["items_shown"] == {"wrong_only": True, "limit": None, "left_out": 3}
    code, out, err = run_cli(capsys, "runs", "show", run_id, "--limit", "2")
    assert code == 0 and "item i0:" in out and "item i1:" in out and "item i2:" not in out
    assert "3 of the 5 items not shown (--limit)" in " ".join(err.split())
    code, out, err = run_cli(capsys, "runs", "show", run_id, "--wrong", "--limit", "1")
    assert "item i1:" in out and "item i0:" not in out and "item i3:" not in out
    assert "1 of the 2 items scored wrong or with a failed call shown (--limit); 3 others not shown (--wrong)" in (
        " ".join(err.split())
    )  # it said "4 of the 5 items not shown": how many more were wrong? (a new user's walk)
    code, out, err = run_cli(capsys, "runs", "show", run_id, "--wrong", "--limit", "2")
    assert "3 of the 5 items not shown (--wrong)" in " ".join(err.split())


def test_run_and_eval_say_when_a_reply_stopped_at_max_tokens(
    env: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small model cut off at max_tokens mid-reasoning looked like one that answered: nothing in
    `run` or `eval` said its answers might be cut short (a provider-fault audit)."""
    scripted.add_rule(Rule(pattern="What is 2 \\+", replies=["2 + 1 = 3, so first I"], finish_reason="length"))
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 2 + 1?")
    flat = " ".join(err.split())
    assert "ok, cut" in flat and "cut at max_tokens: a (" in flat and ", b (" in flat
    data = env / "d.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(4)))
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data))
    assert code == 0 and "1 of 4 items had a reply stopped at its max_tokens" in " ".join(out.split())
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json", "--no-cache")
    assert json.loads(out)["items_with_cut_replies"] == 1


@pytest.mark.parametrize("content", [None, "name: broken\nnodes: [\n"], ids=["missing", "broken YAML"])
def test_a_bad_graph_file_leaves_no_database_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    """`eval g1.yaml` with no g1.yaml (a typo) said "file not found" after creating a 122 KB database
    (a scale audit); `run`, `serve-graph` and `optimize` did the same, and so did a graph file that is no YAML."""
    graph = tmp_path / "g1.yaml"
    if content is not None:
        graph.write_text(content)
    database = tmp_path / "fresh.db"
    commands = [["run", str(graph), "-q", "What is 1 + 1?"], ["eval", str(graph), "--task", "sim:math"]]
    commands += [["serve-graph", str(graph)]] + ([["optimize", str(graph)]] if content is None else [])
    for words in commands:
        code, _, err = run_cli(capsys, *words, "--db", str(database))
        assert code == 1 and "g1.yaml" in err and "Traceback" not in err, (words, err)
        assert not database.exists(), words


def test_eval_json_and_resume_flags(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = env / "d.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(4))
    )
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json", "--show-items")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"run_id", "task", "n", "accuracy", "ci95", "usage", "items"}
    assert result["n"] == 4 and result["accuracy"] == 1.0 and set(result["usage"]) >= USAGE_KEYS
    assert result["simulated"] is False  # a real (scripted) route; sim/ routes say True and print a note
    code, out, _ = run_cli(capsys, "eval", "--resume", result["run_id"], "--json")
    assert code == 0 and json.loads(out)["n"] == 4 and json.loads(out)["usage"]["calls"] == 8  # totals of the run
    code, out, _ = run_cli(capsys, "eval", "--resume", result["run_id"], "--show-items")  # the table people read
    rows = [line for line in out.splitlines() if line.startswith("│ i")]
    ids = sorted(row.split("│")[1].strip() for row in rows)  # listed in the sample's order
    assert code == 0 and ids == ["i0", "i1", "i2", "i3"]
    assert all("✓" in row for row in rows) and "What is 3 + 1?" in out
    code, _, err = run_cli(capsys, "eval", "--resume", result["run_id"], str(env / "g.yaml"))
    assert code == 1 and "do not give a graph file" in err
    code, _, err = run_cli(capsys, "eval", "--resume", result["run_id"], "--n", "8", "--seed", "3")  # were ignored
    assert code == 1 and "with its own sample and scorer; drop --n, --seed" in " ".join(err.split())


def test_eval_says_when_n_is_more_than_the_task_has(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--n 5000` on a smaller task evaluated all of it without a word."""
    data = env / "d.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(3))
    )
    code, _, err = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--n", "50", "--json")
    said = " ".join(err.split())  # under --json too (a sim walk: --n 1500 of sim:math ran 1,000 without a word)
    assert code == 0 and "--n 50, but task d has 3 items: all 3 are evaluated" in said and "size=" not in said
    code, _, err = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--n", "2")
    assert code == 0 and "items: all" not in err
    # and the scorer a JSONL task got without --scorer (chosen without a word; a new user's walk)
    assert "2 items · scorer numeric" in " ".join(err.split())
    graph = env / "sim.yaml"
    graph.write_text("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--task-option", "size=4", "--n", "6")
    assert code == 0 and "all 4 are evaluated; a generated task takes --task-option size=6" in " ".join(err.split())
    # a generator with fewer distinct questions than the size asked: the advice to ask that size cannot work
    one_digit = ["min_terms=2", "max_terms=2", "min_digits=1", "max_digits=1", "allow_negation=false", "size=500"]
    options = [word for option in one_digit for word in ("--task-option", option)]
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "rg:chain_sum", *options, "--n", "500", "--json")
    said = " ".join(err.split())
    assert code == 0 and "has only 200 distinct questions with these options: all 200 are evaluated" in said
    assert "size=500" not in said


def test_eval_unknown_task_lists_valid_ones(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", "nonsense")
    assert code == 1 and "humaneval" in err


def test_tasks_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "tasks", "list", "--json")
    names = {t["name"] for t in json.loads(out)}
    assert code == 0 and {"humaneval", "champ", "rg:basic_arithmetic"} <= names


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the CLI with the words that reach it (typer's own click types: duck-typed)."""
    found = [(path, group)]
    if hasattr(group, "commands"):
        for name, sub in group.commands.items():
            found += _commands(sub, (*path, name))
    return found


def test_help_keeps_every_bracketed_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich reads `agentscale[otel]` as a markup tag and drops it unless escaped; every extra must reach --help."""
    monkeypatch.setenv("COLUMNS", "400")
    extras = re.compile(r"agentscale\\?\[(\w+)\]")
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
        wanted = {f"agentscale[{extra}]" for text in texts for extra in extras.findall(text)}
        if not wanted:
            continue
        code, out, _ = run_cli(capsys, *path, "--help")
        assert code == 0
        flat = " ".join(out.replace("│", " ").split())
        assert {w for w in wanted if w not in flat} == set(), path
        checked += 1
    assert checked >= 4


BRACKETED = "a[i] [/INST] [red]x[/red] :thumbs_up:"


def test_text_with_brackets_is_printed_as_it_is_never_as_rich_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Questions, prompts and answers went to Rich as markup: `[/INST]` ended `run --show-prompts`,
    `run --input` and `runs show` in MarkupError tracebacks (a stored run could never be shown), and
    `a[i]` printed as `a`, on stdout too."""
    from agentscale.testing import Rule

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "b.db"))
    scripted.add_rule(Rule(pattern="INST", replies=[f"Final answer: {BRACKETED}"]))
    graph = tmp_path / "text.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: text\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    question = f"What does {BRACKETED} mean?"
    code, out, err = run_cli(capsys, "run", str(graph), "-q", question, "--show-prompts")
    assert code == 0, err
    assert out.strip() == BRACKETED and question in err
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": question}) + "\n")
    code, out, err = run_cli(capsys, "run", str(graph), "--input", str(questions))
    assert code == 0, err
    assert out.rstrip("\n").split("\t")[-1] == BRACKETED
    run_id = Store(tmp_path / "b.db").list_runs()[0].id
    code, out, err = run_cli(capsys, "runs", "show", run_id)
    assert code == 0, err
    assert f"answer: {BRACKETED}" in out and "[/INST]" in out


def test_a_question_left_without_an_answer_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every node failing printed "(no answer)" on stdout, as if it were the answer, and exited 0."""
    from agentscale.testing import Rule

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "n.db"))
    scripted.add_rule(Rule(status=400))
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: down\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    code, out, err = run_cli(capsys, "run", str(graph), "-q", "What is 1 + 1?")
    assert (code, out) == (1, "")
    assert re.search(r"error: no answer \(run \w+\): output node 'a' failed", err), err
    assert err.count("HTTP 400") == 1, err  # said once: "stopped early" and "failed: a" repeated it
    code, out, err = run_cli(capsys, "run", str(graph), "-q", "What is 1 + 1?", "--json")
    assert code == 1 and json.loads(out)["answer"] is None and "no answer" in err
    stored = Store(tmp_path / "n.db").get_run(json.loads(out)["run_id"])
    assert stored.status == "failed" and "no answer: output node 'a' failed" in (stored.error or "")  # was done


def _three_sums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> tuple[Path, Path]:
    """A one-node graph on the scripted server and a task of three sums, in the database n.db."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "n.db"))
    data = tmp_path / "d.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(3))
    )
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: down\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    return graph, data


def test_an_eval_whose_every_call_failed_exits_1_after_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server down or a missing key: the eval said "accuracy 0.0%" and exited 0, which a script read
    as the graph's figure. The run and its report are still written; one item answered keeps exit 0."""
    from agentscale.testing import Rule

    graph, data = _three_sums(tmp_path, monkeypatch, scripted)
    scripted.add_rule(Rule(status=400))
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--json")
    assert code == 1, err
    result = json.loads(out)
    assert (result["n"], result["usage"]["calls"]) == (3, 0) and Path(result["report"]).exists()
    assert result["nothing_answered"] is True  # a script (or the Python API) reads it, not the 0% alone
    assert "no item finished and no model call answered, so the run measured nothing" in " ".join(err.split())
    assert f"runs show {result['run_id']}" in " ".join(err.split())
    retry = f"once the model answers: agentscale eval --resume {result['run_id']} --retry-errors"
    assert retry in " ".join(err.split())  # a plain resume keeps the failures
    assert Store(tmp_path / "n.db").get_run(result["run_id"]).status == "failed"  # runs list said done
    scripted.reset()
    code, out, err = run_cli(capsys, "eval", "--resume", result["run_id"], "--retry-errors", "--json")
    assert code == 0 and json.loads(out)["correct"] == 3, err  # the command it names, once the server answers
    assert json.loads(out)["nothing_answered"] is False
    scripted.reset()
    scripted.add_rule(Rule(pattern="What is 0 ", status=400))
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--no-cache")  # the retry's answers
    assert code == 0 and "1 of 3 items did not finish" in " ".join(err.split() + out.split()), err


def test_a_discussion_whose_every_call_failed_exits_1_as_a_plain_graph_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A coordinator graph with its server down: every CEO and worker call failed, and the eval exited
    0, stored `done`, "0 unfinished" and "3 of 3 items answered although some of their model calls
    failed" (a new user's walk), where the same graph without `coordinator:` exits 1."""
    from agentscale.testing import Rule

    _, data = _three_sums(tmp_path, monkeypatch, scripted)
    graph = tmp_path / "ceo.yaml"
    nodes = "nodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    coordinator = "edges:\n  - a, b -> f\ncoordinator: {model: m, max_rounds: 2}\n"
    fuser = "  - {id: f, role: fuser, model: m}\n"
    graph.write_text(graph_yaml(scripted.api_base, f"name: down-ceo\n{nodes}{fuser}{coordinator}"))
    scripted.add_rule(Rule(status=400))
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--json")
    assert code == 1, err
    result = json.loads(out)
    assert (result["unfinished"], result["items_with_failed_calls"]) == (3, 3), result
    assert "no round answered; r1.ceo failed: " in " ".join(err.split())
    assert Store(tmp_path / "n.db").get_run(result["run_id"]).status == "failed"


def test_a_resumed_eval_keeps_the_no_cache_it_was_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --no-cache`, then the resume command it prints (`eval --resume RUN`, here with
    --retry-errors): the items it asked again came from the cache an earlier run had filled, mixing
    stale and fresh answers in a run meant to ask the models anew (a new user's walk)."""
    from agentscale.testing import Rule

    graph, data = _three_sums(tmp_path, monkeypatch, scripted)
    assert run_cli(capsys, "eval", str(graph), "--task", str(data))[0] == 0  # fills the cache
    scripted.reset()
    scripted.add_rule(Rule(pattern="What is 0 ", status=400))
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--no-cache", "--json")
    run_id = json.loads(out)["run_id"]
    assert code == 0 and len(scripted.completion_requests) == 3, err
    scripted.reset()
    code, out, err = run_cli(capsys, "eval", "--resume", run_id, "--retry-errors", "--json")
    assert code == 0 and json.loads(out)["correct"] == 3, err
    assert len(scripted.completion_requests) == 1  # asked, not answered from the first run's cache
    assert f"run {run_id} was started with --no-cache" in " ".join(err.split())


def test_an_eval_answered_from_the_cache_measured_something(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every item stops at the budget after its first call answered; run again, those calls come from
    the cache (0 paid): that is still a measurement, not "no model call answered" (exit 1)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "n.db"))
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(2)))
    graph = tmp_path / "g.yaml"
    graph.write_text(
        graph_yaml(
            scripted.api_base,
            "name: capped\ndefaults: {max_tokens: 100, temperature: 0}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
            "  - {id: b, role: critic, model: m}\nedges: ['a -> b']\nbudget: {max_tokens: 250}\n",
        )
    )
    for paid in (2, 0):
        code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--json")
        result = json.loads(out)
        assert code == 0 and (result["usage"]["calls"], result["correct"]) == (paid, 2), err
        assert "measured nothing" not in err


def test_validate_refuses_what_run_refuses_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A budget cap no model can be priced for, and a tester in a graph answering numbers, passed
    `validate` (✓, exit 0) and were refused by `run`, without a line."""
    unpriced = tmp_path / "unpriced.yaml"
    unpriced.write_text("name: u\nnodes:\n  - {id: a, role: assistant, model: openai/custom}\nbudget: {max_usd: 0.5}\n")
    tester = tmp_path / "tester.yaml"
    tester.write_text(
        "name: t\nanswer_format: number\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
        "  - {id: t, role: tester}\nedges:\n  - a -> t\n"
    )
    code, _, err = run_cli(capsys, "validate", str(unpriced), str(tester))
    assert code == 1
    assert "budget.max_usd (line 4): model 'openai/custom' (node 'a') has unknown price" in err
    assert "answer_format (line 2): node 't' is a tester" in err
    code, _, err = run_cli(capsys, "run", str(unpriced), "-q", "hi")
    assert code == 1 and "budget.max_usd (line 4)" in err


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_answers_reach_stdout_while_the_progress_bar_draws_on_a_terminal(
    tmp_path: Path, scripted: ScriptedServer, json_flag: list[str]
) -> None:
    """With stderr a terminal the live bar's console took over sys.stdout: `run --input > out.tsv` (and
    with --json) left the file empty and printed the answers on the terminal."""
    import pty

    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: tty\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?"}) + "\n" for i in range(3)))
    terminal, stderr_side = pty.openpty()
    drained = threading.Thread(target=_drain, args=(terminal,), daemon=True)
    drained.start()  # unread, the terminal's buffer filled under load and the bar's writes blocked the run
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "t.db"), "COLUMNS": "100"}
    command = [sys.executable, "-m", "agentscale.cli.app", "run", str(graph), "--input", str(questions), *json_flag]
    with open(tmp_path / "out", "wb") as stdout:
        done = subprocess.run(command, stdout=stdout, stderr=stderr_side, env=env, timeout=120, check=False)
    os.close(stderr_side)  # the reader then sees the end of the terminal
    drained.join(timeout=10)
    os.close(terminal)
    lines = (tmp_path / "out").read_text().splitlines()
    assert done.returncode == 0 and len(lines) == 3, lines
    assert lines[0].startswith('{"id": "q0"') if json_flag else lines[0].split("\t")[0] == "q0"


def _drain(terminal: int) -> None:
    """Read a pseudo-terminal's output until it closes, as a terminal would."""
    with contextlib.suppress(OSError):  # EIO once the last writer closed
        while os.read(terminal, 65536):
            pass


def test_the_commands_an_eval_suggests_name_its_database(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --db other.db` printed `agentscale runs show ID` (and, on Ctrl-C, `agentscale eval --resume
    ID`), which looked in the default database and found no such run."""
    (env / "d.jsonl").write_text(json.dumps({"id": "i0", "question": "What is 1 + 1?", "answer": "2"}) + "\n")
    monkeypatch.chdir(env)

    def suggested(out: str) -> tuple[str, str]:
        found = re.search(r"run (\w+) \((agentscale runs show [^)]*)\)", " ".join(out.split()))
        assert found, out
        return found.group(1), found.group(2)

    code, out, _ = run_cli(capsys, "eval", "g.yaml", "--task", "d.jsonl")
    run_id, command = suggested(out)
    assert code == 0 and command == f"agentscale runs show {run_id}"  # the default database (AGENTSCALE_DB here)
    code, out, _ = run_cli(capsys, "eval", "g.yaml", "--task", "d.jsonl", "--db", "other.db")
    run_id, command = suggested(out)
    assert code == 0 and command == f"agentscale runs show {run_id} --db {env / 'other.db'}"
    monkeypatch.chdir(env.parent)  # pasted anywhere, it finds the run
    code, shown, err = run_cli(capsys, *shlex.split(command)[1:])
    assert code == 0 and run_id in shown, err


def test_a_resumed_eval_finds_its_task_file_from_another_directory(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task file given relative to where the eval started was stored as given, and `--resume` from
    elsewhere failed: "task file 'd.jsonl' not found"."""
    (env / "d.jsonl").write_text(json.dumps({"id": "i0", "question": "What is 1 + 1?", "answer": "2"}) + "\n")
    monkeypatch.chdir(env)
    code, out, _ = run_cli(capsys, "eval", "g.yaml", "--task", "d.jsonl", "--json")
    assert code == 0
    elsewhere = env / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, again, err = run_cli(capsys, "eval", "--resume", json.loads(out)["run_id"], "--json")
    assert code == 0, err
    assert json.loads(again)["n"] == 1


def test_runs_list_refuses_a_limit_sqlite_cannot_hold(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit 99999999999999999999999 ended in OverflowError's traceback."""
    code, _, err = run_cli(capsys, "runs", "list", "--limit", "99999999999999999999999")
    assert code == 2 and "--limit" in err and "Traceback" not in err


def test_a_cache_setting_that_is_neither_on_nor_off_is_named(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENTSCALE_CACHE=of (a typo for off) kept the cache on without a word."""
    monkeypatch.setenv("AGENTSCALE_CACHE", "of")
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 1?")
    assert code == 1 and "AGENTSCALE_CACHE='of': use off" in err and "Traceback" not in err
    for setting, cached, term in (("off", 0, 3), ("ON", 2, 4)):  # the first run fills the cache, the second reads it
        monkeypatch.setenv("AGENTSCALE_CACHE", setting)
        for _ in range(2):
            code, out, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", f"What is 2 + {term}?", "--json")
        assert code == 0 and json.loads(out)["usage"]["cached_calls"] == cached, err


def test_help_reflows_prose_and_its_examples_fit_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer kept the docstrings' line breaks, so an 80-column terminal showed half lines ("keeps
    their clocks" / "clean"), and long examples wrapped mid-command (pasting the first line failed)."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "models", "pull", "--help")
    assert code == 0 and any("keeps their clocks clean" in line for line in out.splitlines()), out

    def commands(command: TyperCommand | TyperGroup, path: list[str]) -> Iterator[list[str]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                if isinstance(sub, TyperCommand | TyperGroup):
                    yield from commands(sub, [*path, name])

    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    checked = 0
    for path in commands(root, []):
        code, out, _ = run_cli(capsys, *path, "--help")
        shown = out.splitlines()
        assert code == 0 and all(len(line) <= 80 for line in shown)
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for line in inspect.cleandoc(command.help or "").splitlines():
            if line.strip().startswith("agentscale "):  # an example: whole on one line of the help
                assert any(line.strip() in s for s in shown), (path, line)
                checked += 1
    assert checked > 20


def test_a_stored_run_whose_graph_predates_a_rule_is_still_shown(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph stored before the single api_base had to be an http(s) URL could no longer be shown or
    reported; a new graph with it is still refused."""
    text = "name: g\nmodels:\n  m: {model: hosted_vllm/q, api_base: 'localhost:8000/v1'}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    run = Store(env / "cli.db").create_run("run", graph_name="g", graph_yaml=text)
    for command in (["runs", "show", run.id], ["report", run.id]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0 and "api_base" not in err, (command, err)
    (env / "new.yaml").write_text(text)
    code, _, err = run_cli(capsys, "validate", str(env / "new.yaml"))
    assert code == 1 and "is not an http(s) URL" in err


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root needs setpriv to obey modes")
def test_a_database_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A read-only database file opened fine and failed at the first write: every writing command
    printed 50-100 lines of SQLAlchemy traceback (a full disk did the same). As root the child runs
    without the capability that overrides file modes."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    database = tmp_path / "x.db"
    assert main(["run", str(graph), "-q", "[sim:math#0001] q", "--db", str(database)]) == 0
    database.chmod(0o444)
    obey_modes = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    command = [*obey_modes, sys.executable, "-m", "agentscale.cli.app", "run", str(graph), "-q", "[sim:math#0002] q"]
    done = subprocess.run([*command, "--db", str(database)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "the database failed: attempt to write a readonly database" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_while_the_cli_builds_its_commands_is_an_interruption(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Building the commands takes ≈ 25 ms before any command runs; a Ctrl-C then was a traceback."""

    def interrupted(_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(typer.main, "get_command", interrupted)
    assert main(["runs", "list"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_run_stopped_before_it_started_says_so_and_how_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An eval made and stopped in the ≈ 15 ms before its process claimed it stayed "running", with no
    owner, forever: never "process gone", and no resume hint."""
    database = tmp_path / "c.db"
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    config = {"task": "sim:math", "n": 2, "seed": 0, "scorer": None, "concurrency": 8, "handbook": None}
    run = Store(database).create_run("eval", graph_name="g", graph_yaml=graph.read_text(), config=config, claim=False)
    code, out, _ = run_cli(capsys, "runs", "list", "--db", str(database))
    assert code == 0 and "created (not started)" in out
    code, _, err = run_cli(capsys, "runs", "show", run.id, "--db", str(database))
    assert code == 0 and "has not started" in err and f"eval --resume {run.id}" in " ".join(err.split())
    code, out, err = run_cli(capsys, "eval", "--resume", run.id, "--db", str(database), "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 2 and Store(database).get_run(run.id).status == "done"
    # an interrupted one names its resume command too (only a dead process's run did)
    stopped = Store(database).create_run("eval", graph_name="g", graph_yaml=graph.read_text(), config=config)
    Store(database).finish_run(stopped.id, "interrupted")
    code, _, err = run_cli(capsys, "runs", "show", stopped.id, "--db", str(database))
    assert code == 0 and f"it was interrupted; continue with: agentscale eval --resume {stopped.id}" in " ".join(
        err.split()
    )
    # a failed eval shows its error and offers no resume; a failed handbook build goes on when run again
    Store(database).finish_broken_run(stopped.id, ValueError("scorer broke"))
    code, out, err = run_cli(capsys, "runs", "show", stopped.id, "--db", str(database))
    assert code == 0 and "error: scorer broke" in out and "continue with" not in err
    build = Store(database).create_run("handbook", config={"handbook": "h"})
    Store(database).finish_broken_run(build.id, ValueError("disk full"))
    code, out, err = run_cli(capsys, "runs", "show", build.id, "--db", str(database))
    assert code == 0 and "it failed (error above); the same command again goes on" in " ".join(err.split())
    assert "accuracy" not in out  # a build's verdicts are its source run's (the second diff review)


def test_runs_show_lists_the_calls_of_a_question_stopped_before_its_answer(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A single question interrupted mid-graph (Ctrl-C, a served request's client gone) showed "no
    items recorded" and said "the same command again goes on", which fits no HTTP request: its
    finished calls are shown, and asking again with the same graph is what reuses them."""
    store = Store(tmp_path / "c.db")
    graph = "name: g\nnodes:\n  - {id: a, role: assistant, model: hosted_vllm/m}\n"
    row = {"id": "r1", "kind": "run", "created": utcnow(), "graph_name": "g", "graph_yaml": graph}
    paid = NodeTrace("a", "assistant", model="m", route="hosted_vllm/m", status="ok", answer="417")
    record_broken(store, row, KeyboardInterrupt(), "0", [paid], "What is 400 + 17?")
    code, out, err = run_cli(capsys, "runs", "show", "r1", "--db", str(store.path))
    said = " ".join(err.split())
    assert code == 0 and "item 0: stopped before its answer" in out and "417" in out
    assert "no items recorded (the node calls that finished before it stopped are above)" in said
    assert "; the question: What is 400 + 17?" in said  # nothing said what had been asked (a new user's walk)
    assert "it was interrupted; asked again with the same graph (response cache on), the calls it paid" in said


def test_an_output_path_that_is_the_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report RUN --db X.db -o X.db` replaced the database with HTML (every run lost, exit 0). A name
    other than .html is refused first now; a database named .html still meets this check."""
    database = tmp_path / "x.html"
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    assert main(["run", str(graph), "-q", "[sim:math#0001] q", "--db", str(database), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    code, _, err = run_cli(capsys, "report", run_id, "--db", str(database), "-o", str(database))
    assert code == 1 and "is a SQLite database (its runs would be lost)" in err
    assert Store(database).get_run(run_id).id == run_id


def test_reading_commands_leave_no_database_at_a_mistyped_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runs show abc --db typo.db` said "no run" and left a 120 KB empty database behind."""
    typo = tmp_path / "typo.db"
    code, _, err = run_cli(capsys, "runs", "show", "abc", "--db", str(typo))
    assert code == 1 and f"no database at {typo}" in err
    assert run_cli(capsys, "report", "abc", "--db", str(typo))[0] == 1
    code, out, _ = run_cli(capsys, "runs", "list", "--db", str(typo), "--json")
    assert code == 0 and json.loads(out) == []
    for command in ("eval", "optimize"):  # a resume reads its run first
        code, _, err = run_cli(capsys, command, "--resume", "abc", "--db", str(typo))
        assert code == 1 and f"no database at {typo}" in err, err
    assert not typo.exists()


def test_runs_show_gives_each_eval_items_reference_and_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were in the database and the report, not in `runs show` (table or --json)."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n")
    database = str(tmp_path / "e.db")
    code, out, _ = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2", "--db", database, "--json")
    assert code == 0
    run_id = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "runs", "show", run_id, "--db", database, "--json")
    items = json.loads(out)["items"]
    assert all(item["reference"] is not None and isinstance(item["correct"], bool) for item in items)
    code, out, _ = run_cli(capsys, "runs", "show", run_id, "--db", database)
    assert f"reference {items[0]['reference']} · {'right' if items[0]['correct'] else 'wrong'}" in out


def test_runs_show_of_an_eval_gives_its_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed every item's calls and never the accuracy (only --json's summary had it; the
    reports review)."""
    database = tmp_path / "e.db"
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n")
    code, out, err = run_cli(
        capsys, "eval", str(graph), "--task", "sim:math", "--n", "12", "--db", str(database), "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    low, high = summary["ci95"]
    code, out, _ = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "12", "--db", str(database))
    assert code == 0 and f"sim:math: SIMULATED accuracy {summary['accuracy']:.1%}" in out  # the command's line too
    code, out, _ = run_cli(capsys, "runs", "show", summary["run_id"], "--db", str(database))
    expected = f"SIMULATED accuracy {summary['accuracy']:.1%} ({summary['correct']}/12 scored items), 95% CI [{low:.1%}, {high:.1%}]"
    assert code == 0 and expected in " ".join(out.split())
    code, out, _ = run_cli(capsys, "runs", "show", summary["run_id"], "--db", str(database), "--json")
    shown = json.loads(out)["accuracy"]  # --json had the stored summary only
    assert code == 0 and (shown["value"], shown["correct"], shown["n"]) == (summary["accuracy"], summary["correct"], 12)
    assert shown["ci95"] == pytest.approx([low, high])


def test_a_graph_naming_sim_routes_on_its_nodes_is_reported_simulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A graph with no `models:` section names its routes on the nodes: its simulated figures must
    say so in --json (scripts read "simulated" to tell them from a real model's accuracy)."""
    database = str(tmp_path / "s.db")
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n")
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2", "--db", database, "--json")
    assert code == 0, err
    assert json.loads(out)["simulated"] is True
    code, out, err = run_cli(capsys, "run", str(graph), "-q", "[sim:math#0001] q", "--db", database, "--json")
    assert code == 0, err
    assert json.loads(out)["simulated"] is True


@pytest.mark.parametrize(
    "graph_yaml",
    [
        "name: g\nmodels:\n  small model: {model: sim/llama-1b}\nnodes:\n  - {id: a, role: assistant, model: small model}\n",
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b, max_tokens: 100}\n"
        "  - {id: b, role: assistant, model: sim/llama-1b, max_tokens: 100}\n"
        "  - {id: f, role: fuser, model: sim/llama-1b, max_tokens: 100}\nedges: ['a, b -> f']\n"
        "coordinator: {model: sim/llama-1b, max_rounds: 1, min_tokens: 2000}\n",
    ],
    ids=["a blank in an alias", "a min_tokens above the ceiling"],
)
def test_an_eval_stored_before_a_rule_still_resumes(
    graph_yaml: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second diff review: such runs loaded for runs show, then `eval --resume` refused them when
    it built the graph (the rule ran again)."""
    database = tmp_path / "old.db"
    config = {"task": "sim:math", "n": 2, "seed": 0, "scorer": None, "concurrency": 2, "handbook": None}
    run = Store(database).create_run("eval", graph_name="g", graph_yaml=graph_yaml, config=config)
    Store(database).finish_run(run.id, "interrupted")
    code, out, err = run_cli(capsys, "eval", "--resume", run.id, "--db", str(database), "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 2 and Store(database).get_run(run.id).status == "done"


@pytest.mark.parametrize("table", ["runitem", "spendentry"])
def test_a_database_that_fails_during_an_eval_names_the_resume_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripted: ScriptedServer,
    capsys: pytest.CaptureFixture[str],
    table: str,
) -> None:
    """A full disk mid-eval said "resume the run" without naming it (its id was only in the first
    line). A trigger that fails every item's row (or a paid call's, which the gateway raises as a
    StorageError) stands in for the disk: SQLite's own error."""
    database = tmp_path / "f.db"
    monkeypatch.setenv("AGENTSCALE_DB", str(database))
    Store(database)  # the tables, then a trigger that breaks the first item's (or call's) row
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TRIGGER broken AFTER INSERT ON {table} BEGIN INSERT INTO gone VALUES (1); END")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "i0", "question": "What is 1 + 1?", "answer": "2"}) + "\n")
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", str(data))
    run_id = Store(database).list_runs()[0].id
    said = " ".join(err.split())
    assert code == 1 and "Traceback" not in err, err
    assert "the database failed: no such table: main.gone" in said
    assert f"once fixed, continue with: agentscale eval --resume {run_id}" in said
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--json")  # stdout said nothing
    told = json.loads(out)
    assert code == 1 and told["status"] == "failed" and told["resume"].startswith("agentscale eval --resume ")


def test_a_damaged_or_newer_database_is_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only SQLite's operational errors were read as the database failing: a damaged file ("database
    disk image is malformed") and a row a newer release's schema refuses (a NOT NULL column this
    release does not know) were ~120-line tracebacks, after the calls were paid (a store audit)."""
    database = tmp_path / "d.db"
    monkeypatch.setenv("AGENTSCALE_DB", str(database))
    Store(database)
    with sqlite3.connect(database) as connection:  # stands in for a newer release's NOT NULL column
        connection.execute(
            "CREATE TRIGGER newer BEFORE INSERT ON runitem BEGIN "
            "SELECT RAISE(ABORT, 'NOT NULL constraint failed: runitem.tier'); END"
        )
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "i0", "question": "What is 1 + 1?", "answer": "2"}) + "\n")
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", str(data))
    said = " ".join(err.split())
    assert code == 1 and "Traceback" not in err, err
    assert "NOT NULL constraint failed: runitem.tier (a column this release does not know: was the database" in said
    assert "continue with: agentscale eval --resume" in said
    with sqlite3.connect(database) as connection:
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'run'").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with database.open("r+b") as handle:  # garbage over the run table's page
        handle.seek((root - 1) * size + 8)
        handle.write(b"\xde\xad\xbe\xef" * 500)
    code, _, err = run_cli(capsys, "runs", "list")
    said = " ".join(err.split())
    assert code == 1 and "Traceback" not in err, err
    assert said == (
        "error: the database failed: database disk image is malformed (the file is damaged: restore a copy, "
        "or recover what it holds with sqlite3's .recover command)"
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a read-only bind mount needs root and unshare"
)
def test_a_database_in_a_read_only_folder_can_be_read(tmp_path: Path) -> None:
    """A WAL database's reader makes its -shm file beside it: in a read-only folder (a shared copy of
    results) every command failed with "cannot be opened (unable to open database file)". Commands
    that only read now open it read-only; one that writes says the folder is read-only."""
    shared = tmp_path / "shared"
    shared.mkdir()
    run = Store(shared / "x.db").create_run("eval", graph_name="g", config={})
    Store(shared / "x.db").finish_run(run.id, "done")
    for leftover in shared.glob("x.db-*"):
        leftover.unlink()  # as a copy of the file alone would be
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    cli = f"{shlex.quote(sys.executable)} -m agentscale.cli.app"
    script = (
        f"mount --bind {shared} {shared} && mount -o remount,bind,ro {shared} && "
        f"{cli} runs list --json --db {shared}/x.db && "
        f"{{ {cli} run {graph} -q '[sim:math#0001] x' --db {shared}/x.db; echo rc=$?; }} && "
        f"{{ {cli} run {graph} -q '[sim:math#0001] x' --db {shared}/new.db; echo rc=$?; }}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    listed = json.loads(done.stdout.split("rc=")[0])
    assert [(r["run_id"], r["status"]) for r in listed] == [(run.id, "done")], done.stderr
    assert done.stdout.split().count("rc=1") == 2, done.stdout
    existing, new = " ".join(done.stderr.split()).split(f"database {shared}/new.db")
    assert "cannot be written: its folder is read-only" in existing and "still can" in existing
    # no file to read yet: "commands that only read it still can" was advice about nothing (a walk)
    assert "cannot be written: its folder is read-only" in new and "still can" not in new


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="a small tmpfs needs root and unshare")
def test_a_database_on_a_full_disk_says_the_disk_is_full(tmp_path: Path) -> None:
    """Opening needs room for SQLite's -shm file: on a full disk it said "cannot be opened (disk I/O
    error)", which named no disk (a store audit)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    Store(tmp_path / "x.db")  # made where there is room, copied onto a small disk then filled
    cli = f"{shlex.quote(sys.executable)} -m agentscale.cli.app"
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {disk} && cp {tmp_path}/x.db {disk}/x.db && "
        f"{{ dd if=/dev/zero of={disk}/fill bs=4k >/dev/null 2>&1; {cli} runs list --db {disk}/x.db; }}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "cannot be opened: the disk holding it is full" in said, done.stderr


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_database_on_a_pseudo_filesystem_is_not_said_to_be_on_a_full_disk(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """/proc reports no size at all (total 0, free 0): `--db /proc/x.sqlite` read "the disk holding it
    is full ... free some space", advice nothing could follow (the serve-graph walk)."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "1", "--db", "/proc/x.sqlite")
    assert code == 1 and "database /proc/x.sqlite cannot be opened" in err and "full" not in err, err


def test_validate_reads_the_database_it_checks_without_changing_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """validate opened the database as any command would: an empty file became a database of 9
    tables, an earlier release's file gained columns and WAL mode (a store audit)."""
    empty = tmp_path / "empty.db"
    empty.touch()
    graph = tmp_path / "m.yaml"
    graph.write_text("name: m\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\nmemory: {handbook: hb}\n")
    code, out, err = run_cli(capsys, "validate", str(graph), "--db", str(empty))
    assert code == 0 and "no handbook 'hb'" in out + err and empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "m.yaml"]


def test_runs_show_plot_of_a_run_that_is_no_optimization_is_refused(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runs show RUN --plot` on an eval or a run printed the run and drew nothing, without a word."""
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 2?", "--json")
    run_id = json.loads(out)["run_id"]
    code, out, err = run_cli(capsys, "runs", "show", run_id, "--plot")
    assert code == 1 and out == "" and "Traceback" not in err
    assert f"--plot draws an optimization's search; run {run_id} was made by `agentscale run`" in " ".join(err.split())


def test_help_shows_no_type_beside_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Typer labels flags "<bool>", which reads as a value to pass (`--retry-errors true`); values keep their types."""
    for path, _ in _commands(typer.main.get_command(app)):
        code, out, _ = run_cli(capsys, *path, "--help")
        assert code == 0 and "<bool>" not in out, path
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert re.search(r"--retry-errors\s+With --resume", out) and re.search(r"--n\s+<int range>", out)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["draw", "report", "handbook export"])
def test_a_full_stdout_is_one_line_for_the_commands_that_print_a_path_or_an_export(
    tmp_path: Path, command: str
) -> None:
    """draw and report printed their file's path, and handbook export its JSON, past the console's
    writers: a full disk under stdout was a traceback (a mutation audit of cli/ found it)."""
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nmodels: {m: {model: sim/llama-1b}}\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "h.db")}
    cli = [sys.executable, "-m", "agentscale.cli.app"]
    if command == "draw":
        words = ["draw", str(graph), "-o", str(tmp_path / "g.svg")]
    elif command == "report":
        ran = subprocess.run(
            [*cli, "run", str(graph), "-q", "What is 1 + 1?", "--json"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        words = ["report", json.loads(ran.stdout)["run_id"], "-o", str(tmp_path / "r.html")]
    else:
        export = tmp_path / "e.json"
        behavior = {"name": "check_units", "instruction": "Check the units of every quantity before adding them."}
        export.write_text(
            json.dumps({"format": "agentscale-handbook", "version": 1, "handbook": "m", "behaviors": [behavior]})
        )
        subprocess.run([*cli, "handbook", "import", str(export)], env=env, check=True, capture_output=True, timeout=120)
        words = ["handbook", "export", "m"]
    with open("/dev/full", "w") as full:
        done = subprocess.run([*cli, *words], stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.endswith("error: cannot write to stdout: No space left on device\n")


def test_run_input_answers_at_most_concurrency_questions_at_once(
    tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --input --concurrency 1` answers one question at a time (mutant R2: the flag was ignored and
    the default of 4 used, which no test saw)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "c.db"))
    graph = tmp_path / "one.yaml"
    graph.write_text(graph_yaml(scripted.api_base, "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"))
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"question": f"What is {i} + 1?"}) for i in range(4)))
    scripted.latency_s = 0.2
    code, out, _ = run_cli(capsys, "run", str(graph), "--input", str(questions), "--concurrency", "1")
    assert code == 0 and len(out.splitlines()) == 4
    assert scripted.peak_concurrency == 1


def test_a_db_path_of_blanks_is_refused_naming_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--db " "` (a variable holding a blank) is refused as `--db ""` is (mutant O1: only the empty
    string was refused; a blank made a database file named " " in the working directory)."""
    code = main(["runs", "list", "--db", " "])
    err = capsys.readouterr().err
    assert code == 2 and "an empty path names no database file" in " ".join(err.split())
    assert not Path(" ").exists()


@pytest.mark.parametrize(
    ("key", "said"),
    [
        # would serve with an empty bearer key (mutant O4: only an unset variable was refused)
        ("", "--api-key-env AGENTSCALE_TEST_KEY: the variable is not set or empty"),
        # a secret file's newline, or a key not in ASCII: the server started and answered every request
        # 401 without a hint, as no client can send it in an Authorization header
        ("sk-nl\n", "the key holds whitespace (a newline read from a secret file?)"),
        (" sk-spaced", "the key holds whitespace (a newline read from a secret file?)"),
        ("clé-ü", "the key holds whitespace (a newline read from a secret file?)"),
    ],
    ids=["empty", "newline", "space", "not ascii"],
)
def test_an_api_key_no_client_can_send_is_refused(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: str, said: str
) -> None:
    import socket

    monkeypatch.setenv("AGENTSCALE_TEST_KEY", key)
    with socket.socket() as taken:  # were the key let through, the command fails here instead of serving on
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        code, _, err = run_cli(
            capsys, "serve-graph", str(env / "g.yaml"), "--port", port, "--api-key-env", "AGENTSCALE_TEST_KEY"
        )
    assert code == 1 and said in " ".join(err.split())
    assert not key.strip() or key.strip() not in err


def test_a_key_given_for_its_variable_is_refused_without_echoing_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "serve-graph", str(env / "g.yaml"), "--api-key-env", "sk-proj-REALKEY123")
    assert code == 1 and "takes the name of an environment variable that holds the key" in " ".join(err.split())
    assert "REALKEY123" not in err


def test_eval_prints_its_interval_as_its_json_gives_it(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The human summary's `95% CI [low, high]` is the JSON's ci95 in that order (mutant E7: printed
    high first, "[100.0%, 51.0%]", and no test read the human interval)."""
    data = env / "d.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(4))
    )
    code, out, _ = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json")
    assert code == 0
    result = json.loads(out)
    low, high = result["ci95"]
    assert low < high
    code, out, _ = run_cli(capsys, "eval", "--resume", result["run_id"])
    flat = " ".join(out.split())
    assert code == 0 and f"(4/4), 95% CI [{low:.1%}, {high:.1%}]" in flat
    # and its calls as paid, then the cache hits (mutant E10 printed the calls twice: "calls 8 (+8 cache hits)")
    usage = result["usage"]
    assert usage["calls"] != usage["cached_calls"]
    assert f"calls {usage['calls']} (+{usage['cached_calls']} cache hits)" in flat


def test_an_eval_with_failed_calls_suggests_a_resume_that_asks_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ask the 1 item with failed calls again: agentscale eval --resume RUN --retry-errors --db DB`
    (mutant E8: the hint lost --retry-errors, and the plain resume it named keeps the failures)."""
    graph, data = _three_sums(tmp_path, monkeypatch, scripted)
    scripted.add_rule(Rule(pattern="What is 0 ", status=400))
    code, out, err = run_cli(capsys, "eval", str(graph), "--task", str(data), "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = run_cli(capsys, "eval", "--resume", run_id)
    flat = " ".join(out.split())
    assert (
        code == 0
        and f"ask the 1 item with failed calls again: agentscale eval --resume {run_id} --retry-errors" in flat
    )
    # `runs show` says it too, whichever items it shows (it said the score alone: a new user's walk)
    code, out, err = run_cli(capsys, "runs", "show", run_id, "--limit", "1")
    flat = " ".join(out.split())
    assert code == 0 and "1 of 3 items did not finish and were scored as they ended; first: " in flat
    assert f"ask the 1 item with failed calls again: agentscale eval --resume {run_id} --retry-errors" in flat


def test_runs_list_shows_the_20_newest_by_default_and_limit_changes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runs list` shows 20 runs unless --limit says otherwise, newest first (mutant U1: a default of
    10 passed every test, which hold a run or two)."""
    from agentscale.storage.db import Store

    database = tmp_path / "l.db"
    store = Store(database)
    made = [store.create_run("run", graph_name=f"g{i}", claim=False).id for i in range(22)]
    code, out, _ = run_cli(capsys, "runs", "list", "--json", "--db", str(database))
    listed = [run["run_id"] for run in json.loads(out)]
    assert code == 0 and len(listed) == 20 and set(listed) <= set(made)
    code, out, _ = run_cli(capsys, "runs", "list", "--json", "--limit", "21", "--db", str(database))
    assert code == 0 and len(json.loads(out)) == 21


def test_runs_show_wrong_also_picks_a_right_item_with_a_failed_call(
    env: Path, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--wrong` is "scored wrong or with a failed call" (its help): an item answered right although one
    of its calls failed is shown (mutant U3: only items scored wrong were; the existing test's wrong
    items had no failed call)."""
    data = env / "d.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(3))
    )
    scripted.add_rule(Rule(pattern=r"What is 2 \+", status=400, times=1))  # one of i2's two assistants
    code, out, err = run_cli(capsys, "eval", str(env / "g.yaml"), "--task", str(data), "--json")
    result = json.loads(out)
    assert code == 0 and result["correct"] == 3, err
    code, out, _ = run_cli(capsys, "runs", "show", result["run_id"], "--wrong", "--json")
    shown = json.loads(out)
    assert code == 0 and [item["item"] for item in shown["items"]] == ["i2"]
    assert [call["status"] for call in shown["calls"]].count("failed") == 1


def test_the_trace_environment_variable_is_the_flags_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AGENTSCALE_TRACE sets --trace for every command (its help says so): an exporter it names that
    cannot work is refused before a run exists, as the flag's is (mutant A1: the variable was ignored and
    no test set it)."""
    from agentscale.storage.db import Store

    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
    monkeypatch.setenv("AGENTSCALE_TRACE", "zipkin")
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nmodels: {m: {model: sim/llama-1b}}\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2")
    assert code == 1 and "AGENTSCALE_TRACE=zipkin: unknown trace exporter 'zipkin'" in " ".join(err.split())
    assert not (tmp_path / "t.db").exists() or Store(tmp_path / "t.db").list_runs() == []
    code, _, err = run_cli(capsys, "eval", str(graph), "--task", "sim:math", "--n", "2", "--trace", "off")
    assert code == 0, err  # the flag given wins over the variable


def test_run_says_its_calls_and_cache_hits_apart(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The usage line under a run's trace: `calls N (+M cached)` as the JSON's usage counts them (mutant
    K1 printed the calls for both; the existing test reads only the FLOPs and USD of that line)."""
    code, out, _ = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 2?", "--json", "--no-cache")
    usage = json.loads(out)["usage"]
    assert code == 0 and usage["calls"] == 2 and usage["cached_calls"] == 0
    code, _, err = run_cli(capsys, "run", str(env / "g.yaml"), "-q", "What is 1 + 2?", "--no-cache")
    assert code == 0 and "calls 2 (+0 cached) · tokens" in " ".join(err.split())


def test_eight_bit_control_characters_of_stored_text_are_written_out() -> None:
    """`\\x9b` is CSI on terminals that take 8-bit controls (`\\x9b2J` clears the screen) and DEL is no
    text: written out as ESC is (mutant N1 kept only C0 controls; the existing test stores ESC alone)."""
    from agentscale.cli._console import short, terminal_safe

    assert terminal_safe("a\x9b2Jb\x7fc\x85d") == "a\\x9b2Jb\\x7fc\\x85d"
    assert short("x\x9b2J") == "x\\x9b2J"
    assert terminal_safe("tab\tand\nnewline") == "tab\tand\nnewline"


def test_a_run_the_budget_stopped_after_an_answer_says_it_stopped_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A question answered before the budget cut the rest of the graph prints its answer (exit 0) and
    `stopped early: <why>` on stderr (mutant R9 dropped that line: the answer then read as the whole
    graph's; the existing tests read it only when there was no answer)."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "b.db"))
    graph = tmp_path / "g.yaml"
    graph.write_text(
        graph_yaml(
            scripted.api_base,
            "name: capped\ndefaults: {max_tokens: 100, temperature: 0}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
            "  - {id: b, role: critic, model: m}\nedges: ['a -> b']\nbudget: {max_tokens: 250}\n",
        )
    )
    code, out, _ = run_cli(capsys, "run", str(graph), "-q", "What is 1 + 2?", "--json")
    result = json.loads(out)
    assert code == 0 and result["answer"] is not None and result["stopped_reason"]
    code, out, err = run_cli(capsys, "run", str(graph), "-q", "What is 1 + 2?")
    assert code == 0 and out.strip() == result["answer"]
    assert f"stopped early: {' '.join(result['stopped_reason'].split())}" in " ".join(err.split())
