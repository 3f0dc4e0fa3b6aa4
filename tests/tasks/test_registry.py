"""Task registry: names, prefixes, options, scorer overrides, listing and the plug-in hook."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentscale.tasks import Score, Task, TaskError, TaskInfo, TaskItem, list_tasks, load_task, registry


def test_list_tasks_shows_builtins_with_sizes_and_scorers() -> None:
    rows = {row.name: row for row in list_tasks()}
    assert rows["humaneval"] == TaskInfo("humaneval", 164, "code", "code", rows["humaneval"].description)
    assert (rows["champ"].size, rows["champ"].scorer) == (270, "math")
    for name in ("rg:basic_arithmetic", "rg:gsm_symbolic", "rg:chain_sum"):
        assert rows[name].size == 200 and rows[name].description.startswith("reasoning-gym")


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'mmlu'; valid tasks: champ, humaneval, rg:<name>"):
        load_task("mmlu")
    with pytest.raises(TaskError, match="unknown task 'nope:x'"):
        load_task("nope:x")
    with pytest.raises(TaskError, match="valid names: ab, acre"):
        load_task("rg:not_a_generator")


def test_a_file_in_the_working_directory_does_not_shadow_a_task_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--task champ` with a file `champ` in the working directory loaded that file (a TaskError on its
    first line, or another task's items under the built-in's name); a bare file name that names no
    task is still a task file, and `./champ` names the file."""
    monkeypatch.chdir(tmp_path)
    line = '{"question": "1 + 1?", "answer": "2"}\n'
    for name in ("champ", "rg:chain_sum", "mine"):
        (tmp_path / name).write_text(line)
    assert load_task("champ").size == 270
    assert load_task("rg:chain_sum").name == "rg:chain_sum"
    assert load_task("mine").size == load_task("./champ").size == 1


def test_unknown_options_are_reported() -> None:
    with pytest.raises(TaskError, match=r"does not accept option.*size.*it accepts: timeout_s"):
        load_task("humaneval", size=3)


def test_options_named_like_load_tasks_own_arguments_are_refused_options() -> None:
    """A space's `task.options: {scorer: exact}` (or `stored`, `spec`) was a TypeError traceback."""
    with pytest.raises(TaskError, match=r"does not accept option\(s\) scorer, spec, stored; it accepts"):
        load_task("sim:math", scorer="numeric", options={"scorer": "exact", "stored": True, "spec": "x"})


def test_a_scorer_replaces_a_built_in_tasks_own_only_when_it_reads_the_same_answers() -> None:
    """`eval --task sim:math --scorer choice` scored 0% (every prompt asked for a letter) and `exact`
    60% against the task's own 20%: another answer format changed the prompts, not only the scoring."""
    task = load_task("rg:chain_sum", scorer="numeric", size=3)
    assert (task.scorer_name, task.answer_format) == ("numeric", "number")
    item = task.items[0]
    assert task.score(item.reference, item).correct
    with pytest.raises(TaskError, match=r"answers in 'number' and scorer 'exact' reads 'text'.*or use numeric"):
        load_task("rg:chain_sum", scorer="exact", size=3)


@pytest.fixture
def sim_prefix() -> Iterator[None]:
    def load_sim(name: str, *, size: int = 4) -> Task:
        items = tuple(TaskItem(id=f"{name}-{i}", question=f"{i}?", reference=str(i)) for i in range(size))
        return Task(f"sim:{name}", "simulated", "number", lambda a, it: Score(a == it.reference), "sim", items)

    real = registry._prefixed.get("sim")  # the simulator's own registration, if an earlier test loaded it
    registry.register_prefix("sim", load_sim, lambda: [TaskInfo("sim:math", 4, "sim", "number", "simulated")])
    yield
    registry._prefixed.pop("sim")
    if real is not None:  # later tests in this process still load the real sim: tasks
        registry._prefixed["sim"] = real


def test_other_modules_can_register_a_prefix(sim_prefix: None) -> None:
    task = load_task("sim:math", size=2)
    assert task.name == "sim:math" and task.size == 2
    assert any(row.name == "sim:math" for row in list_tasks())
    with pytest.raises(TaskError, match=r"valid tasks: champ, humaneval, rg:<name>, sim:<name>"):
        load_task("unknown")


def test_register_validates_names() -> None:
    with pytest.raises(ValueError):
        registry.register_task("a:b", lambda: None, TaskInfo("a:b", 0, "", "text", ""))  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError):
        registry.register_prefix("", lambda name: None)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("seed", [None, True, 1.5])
def test_a_reasoning_gym_seed_must_be_an_integer(seed: object) -> None:
    """`--task-option seed=` (None) drew new questions at every load under the same ids, so a resume
    kept verdicts of other questions; `config=x` raised a TypeError traceback."""
    with pytest.raises(TaskError, match="seed must be an integer"):
        load_task("rg:chain_sum", options={"seed": seed, "size": 3})
    with pytest.raises(TaskError, match="config must be a mapping"):
        load_task("rg:chain_sum", options={"config": "x", "size": 3})
