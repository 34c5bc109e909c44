"""Who trains, who validates, who is tested: one assignment that every learner of a
run (frozen heads, fine-tuning, the k-mer and GC baselines) shares, so their scores
compare on exactly the same sequences.

Splits come from the input's split column; when no sequence is marked `val` a
seeded, stratified validation cut is taken from `train`, keeping every class in
train. Classes are the labels of the training sequences; a val/test sequence of a
class never trained on is left out of the metrics, and said so in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from .labels import SPLITS


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


@dataclass
class LabelledSplits:
    """Classes, per-sequence class ids (-1: none) and splits (None: not used), plus notes
    on what was left out (written into metrics.json and the log)."""

    class_names: list[str]
    y: np.ndarray  # (n_sequences,) int64
    split: np.ndarray  # (n_sequences,) object: train / val / test / None
    validation_source: str
    notes: list[str] = field(default_factory=list)

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.split == name)) for name in SPLITS}


def check_training_classes(train_classes: list[str], other_classes: list[str], where: object) -> list[str]:
    """What can be known from the labels alone, before any job (the DAG): at least two
    classes to train on. Returns notes (a class only in val/test) for the run's log."""
    if len(train_classes) < 2:
        raise InputError(
            f"the training split holds {len(train_classes)} class(es) ({', '.join(train_classes) or 'none'}); "
            "a classifier needs at least two", path=where,
            fix="label sequences of at least two classes as train (a labelled sequence without a split is train)")
    only_elsewhere = sorted(set(other_classes) - set(train_classes))
    if only_elsewhere:
        return [f"class(es) {', '.join(only_elsewhere)} occur only in val/test: no head can predict them, and "
                "their sequences are left out of the metrics"]
    return []


def label_sequences(regions: pd.DataFrame, usable: np.ndarray, val_fraction: float, seed: int,
                    where: object) -> LabelledSplits:
    """The run's splits over sequences that have something to learn from (`usable`)."""
    labels = regions["label"].to_numpy()
    labelled = regions["label"].notna().to_numpy()
    if not labelled.any():
        raise InputError(
            "no sequence has a label, so nothing can be trained", path=where,
            fix="give labels (BED label column, or input.labels for a FASTA), or set "
                "classify.pretrained_head to annotate with a trained head")
    split = assign_splits(regions, labelled, val_fraction, seed)
    notes = []
    dropped = labelled & ~usable
    if dropped.any():
        notes.append(f"{int(dropped.sum())} labelled sequence(s) have no usable window (all windows above the N "
                     "threshold, or shorter than one token) and are left out")
    split[~usable] = None
    train = split == "train"
    class_names = sorted(set(labels[train]))
    check_training_classes(class_names, [], where)  # usable sequences may hold fewer classes than the labels
    class_id = {name: i for i, name in enumerate(class_names)}
    y = np.array([class_id.get(label, -1) for label in labels], dtype=np.int64)
    unseen = (y < 0) & np.isin(split, ["val", "test"])
    if unseen.any():
        names = sorted(set(labels[unseen]))
        notes.append(f"{int(unseen.sum())} val/test sequence(s) have label(s) absent from train "
                     f"({', '.join(names)}) and are left out of the metrics")
        split[unseen] = None
    given_val = np.any(regions["split"].to_numpy() == "val")
    source = "split column" if given_val else f"stratified {val_fraction:.0%} of train (seed {seed})"
    return LabelledSplits(class_names, y, split, source, notes)
