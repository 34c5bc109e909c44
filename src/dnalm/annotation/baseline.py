"""Rule annotation_baseline: what a language model must beat at labelling bases. A
multinomial logistic regression (scikit-learn) on the counts of the k-mers that start
within `flank` bases of a base, either side, trained on bases drawn at random from the
training part whose whole count window lies in it (so no base of another part is read).
Its per-base probabilities are scored, called and thresholded exactly as the model's.

Counts come from running sums over each contig's one-hot k-mers, in chunks, so a genome
of any size takes memory of a chunk.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..encoders.base import BASE_CODE
from ..settings import AnnotationSettings
from .split import split_genome
from .genome import GenomeLabels
from .shards import ArrayWriter

CHUNK = 100_000  # bases whose counts are computed at once


def kmer_ids(sequence: str, k: int) -> np.ndarray:
    """(len - k + 1,) id of the k-mer starting at each base (4^k for one holding N)."""
    codes = BASE_CODE[np.frombuffer(sequence.encode("ascii"), np.uint8)].astype(np.int64)
    m = len(codes) - k + 1
    if m <= 0:
        return np.zeros(0, np.int64)
    ids = np.zeros(m, np.int64)
    bad = np.zeros(m, bool)
    for j in range(k):
        ids = ids * 4 + np.minimum(codes[j : j + m], 3)
        bad |= codes[j : j + m] > 3
    ids[bad] = 4**k
    return ids


def window_counts(ids: np.ndarray, k: int, flank: int, positions: np.ndarray) -> np.ndarray:
    """(len(positions), 4^k) counts of the k-mers starting in [p - flank, p + flank - k + 1]
    (clipped to the contig) for each position p, from a running sum over one-hot ids."""
    if len(positions) == 0:
        return np.zeros((0, 4**k), np.float32)
    lo = max(0, int(positions.min()) - flank)
    hi = max(lo, min(len(ids), int(positions.max()) + flank - k + 2))
    onehot = np.zeros((hi - lo + 1, 4**k + 1), np.int32)
    onehot[np.arange(1, hi - lo + 1), ids[lo:hi]] = 1
    running = np.cumsum(onehot, axis=0)  # row r: counts of ids[lo : lo + r]
    a = np.clip(positions - flank, lo, hi) - lo
    b = np.maximum(np.clip(positions + flank - k + 2, lo, hi) - lo, a)  # 2 * flank + 1 < k: nothing counted
    return (running[b, : 4**k] - running[a, : 4**k]).astype(np.float32)


def fit_baseline(genome: GenomeLabels, settings: AnnotationSettings, window_size: int, log=None):
    """The regression, trained on bases of the training part."""
    log = log or sys.stderr  # the job's log: stderr as redirected at call time
    k, flank = settings.baseline_kmer, settings.baseline_flank
    rng = np.random.default_rng(settings.seed)
    stretches = [s for s in split_genome(genome.lengths, settings, window_size) if s.part == "train"]
    spans = np.array([max(0, s.end - s.start - 2 * flank) for s in stretches], np.float64)
    draws = rng.multinomial(settings.baseline_bases, spans / spans.sum())
    x, y = [], []
    for stretch, n in zip(stretches, draws):
        if n == 0:
            continue
        positions = np.sort(rng.integers(stretch.start + flank, stretch.end - flank, n))
        sequence = genome.reference.fetch(stretch.contig, stretch.start, stretch.end).upper()
        ids = kmer_ids(sequence, k)
        x.append(window_counts(ids, k, flank, positions - stretch.start))
        y.append(genome.labels[stretch.contig][positions])
    x, y = np.concatenate(x), np.concatenate(y)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=300).fit(scaler.transform(x), y)
    print(f"k-mer baseline: {len(y)} training bases, k {k}, flank {flank}; training accuracy "
          f"{model.score(scaler.transform(x), y):.3f}", file=log)
    return scaler, model


def predict_contig(sequence: str, scaler, model, k: int, flank: int, n_classes: int) -> np.ndarray:
    """(bases, classes + 1) float16 probabilities of every base of a contig."""
    ids = kmer_ids(sequence, k)
    out = np.zeros((len(sequence), n_classes), np.float16)
    for lo in range(0, len(sequence), CHUNK):
        positions = np.arange(lo, min(lo + CHUNK, len(sequence)))
        proba = model.predict_proba(scaler.transform(window_counts(ids, k, flank, positions)))
        out[positions[:, None], model.classes_[None, :]] = proba  # a class never seen keeps 0
    return out


def run_baseline(fasta: str, features_path: str, settings: AnnotationSettings, window_size: int, out_path: str,
                 log=None) -> None:
    """The baseline trained, and every base of every contig predicted, written contig by
    contig (`proba_<i>`, float16, beside the `contigs` names)."""
    log = log or sys.stderr  # the job's log: stderr as redirected at call time
    genome = GenomeLabels(fasta, features_path, settings, log)
    scaler, model = fit_baseline(genome, settings, window_size, log)
    n_classes = len(genome.classes) + 1
    contigs = list(genome.lengths)
    with ArrayWriter(out_path) as out:
        out.add("contigs", np.array(contigs, dtype=str))
        for i, contig in enumerate(contigs):
            sequence = genome.reference.fetch(contig).upper()
            out.add(f"proba_{i}", predict_contig(sequence, scaler, model, settings.baseline_kmer,
                                                 settings.baseline_flank, n_classes))


class BaselineFile:
    """The baseline's probabilities of one contig at a time, (bases, classes + 1) float32."""

    def __init__(self, path: str):
        self.path = path
        with np.load(path, allow_pickle=False) as data:
            self.index = {str(c): i for i, c in enumerate(data["contigs"])}

    def probabilities(self, contig: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as data:
            return data[f"proba_{self.index[contig]}"].astype(np.float32)
