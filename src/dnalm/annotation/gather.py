"""Rule gather_annotation: the shards' weighted sums combined into per-base probabilities,
thresholds chosen on the validation part, features called, and everything scored on the
test part against the baselines.

Writes under <outdir>/annotate/: tracks/<class>.bw (per-base probability, every base of
every contig), calls.gff3 and calls.bed (runs of a class's probability at or above its
threshold, at least `min_length` bases), split.tsv, metrics.json and metrics.tsv (per base
and per feature, on the test part: the model, the k-mer baseline, and calling nothing),
and browser.png (a test stretch: truth, probabilities, calls).

It holds one contig at a time (its probabilities, the baseline's and its truth: about 30
bytes a base for two classes), in two passes over the contigs: the validation part's
counts at every threshold, then the calls, tracks and test scores with the thresholds
chosen. Scores are summed as counts over contigs, so they equal those of the genome in one
piece; the AUPRC comes from histograms of the probabilities (`AUPRC_BINS` bins).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..inputs.fasta import read_fai
from ..io import atomic_path, write_json_atomic
from ..settings import AnnotationSettings
from .baseline import BaselineFile
from .calls import call_runs, runs, write_bed, write_gff3
from .features import annotation_classes, class_masks, read_features
from .metrics import add_feature_scores, average_precision, base_scores, per_base, per_feature
from .shards import ShardIndex
from .split import split_genome, split_table

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the grid a class's threshold is chosen from
FIGURE_SPAN = 20_000  # bases of the test part the browser figure shows
AUPRC_BINS = 10_000


def combine_shards(paths: list[str], lengths: dict[str, int]) -> dict[str, np.ndarray]:
    """Per contig, (bases, classes + 1) probabilities of the whole genome (small genomes, tests)."""
    index = ShardIndex(paths)
    return {contig: index.probabilities(contig, length) for contig, length in lengths.items()}


class Tally:
    """One model's counts for one class over the contigs seen so far: at every threshold on
    the validation part, and for its calls and probabilities on the test part."""

    def __init__(self):
        self.val_pos = np.zeros(len(THRESHOLDS), np.int64)  # positives at or above each threshold
        self.val_neg = np.zeros(len(THRESHOLDS), np.int64)
        self.val_total = 0
        self.counts = np.zeros(4, np.int64)  # tp, fp, fn, tn of the calls on the test part
        self.features = None
        self.hist_pos = np.zeros(AUPRC_BINS, np.int64)
        self.hist_neg = np.zeros(AUPRC_BINS, np.int64)

    def add_validation(self, truth: np.ndarray, proba: np.ndarray) -> None:
        for values, at_or_above in ((proba[truth], self.val_pos), (proba[~truth], self.val_neg)):
            ordered = np.sort(values)
            at_or_above += len(ordered) - np.searchsorted(ordered, THRESHOLDS, side="left")
        self.val_total += int(truth.sum())

    def threshold(self) -> float:
        """The threshold of best per-base F1 on validation (the lowest of equals)."""
        f1 = 2 * self.val_pos / np.maximum(self.val_pos + self.val_neg + self.val_total, 1)
        return float(THRESHOLDS[int(np.argmax(f1))])

    def add_test(self, truth: np.ndarray, called: np.ndarray, proba: np.ndarray | None) -> None:
        counts = per_base(truth, called)
        self.counts += [counts[key] for key in ("tp", "fp", "fn", "tn")]
        self.features = add_feature_scores(self.features, per_feature(runs(truth), runs(called)))
        if proba is not None:
            bins = np.minimum((proba * AUPRC_BINS).astype(np.int64), AUPRC_BINS - 1)
            self.hist_pos += np.bincount(bins[truth], minlength=AUPRC_BINS)
            self.hist_neg += np.bincount(bins[~truth], minlength=AUPRC_BINS)

    def scores(self, with_auprc: bool) -> dict:
        out = {"per_base": base_scores(*self.counts), "per_feature": self.features,
               "truth_bases": int(self.counts[0] + self.counts[2]), "truth_features": self.features["exact"]["truth"]}
        if with_auprc and out["truth_bases"]:
            out["per_base"]["auprc"] = average_precision(self.hist_pos, self.hist_neg)
        return out


def learning_warnings(per_class: dict) -> list[str]:
    """What says a model learnt nothing of a class, from its test scores: an AUPRC within 0.02
    of the class's share of the bases (what ranking bases at random gives), or calls that
    cover (nearly) every base."""
    warnings = []
    for name, scores in per_class.items():
        counts = scores["per_base"]
        total = counts["tp"] + counts["fp"] + counts["fn"] + counts["tn"]
        share = (counts["tp"] + counts["fn"]) / total if total else 0.0
        auprc = counts.get("auprc")
        if auprc is not None and auprc < share + 0.02:
            warnings.append(f"{name}: AUPRC {auprc:.3f} on the test part is no better than the class's share of "
                            f"the bases ({share:.3f}): the model has not learnt this class")
        elif total and counts["tp"] + counts["fp"] > 0.99 * total:
            warnings.append(f"{name}: the calls cover {(counts['tp'] + counts['fp']) / total:.1%} of the test part")
    return warnings


def called_masks(proba: np.ndarray, thresholds: list[float], min_length: int) -> tuple[list, np.ndarray]:
    """Per class, the calls (start, end, score) of one contig and their (classes, bases) mask."""
    found, masks = [], np.zeros((len(thresholds), len(proba)), bool)
    for i, threshold in enumerate(thresholds):
        calls = call_runs(proba[:, i + 1], threshold, min_length)
        for start, end in zip(calls.start, calls.end):
            masks[i, start:end] = True
        found.append(calls)
    return found, masks


class TrackWriter:
    """One bigWig per class, every base of every contig, written contig after contig in the
    header's order (pyBigWig's rule) and moved into place when all are written."""

    def __init__(self, folder: Path, classes, lengths: dict[str, int]):
        import pyBigWig

        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / f"{cls.name}.bw" for cls in classes]
        self.files = [pyBigWig.open(str(p.with_name(p.name + ".tmp")), "w") for p in self.paths]
        for bw in self.files:
            bw.addHeader([(c, int(n)) for c, n in lengths.items()], maxZooms=10)

    def add(self, contig: str, proba: np.ndarray) -> None:
        for i, bw in enumerate(self.files):
            bw.addEntries(contig, 0, values=proba[:, i + 1].astype(np.float64), span=1, step=1)

    def close(self) -> None:
        for bw, path in zip(self.files, self.paths):
            bw.close()
            path.with_name(path.name + ".tmp").replace(path)


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


def browser_figure(path: Path, where: tuple[str, int, int], truth: np.ndarray, proba: np.ndarray,
                   baseline: np.ndarray, masks: np.ndarray, classes) -> None:
    """A genome-browser-like view of a stretch (contig, lo, hi): per class the annotated
    features, the model's and the baseline's probabilities, and the model's calls. The
    arrays hold the stretch only: truth and masks (classes, bases), probabilities (bases,
    classes + 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contig, lo, hi = where
    x = np.arange(lo, hi)
    fig, axes = plt.subplots(len(classes), 1, figsize=(12, 1.8 * len(classes) + 0.6), sharex=True, squeeze=False)
    for ax, (i, cls) in zip(axes[:, 0], enumerate(classes)):
        ax.fill_between(x, 0, truth[i] * 1.0, step="post", color="0.85", label="annotated")
        ax.plot(x, proba[:, i + 1], lw=0.7, color="tab:blue", label="model")
        ax.plot(x, baseline[:, i + 1], lw=0.7, color="tab:orange", alpha=0.7, label="k-mer baseline")
        for n, (start, end) in enumerate(zip(*runs(masks[i]))):
            ax.plot([lo + start, lo + end], [1.06, 1.06], lw=4, color="tab:red", solid_capstyle="butt",
                    label="model's calls" if n == 0 else None)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel(cls.name)
    handles = {label: h for ax in axes[:, 0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    axes[0, 0].set_title(f"{contig}:{lo + 1:,}-{hi:,}, the start of the test part", fontsize=9)
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
    parts = defaultdict(list)
    for s in stretches:
        parts[s.contig].append(s)
    features = read_features(features_path, lengths, {c.type for c in classes})
    index, baseline = ShardIndex(shards), BaselineFile(baseline_path)
    kmer = f"kmer{settings.baseline_kmer}_logistic"
    names = ("model", kmer, "background")
    tallies = {name: [Tally() for _ in classes] for name in names}

    def contig_data(contig: str):
        return (index.probabilities(contig, lengths[contig]), baseline.probabilities(contig),
                class_masks(features, classes, contig, 0, lengths[contig]))

    # Pass 1: the thresholds, from the validation part.
    for contig in lengths:
        val = [s for s in parts[contig] if s.part == "val"]
        if not val:
            continue
        proba, base, truth = contig_data(contig)
        for s in val:
            for i in range(len(classes)):
                tallies["model"][i].add_validation(truth[i, s.start : s.end], proba[s.start : s.end, i + 1])
                tallies[kmer][i].add_validation(truth[i, s.start : s.end], base[s.start : s.end, i + 1])
    thresholds = {name: [t.threshold() for t in tallies[name]] for name in ("model", kmer)}

    # Pass 2: tracks, calls and the test part's scores.
    rows, figure = [], None
    tracks = TrackWriter(out / "tracks", classes, lengths)
    for contig in lengths:
        proba, base, truth = contig_data(contig)
        tracks.add(contig, proba)
        found, masks = called_masks(proba, thresholds["model"], settings.min_length)
        rows += [calls.assign(contig=contig, type=cls.type, strand=cls.strand or ".", **{"class": cls.name})
                 for cls, calls in zip(classes, found)]
        _, base_masks = called_masks(base, thresholds[kmer], settings.min_length)
        for s in (s for s in parts[contig] if s.part == "test"):
            for i in range(len(classes)):
                t = truth[i, s.start : s.end]
                tallies["model"][i].add_test(t, masks[i, s.start : s.end], proba[s.start : s.end, i + 1])
                tallies[kmer][i].add_test(t, base_masks[i, s.start : s.end], base[s.start : s.end, i + 1])
                tallies["background"][i].add_test(t, np.zeros_like(t), None)
            if figure is None:
                lo, hi = s.start, min(s.end, s.start + FIGURE_SPAN)
                figure = ((contig, lo, hi), truth[:, lo:hi], proba[lo:hi], base[lo:hi], masks[:, lo:hi])
    tracks.close()
    calls = pd.concat(rows, ignore_index=True)
    provenance = [f"#dnalm: annotation by {model_config.get('base_model')} ({model_config.get('encoder')} encoder), "
                  f"classes {', '.join(c.name for c in classes)}; thresholds chosen on validation: "
                  + ", ".join(f"{c.name} {t}" for c, t in zip(classes, thresholds["model"]))]
    write_gff3(out / "calls.gff3", calls, header_lines=provenance, contig_lengths=lengths)
    write_bed(out / "calls.bed", calls)
    with atomic_path(out / "split.tsv") as tmp:
        split_table(stretches).to_csv(tmp, sep="\t", index=False)
    class_names = [c.name for c in classes]
    metrics = {
        "classes": class_names,
        "thresholds": {name: dict(zip(class_names, values)) for name, values in thresholds.items()},
        "min_length": settings.min_length,
        "split": split_table(stretches).to_dict(orient="records"),
        "test": {name: {c: t.scores(with_auprc=name != "background") for c, t in zip(class_names, tallies[name])}
                 for name in names},
        "calls": {c: int((calls["class"] == c).sum()) for c in class_names},
        "model": {k: model_config[k] for k in ("base_model", "encoder", "family", "best_epoch", "history")
                  if k in model_config},
    }
    warnings = learning_warnings(metrics["test"]["model"])
    if warnings:
        metrics["warnings"] = warnings
    write_json_atomic(out / "metrics.json", metrics)
    with atomic_path(out / "metrics.tsv") as tmp:
        metrics_table(metrics).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    browser_figure(out / "browser.png", *figure, classes)
    for name, per_class in metrics["test"].items():
        for cls, m in per_class.items():
            f1, exact = m["per_base"]["f1"], m["per_feature"]["exact"]["sensitivity"]
            print(f"{name} {cls}: per-base F1 {f1 if f1 is None else round(f1, 3)}, features found exactly "
                  f"{exact if exact is None else round(exact, 3)}", file=log)
    for warning in warnings:
        print(f"warning: {warning}", file=log)
    return metrics
