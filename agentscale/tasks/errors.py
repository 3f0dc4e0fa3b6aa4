"""The one exception the task layer raises for user-facing problems."""

from __future__ import annotations

from agentscale.errors import AgentScaleError


class TaskError(AgentScaleError):
    """A task could not be loaded, split or scored because of the user's input.

    The message is meant for the CLI to print as-is (no traceback): it names the file and line,
    the bad option, or lists the valid choices.
    """


class TaskOptionError(TaskError):
    """The task exists but refuses one of its options (unknown, or a value it cannot take): a
    search space's `task.options`, not its `task.name`, is then what to fix."""


class TaskScorerError(TaskError):
    """The scorer named for a task is unknown or reads another answer format than the task's: a
    search space's `task.scorer` is then what to fix."""


MAX_GENERATED = 100_000  # items a generated task makes on request: a huge `size` hung the process


def check_generated_size(task: str, size: object) -> None:
    """A generator's `size` option: a positive integer it can make in reasonable time."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GENERATED:
        raise TaskOptionError(f"task {task!r}: size must be an integer from 1 to {MAX_GENERATED:,}, got {size!r}")
