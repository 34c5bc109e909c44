"""Stage 4: train a head on frozen window embeddings and report test metrics.

Splits come from the regions' split column; when no sequence is marked `val`
a seeded, stratified validation cut is taken from `train`. Early stopping
watches the validation loss; classes are weighted by inverse frequency.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

from .embed import read_embeddings
from .errors import InputError
from .extract import read_regions
from .heads import HeadConfig, build_head, save_head
from .io import write_json_atomic


@dataclass(frozen=True)
class TrainSettings:
    pooling: str = "mean"  # as the workflow's default (config heads.pooling)
    max_n_fraction: float = 0.5
    d_model: int = 128
    layers: int = 2
    attention_heads: int = 4
    dropout: float = 0.1
    epochs: int = 100
    patience: int = 10
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    val_fraction: float = 0.15
    class_weights: bool = True
    seed: int = 0


class WindowSets:
    """Window vectors of a run of whole sequences, addressable by row.

    Row i is the sequence with regions index seq_index[i]; its windows are
    matrix[offsets[i] : offsets[i] + counts[i]], in window order.

    matrix:    (n_windows, embed_dim) float32
    seq_index: (n_rows,) regions-table index of each row
    offsets, counts: (n_rows,)
    positions: (n_windows,) window start / stride (fractional for a right-anchored tail)
    usable:    (n_windows,) bool, False for windows with too many N or no sequence token
               (e.g. shorter than k)
    """

    def __init__(self, keys: pa.Table, matrix: np.ndarray, provenance: dict, max_n_fraction: float):
        window_seq = keys.column("seq_index").to_numpy()
        if window_seq.size and np.any(np.diff(window_seq) < 0):
            raise RuntimeError("embedding shards are not in sequence order")
        self.matrix, self.provenance = matrix, provenance
        self.seq_index, self.offsets, counts = np.unique(window_seq, return_index=True, return_counts=True)
        self.counts = counts.astype(np.int64)
        stride = float(provenance.get("window_stride", 1))
        self.positions = keys.column("start").to_numpy().astype(np.float32) / stride
        # Usable: few enough N, and at least one sequence token (a window shorter than k has none).
        self.has_tokens = keys.column("tokens").to_numpy() > 0
        self.usable = (keys.column("n_fraction").to_numpy() <= max_n_fraction) & self.has_tokens
        self.embed_dim = matrix.shape[1]

    @classmethod
    def from_files(cls, embedding_paths: list[str], pooling: str, max_n_fraction: float) -> "WindowSets":
        keys, matrix, provenance = read_embeddings(embedding_paths, pooling)
        return cls(keys, matrix, provenance, max_n_fraction)

    def _any(self, per_window: np.ndarray) -> np.ndarray:
        counts = np.add.reduceat(per_window.astype(np.int64), self.offsets) if per_window.size \
            else np.zeros_like(self.counts)
        return (self.counts > 0) & (counts > 0)

    def has_usable(self) -> np.ndarray:
        """Per sequence: at least one window below the N threshold with a sequence token."""
        return self._any(self.usable)

    def has_tokens_any(self) -> np.ndarray:
        """Per sequence: at least one window with a sequence token at all."""
        return self._any(self.has_tokens)

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded (batch, max_windows, dim) vectors, (batch, max_windows) positions and mask."""
        counts = self.counts[rows]
        width = int(counts.max())
        slot = np.arange(width)
        valid = slot[None, :] < counts[:, None]  # (batch, width)
        index = np.where(valid, self.offsets[rows][:, None] + slot[None, :], 0)
        windows = self.matrix[index] * valid[..., None]
        mask = valid & self.usable[index]
        return (torch.from_numpy(windows), torch.from_numpy(self.positions[index] * valid),
                torch.from_numpy(mask))


@contextlib.contextmanager
def _attention_by_sdpa():
    """Inference through SDPA rather than the native multi-head-attention fast path, which on
    the CPU materialises every attention matrix and runs a slow masked softmax: SDPA is about
    2x faster for sequences of hundreds of windows (benchmarks/bench.py, classification row)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def predict_proba(head: nn.Module, data: WindowSets, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (len(rows), classes); rows must have usable windows.

    Sequences go through the head sorted by window count, so a batch pads little
    (outputs do not depend on padding); the result is in the order of `rows`.
    """
    head.eval()
    order = np.argsort(data.counts[rows], kind="stable")
    out = np.zeros((len(rows), head.config.n_classes), dtype=np.float32)
    with torch.inference_mode(), _attention_by_sdpa():
        for lo in range(0, len(rows), batch_size):
            windows, positions, mask = data.batch(rows[order[lo : lo + batch_size]])
            out[order[lo : lo + batch_size]] = torch.softmax(head(windows, positions, mask), dim=-1).numpy()
    return out


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, MCC and AUROC (one-vs-rest macro for several classes)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, matthews_corrcoef, roc_auc_score

    if len(y_true) == 0:
        return {"n": 0}
    y_pred = proba.argmax(1)
    labels = np.arange(len(class_names))
    result = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    present = np.unique(y_true)
    if len(present) < 2:
        result["auroc"] = None
        result["auroc_note"] = "undefined: the split holds one class only"
    elif len(class_names) == 2:
        result["auroc"] = float(roc_auc_score(y_true, proba[:, 1]))
    elif len(present) == len(class_names):
        result["auroc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
    else:
        result["auroc"] = None
        result["auroc_note"] = "undefined: not every class occurs in the split"
    return result


def assign_splits(regions: pd.DataFrame, labelled: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Split per sequence; a stratified, seeded validation cut from train if none is given."""
    split = regions["split"].fillna("train").to_numpy(dtype=object, copy=True)
    split[~labelled] = None
    if not np.any(split == "val"):
        train_rows = np.flatnonzero(split == "train")
        labels = regions["label"].to_numpy()[train_rows]
        rng = np.random.default_rng(seed)
        for cls in sorted(set(labels)):
            members = train_rows[labels == cls]
            n_val = int(round(len(members) * val_fraction))
            if len(members) >= 2 and n_val == 0 and val_fraction > 0:
                n_val = 1
            n_val = min(n_val, len(members) - 1)  # keep each class in train
            if n_val > 0:
                split[rng.permutation(members)[:n_val]] = "val"
    return split


def train_head(embedding_paths: list[str], regions_path: str, kind: str, settings: TrainSettings,
               out_dir: str, labels_path: str | None = None) -> dict:
    torch.manual_seed(settings.seed)
    regions = read_regions(regions_path, labels_path)
    labels_source = labels_path or regions_path  # named in messages
    data = WindowSets.from_files(embedding_paths, settings.pooling, settings.max_n_fraction)
    if not np.array_equal(data.seq_index, np.arange(len(regions))):  # rows are regions rows from here on
        raise RuntimeError("the embeddings do not cover every sequence of the regions table: re-run the workflow")
    labelled = regions["label"].notna().to_numpy()
    if not labelled.any():
        raise InputError(
            "no sequence has a label, so no head can be trained", path=labels_source,
            fix="give labels (BED label column, or input.labels for a FASTA), or set "
                "classify.pretrained_head to annotate with a trained head")
    split = assign_splits(regions, labelled, settings.val_fraction, settings.seed)
    usable = data.has_usable()
    dropped = labelled & ~usable
    if dropped.any():
        tokenless = dropped & ~data.has_tokens_any()
        if tokenless.any():
            print(f"warning: {tokenless.sum()} labelled sequence(s) give the encoder no sequence token at all "
                  f"(shorter than its tokens, e.g. k bases for k-mers) and are left out", file=sys.stderr)
        if (dropped & ~tokenless).any():
            print(f"warning: {(dropped & ~tokenless).sum()} labelled sequence(s) have no window with N fraction <= "
                  f"{settings.max_n_fraction} and are left out", file=sys.stderr)
    split[~usable] = None
    train_rows = np.flatnonzero(split == "train")
    class_names = sorted(set(regions["label"].to_numpy()[train_rows]))
    if len(class_names) < 2:
        raise InputError(
            f"the training split holds {len(class_names)} class(es) ({', '.join(class_names) or 'none'}); "
            "a classifier needs at least two", path=labels_source,
            fix="label sequences of at least two classes as train")
    class_id = {name: i for i, name in enumerate(class_names)}
    y_all = np.array([class_id.get(lbl, -1) for lbl in regions["label"].to_numpy()], dtype=np.int64)
    unseen = (y_all < 0) & np.isin(split, ["val", "test"])
    if unseen.any():
        names = sorted(set(regions["label"].to_numpy()[unseen]))
        print(f"warning: {unseen.sum()} val/test sequence(s) have label(s) absent from train "
              f"({', '.join(names)}) and are left out of the metrics", file=sys.stderr)
        split[unseen] = None
    val_rows, test_rows = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")

    config = HeadConfig(kind=kind, class_names=class_names, embed_dim=data.embed_dim, pooling=settings.pooling,
                        d_model=settings.d_model, layers=settings.layers, attention_heads=settings.attention_heads,
                        dropout=settings.dropout, encoder=_encoder_identity(data.provenance))
    head = build_head(config)
    train_windows = data.matrix[_window_rows(data, train_rows)]
    head.normalise.mean.copy_(torch.from_numpy(train_windows.mean(0)))
    head.normalise.std.copy_(torch.from_numpy(train_windows.std(0) + 1e-6))

    counts = np.bincount(y_all[train_rows], minlength=len(class_names)).astype(np.float32)
    weights = counts.sum() / (len(class_names) * counts) if settings.class_weights else np.ones_like(counts)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
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
            windows, positions, mask = data.batch(rows)
            loss = loss_fn(head(windows, positions, mask), torch.from_numpy(y_all[rows]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        val_loss = _loss(head, data, monitor, y_all, loss_fn)
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
        "class_names": class_names,
        "best_epoch": best[1],
        "epochs_run": len(history),
        "sequences": {name: int(np.sum(split == name)) for name in ("train", "val", "test")},
        "validation_source": "split column" if np.any(regions["split"].to_numpy() == "val") else
        f"stratified {settings.val_fraction:.0%} of train (seed {settings.seed})",
        "val": classification_metrics(y_all[val_rows], predict_proba(head, data, val_rows), class_names),
        "test": classification_metrics(y_all[test_rows], predict_proba(head, data, test_rows), class_names),
        "history": history,
    }
    if len(test_rows) == 0:
        metrics["test_note"] = "no sequence is in the test split: test metrics are empty"
    save_head(head, out_dir)
    return metrics


def _encoder_identity(provenance: dict) -> dict:
    from dataclasses import fields

    from .encoders import EncoderIdentity

    return {f.name: provenance.get(f.name) for f in fields(EncoderIdentity)}


def _window_rows(data: WindowSets, rows: np.ndarray) -> np.ndarray:
    """Matrix rows of the usable windows of these sequences."""
    idx = np.concatenate([np.arange(data.offsets[r], data.offsets[r] + data.counts[r]) for r in rows])
    return idx[data.usable[idx]]


def _loss(head, data, rows, y_all, loss_fn) -> float:
    head.eval()
    total = 0.0
    with torch.inference_mode():
        for lo in range(0, len(rows), 256):
            batch = rows[lo : lo + 256]
            total += float(loss_fn(head(*data.batch(batch)), torch.from_numpy(y_all[batch]))) * len(batch)
    return total / max(len(rows), 1)


def write_metrics(metrics: dict, path: str) -> None:
    write_json_atomic(path, metrics)
