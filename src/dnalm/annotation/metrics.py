"""Scores of the calls on the test stretch: per base (precision, recall, F1, MCC of one
class's mask) and per feature, as gene finders are compared (exact ends, or overlap).

Every value is a plain int, float or None (undefined, as 0/0), so the results go
straight into JSON.
"""

from __future__ import annotations

import math

import numpy as np


def per_base(truth: np.ndarray, called: np.ndarray) -> dict:
    """tp, fp, fn, tn, precision, recall, f1 and mcc of one class's called mask against its
    truth mask. Counts are Python ints, so the products in MCC cannot overflow."""
    truth, called = np.asarray(truth, dtype=bool), np.asarray(called, dtype=bool)
    if truth.shape != called.shape:
        raise ValueError(f"truth {truth.shape} and called {called.shape} masks differ in shape")
    tp = int(np.count_nonzero(truth & called))
    fp = int(np.count_nonzero(called)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return base_scores(tp, fp, fn, truth.size - tp - fp - fn)


def base_scores(tp: int, fp: int, fn: int, tn: int) -> dict:
    """The per-base scores of these counts (summed over contigs, say)."""
    tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "mcc": (tp * tn - fp * fn) / math.sqrt(denominator) if denominator else None}


def add_feature_scores(total: dict | None, part: dict) -> dict:
    """`per_feature` results of two stretches (contigs) as one: counts added, ratios again."""
    if total is None:
        return part
    out = {}
    for match in ("exact", "overlap"):
        counts = {k: total[match][k] + part[match][k] for k in ("truth", "calls", "truth_matched", "calls_matched")}
        out[match] = {**counts, "sensitivity": _ratio(counts["truth_matched"], counts["truth"]),
                      "precision": _ratio(counts["calls_matched"], counts["calls"])}
    return out


def average_precision(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Average precision (the area under the precision-recall curve, as scikit-learn sums
    it) from histograms of the positives' and negatives' scores over the same bins, highest
    bin last: bases in one bin count as tied. None without positives."""
    pos, neg = np.asarray(positives, np.float64)[::-1], np.asarray(negatives, np.float64)[::-1]
    if pos.sum() == 0:
        return None
    tp, called = np.cumsum(pos), np.cumsum(pos + neg)
    keep = pos > 0  # only a bin holding positives raises recall
    return float(np.sum(pos[keep] / pos.sum() * tp[keep] / called[keep]))


def per_feature(truth: tuple[np.ndarray, np.ndarray], calls: tuple[np.ndarray, np.ndarray]) -> dict:
    """Feature-level sensitivity and precision of calls (starts, ends) against truth
    features (starts, ends), 0-based half-open, of one class on one contig.

    `exact`: a call matches a truth feature when both ends are equal. `overlap`: when
    they overlap by at least half the truth feature's length and half the call's.
    Sensitivity: truth features matched / truth features; precision: calls matching some
    truth feature / calls. Truth features may overlap each other, and calls too.
    """
    t_start, t_end = _intervals(truth, "truth")
    c_start, c_end = _intervals(calls, "calls")
    order = np.argsort(c_start, kind="stable")
    c_start, c_end = c_start[order], c_end[order]
    ti, ci = _candidates(t_start, t_end, c_start)
    shared = np.minimum(t_end[ti], c_end[ci]) - np.maximum(t_start[ti], c_start[ci])
    overlap = (2 * shared >= t_end[ti] - t_start[ti]) & (2 * shared >= c_end[ci] - c_start[ci])
    exact = overlap & (t_start[ti] == c_start[ci]) & (t_end[ti] == c_end[ci])
    return {"exact": _matched(ti[exact], ci[exact], len(t_start), len(c_start)),
            "overlap": _matched(ti[overlap], ci[overlap], len(t_start), len(c_start))}


def _intervals(pair: tuple[np.ndarray, np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = (np.asarray(a, dtype=np.int64) for a in pair)
    if starts.shape != ends.shape or starts.ndim != 1:
        raise ValueError(f"{what}: starts {starts.shape} and ends {ends.shape} must be 1-D of equal length")
    if np.any(ends <= starts):
        raise ValueError(f"{what}: every interval needs end > start")
    return starts, ends


def _candidates(t_start: np.ndarray, t_end: np.ndarray, c_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth index, call index) of every pair that can match by overlap; calls sorted by start.

    A matching call holds the truth's midpoint (the shared part is at least half the
    truth), so it starts at or before it: 2 * start <= t_start + t_end. Its part before
    the truth is at most its part inside it, which is at most the truth's length, so it
    starts at or after t_start - (t_end - t_start). The candidates of each truth feature
    are therefore one range of the sorted calls, found by two binary searches.
    """
    lo = np.searchsorted(c_start, 2 * t_start - t_end, side="left")
    hi = np.searchsorted(c_start, (t_start + t_end) // 2, side="right")
    counts = hi - lo
    ti = np.repeat(np.arange(len(t_start)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return ti, lo[ti] + offsets


def _matched(ti: np.ndarray, ci: np.ndarray, n_truth: int, n_calls: int) -> dict:
    truth_matched, calls_matched = len(np.unique(ti)), len(np.unique(ci))
    return {"truth": n_truth, "calls": n_calls, "truth_matched": truth_matched, "calls_matched": calls_matched,
            "sensitivity": _ratio(truth_matched, n_truth), "precision": _ratio(calls_matched, n_calls)}


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
