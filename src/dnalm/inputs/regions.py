"""The regions table: one row per sequence to classify, declared once (REGIONS_SCHEMA).

Coordinates are 0-based half-open, as in BED. Only coordinates and labels live in the
table; the bases are read from the FASTA when windows are cut, so no genome is held in
memory here. On disk the coordinates and the labels are two files written by two rules
(extract_regions, extract_labels): relabelling a training set touches only
labels.parquet, and nothing that depends on the coordinates (windows, embeddings) re-runs.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa

from ..io import read_parquet, write_table_atomic

REGIONS_SCHEMA = pa.schema(
    [
        ("seq_id", pa.string()),
        ("chrom", pa.string()),
        ("start", pa.int64()),  # 0-based, inclusive
        ("end", pa.int64()),  # 0-based, exclusive
        ("strand", pa.string()),  # '+' or '-': '-' sequences are reverse-complemented
        ("length", pa.int64()),
        ("label", pa.string()),  # null when unknown
        ("split", pa.string()),  # train / val / test, null when unknown
        ("group", pa.string()),  # genome, strain, family...: validation holds groups out whole; null when none
    ]
)
LABEL_COLUMNS = ["seq_id", "label", "split", "group"]
COORDINATE_COLUMNS = [name for name in REGIONS_SCHEMA.names if name not in LABEL_COLUMNS[1:]]


def regions_frame(rows: list[tuple]) -> pd.DataFrame:
    """A regions table from rows in REGIONS_SCHEMA's column order."""
    return typed(pd.DataFrame(rows, columns=REGIONS_SCHEMA.names))


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in schema order and types (None, not NaN, where unknown)."""
    frame = frame[REGIONS_SCHEMA.names].copy()
    for col in ("start", "end", "length"):
        frame[col] = frame[col].astype("int64")
    for col in ("seq_id", "chrom", "strand", "label", "split", "group"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame.reset_index(drop=True)


def regions_to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=REGIONS_SCHEMA, preserve_index=False)


def write_coordinates(frame: pd.DataFrame, path: str, provenance: dict) -> None:
    write_table_atomic(regions_to_arrow(frame).select(COORDINATE_COLUMNS), path, provenance)


def write_labels(frame: pd.DataFrame, path: str) -> None:
    write_table_atomic(regions_to_arrow(frame).select(LABEL_COLUMNS), path, {"stage": "labels"})


def read_regions(regions_path: str, labels_path: str | None = None) -> pd.DataFrame:
    """The regions table with label, split and group (None where unknown)."""
    frame = read_parquet(regions_path, rule="extract_regions").to_pandas()
    if labels_path:
        labels = read_parquet(labels_path, rule="extract_labels").to_pandas()
        if labels["seq_id"].tolist() != frame["seq_id"].tolist():
            raise RuntimeError(f"{labels_path} and {regions_path} list different sequences: re-run extract_regions")
        for col in LABEL_COLUMNS[1:]:
            if col in labels:
                frame[col] = labels[col].to_numpy()
    for col in LABEL_COLUMNS[1:]:
        if col not in frame:
            frame[col] = None
    return typed(frame)


def coordinates_digest(frame: pd.DataFrame) -> str:
    """A short hash of what the windows are cut from (ids, coordinates, strands).

    The Snakefile passes it as a param of extract_regions, so editing only labels
    or splits in a BED re-runs no windows and no embeddings.
    """
    digest = hashlib.sha256()
    hashed = pd.util.hash_pandas_object(frame[COORDINATE_COLUMNS], index=False).to_numpy()
    digest.update(hashed.tobytes())
    return digest.hexdigest()[:16]
