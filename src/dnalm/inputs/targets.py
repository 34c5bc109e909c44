"""What a label says, by `heads.task`: a class (classification), one or more numbers
(regression), or a set of labels (multilabel). One reading of the label cell for the DAG's
checks, the splits and every learner (heads, fine-tuning, baselines), so they cannot
disagree on what a sequence's target is.

Each kind turns the label strings of the labelled sequences into
    names  the head's outputs: classes, target names or labels (from the training split)
    y      classification (n,) int64, -1 where unknown; regression (n, targets) float32,
           NaN where unknown; multilabel (n, labels) float32 0/1, NaN where unknown
and says which validation/test sequences can be scored (`scoreable`) and which strata the
validation cut balances (`strata`). No torch here: the DAG reads it.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

SEPARATOR = ";"  # between the numbers of several targets, or the labels of a set
NO_LABEL = "-"  # a multilabel cell for "none of the labels" (an empty cell means unlabelled)


class Classes:
    """One class per sequence: the label as written."""

    name = "classification"
    names_key = "class_names"  # what metrics.json and head.json call the outputs

    def __init__(self, targets: tuple[str, ...] = ()):
        pass

    def check(self, train_labels: list[str], other_labels: list[str], where: object) -> list[str]:
        """Before any job: at least two classes to train on; a note for classes only in val/test."""
        if len(train_labels) < 2:
            raise InputError(
                f"the training split holds {len(train_labels)} class(es) ({', '.join(train_labels) or 'none'}); "
                "a classifier needs at least two", path=where,
                fix="label sequences of at least two classes as train (a labelled sequence without a split is "
                    "train)")
        only_elsewhere = sorted(set(other_labels) - set(train_labels))
        if only_elsewhere:
            return [f"class(es) {', '.join(only_elsewhere)} occur only in val/test: no head can predict them, and "
                    "their sequences are left out of the metrics"]
        return []

    def names(self, train_labels: np.ndarray, where: object) -> list[str]:
        names = sorted(set(train_labels))
        self.check(names, [], where)
        return names

    def encode(self, labels: np.ndarray, names: list[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(names)}
        return np.array([index.get(label, -1) for label in labels], dtype=np.int64)

    def scoreable(self, y: np.ndarray) -> np.ndarray:
        return y >= 0

    def unscoreable_note(self, labels: np.ndarray, count: int) -> str:
        return (f"{count} val/test sequence(s) have label(s) absent from train ({', '.join(sorted(set(labels)))}) "
                "and are left out of the metrics")

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(labels, dtype=str)


class Values:
    """One or more numbers per sequence (`;`-separated), named by `heads.targets`."""

    name = "regression"
    names_key = "targets"

    def __init__(self, targets: tuple[str, ...] = ()):
        self.targets = tuple(targets)

    def parse(self, cell: str, where: object) -> tuple[float, ...]:
        parts = cell.split(SEPARATOR)
        try:
            values = tuple(float(part) for part in parts)
        except ValueError:
            raise InputError(f"the label {cell!r} is not a number (or {SEPARATOR}-separated numbers), which "
                             "heads.task regression needs", path=where,
                             fix="write each sequence's target as a number (several targets separated by "
                                 f"{SEPARATOR!r}), or set heads.task to classification for class labels") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"the label {cell!r} is not a finite number", path=where,
                             fix="leave the label empty for a sequence whose value is unknown (it is then "
                                 "classified, not trained)")
        return values

    def _width(self, labels, where: object) -> int:
        widths = {len(self.parse(label, where)) for label in labels}
        if len(widths) > 1:
            raise InputError(f"labels hold different numbers of targets ({', '.join(map(str, sorted(widths)))})",
                             path=where, fix=f"give every labelled sequence the same number of {SEPARATOR}-separated "
                                             "values, one per target")
        width = widths.pop() if widths else len(self.targets) or 1
        if self.targets and width != len(self.targets):
            raise InputError(f"heads.targets names {len(self.targets)} target(s) ({', '.join(self.targets)}) but "
                             f"the labels hold {width} value(s) each", path=where,
                             fix="name one target per value in heads.targets, or leave it empty")
        return width

    def check(self, train_labels: list[str], other_labels: list[str], where: object) -> list[str]:
        self._width(list(train_labels) + list(other_labels), where)
        if len(train_labels) < 2:
            raise InputError(f"the training split holds {len(train_labels)} distinct value(s); a regression needs "
                             "sequences with different values to learn from", path=where,
                             fix="label more sequences as train (a labelled sequence without a split is train)")
        return []

    def names(self, train_labels: np.ndarray, where: object) -> list[str]:
        width = self._width(train_labels, where)
        if self.targets:
            return list(self.targets)
        return ["value"] if width == 1 else [f"value_{i + 1}" for i in range(width)]

    def encode(self, labels: np.ndarray, names: list[str]) -> np.ndarray:
        y = np.full((len(labels), len(names)), np.nan, dtype=np.float32)
        for i, label in enumerate(labels):
            if isinstance(label, str):
                y[i] = self.parse(label, "the labels")
        return y

    def scoreable(self, y: np.ndarray) -> np.ndarray:
        return ~np.isnan(y).any(axis=1)

    def unscoreable_note(self, labels: np.ndarray, count: int) -> str:
        return f"{count} val/test sequence(s) have no value and are left out of the metrics"

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """Quartiles of the first target: the validation cut takes low and high values alike."""
        first = np.array([self.parse(label, "the labels")[0] for label in labels], dtype=np.float64)
        if len(first) == 0:
            return np.zeros(0, dtype=str)
        edges = np.quantile(first, [0.25, 0.5, 0.75])
        return np.searchsorted(edges, first, side="right").astype(str)


class LabelSets:
    """Any number of labels per sequence (`;`-separated; `-` for none of them)."""

    name = "multilabel"
    names_key = "labels"

    def __init__(self, targets: tuple[str, ...] = ()):
        pass

    @staticmethod
    def parse(cell: str) -> frozenset[str]:
        if cell.strip() == NO_LABEL:
            return frozenset()
        return frozenset(part.strip() for part in cell.split(SEPARATOR) if part.strip())

    def check(self, train_labels: list[str], other_labels: list[str], where: object) -> list[str]:
        """Before any job: training sequences that differ in their labels; a note for labels only
        in val/test."""
        sets = {self.parse(cell) for cell in train_labels}
        seen = sorted(set().union(*sets))
        if len(sets) < 2:
            raise InputError(f"every training sequence carries the same labels ({', '.join(seen) or 'none'}): "
                             "there is nothing to learn", path=where,
                             fix=f"label sequences that differ in their labels, {SEPARATOR}-separated "
                                 f"({NO_LABEL!r} for a sequence with none)")
        other = sorted(set().union(*(self.parse(cell) for cell in other_labels)) - set(seen))
        if other:
            return [f"label(s) {', '.join(other)} occur only in val/test: no head can predict them, and they are "
                    "left out of the metrics"]
        return []

    def names(self, train_labels: np.ndarray, where: object) -> list[str]:
        self.check(list(set(train_labels)), [], where)
        return sorted(set().union(*(self.parse(cell) for cell in train_labels)))

    def encode(self, labels: np.ndarray, names: list[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(names)}
        y = np.full((len(labels), len(names)), np.nan, dtype=np.float32)
        for i, label in enumerate(labels):
            if isinstance(label, str):
                y[i] = 0
                for name in self.parse(label):
                    if name in index:
                        y[i, index[name]] = 1
        return y

    def scoreable(self, y: np.ndarray) -> np.ndarray:
        return ~np.isnan(y).any(axis=1)

    def unscoreable_note(self, labels: np.ndarray, count: int) -> str:
        return f"{count} val/test sequence(s) have no labels and are left out of the metrics"

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """The label set as written in order: the validation cut takes each combination alike."""
        return np.array([SEPARATOR.join(sorted(self.parse(label))) for label in labels], dtype=str)


TARGET_KINDS = {kind.name: kind for kind in (Classes, Values, LabelSets)}


def target_kind(task: str, targets: tuple[str, ...] = ()):
    """The reading of labels for `heads.task` (classification | regression | multilabel)."""
    if task not in TARGET_KINDS:
        raise InputError(f"heads.task is {task!r}", fix=f"use one of {', '.join(TARGET_KINDS)}")
    return TARGET_KINDS[task](tuple(targets))
