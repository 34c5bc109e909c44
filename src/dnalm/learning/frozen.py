"""Training a head on frozen window vectors (rule train_head), and its metrics.

The data (`windowsets.WindowSets`), the splits (`inputs.splits`) and what learners share
(`toolkit`: the head from the settings, metrics.json, the spread over seeds) live apart;
this module is the training loop only; the loss, weights and measures are the task's
(`learning.tasks`, by heads.task). The kept epoch is the best by the validation measure
`select_by` (by default the task's: MCC, R² or macro AUPRC, which a constant predictor
cannot win), and training stops `patience` epochs after it, not before `min_epochs`.
One optimisation step takes `batch_size`
sequences, fed in micro-batches of at most `heads.WINDOW_BUDGET` windows whose
gradients add up to exactly the full batch's.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from ..identity import EmbeddingSpace
from ..inputs.regions import read_regions
from ..inputs.splits import label_sequences
from ..settings import TrainSettings
from .heads import predict, save_head
from .tasks import task_for
from .toolkit import better, head_metrics, new_head, seed_spread
from .windowsets import WindowSets


def train_head(embedding_paths: list[str], regions_path: str, kind: str, settings: TrainSettings,
               out_dir: str, labels_path: str | None = None) -> dict:
    """Train a head of `kind` on the frozen vectors (`settings.seeds` times, from seeds seed,
    seed + 1, ...: the first is kept, and metrics.json gets the spread of every metric), save
    it to `out_dir`, return its metrics."""
    settings.check()
    regions = read_regions(regions_path, labels_path)
    data = WindowSets.from_files(embedding_paths, settings.pooling, settings.max_n_fraction)
    if not np.array_equal(data.seq_index, np.arange(len(regions))):  # rows are regions rows from here on
        raise RuntimeError("the embeddings do not cover every sequence of the regions table: re-run the workflow")
    sets = label_sequences(regions, data.has_usable(), settings, labels_path or regions_path)
    for note in sets.notes:
        print(f"warning: {note}", file=sys.stderr)
    val_rows, test_rows = sets.rows("val"), sets.rows("test")
    space = EmbeddingSpace.from_dict(data.provenance)
    runs = []
    for seed in range(settings.seed, settings.seed + settings.seeds):
        torch.manual_seed(seed)
        task = task_for(settings.task, settings)
        task.fit_state(sets.y[sets.rows("train")])
        head = new_head(kind, settings, sets.names, data.embed_dim,
                        data.matrix[data.window_rows(sets.rows("train"))], space.strands,
                        encoder=space.located().as_dict(), task=task)
        best_epoch, history = _fit(head, kind, task, data, sets, settings, seed)
        val_pred = predict(head, data, val_rows)
        task.finish(val_pred, sets.y[val_rows])  # e.g. thresholds chosen on validation
        head.config.task = task.config()
        runs.append((head, task, best_epoch, history, val_pred, predict(head, data, test_rows)))
    head, task, best_epoch, history, val_pred, test_pred = runs[0]
    metrics = head_metrics(kind, settings.pooling, sets, task, val_pred, test_pred, best_epoch, history,
                           selected_by=settings.select_by)
    if settings.seeds > 1:
        metrics["seeds"] = seed_spread(sets, [(run[1], run[4], run[5]) for run in runs],
                                       list(range(settings.seed, settings.seed + settings.seeds)))
    save_head(head, out_dir)
    return metrics


def _fit(head, kind: str, task, data: WindowSets, sets, settings: TrainSettings, seed: int) -> tuple[int, list[dict]]:
    """Train `head` (in place, left at its kept epoch); (kept epoch, history)."""
    train_rows, val_rows = sets.rows("train"), sets.rows("val")
    y_all = sets.y
    weights = task.weights(y_all[train_rows], len(sets.names), settings.class_weights)
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(seed)
    monitor = val_rows if len(val_rows) else train_rows
    measure, shown = task.measure
    best_score, best_epoch, best_state = None, 0, copy.deepcopy(head.state_dict())
    history = []
    for epoch in range(1, settings.epochs + 1):
        head.train()
        order = rng.permutation(train_rows)
        total = 0.0
        for lo in range(0, len(order), settings.batch_size):
            rows = order[lo : lo + settings.batch_size]
            step_weight = task.step_weight(torch.from_numpy(y_all[rows]), weights)
            optimiser.zero_grad()
            for batch in data.batches(rows):
                loss = task.loss(head(*data.batch(batch)), torch.from_numpy(y_all[batch]), weights, step_weight)
                loss.backward()
                total += loss.item() * len(rows)
            optimiser.step()
        val, score = task.validation(predict(head, data, monitor), y_all[monitor], weights.numpy(), settings.select_by)
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_loss": val["loss"],
                        f"val_{measure}": val[measure]})
        if better(score, best_score):
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= settings.patience and epoch >= settings.min_epochs:
            break
    head.load_state_dict(best_state)
    kept = history[best_epoch - 1]
    print(f"{kind} (seed {seed}): kept epoch {best_epoch} of {len(history)} (by validation {settings.select_by}): "
          f"val loss {kept['val_loss']:.4f}, {shown} {_shown(kept[f'val_{measure}'])}", file=sys.stderr)
    return best_epoch, history


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
