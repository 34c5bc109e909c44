"""Stage 5: apply a trained head to every sequence; write the tables and tracks.

Per-sequence table (TSV and Parquet), the DESIGN contract:
    seq_id chrom start end strand length n_windows n_fraction pred_label prob_<class>...
    [+ true_label split when labels are known]
Coordinates are 0-based half-open, as in BED. A sequence none of whose windows
passes the N threshold gets no call (pred_label empty, probabilities NaN).

Tracks: a BED of calls and one bedGraph per class whose value is the mean
probability of the sequences covering each base (no overlaps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .data import WindowSets
from .embed import iter_embeddings
from .extract import read_regions
from .heads import HeadConfig, check_compatible, load_head, predict_proba
from .io import atomic_dir, atomic_path, write_table_atomic


def prediction_table(regions: pd.DataFrame, sequences: pd.DataFrame, proba: np.ndarray,
                     class_names: list[str]) -> pd.DataFrame:
    """The per-sequence table; proba is (n_sequences, classes), NaN rows for no call."""
    called = ~np.isnan(proba).any(axis=1)
    pred = np.array([None] * len(regions), dtype=object)
    pred[called] = np.asarray(class_names, dtype=object)[proba[called].argmax(1)]
    table = pd.DataFrame({
        "seq_id": regions["seq_id"], "chrom": regions["chrom"], "start": regions["start"],
        "end": regions["end"], "strand": regions["strand"], "length": regions["length"],
        "n_windows": sequences["n_windows"].to_numpy(), "n_fraction": sequences["n_fraction"].to_numpy(),
        "pred_label": pred,
    })
    for i, name in enumerate(class_names):
        table[f"prob_{name}"] = proba[:, i]
    if regions["label"].notna().any():
        table["true_label"] = regions["label"]
        table["split"] = regions["split"]
    return table


def predict_all(head, embedding_paths: list[str], n_sequences: int, max_n_fraction: float,
                where: object) -> tuple[np.ndarray, dict]:
    """Class probabilities for every sequence, streaming shard by shard.

    Returns (n_sequences, classes) with NaN rows where no window passes the N
    threshold, and the embeddings' provenance.
    """
    config: HeadConfig = head.config
    proba = np.full((n_sequences, config.n_classes), np.nan, dtype=np.float64)
    provenance: dict = {}
    for keys, matrix, provenance in iter_embeddings(embedding_paths, config.pooling):
        chunk = WindowSets(keys, matrix, provenance, max_n_fraction)
        check_compatible(config, chunk.embed_dim, provenance, where)
        rows = np.flatnonzero(chunk.has_usable())
        proba[chunk.seq_index[rows]] = predict_proba(head, chunk, rows)
    return proba, provenance


def write_tables(table: pd.DataFrame, tsv: str, parquet: str, provenance: dict) -> None:
    with atomic_path(tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
    write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), parquet, provenance)


def calls_bed(table: pd.DataFrame) -> pd.DataFrame:
    """BED6 of calls: name = predicted class, score = 1000 x its probability."""
    called = table[table["pred_label"].notna()]
    prob_cols = [c for c in table.columns if c.startswith("prob_")]
    score = (called[prob_cols].max(axis=1) * 1000).round().astype(int)
    return pd.DataFrame({"chrom": called["chrom"], "start": called["start"], "end": called["end"],
                         "name": called["pred_label"], "score": score, "strand": called["strand"]})


def coverage_mean(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Per-base mean of overlapping intervals, as non-overlapping segments.

    Returns start, end, value for every stretch covered by at least one
    interval; neighbouring segments with equal value are merged.
    """
    bounds = np.unique(np.concatenate([starts, ends]))
    delta_sum = np.zeros(len(bounds))
    delta_n = np.zeros(len(bounds))
    lo, hi = np.searchsorted(bounds, starts), np.searchsorted(bounds, ends)
    np.add.at(delta_sum, lo, values)
    np.add.at(delta_sum, hi, -values)
    np.add.at(delta_n, lo, 1)
    np.add.at(delta_n, hi, -1)
    total, count = np.cumsum(delta_sum)[:-1], np.cumsum(delta_n)[:-1]  # per segment [bounds[i], bounds[i+1])
    covered = count > 0.5
    seg = pd.DataFrame({"start": bounds[:-1][covered], "end": bounds[1:][covered],
                        "value": np.round(total[covered] / count[covered], 6)})
    # Merge runs of equal value that touch.
    new_run = (seg["start"].to_numpy() != np.r_[-1, seg["end"].to_numpy()[:-1]]) | \
              (seg["value"].to_numpy() != np.r_[np.nan, seg["value"].to_numpy()[:-1]])
    run = np.cumsum(new_run)
    return seg.groupby(run).agg(start=("start", "first"), end=("end", "last"), value=("value", "first"))


def write_tracks(table: pd.DataFrame, class_names: list[str], out_dir: str) -> None:
    called = table[table["pred_label"].notna()]
    chrom_order = list(dict.fromkeys(table["chrom"]))
    with atomic_dir(out_dir) as tmp:
        bed = calls_bed(table)
        bed["_order"] = bed["chrom"].map({c: i for i, c in enumerate(chrom_order)})
        bed.sort_values(["_order", "start", "end"]).drop(columns="_order").to_csv(
            tmp / "calls.bed", sep="\t", header=False, index=False)
        by_chrom = list(called.groupby("chrom", sort=False))  # contigs in input order
        for name in class_names:
            parts = []
            for chrom, sub in by_chrom:
                seg = coverage_mean(sub["start"].to_numpy(), sub["end"].to_numpy(),
                                    sub[f"prob_{name}"].to_numpy(dtype=np.float64))
                seg.insert(0, "chrom", chrom)
                parts.append(seg)
            with open(tmp / f"prob_{_safe(name)}.bedGraph", "w") as fh:
                fh.write(f'track type=bedGraph name="P({name})" description="dnalm probability of {name}"\n')
                if parts:
                    pd.concat(parts).to_csv(fh, sep="\t", header=False, index=False)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def classify(embedding_paths: list[str], regions_path: str, sequences_path: str, head_dir: str,
             max_n_fraction: float, tsv: str, parquet: str, tracks_dir: str | None,
             labels_path: str | None = None) -> pd.DataFrame:
    head = load_head(head_dir)
    regions = read_regions(regions_path, labels_path)
    sequences = pq.read_table(sequences_path).to_pandas()
    proba, embedded = predict_all(head, embedding_paths, len(regions), max_n_fraction, Path(head_dir))
    table = prediction_table(regions, sequences, proba, head.config.class_names)
    provenance = {**embedded, "stage": "classify", "head": str(head_dir), "head_kind": head.config.kind,
                  "pooling": head.config.pooling, "max_n_fraction": max_n_fraction}
    write_tables(table, tsv, parquet, provenance)
    if tracks_dir:
        write_tracks(table, head.config.class_names, tracks_dir)
    return table

