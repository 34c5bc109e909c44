"""Honest baselines in every labelled run: does the language model add anything?

Two models any bioinformatician would try first, trained and scored on exactly the
heads' splits (`inputs.splits.label_sequences`, same seed and validation cut), linear
models of the task (`learning.tasks`: logistic regression for classes, ridge regression
for values, one-vs-rest logistic regression for label sets; features standardised, the
regularisation chosen on the validation split):
- on k-mer frequencies (k = 6 by default);
- on GC content alone.
And one that is never worse than the first on validation: the same model on the k-mer
frequencies together with each sequence's mean language-model window vector, the
features (k-mers alone, or both) and regularisation chosen by validation.

They read the same bases the language model reads: every sequence is put back
together from its windows in the shards (cleaned, reverse-complemented where the
region is on the minus strand), so no FASTA is opened here.

The same job checks the splits for leaks (`shared_windows`): windows of val and test
sequences whose bases, on either strand, are those of a training window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..encoders.base import BASE_CODE  # A=0 C=1 G=2 T=3, 4 = N (or any other byte)
from ..inputs.regions import read_regions
from ..inputs.splits import LabelledSplits, label_sequences
from ..io import read_parquet
from ..settings import HeadSettings
from ..windows.bases import reverse_complement
from .kmer_head import from_pipeline
from .tasks import task_for
from .toolkit import usable_windows


def kmer_frequencies(seq: bytes, k: int) -> np.ndarray:
    """Frequencies of the 4^k k-mers of one sequence (k-mers holding N are not counted)."""
    codes = BASE_CODE[np.frombuffer(seq, dtype=np.uint8)]
    if len(codes) < k:
        return np.zeros(4**k, dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    valid = (windows < 4).all(axis=1)
    index = np.minimum(windows[valid], 3) @ (4 ** np.arange(k - 1, -1, -1))
    counts = np.bincount(index, minlength=4**k).astype(np.float32)
    return counts / max(counts.sum(), 1.0)


def gc_content(seq: bytes) -> float:
    codes = BASE_CODE[np.frombuffer(seq, dtype=np.uint8)]
    bases = np.count_nonzero(codes < 4)
    return float(np.count_nonzero((codes == 1) | (codes == 2)) / max(bases, 1))


def sequences_from_windows(shard_paths: list[str], wanted: np.ndarray, lengths: np.ndarray):
    """(seq_index, bases) of each wanted sequence, rebuilt from its windows, in order."""
    current, buffer = -1, None
    for path in shard_paths:
        table = read_parquet(path, columns=["seq_index", "start", "sequence"], rule="make_windows")
        seq = table.column("seq_index").to_numpy()
        starts = table.column("start").to_numpy()
        for i in np.flatnonzero(wanted[seq]):
            if seq[i] != current:
                if buffer is not None:
                    yield current, bytes(buffer)
                current, buffer = int(seq[i]), bytearray(b"N" * int(lengths[seq[i]]))
            window = table.column("sequence")[int(i)].as_py().encode("ascii")
            buffer[starts[i] : starts[i] + len(window)] = window
    if buffer is not None:
        yield current, bytes(buffer)


def _usable(shard_paths: list[str], n_sequences: int, max_n_fraction: float) -> np.ndarray:
    usable = np.zeros(n_sequences, dtype=bool)
    for path in shard_paths:
        table = read_parquet(path, columns=["seq_index", "n_fraction"], rule="make_windows")
        ok = usable_windows(table.column("n_fraction").to_numpy(), max_n_fraction)
        usable[table.column("seq_index").to_numpy()[ok]] = True
    return usable


def shared_windows(shard_paths: list[str], sets: LabelledSplits, max_n_fraction: float) -> dict:
    """The leak check: per split (val, test), how many of its usable windows have the bases of
    a usable training window, on either strand. Identical sequence in two splits (repeats,
    overlapping regions, duplicated records) makes the scores there measure memory, not
    generalisation."""
    train: set[int] = set()
    others: dict[str, list[int]] = {"val": [], "test": []}
    for path in shard_paths:
        table = read_parquet(path, columns=["seq_index", "n_fraction", "sequence"], rule="make_windows")
        split = sets.split[table.column("seq_index").to_numpy()]
        usable = usable_windows(table.column("n_fraction").to_numpy(), max_n_fraction)
        for window, name, ok in zip(table.column("sequence").to_pylist(), split, usable):
            if ok and name in ("train", "val", "test"):
                key = hash(min(window, reverse_complement(window)))  # the same on either strand
                (train.add(key) if name == "train" else others[name].append(key))
    return {name: {"windows": len(keys), "shared_with_train": sum(key in train for key in keys)}
            for name, keys in others.items()}


def sequence_vectors(embedding_paths: list[str], settings: HeadSettings, n_sequences: int) -> np.ndarray:
    """(n_sequences, hidden): each sequence's mean language-model window vector (`heads.pooling`,
    usable windows only; zeros where it has none), what the k-mer + language-model model reads."""
    from .windowsets import WindowSets

    data = WindowSets.from_files(embedding_paths, settings.pooling, settings.max_n_fraction)
    vectors = np.zeros((n_sequences, data.embed_dim), dtype=np.float32)
    for row, seq in enumerate(data.seq_index):
        windows = data.window_rows(np.array([row]))
        if len(windows):
            vectors[seq] = data.matrix[windows].mean(0)
    return vectors


def run_baselines(shard_paths: list[str], regions_path: str, labels_path: str | None, settings: HeadSettings,
                  k: int = 6, embedding_paths: list[str] | None = None, head_dir: str | None = None) -> dict:
    """The baselines' metrics; with `embedding_paths`, also the k-mer + language-model model:
    a logistic regression on the k-mer frequencies and each sequence's mean window vector,
    kept over the k-mer features alone only where validation prefers it. With `head_dir`,
    the k-mer model is saved there as a head `classify` can annotate with (`KmerHead`)."""
    regions: pd.DataFrame = read_regions(regions_path, labels_path)
    n = len(regions)
    sets = label_sequences(regions, _usable(shard_paths, n, settings.max_n_fraction), settings,
                           labels_path or regions_path)
    used = np.isin(sets.split, ["train", "val", "test"])
    rows = np.flatnonzero(used)
    position = {s: i for i, s in enumerate(rows)}
    kmers = np.zeros((len(rows), 4**k), dtype=np.float32)
    gc = np.zeros((len(rows), 1), dtype=np.float32)
    for seq, bases in sequences_from_windows(shard_paths, used, regions["length"].to_numpy()):
        kmers[position[seq]] = kmer_frequencies(bases, k)
        gc[position[seq], 0] = gc_content(bases)
    y = sets.y[rows]
    split = sets.split[rows]
    train, val, test = (np.flatnonzero(split == name) for name in ("train", "val", "test"))
    names = sets.names
    task = task_for(settings.task, settings)
    suffix = task.baseline_suffix
    kmer_metrics, kmer_model = task.fit_linear({"kmer": kmers}, y, train, val, test, names)
    result = {
        **({} if task.name == "classification" else {"task": task.name}),
        sets.kind.names_key: names,
        "sequences": sets.counts(),
        "validation_source": sets.validation_source,
        f"kmer{k}{suffix}": kmer_metrics,
        f"gc{suffix}": task.fit_linear({"gc": gc}, y, train, val, test, names)[0],
        "leak": shared_windows(shard_paths, sets, settings.max_n_fraction),
    }
    if embedding_paths:
        lm = sequence_vectors(embedding_paths, settings, n)[rows]
        result[f"kmer{k}_lm{suffix}"] = task.fit_linear({"kmer": kmers, "kmer+lm": np.hstack([kmers, lm])}, y, train,
                                                        val, test, names)[0]
    if sets.notes:
        result["notes"] = sets.notes
    if head_dir:
        kind = f"kmer{k}{suffix}"
        state = {"thresholds": kmer_metrics["thresholds"]} if "thresholds" in kmer_metrics else {}
        head = from_pipeline(kmer_model, kind, k, names, {"name": task.name, **state})
        head.metrics = {"val": kmer_metrics["val"], "test": kmer_metrics["test"]}
        head.save(head_dir)
    return result
