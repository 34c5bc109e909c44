"""The interface every task implements (`learning.tasks`)."""

from __future__ import annotations

import numpy as np
import torch


class Task:
    name = ""
    # Test metrics whose spread over seeds is reported, and the validation measure that
    # chooses a model across heads and baselines (key in a split's metrics, printed name).
    spread_metrics: tuple[str, ...] = ()
    spread_shown: tuple[str, ...] = ()  # those the run's summary prints
    choice: tuple[str, str] = ("", "")
    # The validation measure of an epoch (`validation`'s key, `heads.training.select_by`), printed name.
    measure: tuple[str, str] = ("", "")
    # How the per-sequence tables and partial shard files name an output: prefix + name.
    column_prefix = "prob_"

    def __init__(self, settings=None, state: dict | None = None):
        self.settings = settings
        self.state = dict(state or {})

    # ---------------------------------------------------------------- training
    def fit_state(self, y_train: np.ndarray) -> None:
        """Learn what the task needs from the training targets before training (in `state`)."""

    def weights(self, y_train: np.ndarray, n_outputs: int, balanced: bool) -> torch.Tensor:
        """Per-output weights of the loss (class weights, positive weights, or ones)."""
        return torch.ones(n_outputs)

    def step_weight(self, y: torch.Tensor, weights: torch.Tensor) -> float:
        """The weight of these rows in a step's loss (micro-batches of a step add up to it)."""
        return float(len(y))

    def loss(self, logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, total_weight: float) -> torch.Tensor:
        raise NotImplementedError

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What the head predicts, from its logits: probabilities or values."""
        raise NotImplementedError

    def validation(self, pred: np.ndarray, y: np.ndarray, weights: np.ndarray, select_by: str) -> tuple[dict, tuple]:
        """({loss, the task's measure...}, a score where higher is better) of one epoch."""
        raise NotImplementedError

    def finish(self, val_pred: np.ndarray, y_val: np.ndarray) -> None:
        """Learn what the task needs from validation after training (multilabel thresholds)."""

    def config(self) -> dict:
        """What head.json records of the task (empty for classification, as before tasks)."""
        return {"name": self.name, **self.state}

    # ----------------------------------------------------------------- scoring
    def metrics(self, y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
        raise NotImplementedError

    def warnings(self, pred_by_split: dict, y_by_split: dict, names: list[str]) -> list[str]:
        return []

    def summary_line(self, name: str, test: dict) -> str:
        raise NotImplementedError

    # --------------------------------------------------------------- baselines
    baseline_suffix = ""  # the baselines' keys: kmer6<suffix>, gc<suffix>, kmer6_lm<suffix>
    baseline_method = ""  # how printed lines name the model

    def fit_linear(self, feature_sets: dict[str, np.ndarray], y: np.ndarray, train, val, test,
                   names: list[str]) -> tuple[dict, object]:
        """A linear model on one of `feature_sets`, the set and regularisation chosen on val:
        (its metrics on val and test with what was chosen, the fitted scikit-learn pipeline)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ tables
    def columns(self, pred: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The per-sequence table's prediction columns (NaN rows: no call)."""
        raise NotImplementedError
