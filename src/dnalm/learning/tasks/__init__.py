"""What a head learns, by `heads.task`: one module per task, each a `Task` with the loss,
the head's outputs (probabilities or values), the validation measure, the metrics, the
linear baselines and the prediction columns. Learners (frozen heads, fine-tuning, the
baselines) and the classification jobs ask the task; none branches on it.

A task's `state` is what it learns from the training split beside the weights (the
targets' scale for regression, the thresholds for multilabel): it is saved in head.json
(`HeadConfig.task`) and applied wherever the head predicts.
"""

from __future__ import annotations

from ...errors import InputError
from .base import Task
from .classification import Classification
from .multilabel import Multilabel
from .regression import Regression

TASKS = {task.name: task for task in (Classification, Regression, Multilabel)}


def task_for(name: str, settings=None, state: dict | None = None) -> Task:
    """The task `name` (`heads.task`), with the regression loss of `settings` and a saved `state`."""
    if name not in TASKS:
        raise InputError(f"heads.task is {name!r}", fix=f"use one of {', '.join(TASKS)}")
    return TASKS[name](settings, state)


def task_of_config(saved: dict | None) -> Task:
    """The task of a trained head, from its head.json `task` entry (absent: classification)."""
    saved = dict(saved or {})
    return task_for(saved.pop("name", "classification"), state=saved)
