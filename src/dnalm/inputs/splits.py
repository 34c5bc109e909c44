"""Who trains, who validates, who is tested: one assignment that every learner of a
run (frozen heads, fine-tuning, the k-mer and GC baselines) shares, so their scores
compare on exactly the same sequences.

Splits come from the input's split column; when no sequence is marked `val` a seeded
validation cut is taken from `train`, keeping every class in train. The cut holds out
whole units (`heads.training.val_by`), so validation scores what a held-out test does
when the data has structure: the groups of the group column (genomes, strains,
families), whole contigs, blocks of `val_block` bp of each contig (neighbouring regions
share sequence and features), or single sequences. Units are drawn at random (seeded)
and taken while they bring the classes closer to `val_fraction` of each (classes
balanced where the units allow). Classes are the labels of the training sequences; a
val/test sequence of a class never trained on is left out of the metrics, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..settings import HeadSettings
from .labels import SPLITS
from .targets import Classes, target_kind

VAL_UNITS = {"group": "whole groups of the group column", "contig": "whole contigs",
             "position": "blocks of {block:,} bp of the genome", "random": "single sequences, stratified"}


def validation_units(regions: pd.DataFrame, by: str, block: int) -> tuple[str, np.ndarray]:
    """(what a unit is, the unit of each sequence) for a validation cut `by` (auto resolved)."""
    groups = regions["group"].to_numpy(dtype=object) if "group" in regions else np.full(len(regions), None)
    if by == "auto":
        from_genome = bool(((regions["chrom"] != regions["seq_id"]) | (regions["start"] > 0)).any())
        by = "group" if any(g is not None for g in groups) else ("position" if from_genome else "random")
    index = np.arange(len(regions)).astype(str)
    if by == "group":
        units = np.where(pd.isna(groups), "sequence:" + index, "group:" + groups.astype(str))
    elif by == "contig":
        units = regions["chrom"].to_numpy(dtype=str)
    elif by == "position":
        units = regions["chrom"].to_numpy(dtype=str) + ":" + (regions["start"].to_numpy() // block).astype(str)
    elif by == "random":
        units = index
    else:
        raise InputError(f"heads.training.val_by is {by!r}", fix="use auto, group, contig, position or random")
    return by, units


def assign_splits(regions: pd.DataFrame, labelled: np.ndarray, val_fraction: float, seed: int,
                  by: str = "random", block: int = 100_000, strata=None) -> tuple[np.ndarray, str]:
    """Split per sequence, and how validation was made: from the split column, or a seeded
    cut from train holding out whole units (`validation_units`), balanced over the strata of
    the labels (`strata(labels)`: the classes by default; `inputs.targets` for other tasks)."""
    split = regions["split"].fillna("train").to_numpy(dtype=object, copy=True)
    split[~labelled] = None
    if np.any(split == "val"):
        return split, "split column"
    by, units = validation_units(regions, by, block)
    train_rows = np.flatnonzero(split == "train")
    labels = regions["label"].to_numpy()[train_rows]
    if strata is not None:
        labels = strata(labels)
    rng = np.random.default_rng(seed)
    if by == "random":  # single sequences, stratified: the cut of earlier versions
        for cls in sorted(set(labels)):
            members = train_rows[labels == cls]
            n_val = int(round(len(members) * val_fraction))
            if len(members) >= 2 and n_val == 0 and val_fraction > 0:
                n_val = 1
            n_val = min(n_val, len(members) - 1)  # keep each class in train
            if n_val > 0:
                split[rng.permutation(members)[:n_val]] = "val"
    else:
        split[_whole_units(train_rows, labels, units[train_rows], val_fraction, rng)] = "val"
    if by == "random":
        return split, f"stratified {val_fraction:.0%} of train (seed {seed})"
    return split, f"{val_fraction:.0%} of train in {VAL_UNITS[by].format(block=block)} (seed {seed})"


def _whole_units(rows: np.ndarray, labels: np.ndarray, units: np.ndarray, fraction: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Rows of the units taken for validation: units in a seeded random order, each taken
    while it brings some class nearer its target (fraction of its training sequences) by
    more than it overshoots the others, and leaves every class a training sequence; then,
    for a class still without validation sequences (its units all larger than its target),
    its smallest unit that leaves every class a training sequence."""
    labels = np.asarray(labels, dtype=str)
    classes = np.unique(labels)
    class_of = np.searchsorted(classes, labels)
    names, unit_of = np.unique(units, return_inverse=True)
    counts = np.zeros((len(names), len(classes)), dtype=np.int64)  # sequences per unit and class
    np.add.at(counts, (unit_of, class_of), 1)
    total = counts.sum(0)
    target = np.where(total >= 2, np.maximum(np.round(total * fraction), 1 if fraction > 0 else 0), 0)
    taken = np.zeros(len(classes), dtype=np.int64)
    chosen = np.zeros(len(names), dtype=bool)
    for unit in rng.permutation(len(names)):
        need = np.maximum(target - taken, 0)
        gain = np.minimum(counts[unit], need).sum()
        over = (counts[unit] - np.minimum(counts[unit], need)).sum()
        if gain > 0 and gain >= over and np.all(total - taken - counts[unit] >= 1):
            chosen[unit] = True
            taken += counts[unit]
        if not need.any():
            break
    for cls in np.flatnonzero((taken == 0) & (target > 0)):
        fits = [u for u in np.flatnonzero(counts[:, cls] > 0)
                if not chosen[u] and np.all(total - taken - counts[u] >= np.minimum(total, 1))]
        if fits:
            unit = min(fits, key=lambda u: (counts[u].sum(), u))
            chosen[unit] = True
            taken += counts[unit]
    return rows[chosen[unit_of]]


@dataclass
class LabelledSplits:
    """What the heads learn, per sequence, and the splits (None: not used), plus notes on
    what was left out (written into metrics.json and the log).

    `kind` reads the labels (`inputs.targets`, by `heads.task`); `names` are the head's
    outputs (classes, targets or labels); `y` is `kind`'s encoding: (n_sequences,) int64
    class ids (-1: none) for classification, (n_sequences, outputs) float32 (NaN: none)
    otherwise."""

    names: list[str]
    y: np.ndarray
    split: np.ndarray  # (n_sequences,) object: train / val / test / None
    validation_source: str
    notes: list[str] = field(default_factory=list)
    kind: object = field(default_factory=Classes)

    @property
    def task(self) -> str:
        return self.kind.name

    def rows(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.split == name)) for name in SPLITS}


def check_training_classes(train_classes: list[str], other_classes: list[str], where: object) -> list[str]:
    """Classification's check before any job (`inputs.targets.Classes.check`)."""
    return Classes().check(train_classes, other_classes, where)


def label_sequences(regions: pd.DataFrame, usable: np.ndarray, settings: HeadSettings,
                    where: object) -> LabelledSplits:
    """The run's splits over sequences that have something to learn from (`usable`), and
    their targets as `heads.task` reads the labels."""
    kind = target_kind(settings.task, settings.targets)
    labels = regions["label"].to_numpy()
    labelled = regions["label"].notna().to_numpy()
    if not labelled.any():
        raise InputError(
            "no sequence has a label, so nothing can be trained", path=where,
            fix="give labels (BED label column, or input.labels for a FASTA), or set "
                "classify.pretrained_head to annotate with a trained head")
    split, source = assign_splits(regions, labelled, settings.val_fraction, settings.seed, settings.val_by,
                                  settings.val_block, strata=kind.strata)
    notes = []
    dropped = labelled & ~usable
    if dropped.any():
        notes.append(f"{int(dropped.sum())} labelled sequence(s) have no usable window (all windows above the N "
                     "threshold, or shorter than one token) and are left out")
    split[~usable] = None
    names = kind.names(labels[split == "train"], where)  # usable sequences may hold fewer classes than the labels
    y = kind.encode(labels, names)
    unseen = ~kind.scoreable(y) & np.isin(split, ["val", "test"])
    if unseen.any():
        notes.append(kind.unscoreable_note(labels[unseen], int(unseen.sum())))
        split[unseen] = None
    notes += _groups_across_splits(regions, split)
    return LabelledSplits(names, y, split, source, notes, kind)


def _groups_across_splits(regions: pd.DataFrame, split: np.ndarray) -> list[str]:
    """A note for groups of the group column with sequences in train and in val or test:
    their val/test scores may be optimistic."""
    if "group" not in regions or regions["group"].isna().all():
        return []
    frame = pd.DataFrame({"group": regions["group"], "split": split}).dropna()
    spread = frame.groupby("group")["split"].agg(lambda s: "train" in set(s) and bool(set(s) - {"train"}))
    shared = sorted(spread[spread].index)
    if not shared:
        return []
    return [f"{len(shared)} group(s) of the group column have sequences in train and in val or test (e.g. "
            f"{', '.join(map(repr, shared[:3]))}): their val/test scores may be optimistic (set the split column "
            "by group)"]
