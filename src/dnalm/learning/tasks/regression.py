"""Regression: one or more numbers per sequence (`heads.targets`). The head predicts the
targets standardised by the training split's mean and standard deviation (its `state`,
saved in head.json, turns them back into the user's units); the loss is MSE or Huber
(`heads.regression_loss`, delta one standard deviation); the kept epoch is the one of
best validation R² (a constant predictor scores at most 0). Metrics per target: Pearson,
Spearman, R², MAE and RMSE, and their mean over targets; the baselines are ridge
regressions."""

from __future__ import annotations

import numpy as np
import torch

from .base import Task

ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0)
PER_TARGET = ("r2", "pearson", "spearman", "mae", "rmse")


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """n, the mean over targets of each of PER_TARGET, and each target's own."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    if len(y) == 0:
        return {"n": 0}
    per_target = {}
    for i, name in enumerate(names):
        truth, guess = y[:, i].astype(np.float64), pred[:, i].astype(np.float64)
        varies = len(y) > 1 and np.ptp(truth) > 0 and np.ptp(guess) > 0
        per_target[name] = {
            "r2": float(r2_score(truth, guess)) if len(y) > 1 and np.ptp(truth) > 0 else None,
            "pearson": float(pearsonr(truth, guess).statistic) if varies else None,
            "spearman": float(spearmanr(truth, guess).statistic) if varies else None,
            "mae": float(mean_absolute_error(truth, guess)),
            "rmse": float(np.sqrt(mean_squared_error(truth, guess))),
        }
    result = {"n": int(len(y))}
    for key in PER_TARGET:
        values = [m[key] for m in per_target.values() if m[key] is not None]
        result[key] = float(np.mean(values)) if values else None
    result["per_target"] = per_target
    return result


class Regression(Task):
    name = "regression"
    spread_metrics = ("r2", "pearson", "spearman", "mae")
    spread_shown = ("r2", "pearson")
    measure = ("r2", "R²")
    choice = ("r2", "R²")
    column_prefix = "pred_"
    baseline_suffix = "_ridge"
    baseline_method = "ridge regression"

    def fit_state(self, y_train):
        self.state = {"mean": np.nanmean(y_train, axis=0).astype(float).tolist(),
                      "std": np.maximum(np.nanstd(y_train, axis=0), 1e-8).astype(float).tolist()}

    def _standardised(self, y: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.state["mean"], dtype=y.dtype, device=y.device)
        std = torch.tensor(self.state["std"], dtype=y.dtype, device=y.device)
        return (y - mean) / std

    def _loss_kind(self) -> str:
        return getattr(self.settings, "regression_loss", "mse") or "mse"

    def _per_row(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self._standardised(y.to(logits.dtype))
        if self._loss_kind() == "huber":
            loss = torch.nn.functional.huber_loss(logits, target, reduction="none", delta=1.0)
        else:
            loss = torch.nn.functional.mse_loss(logits, target, reduction="none")
        return loss.mean(dim=1)  # (rows,): the mean over targets

    def loss(self, logits, y, weights, total_weight):
        """The loss of the standardised targets, averaged over targets, summed over these rows
        and divided by the step's rows."""
        return self._per_row(logits, y).sum() / total_weight

    def outputs(self, logits):
        """Values in the user's units: the standardised prediction scaled back."""
        mean = torch.tensor(self.state["mean"], dtype=logits.dtype, device=logits.device)
        std = torch.tensor(self.state["std"], dtype=logits.dtype, device=logits.device)
        return logits * std + mean

    def validation(self, pred, y, weights, select_by):
        if len(y) == 0:
            return {"loss": float("nan"), "r2": float("nan")}, (-np.inf,)
        mean, std = np.asarray(self.state["mean"]), np.asarray(self.state["std"])
        logits = torch.from_numpy(((pred - mean) / std).astype(np.float32))
        loss = float(self._per_row(logits, torch.from_numpy(y.astype(np.float32))).mean())
        measured = {"loss": loss, "r2": regression_metrics(y, pred, [str(i) for i in range(y.shape[1])])["r2"]}
        r2 = measured["r2"] if measured["r2"] is not None else -np.inf
        return measured, ((r2, -loss) if select_by == "r2" else (-loss,))

    def metrics(self, y, pred, names):
        return regression_metrics(y, pred, names)

    def warnings(self, pred_by_split, y_by_split, names):
        """A warning for each split and target where the kept model predicts (nearly) one value
        for every sequence although the values vary: a constant predictor."""
        warnings = []
        for split, pred in pred_by_split.items():
            y = y_by_split[split]
            for i, name in enumerate(names):
                if len(y) > 1 and np.std(y[:, i]) > 0 and np.std(pred[:, i]) < 0.01 * np.std(y[:, i]):
                    warnings.append(f"the kept model predicts nearly the same {name} ({np.mean(pred[:, i]):.4g}) for "
                                    f"every one of the {len(y)} {split} sequences, whose values vary (sd "
                                    f"{np.std(y[:, i]):.4g}): it separates nothing there")
        return warnings

    def summary_line(self, name, test):
        def show(key):
            return "n/a" if test.get(key) is None else f"{test[key]:.3f}"

        over = f", mean of {len(test['per_target'])} targets" if len(test.get("per_target", {})) > 1 else ""
        return (f"{name}, test split (n={test['n']}{over}): R² {show('r2')}  Pearson {show('pearson')}  Spearman "
                f"{show('spearman')}  MAE {test['mae']:.4g}")

    def fit_linear(self, feature_sets, y, train, val, test, names):
        """Ridge regression on standardised features of one of `feature_sets`, the set and alpha
        chosen together by validation R² (mean over targets), then MAE."""
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def model(alpha):
            return make_pipeline(StandardScaler(), Ridge(alpha=alpha))

        chosen, choice, best = next(iter(feature_sets)), ALPHA_GRID[len(ALPHA_GRID) // 2], None
        if len(val):
            for name, features in feature_sets.items():
                for alpha in ALPHA_GRID:
                    pred = model(alpha).fit(features[train], y[train]).predict(features[val]).reshape(len(val), -1)
                    m = regression_metrics(y[val], pred, names)
                    score = (m["r2"] if m["r2"] is not None else -np.inf, -m["mae"])
                    if best is None or score > best:
                        chosen, choice, best = name, alpha, score
        features = feature_sets[chosen]
        fitted = model(choice).fit(features[train], y[train])

        def scores(rows):
            pred = fitted.predict(features[rows]).reshape(len(rows), -1) if len(rows) else np.zeros((0, len(names)))
            return regression_metrics(y[rows], pred, names)

        result = {"alpha": choice, "val": scores(val), "test": scores(test)}
        return (result if len(feature_sets) == 1 else {"features": chosen, **result}), fitted

    def columns(self, pred, names):
        """pred_<target>: the predicted values (NaN: no call)."""
        return {f"pred_{name}": pred[:, i] for i, name in enumerate(names)}
