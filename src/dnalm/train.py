"""Stage 4: train a head on frozen window embeddings and report its metrics.

The data (`data.WindowSets`), the splits (`splits`) and the metrics (`metrics`)
live in their own modules, shared with fine-tuning and classification; this
module is the training loop only. Early stopping watches the validation loss;
classes are weighted by inverse frequency. One optimisation step takes
`batch_size` sequences, fed in micro-batches of at most `data.WINDOW_BUDGET`
windows whose gradients add up to exactly the full batch's.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from .data import WindowSets
from .extract import read_regions
from .heads import HeadConfig, build_head, predict_proba, save_head
from .io import write_json_atomic
from .metrics import classification_metrics
from .settings import TrainSettings
from .splits import label_sequences

__all__ = ["TrainSettings", "class_weights", "encoder_identity", "train_head", "warmup_linear_decay", "weighted_loss",
           "write_metrics"]


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


def encoder_identity(provenance: dict) -> dict:
    """The encoder identity recorded in embeddings' provenance (what a head is tied to)."""
    from dataclasses import fields

    from .encoders import EncoderIdentity

    return {f.name: provenance.get(f.name) for f in fields(EncoderIdentity)}


def _loss(head, data: WindowSets, rows, y_all, weights) -> float:
    head.eval()
    total_weight = float(weights[torch.from_numpy(y_all[rows])].sum()) if len(rows) else 1.0
    total = 0.0
    with torch.inference_mode():
        for batch in data.batches(rows):
            total += float(weighted_loss(head(*data.batch(batch)), torch.from_numpy(y_all[batch]), weights,
                                         total_weight))
    return total


def train_head(embedding_paths: list[str], regions_path: str, kind: str, settings: TrainSettings,
               out_dir: str, labels_path: str | None = None) -> dict:
    settings.check()
    torch.manual_seed(settings.seed)
    regions = read_regions(regions_path, labels_path)
    data = WindowSets.from_files(embedding_paths, settings.pooling, settings.max_n_fraction)
    if not np.array_equal(data.seq_index, np.arange(len(regions))):  # rows are regions rows from here on
        raise RuntimeError("the embeddings do not cover every sequence of the regions table: re-run the workflow")
    sets = label_sequences(regions, data.has_usable(), settings.val_fraction, settings.seed,
                           labels_path or regions_path)
    for note in sets.notes:
        print(f"warning: {note}", file=sys.stderr)
    train_rows, val_rows, test_rows = sets.rows("train"), sets.rows("val"), sets.rows("test")
    y_all = sets.y

    config = HeadConfig(kind=kind, class_names=sets.class_names, embed_dim=data.embed_dim, pooling=settings.pooling,
                        d_model=settings.d_model, layers=settings.layers, attention_heads=settings.attention_heads,
                        dropout=settings.dropout, attention_block=settings.attention_block,
                        encoder=encoder_identity(data.provenance))
    head = build_head(config)
    train_windows = data.matrix[data.window_rows(train_rows)]
    head.normalise.mean.copy_(torch.from_numpy(train_windows.mean(0)))
    head.normalise.std.copy_(torch.from_numpy(train_windows.std(0) + 1e-6))

    weights = class_weights(y_all[train_rows], len(sets.class_names), settings.class_weights)
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    monitor = val_rows if len(val_rows) else train_rows
    best = (float("inf"), 0, copy.deepcopy(head.state_dict()))
    history = []
    for epoch in range(1, settings.epochs + 1):
        head.train()
        order = rng.permutation(train_rows)
        total = 0.0
        for lo in range(0, len(order), settings.batch_size):
            rows = order[lo : lo + settings.batch_size]
            step_weight = float(weights[torch.from_numpy(y_all[rows])].sum())
            optimiser.zero_grad()
            for batch in data.batches(rows):
                loss = weighted_loss(head(*data.batch(batch)), torch.from_numpy(y_all[batch]), weights, step_weight)
                loss.backward()
                total += loss.item() * len(rows)
            optimiser.step()
        val_loss = _loss(head, data, monitor, y_all, weights)
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_loss": val_loss})
        if val_loss < best[0] - 1e-6:
            best = (val_loss, epoch, copy.deepcopy(head.state_dict()))
        elif epoch - best[1] >= settings.patience:
            break
    head.load_state_dict(best[2])
    print(f"{kind}: best epoch {best[1]} of {len(history)}, val loss {best[0]:.4f}", file=sys.stderr)

    metrics = {
        "head": kind,
        "pooling": settings.pooling,
        "class_names": sets.class_names,
        "best_epoch": best[1],
        "epochs_run": len(history),
        "sequences": sets.counts(),
        "validation_source": sets.validation_source,
        "val": classification_metrics(y_all[val_rows], predict_proba(head, data, val_rows), sets.class_names),
        "test": classification_metrics(y_all[test_rows], predict_proba(head, data, test_rows), sets.class_names),
        "history": history,
    }
    if sets.notes:
        metrics["notes"] = sets.notes
    if len(test_rows) == 0:
        metrics["test_note"] = "no sequence is in the test split: test metrics are empty"
    save_head(head, out_dir)
    return metrics


def write_metrics(metrics: dict, path: str) -> None:
    write_json_atomic(path, metrics)
