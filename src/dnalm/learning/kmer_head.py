"""The k-mer baseline as a head: what `classify` annotates with when no language model is
wanted (a CPU-only run), or beside the model's heads to compare their calls.

The baselines rule fits a standardised linear model of the task on each sequence's k-mer
frequencies (`learning.baselines`, the regularisation chosen on validation). Its weights
are exported here from scikit-learn into plain arrays, saved as safetensors with a
head.json beside them (never a pickle), and applied with numpy:

    z = ((x - mean) / scale) @ coef.T + intercept      x: (sequences, 4^k) frequencies
    outputs = softmax(z) | sigmoid(z) | z              classes | labels | values (the task's link)

A binary logistic regression (one row of weights in scikit-learn) is written as two rows,
the first zero, so that softmax gives exactly its [1 - p, p].

head.json says `"features": "kmer"`, which is how a classify run tells this head from one
that reads embeddings (`is_kmer_head`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_path, write_json_atomic

KMER_HEAD = "kmer{k}"  # its name under baselines/ and classify/
CONFIG_FILE = "head.json"
WEIGHTS_FILE = "head.safetensors"
LINKS = {"classification": "softmax", "multilabel": "sigmoid", "regression": "identity"}
CLIP = 30.0  # the logit of a label scikit-learn saw only one value of in training


@dataclass
class KmerHead:
    kind: str  # the baseline's key, e.g. kmer6_logreg
    k: int
    class_names: list[str]  # classes, targets or labels
    task: dict  # the task's name and state (thresholds of labels), as a head.json's
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    coef: np.ndarray  # (outputs, features)
    intercept: np.ndarray  # (outputs,)
    features: str = "kmer"
    metrics: dict = field(default_factory=dict)  # its val and test metrics, for the record

    @property
    def link(self) -> str:
        return LINKS[self.task.get("name", "classification")]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(sequences, 4^k) k-mer frequencies -> (sequences, outputs) probabilities or values."""
        z = ((x.astype(np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.link == "softmax":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        if self.link == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        return z

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.ascontiguousarray(getattr(self, name), dtype=np.float64)
                  for name in ("mean", "scale", "coef", "intercept")}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(arrays, str(tmp), metadata={"format": "np"})  # one key: byte-identical reruns
        write_json_atomic(folder / CONFIG_FILE, {
            "kind": self.kind, "features": self.features, "k": self.k, "class_names": list(self.class_names),
            "task": self.task, "metrics": self.metrics})

    @classmethod
    def load(cls, folder: str | Path) -> "KmerHead":
        from safetensors.numpy import load_file

        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).exists():
                raise InputError(f"k-mer head is missing {name}", path=folder,
                                 fix="point classify.pretrained_head at a results/baselines/kmer<k>_<model> folder "
                                     "written by the baselines rule")
        config = json.loads((folder / CONFIG_FILE).read_text())
        arrays = load_file(str(folder / WEIGHTS_FILE))
        head = cls(config["kind"], int(config["k"]), list(config["class_names"]), dict(config.get("task") or {}),
                   **arrays, features=config.get("features", "kmer"), metrics=config.get("metrics", {}))
        head.check(folder)
        return head

    def check(self, where: object) -> None:
        n_features = 4**self.k
        shapes = {"mean": (n_features,), "scale": (n_features,), "coef": (self.n_classes, n_features),
                  "intercept": (self.n_classes,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise InputError(f"{name} has shape {getattr(self, name).shape}, not {shape} as k={self.k} and "
                                 f"{self.n_classes} outputs require", path=where,
                                 fix="write the head again with the baselines rule (it was changed or truncated)")


def is_kmer_head(config: dict) -> bool:
    """Whether a head.json is a k-mer head's (it reads bases, not embeddings)."""
    return config.get("features") == "kmer"


def from_pipeline(pipeline, kind: str, k: int, class_names: list[str], task: dict) -> KmerHead:
    """The KmerHead of a fitted scikit-learn pipeline StandardScaler -> LogisticRegression,
    Ridge or OneVsRestClassifier(LogisticRegression)."""
    scaler, model = pipeline[0], pipeline[-1]
    if hasattr(model, "estimators_"):  # one-vs-rest: a binary model per label
        rows = [_binary_row(estimator, scaler.mean_.shape[0]) for estimator in model.estimators_]
        coef = np.stack([row[0] for row in rows])
        intercept = np.array([row[1] for row in rows])
    else:
        coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
        if task.get("name", "classification") == "classification" and len(coef) == 1:  # binary: [0, w]
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
    head = KmerHead(kind, k, list(class_names), task, np.asarray(scaler.mean_, dtype=np.float64),
                    np.asarray(scaler.scale_, dtype=np.float64), coef, intercept)
    head.check(kind)
    return head


def _binary_row(estimator, n_features: int) -> tuple[np.ndarray, float]:
    """(weights, intercept) of one label's binary model; a label with one value in
    training (scikit-learn's constant predictor) gets a fixed, large logit."""
    if hasattr(estimator, "coef_"):
        return np.asarray(estimator.coef_, dtype=np.float64).reshape(-1), float(np.ravel(estimator.intercept_)[0])
    positive = float(np.ravel(estimator.predict_proba(np.zeros((1, n_features))))[-1]) > 0.5
    return np.zeros(n_features), CLIP if positive else -CLIP
