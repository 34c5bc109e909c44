"""Figures and tables for `snakemake --report`: metrics, confusion matrices and ROC/PR
curves (classification; ROC/PR per label for multilabel), predicted against true values
(regression), the window-count distribution and the run's provenance."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..inputs.targets import LabelSets, Values  # noqa: E402
from ..io import atomic_path, read_parquet, read_provenance  # noqa: E402


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=110, bbox_inches="tight")
    plt.close(fig)


# The columns of the metrics table, by task.
TABLE_METRICS = {"classification": ("accuracy", "macro_f1", "mcc", "auroc"),
                 "regression": ("r2", "pearson", "spearman", "mae", "rmse"),
                 "multilabel": ("macro_auroc", "macro_auprc", "micro_f1", "macro_f1", "exact_match")}


def metrics_table(metrics_paths: dict[str, str], baselines_path: str | None = None) -> pd.DataFrame:
    """One row per head (then per baseline) and split: n and the task's metrics
    (classification: accuracy, macro-F1, MCC, AUROC)."""
    from ..learning.metrics import baseline_keys, baseline_label, task_name

    task = "classification"

    def row(name, split, m, **extra):
        return {"head": name, "split": split, "n": m.get("n", 0), **{k: m.get(k) for k in TABLE_METRICS[task]},
                **extra}

    rows = []
    for head, path in metrics_paths.items():
        metrics = json.loads(Path(path).read_text())
        task = task_name(metrics)
        for split in ("val", "test"):
            rows.append(row(head, split, metrics.get(split, {}), best_epoch=metrics.get("best_epoch"),
                            pooling=metrics.get("pooling")))
    if baselines_path:
        baselines = json.loads(Path(baselines_path).read_text())
        task = task_name(baselines)
        for key in baseline_keys(baselines):
            for split in ("val", "test"):
                rows.append(row(f"baseline: {baseline_label(key, task)}", split, baselines[key].get(split, {})))
    return pd.DataFrame(rows)


def plot_confusion(metrics_paths: dict[str, str], path: str) -> None:
    heads = list(metrics_paths)
    fig, axes = plt.subplots(1, len(heads), figsize=(4.2 * len(heads), 3.8), squeeze=False)
    for ax, head in zip(axes[0], heads):
        metrics = json.loads(Path(metrics_paths[head]).read_text())
        names = metrics["class_names"]
        matrix = np.array(metrics["test"].get("confusion_matrix") or np.zeros((len(names), len(names))))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, int(value), ha="center", va="center",
                    color="white" if value > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{head} head, test split")
    _save(fig, path)


def _test_rows(table: pd.DataFrame, call_column: str) -> pd.DataFrame:
    return table[(table.get("split") == "test") & table[call_column].notna()] if "split" in table else table[:0]


def plot_roc_pr(predictions: dict[str, str], path: str) -> None:
    """One-vs-rest ROC and precision-recall curves on the test split, per head and class
    (per label for multilabel heads)."""
    from sklearn.metrics import (
        auc,
        average_precision_score,
        precision_recall_curve,
        roc_curve,
    )

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for head, pred_path in predictions.items():
        table = read_parquet(pred_path, rule="classify").to_pandas()
        multilabel = "pred_labels" in table
        test = _test_rows(table, "pred_labels" if multilabel else "pred_label")
        classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
        shown = classes[1:] if len(classes) == 2 and not multilabel else classes  # binary: one curve, the second
        for name in shown:
            truth = np.array([name in LabelSets.parse(t) for t in test["true_label"]], dtype=bool) if multilabel \
                else (test["true_label"] == name).to_numpy()
            if truth.all() or not truth.any():
                continue
            score = test[f"prob_{name}"].to_numpy()
            fpr, tpr, _ = roc_curve(truth, score)
            precision, recall, _ = precision_recall_curve(truth, score)
            roc_ax.plot(fpr, tpr, label=f"{head}: {name} (AUC {auc(fpr, tpr):.3f})")
            ap = average_precision_score(truth, score)
            pr_ax.plot(recall, precision, label=f"{head}: {name} (AP {ap:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right" if ax is roc_ax else "lower left")
    _save(fig, path)


def plot_scatter(predictions: dict[str, str], path: str) -> None:
    """Predicted against true values on the test split: a row of panels per head, one panel
    per target."""
    rows = []
    for head, pred_path in predictions.items():
        table = read_parquet(pred_path, rule="classify").to_pandas()
        targets = [c.removeprefix("pred_") for c in table.columns if c.startswith("pred_")]
        test = _test_rows(table, f"pred_{targets[0]}") if targets else table[:0]
        truth = np.array([Values().parse(t, pred_path) for t in test["true_label"]], dtype=np.float64) \
            if len(test) else np.zeros((0, len(targets)))
        rows.append([(head, name, truth[:, i], test[f"pred_{name}"].to_numpy(np.float64))
                     for i, name in enumerate(targets)])
    width = max([len(row) for row in rows] + [1])
    fig, axes = plt.subplots(max(len(rows), 1), width, figsize=(4 * width, 3.8 * max(len(rows), 1)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, (head, name, truth, guess) in zip(ax_row, row):
            ax.scatter(truth, guess, s=6, alpha=0.5, color="#4477aa")
            if len(truth):
                low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
                ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
                r = np.corrcoef(truth, guess)[0, 1] if len(truth) > 1 and np.ptp(truth) and np.ptp(guess) else np.nan
                ax.set_title(f"{head} head: {name}\ntest, n={len(truth)}, r={r:.3f}", fontsize=9)
            ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}")
    fig.tight_layout()
    _save(fig, path)


def plot_figures(figures: dict[str, str], metrics_paths: dict[str, str], predictions: dict[str, str]) -> None:
    """The figures of the heads' metrics (name -> path; names as `workflow.dag.REPORT_FIGURES`)."""
    makers = {"confusion": lambda path: plot_confusion(metrics_paths, path),
              "roc_pr": lambda path: plot_roc_pr(predictions, path),
              "scatter": lambda path: plot_scatter(predictions, path)}
    for name, path in figures.items():
        makers[name](path)


def plot_window_counts(sequences_path: str, path: str) -> None:
    counts = read_parquet(sequences_path, columns=["n_windows"], rule="make_windows").column("n_windows").to_numpy()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.arange(counts.min(), counts.max() + 2) - 0.5 if counts.max() - counts.min() < 60 else 50
    ax.hist(counts, bins=bins, color="#4477aa")
    ax.set(xlabel="windows per sequence", ylabel="sequences",
           title=f"{len(counts)} sequences, {int(counts.sum())} windows")
    _save(fig, path)


def provenance_table(paths: dict[str, str]) -> pd.DataFrame:
    """key/value rows from the Parquet provenance of the run's outputs."""
    rows = []
    for what, path in paths.items():
        for key, value in sorted(read_provenance(path).items()):
            rows.append({"file": what, "key": key, "value": json.dumps(value) if not isinstance(value, str) else value})
    return pd.DataFrame(rows)


def write_tsv(frame: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
