"""Rule gather_annotation: the shards' weighted sums combined into per-base probabilities,
thresholds chosen on the validation part, features called, and everything scored on the
test part against the baselines.

Writes under <outdir>/annotate/: tracks/<class>.bw (per-base probability, every base of
every contig), calls.gff3 and calls.bed (runs of a class's probability at or above its
threshold, at least `min_length` bases), split.tsv, metrics.json and metrics.tsv (per base
and per feature, on the test part: the model, the k-mer baseline, and calling nothing),
and browser.png (a test stretch: truth, probabilities, calls).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..inputs.fasta import read_fai
from ..io import atomic_path, write_json_atomic
from ..settings import AnnotationSettings
from .baseline import read_baseline
from .calls import call_runs, runs, write_bed, write_gff3
from .features import annotation_classes, class_masks, read_features
from .shards import read_shard
from .metrics import per_base, per_feature
from .split import split_genome, split_table

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the grid a class's threshold is chosen from
FIGURE_SPAN = 20_000  # bases of the test part the browser figure shows


def combine_shards(paths: list[str], lengths: dict[str, int]) -> dict[str, np.ndarray]:
    """Per contig, (bases, classes + 1) probabilities: the shards' weighted sums over their weights."""
    sums, weights = {}, {}
    for path in paths:
        for contig, start, end, s, w in read_shard(path):
            if contig not in sums:
                sums[contig] = np.zeros((lengths[contig], s.shape[1]), np.float32)
                weights[contig] = np.zeros(lengths[contig], np.float32)
            sums[contig][start:end] += s
            weights[contig][start:end] += w
    out = {}
    for contig, length in lengths.items():
        if contig not in weights or (weights[contig] <= 0).any():
            missing = length if contig not in weights else int((weights[contig] <= 0).sum())
            raise InputError(f"{missing} bases of {contig} have no prediction from any shard", path=paths[0],
                             fix="run the workflow again (a shard file is stale or incomplete)")
        out[contig] = sums[contig] / weights[contig][:, None]
    return out


class Scorer:
    """The truth of each class over the parts of the genome, and scoring against it."""

    def __init__(self, features: pd.DataFrame, classes, stretches, lengths: dict[str, int]):
        self.classes, self.stretches = classes, stretches
        self.truth = {contig: class_masks(features, classes, contig, 0, length) for contig, length in lengths.items()}

    def _joined(self, per_contig, part: str, index: int, masks: bool = True) -> np.ndarray:
        """One class's values over every stretch of a part, laid end to end with one
        background base between stretches (so no run joins two stretches). `masks`: per
        contig (classes, bases) masks; else (bases, classes + 1) probabilities."""
        pieces = []
        for s in self.stretches:
            if s.part == part:
                values = per_contig[s.contig]
                pieces += [values[index, s.start : s.end] if masks else values[s.start : s.end, index],
                           np.zeros(1, values.dtype)]
        return np.concatenate(pieces)

    def choose_thresholds(self, proba: dict[str, np.ndarray]) -> list[float]:
        """Per class, the threshold of best per-base F1 on the validation part."""
        chosen = []
        for i in range(len(self.classes)):
            truth = self._joined(self.truth, "val", i)
            p = self._joined(proba, "val", i + 1, masks=False)
            f1 = [per_base(truth, p >= t)["f1"] or 0.0 for t in THRESHOLDS]
            chosen.append(float(THRESHOLDS[int(np.argmax(f1))]))
        return chosen

    def score(self, called: dict[str, np.ndarray] | None, proba: dict[str, np.ndarray] | None) -> dict:
        """Per class on the test part: per-base and per-feature scores of the calls (`called`:
        per contig (classes, bases) bool; None: nothing called), and the probabilities' AUPRC."""
        from sklearn.metrics import average_precision_score

        out = {}
        for i, cls in enumerate(self.classes):
            truth = self._joined(self.truth, "test", i)
            calls = np.zeros_like(truth) if called is None else self._joined(called, "test", i)
            out[cls.name] = {"per_base": per_base(truth, calls), "per_feature": per_feature(runs(truth), runs(calls)),
                             "truth_bases": int(truth.sum()), "truth_features": len(runs(truth)[0])}
            if proba is not None and truth.any():
                out[cls.name]["per_base"]["auprc"] = float(average_precision_score(
                    truth, self._joined(proba, "test", i + 1, masks=False)))
        return out


def call_features(proba: dict[str, np.ndarray], classes, thresholds: list[float], min_length: int):
    """(calls table, per contig (classes, bases) masks of the calls)."""
    rows, masks = [], {}
    for contig, p in proba.items():
        masks[contig] = np.zeros((len(classes), len(p)), bool)
        for i, cls in enumerate(classes):
            found = call_runs(p[:, i + 1], thresholds[i], min_length)
            for start, end in zip(found.start, found.end):
                masks[contig][i, start:end] = True
            rows.append(found.assign(contig=contig, type=cls.type, strand=cls.strand or ".", **{"class": cls.name}))
    calls = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return calls.sort_values(["contig", "start", "class"], kind="stable", ignore_index=True), masks


def write_tracks(folder: Path, proba: dict[str, np.ndarray], classes, lengths: dict[str, int]) -> None:
    import pyBigWig

    folder.mkdir(parents=True, exist_ok=True)
    for i, cls in enumerate(classes):
        with atomic_path(folder / f"{cls.name}.bw") as tmp:
            bw = pyBigWig.open(str(tmp), "w")
            try:
                bw.addHeader([(c, int(n)) for c, n in lengths.items()], maxZooms=10)
                for contig, p in proba.items():
                    bw.addEntries(contig, 0, values=p[:, i + 1].astype(np.float64), span=1, step=1)
            finally:
                bw.close()


def metrics_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for model, per_class in metrics["test"].items():
        for cls, levels in per_class.items():
            for key in ("precision", "recall", "f1", "mcc", "auprc"):
                if key in levels["per_base"]:
                    rows.append((model, cls, "base", key, levels["per_base"][key]))
            for match in ("exact", "overlap"):
                for key in ("sensitivity", "precision"):
                    rows.append((model, cls, f"feature_{match}", key, levels["per_feature"][match][key]))
    return pd.DataFrame(rows, columns=["model", "class", "level", "measure", "value"])


def browser_figure(path: Path, scorer: Scorer, proba: dict, masks: dict, baseline: dict, classes) -> None:
    """A genome-browser-like view of the start of the first test stretch: per class the
    annotated features, the model's and the baseline's probabilities, and the calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = next(s for s in scorer.stretches if s.part == "test")
    lo, hi = test.start, min(test.end, test.start + FIGURE_SPAN)
    x = np.arange(lo, hi)
    fig, axes = plt.subplots(len(classes), 1, figsize=(12, 1.8 * len(classes) + 0.6), sharex=True, squeeze=False)
    for ax, (i, cls) in zip(axes[:, 0], enumerate(classes)):
        ax.fill_between(x, 0, scorer.truth[test.contig][i, lo:hi] * 1.0, step="post", color="0.85",
                        label="annotated")
        ax.plot(x, proba[test.contig][lo:hi, i + 1], lw=0.7, color="tab:blue", label="model")
        ax.plot(x, baseline[test.contig][lo:hi, i + 1], lw=0.7, color="tab:orange", alpha=0.7, label="k-mer baseline")
        for n, (start, end) in enumerate(zip(*runs(masks[test.contig][i, lo:hi]))):
            ax.plot([lo + start, lo + end], [1.06, 1.06], lw=4, color="tab:red", solid_capstyle="butt",
                    label="model's calls" if n == 0 else None)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(cls.name)
    handles = {label: h for ax in axes[:, 0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    axes[0, 0].set_title(f"{test.contig}:{lo + 1:,}-{hi:,}, the start of the test part", fontsize=9)
    axes[-1, 0].set_xlabel("position")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def gather_annotation(shards: list[str], baseline_path: str, fasta: str, features_path: str,
                      settings: AnnotationSettings, window_size: int, model_config: dict, out_dir: str,
                      log=None) -> dict:
    log = log or sys.stderr  # the job's log: stderr as redirected at call time
    out = Path(out_dir)
    lengths = read_fai(fasta)
    classes = annotation_classes(list(settings.classes), settings.stranded)
    stretches = split_genome(lengths, settings, window_size, features_path)
    features = read_features(features_path, lengths, {c.type for c in classes})
    scorer = Scorer(features, classes, stretches, lengths)
    proba = combine_shards(shards, lengths)
    baseline = read_baseline(baseline_path)
    thresholds = scorer.choose_thresholds(proba)
    baseline_thresholds = scorer.choose_thresholds(baseline)
    calls, masks = call_features(proba, classes, thresholds, settings.min_length)
    _, baseline_masks = call_features(baseline, classes, baseline_thresholds, settings.min_length)
    provenance = [f"#dnalm: annotation by {model_config.get('base_model')} ({model_config.get('encoder')} encoder), "
                  f"classes {', '.join(c.name for c in classes)}; thresholds chosen on validation: "
                  + ", ".join(f"{c.name} {t}" for c, t in zip(classes, thresholds))]
    write_gff3(out / "calls.gff3", calls, header_lines=provenance, contig_lengths=lengths)
    write_bed(out / "calls.bed", calls)
    write_tracks(out / "tracks", proba, classes, lengths)
    with atomic_path(out / "split.tsv") as tmp:
        split_table(stretches).to_csv(tmp, sep="\t", index=False)
    kmer = f"kmer{settings.baseline_kmer}_logistic"
    metrics = {
        "classes": [c.name for c in classes],
        "thresholds": {"model": dict(zip([c.name for c in classes], thresholds)),
                       kmer: dict(zip([c.name for c in classes], baseline_thresholds))},
        "min_length": settings.min_length,
        "split": split_table(stretches).to_dict(orient="records"),
        "test": {"model": scorer.score(masks, proba), kmer: scorer.score(baseline_masks, baseline),
                 "background": scorer.score(None, None)},
        "calls": {c.name: int((calls["class"] == c.name).sum()) if len(calls) else 0 for c in classes},
        "model": {k: model_config[k] for k in ("base_model", "encoder", "family", "best_epoch", "history")
                  if k in model_config},
    }
    write_json_atomic(out / "metrics.json", metrics)
    with atomic_path(out / "metrics.tsv") as tmp:
        metrics_table(metrics).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    browser_figure(out / "browser.png", scorer, proba, masks, baseline, classes)
    for name, per_class in metrics["test"].items():
        for cls, m in per_class.items():
            f1, exact = m["per_base"]["f1"], m["per_feature"]["exact"]["sensitivity"]
            print(f"{name} {cls}: per-base F1 {f1 if f1 is None else round(f1, 3)}, features found exactly "
                  f"{exact if exact is None else round(exact, 3)}", file=log)
    return metrics
