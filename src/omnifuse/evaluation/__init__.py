"""Evaluation of a trained run: per-task metrics, ``metrics.json``, ``report.md`` and plots.

Example:
    >>> from omnifuse.evaluation import EvalOptions, evaluate
    >>> report = evaluate("runs/shapes", split="val", options=EvalOptions(max_samples=200))
"""

from omnifuse.evaluation.evaluator import evaluate, find_metrics_csv, write_plots
from omnifuse.evaluation.results import EvalOptions, Example, TaskResult
from omnifuse.evaluation.scoring import TaskEval, evaluate_task

__all__ = [
    "EvalOptions",
    "Example",
    "TaskEval",
    "TaskResult",
    "evaluate",
    "evaluate_task",
    "find_metrics_csv",
    "write_plots",
]
