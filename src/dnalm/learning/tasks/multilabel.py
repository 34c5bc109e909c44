"""Multi-label: any number of labels per sequence. One sigmoid per label, binary
cross-entropy with per-label positive weights (negatives / positives of the training
split, when heads.training.class_weights), the kept epoch by validation macro AUPRC
(a constant predictor scores each label's prevalence). After training, each label's
threshold is the one of best F1 on validation (its `state`, saved in head.json); test
F1 is read at those thresholds. Metrics per label: AUROC, AUPRC, F1; macro and micro
averages; the baselines are one-vs-rest logistic regressions."""

from __future__ import annotations

import numpy as np
import torch

from .base import Task
from .classification import C_GRID

# Rare labels of thousands of k-mer features want more regularisation than single classes:
# the grid reaches two decades further down than classification's.
C_GRID_LABELS = (1e-6, 1e-5) + C_GRID

NO_LABEL = "-"  # the prediction of no label (as the labels write it, `inputs.targets`)


def best_thresholds(y: np.ndarray, proba: np.ndarray) -> list[float]:
    """Per label, the probability threshold of best F1 on (y, proba); 0.5 where y holds no
    positive or no negative."""
    from sklearn.metrics import precision_recall_curve

    thresholds = []
    for i in range(y.shape[1]):
        truth = y[:, i] > 0.5
        if truth.all() or not truth.any():
            thresholds.append(0.5)
            continue
        precision, recall, cuts = precision_recall_curve(truth, proba[:, i])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        thresholds.append(float(cuts[int(np.argmax(f1[:-1]))]))
    return thresholds


def multilabel_metrics(y: np.ndarray, proba: np.ndarray, names: list[str], thresholds: list[float]) -> dict:
    """n; per label its positives, AUROC, AUPRC, threshold and F1 there; their macro means
    (over labels with positives and negatives in the split), micro-F1 and the share of
    sequences whose whole label set is right."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    if len(y) == 0:
        return {"n": 0}
    truth = y > 0.5
    calls = proba >= np.asarray(thresholds)[None, :]
    per_label = {}
    for i, name in enumerate(names):
        both = truth[:, i].any() and not truth[:, i].all()
        per_label[name] = {
            "positives": int(truth[:, i].sum()),
            "auroc": float(roc_auc_score(truth[:, i], proba[:, i])) if both else None,
            "auprc": float(average_precision_score(truth[:, i], proba[:, i])) if both else None,
            "threshold": float(thresholds[i]),
            "f1": float(f1_score(truth[:, i], calls[:, i], zero_division=0)),
        }

    def macro(key):
        values = [m[key] for m in per_label.values() if m[key] is not None]
        return float(np.mean(values)) if values else None

    return {"n": int(len(y)), "macro_auroc": macro("auroc"), "macro_auprc": macro("auprc"),
            "macro_f1": macro("f1"),
            "micro_f1": float(f1_score(truth, calls, average="micro", zero_division=0)),
            "exact_match": float((calls == truth).all(axis=1).mean()), "per_label": per_label}


class Multilabel(Task):
    name = "multilabel"
    spread_metrics = ("macro_auprc", "macro_auroc", "micro_f1", "macro_f1")
    spread_shown = ("macro_auprc", "micro_f1")
    measure = ("auprc", "macro AUPRC")
    choice = ("macro_auprc", "macro AUPRC")
    column_prefix = "prob_"
    baseline_suffix = "_logreg"
    baseline_method = "one-vs-rest logistic regression"

    def _thresholds(self, n: int) -> list[float]:
        return self.state.get("thresholds") or [0.5] * n

    def weights(self, y_train, n_outputs, balanced):
        """Per label: negatives / positives of the training split (ones when not balanced)."""
        positives = np.nansum(y_train, axis=0)
        negatives = len(y_train) - positives
        weights = negatives / np.maximum(positives, 1) if balanced else np.ones(n_outputs)
        return torch.from_numpy(np.asarray(weights, dtype=np.float32))

    def _per_row(self, logits, y, weights):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none",
                                                                    pos_weight=weights.to(logits.dtype))
        return loss.mean(dim=1)  # (rows,): the mean over labels

    def loss(self, logits, y, weights, total_weight):
        return self._per_row(logits, y, weights).sum() / total_weight

    def outputs(self, logits):
        return torch.sigmoid(logits)

    def validation(self, pred, y, weights, select_by):
        if len(y) == 0:
            return {"loss": float("nan"), "auprc": float("nan")}, (-np.inf,)
        logits = torch.logit(torch.from_numpy(np.clip(pred, 1e-7, 1 - 1e-7).astype(np.float32)))
        loss = float(self._per_row(logits, torch.from_numpy(y.astype(np.float32)), torch.from_numpy(weights)).mean())
        auprc = multilabel_metrics(y, pred, [str(i) for i in range(y.shape[1])],
                                   self._thresholds(y.shape[1]))["macro_auprc"]
        measured = {"loss": loss, "auprc": auprc}
        return measured, ((auprc if auprc is not None else -np.inf, -loss) if select_by == "auprc" else (-loss,))

    def finish(self, val_pred, y_val):
        """Each label's threshold: the one of best F1 on validation."""
        self.state = {"thresholds": best_thresholds(y_val, val_pred) if len(y_val) else [0.5] * y_val.shape[1]}

    def metrics(self, y, pred, names):
        return multilabel_metrics(y, pred, names, self._thresholds(len(names)))

    def warnings(self, pred_by_split, y_by_split, names):
        """A warning for each split where the kept model calls the same labels for every
        sequence although their labels differ: a constant predictor."""
        warnings = []
        thresholds = np.asarray(self._thresholds(len(names)))[None, :]
        for split, pred in pred_by_split.items():
            y = y_by_split[split]
            calls = pred >= thresholds
            if len(y) > 1 and len(np.unique(y > 0.5, axis=0)) > 1 and len(np.unique(calls, axis=0)) == 1:
                called = [name for name, on in zip(names, calls[0]) if on]
                warnings.append(f"the kept model calls the same labels ({', '.join(called) or 'none'}) for every one "
                                f"of the {len(y)} {split} sequences, whose labels differ: it separates nothing there")
        return warnings

    def summary_line(self, name, test):
        def show(key):
            return "n/a" if test.get(key) is None else f"{test[key]:.3f}"

        return (f"{name}, test split (n={test['n']}, {len(test['per_label'])} labels): macro AUROC "
                f"{show('macro_auroc')}  macro AUPRC {show('macro_auprc')}  micro-F1 {show('micro_f1')}  macro-F1 "
                f"{show('macro_f1')}")

    def fit_linear(self, feature_sets, y, train, val, test, names):
        """One-vs-rest logistic regression (classes balanced per label) on standardised features
        of one of `feature_sets`, the set and C chosen together by validation macro AUPRC; each
        label's threshold then chosen on validation, as the heads' are."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def model(c):
            return make_pipeline(StandardScaler(), OneVsRestClassifier(
                LogisticRegression(C=c, max_iter=5000, class_weight="balanced")))

        labels = (y > 0.5).astype(int)
        chosen, choice, best = next(iter(feature_sets)), C_GRID_LABELS[len(C_GRID_LABELS) // 2], None
        if len(val):
            for name, features in feature_sets.items():
                for c in C_GRID_LABELS:
                    proba = model(c).fit(features[train], labels[train]).predict_proba(features[val])
                    auprc = multilabel_metrics(y[val], proba, names, [0.5] * len(names))["macro_auprc"]
                    score = auprc if auprc is not None else -np.inf
                    if best is None or score > best:
                        chosen, choice, best = name, c, score
        features = feature_sets[chosen]
        fitted = model(choice).fit(features[train], labels[train])

        def proba_of(rows):
            return fitted.predict_proba(features[rows]) if len(rows) else np.zeros((0, len(names)))

        thresholds = best_thresholds(y[val], proba_of(val)) if len(val) else [0.5] * len(names)
        result = {"C": choice, "thresholds": thresholds,
                  "val": multilabel_metrics(y[val], proba_of(val), names, thresholds),
                  "test": multilabel_metrics(y[test], proba_of(test), names, thresholds)}
        return (result if len(feature_sets) == 1 else {"features": chosen, **result}), fitted

    def columns(self, pred, names):
        """pred_labels (the labels at or above their thresholds, ';'-separated, '-' for none;
        None: no call) and prob_<label>."""
        called = ~np.isnan(pred).any(axis=1)
        thresholds = np.asarray(self._thresholds(len(names)))
        calls = np.array([None] * len(pred), dtype=object)
        for row in np.flatnonzero(called):
            on = [name for name, p, t in zip(names, pred[row], thresholds) if p >= t]
            calls[row] = ";".join(on) if on else NO_LABEL
        return {"pred_labels": calls, **{f"prob_{name}": pred[:, i] for i, name in enumerate(names)}}
