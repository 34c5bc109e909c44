"""What every learner shares (frozen heads, fine-tuning, pretraining, the baselines):
which windows may be read, the learning-rate schedule, when an epoch is better, a head
built from the settings, the spread over seeds and the metrics.json of a trained head.
One definition each, so the learners cannot drift apart; what depends on the task (loss,
weights, the validation measure, metrics) is the task's (`learning.tasks`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..inputs.splits import LabelledSplits
from ..settings import HeadSettings
from .heads import HeadConfig, build_head
from .tasks import Task


def usable_windows(n_fraction: np.ndarray, max_n_fraction: float, tokens: np.ndarray | None = None) -> np.ndarray:
    """Per window: whether a learner reads it. Few enough N (`heads.max_n_fraction`), and,
    where the encoder's token counts are known, at least one sequence token (a window
    shorter than k has none). The baselines read bases, not tokens: for them the N
    threshold alone decides."""
    usable = np.asarray(n_fraction) <= max_n_fraction
    return usable if tokens is None else usable & (np.asarray(tokens) > 0)


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Learning rates rising linearly over the first `warmup_fraction` of the steps, then
    falling linearly to 0 at `total_steps` (fine-tuning and pretraining)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def better(score: tuple, best: tuple | None) -> bool:
    """Whether an epoch's validation score beats the best so far (by more than rounding)."""
    if best is None:
        return True
    for now, was in zip(score, best):
        if abs(now - was) > 1e-6:
            return now > was
    return False


def seed_spread(sets: LabelledSplits, runs: list[tuple], seeds: list[int]) -> dict:
    """The spread of every val and test metric over models trained from several seeds on the
    same splits (per seed: its task, its val and its test predictions): mean, standard
    deviation, min, max and each seed's value, so a difference between models can be told
    from noise."""
    spread = {"seeds": seeds}
    for index, name in enumerate(("val", "test")):
        rows = sets.rows(name)
        if not len(rows):
            continue
        per_seed = [task.metrics(sets.y[rows], run[index], sets.names) for task, *run in runs]
        spread[name] = {}
        for key in runs[0][0].spread_metrics:
            values = [m.get(key) for m in per_seed]
            if any(v is None for v in values):
                continue
            spread[name][key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                                 "min": float(min(values)), "max": float(max(values)), "values": values}
    return spread


def new_head(kind: str, settings: HeadSettings, names: list[str], embed_dim: int,
             training_vectors: np.ndarray, strands: str, encoder: dict | None = None,
             task: Task | None = None) -> torch.nn.Module:
    """A head of `kind` shaped by the settings, one output per name (class, target or label)
    of `task` (classification by default), its input normaliser set from the training
    windows' vectors (n_windows, embed_dim); `strands`: how the vectors were embedded (an
    order-aware head reads both window orders when `both`, so its result does not depend on
    the strand); `encoder`: the embedding space it reads (flat, `EmbeddingSpace.as_dict`)."""
    config = HeadConfig(kind=kind, class_names=names, embed_dim=embed_dim, pooling=settings.pooling,
                        d_model=settings.d_model, layers=settings.layers, attention_heads=settings.attention_heads,
                        dropout=settings.dropout, attention_block=settings.attention_block, encoder=encoder or {},
                        both_orders=kind == "hierarchical" and strands == "both",
                        task=task.config() if task else {})
    head = build_head(config)
    head.normalise.mean.copy_(torch.from_numpy(training_vectors.mean(0)))
    head.normalise.std.copy_(torch.from_numpy(training_vectors.std(0) + 1e-6))
    return head


def head_metrics(head: str, pooling: str, sets: LabelledSplits, task: Task, val_pred: np.ndarray,
                 test_pred: np.ndarray, best_epoch: int, history: list[dict], **extra) -> dict:
    """The metrics.json of a trained head: its task (where not classification), outputs,
    splits, validation and test metrics, training history, and what was left out (notes)."""
    val_rows, test_rows = sets.rows("val"), sets.rows("test")
    names = sets.names
    warnings = task.warnings({"val": val_pred, "test": test_pred},
                             {"val": sets.y[val_rows], "test": sets.y[test_rows]}, names)
    metrics = {
        "head": head,
        "pooling": pooling,
        **({} if task.name == "classification" else {"task": task.config()}),
        sets.kind.names_key: names,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "sequences": sets.counts(),
        "validation_source": sets.validation_source,
        "val": task.metrics(sets.y[val_rows], val_pred, names),
        "test": task.metrics(sets.y[test_rows], test_pred, names),
        "history": history,
        **extra,
    }
    if sets.notes:
        metrics["notes"] = sets.notes
    if warnings:
        metrics["warnings"] = warnings
    if len(test_rows) == 0:
        metrics["test_note"] = "no sequence is in the test split: test metrics are empty"
    return metrics
