"""Classification: one class per sequence. Softmax over the classes, class-weighted
cross-entropy, the kept epoch by validation MCC (a model predicting one class scores 0),
accuracy, macro-F1, MCC and AUROC; the baselines are logistic regressions."""

from __future__ import annotations

import numpy as np
import torch

from .base import Task

C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, MCC and AUROC (one-vs-rest macro for several classes)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        roc_auc_score,
    )

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


class Classification(Task):
    name = "classification"
    spread_metrics = ("accuracy", "macro_f1", "mcc", "auroc")
    spread_shown = ("accuracy", "mcc")
    measure = ("mcc", "MCC")
    choice = ("mcc", "MCC")
    column_prefix = "prob_"
    baseline_suffix = "_logreg"
    baseline_method = "logistic regression"

    def weights(self, y_train: np.ndarray, n_outputs: int, balanced: bool) -> torch.Tensor:
        """Inverse-frequency class weights (ones when not balanced)."""
        counts = np.bincount(y_train, minlength=n_outputs).astype(np.float32)
        weights = counts.sum() / (n_outputs * counts) if balanced else np.ones_like(counts)
        return torch.from_numpy(weights)

    def step_weight(self, y: torch.Tensor, weights: torch.Tensor) -> float:
        return float(weights[y].sum())

    def loss(self, logits, y, weights, total_weight):
        """Class-weighted cross-entropy summed over these rows and divided by the whole step's
        weight: micro-batches of one step add up to the step's weighted mean."""
        nll = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        return (nll * weights[y]).sum() / total_weight

    def outputs(self, logits):
        return torch.softmax(logits, dim=-1)

    def validation(self, pred, y, weights, select_by):
        """`loss`: the class-weighted negative log-likelihood; `mcc`: Matthews correlation of
        the predicted classes, 0 for a model predicting one class whatever its probabilities,
        so (select_by mcc, ties to the lower loss) such a model is never kept over one that
        separates the classes."""
        from sklearn.metrics import matthews_corrcoef

        if len(y) == 0:
            return {"loss": float("nan"), "mcc": float("nan"), "accuracy": float("nan")}, (-np.inf,)
        w = weights[y]
        loss = float(-(w * np.log(np.clip(pred[np.arange(len(y)), y], 1e-12, None))).sum() / w.sum())
        calls = pred.argmax(1)
        measured = {"loss": loss, "accuracy": float((calls == y).mean()), "mcc": float(matthews_corrcoef(y, calls))}
        return measured, ((measured["mcc"], -loss) if select_by == "mcc" else (-loss,))

    def config(self) -> dict:
        return {}

    def metrics(self, y, pred, names):
        return classification_metrics(y, pred, names)

    def warnings(self, pred_by_split, y_by_split, names):
        """A warning for each split where the kept model predicts one class for every sequence
        although the split holds several: a constant predictor, whatever its accuracy."""
        warnings = []
        for name, proba in pred_by_split.items():
            y = y_by_split[name]
            if len(y) and len(np.unique(y)) > 1 and len(np.unique(proba.argmax(1))) == 1:
                warnings.append(f"the kept model predicts {names[int(proba.argmax(1)[0])]!r} for every one of the "
                                f"{len(y)} {name} sequences, which hold {len(np.unique(y))} classes: it separates "
                                "nothing there")
        return warnings

    def summary_line(self, name, test):
        auroc = test.get("auroc")
        return (f"{name}, test split (n={test['n']}): accuracy {test['accuracy']:.3f}  macro-F1 "
                f"{test['macro_f1']:.3f}  MCC {test['mcc']:.3f}  AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}")

    def fit_linear(self, feature_sets, y, train, val, test, names):
        """Standardised logistic regression on one of `feature_sets` (name -> features), the set
        and C chosen together by validation accuracy (then log loss): with the k-mer features
        among the sets, a model of more features is kept only where validation says it adds
        something."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def model(c):
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced"))

        chosen, choice, best = next(iter(feature_sets)), C_GRID[0], None
        if len(val):
            for name, features in feature_sets.items():
                for c in C_GRID:
                    fitted = model(c).fit(features[train], y[train])
                    proba = fitted.predict_proba(features[val])
                    score = ((proba.argmax(1) == y[val]).mean(), -log_loss(y[val], proba, labels=range(len(names))))
                    if best is None or score > best:
                        chosen, choice, best = name, c, score
        features = feature_sets[chosen]
        fitted = model(choice).fit(features[train], y[train])

        def scores(rows):
            proba = fitted.predict_proba(features[rows]) if len(rows) else np.zeros((0, len(names)))
            return classification_metrics(y[rows], proba, names)

        result = {"C": choice, "val": scores(val), "test": scores(test)}
        return (result if len(feature_sets) == 1 else {"features": chosen, **result}), fitted

    def columns(self, pred, names):
        """pred_label (the most probable class; None: no call) and prob_<class>."""
        called = ~np.isnan(pred).any(axis=1)
        calls = np.array([None] * len(pred), dtype=object)
        calls[called] = np.asarray(names, dtype=object)[pred[called].argmax(1)]
        return {"pred_label": calls, **{f"prob_{name}": pred[:, i] for i, name in enumerate(names)}}
