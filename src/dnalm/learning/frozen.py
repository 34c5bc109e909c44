"""Training a head on frozen window vectors (rule train_head), and its metrics.

The data (`windowsets.WindowSets`), the splits (`inputs.splits`) and what learners share
(`toolkit`: loss, class weights, the head from the settings, metrics.json) live apart;
this module is the training loop only. Early stopping watches the validation loss;
classes are weighted by inverse frequency. One optimisation step takes `batch_size`
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
from .heads import predict_proba, save_head
from .toolkit import class_weights, head_metrics, new_head, weighted_loss
from .windowsets import WindowSets


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

    space = EmbeddingSpace.from_dict(data.provenance)
    head = new_head(kind, settings, sets.class_names, data.embed_dim, data.matrix[data.window_rows(train_rows)],
                    space.strands, encoder=space.located().as_dict())

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

    metrics = head_metrics(kind, settings.pooling, sets, predict_proba(head, data, val_rows),
                           predict_proba(head, data, test_rows), best[1], history)
    save_head(head, out_dir)
    return metrics
