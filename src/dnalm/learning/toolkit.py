"""What every learner shares (frozen heads, fine-tuning, pretraining, the baselines):
which windows may be read, class weights, the loss, the learning-rate schedule, a head
built from the settings, and the metrics.json of a trained head. One definition each, so
the learners cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch

from ..inputs.splits import LabelledSplits
from ..settings import HeadSettings
from .heads import HeadConfig, build_head
from .metrics import classification_metrics


def usable_windows(n_fraction: np.ndarray, max_n_fraction: float, tokens: np.ndarray | None = None) -> np.ndarray:
    """Per window: whether a learner reads it. Few enough N (`heads.max_n_fraction`), and,
    where the encoder's token counts are known, at least one sequence token (a window
    shorter than k has none). The baselines read bases, not tokens: for them the N
    threshold alone decides."""
    usable = np.asarray(n_fraction) <= max_n_fraction
    return usable if tokens is None else usable & (np.asarray(tokens) > 0)


def class_weights(y_train: np.ndarray, n_classes: int, balanced: bool) -> torch.Tensor:
    """Inverse-frequency class weights (ones when not balanced)."""
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weights = counts.sum() / (n_classes * counts) if balanced else np.ones_like(counts)
    return torch.from_numpy(weights)


def weighted_loss(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, total_weight: float) -> torch.Tensor:
    """Class-weighted cross-entropy summed over these rows and divided by the whole step's
    weight: micro-batches of one step add up to the step's weighted mean."""
    nll = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return (nll * weights[y]).sum() / total_weight


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Learning rates rising linearly over the first `warmup_fraction` of the steps, then
    falling linearly to 0 at `total_steps` (fine-tuning and pretraining)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def new_head(kind: str, settings: HeadSettings, class_names: list[str], embed_dim: int,
             training_vectors: np.ndarray, strands: str, encoder: dict | None = None) -> torch.nn.Module:
    """A head of `kind` shaped by the settings, its input normaliser set from the training
    windows' vectors (n_windows, embed_dim); `strands`: how the vectors were embedded (an
    order-aware head reads both window orders when `both`, so its result does not depend on
    the strand); `encoder`: the embedding space it reads (flat, `EmbeddingSpace.as_dict`)."""
    config = HeadConfig(kind=kind, class_names=class_names, embed_dim=embed_dim, pooling=settings.pooling,
                        d_model=settings.d_model, layers=settings.layers, attention_heads=settings.attention_heads,
                        dropout=settings.dropout, attention_block=settings.attention_block, encoder=encoder or {},
                        both_orders=kind == "hierarchical" and strands == "both")
    head = build_head(config)
    head.normalise.mean.copy_(torch.from_numpy(training_vectors.mean(0)))
    head.normalise.std.copy_(torch.from_numpy(training_vectors.std(0) + 1e-6))
    return head


def head_metrics(head: str, pooling: str, sets: LabelledSplits, val_proba: np.ndarray, test_proba: np.ndarray,
                 best_epoch: int, history: list[dict], **extra) -> dict:
    """The metrics.json of a trained head: its splits, validation and test metrics, training
    history, and what was left out (notes)."""
    val_rows, test_rows = sets.rows("val"), sets.rows("test")
    names = sets.class_names
    metrics = {
        "head": head,
        "pooling": pooling,
        "class_names": names,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "sequences": sets.counts(),
        "validation_source": sets.validation_source,
        "val": classification_metrics(sets.y[val_rows], val_proba, names),
        "test": classification_metrics(sets.y[test_rows], test_proba, names),
        "history": history,
        **extra,
    }
    if sets.notes:
        metrics["notes"] = sets.notes
    if len(test_rows) == 0:
        metrics["test_note"] = "no sequence is in the test split: test metrics are empty"
    return metrics
