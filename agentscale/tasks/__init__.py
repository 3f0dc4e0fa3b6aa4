"""Datasets and scorers: what a graph is evaluated on and how its answers are judged.

Entry points for the rest of agentscale::

    task = load_task("rg:chain_sum", n=100, seed=0)      # or "humaneval", "champ", "data.jsonl"
    split = task.split(seed=0, train=20, test=50)         # deterministic, disjoint
    score = task.score(extracted_answer, item)            # Score(correct, detail)

``task.answer_format`` ("text" | "number" | "choice" | "code") tells the core which answer
extractor to run on a completion before scoring.
"""

from agentscale.tasks.base import (
    ANSWER_FORMATS,
    AnswerFormat,
    Score,
    Scorer,
    Task,
    TaskInfo,
    TaskItem,
    TaskSplit,
)
from agentscale.tasks.errors import TaskError, TaskOptionError, TaskScorerError
from agentscale.tasks.registry import list_tasks, load_task, register_prefix, register_task
from agentscale.tasks.scorers import SCORERS, get_scorer

__all__ = [
    "ANSWER_FORMATS",
    "SCORERS",
    "AnswerFormat",
    "Score",
    "Scorer",
    "Task",
    "TaskError",
    "TaskInfo",
    "TaskItem",
    "TaskOptionError",
    "TaskScorerError",
    "TaskSplit",
    "get_scorer",
    "list_tasks",
    "load_task",
    "register_prefix",
    "register_task",
]
