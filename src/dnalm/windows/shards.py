"""Cutting every sequence into overlapping windows, written as Parquet shards.

Window rule (`tiling.tile_starts`, shared with genome tiling and pretraining): windows
of `size` bp every `stride` bp; the last window is right-anchored so the tail is
covered; a sequence shorter than a window gives one short window. Where both strands are
embedded (`WindowSpec.mirrored`) the windows are spread evenly instead, at most `stride`
apart, as a set that is its own mirror image (`tiling.mirrored_starts`): a region and its
reverse complement get the same windows.

The shard plan depends on sequence lengths only, so the Snakefile computes the
number of shards when it builds the DAG (`plan_shards`) and this module writes
exactly that many (`write_shards`), streaming one sequence at a time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..inputs.fasta import fai_digest, open_fasta
from ..io import PARQUET_OPTIONS, atomic_dir, with_provenance
from ..settings import WindowSpec
from ..tiling import count_mirrored, count_tiles, mirrored_starts, tile_starts
from .bases import clean_sequence, reverse_complement

WINDOWS_SCHEMA = pa.schema(
    [
        ("window_id", pa.int64()),  # global, 0..total-1, in sequence order
        ("seq_index", pa.int64()),  # row of the regions table
        ("window_index", pa.int32()),  # 0..n_windows-1 within the sequence
        ("start", pa.int64()),  # offset in the sequence (in its own orientation)
        ("length", pa.int32()),  # bp; < size only for a sequence shorter than a window
        ("n_fraction", pa.float32()),
        ("status", pa.dictionary(pa.int8(), pa.string())),  # full | tail | short
        ("sequence", pa.string()),  # upper-case ACGTN
    ]
)

SEQUENCES_SCHEMA = pa.schema(
    [
        ("seq_index", pa.int64()),
        ("n_windows", pa.int32()),
        ("first_window_id", pa.int64()),
        ("n_fraction", pa.float32()),
        ("ambiguous_bases", pa.int64()),  # IUPAC codes read as N (policy as_n)
    ]
)


def count_windows(lengths: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Windows per sequence, as `window_starts` cuts them, for many lengths at once."""
    count = count_mirrored if spec.mirrored else count_tiles
    return count(lengths, spec.size, spec.stride)


def window_starts(length: int, spec: WindowSpec) -> tuple[np.ndarray, list[str]]:
    """Starts of a sequence's windows, and each window's status: full, tail (right-anchored
    off the stride grid) or short (the sequence is shorter than one window)."""
    if length < spec.size:
        return np.zeros(1, dtype=np.int64), ["short"]
    if spec.mirrored:
        starts = mirrored_starts(length, spec.size, spec.stride)
        return starts, ["full"] * len(starts)
    starts = tile_starts(length, spec.size, spec.stride)
    return starts, ["full"] * (len(starts) - 1) + ["tail" if starts[-1] % spec.stride else "full"]


def plan_shards(lengths: np.ndarray, spec: WindowSpec) -> int:
    """Number of shards for these sequence lengths (at least one)."""
    total = int(count_windows(lengths, spec).sum())
    return max(1, math.ceil(total / spec.per_shard))


def shard_name(index: int) -> str:
    return f"{index:05d}"


class _ShardWriter:
    """Buffers windows and writes one Parquet file per `per_shard` windows."""

    def __init__(self, folder: Path, per_shard: int, schema: pa.Schema):
        self.folder, self.per_shard, self.schema = folder, per_shard, schema
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.buffered = 0
        self.written = 0

    def add(self, **cols) -> None:
        n = len(cols["window_id"])
        offset = 0
        while offset < n:
            take = min(n - offset, self.per_shard - self.buffered)
            for name, values in cols.items():
                self.columns[name].append(values[offset : offset + take])
            self.buffered += take
            offset += take
            if self.buffered == self.per_shard:
                self.flush()

    def flush(self) -> None:
        if self.buffered == 0 and self.written > 0:
            return
        arrays = []
        for field in self.schema:
            parts = self.columns[field.name]
            if field.name in ("sequence", "status"):  # python lists of str
                values = [v for part in parts for v in part]
            else:
                values = np.concatenate(parts)
            if pa.types.is_dictionary(field.type):
                arrays.append(pa.array(values, type=pa.string()).dictionary_encode().cast(field.type))
            else:
                arrays.append(pa.array(values, type=field.type))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        pq.write_table(table, self.folder / f"shard_{shard_name(self.written)}.parquet", **PARQUET_OPTIONS)
        self.columns = {name: [] for name in self.schema.names}
        self.buffered = 0
        self.written += 1


SEQUENCES_FILE = "sequences.parquet"


def write_shards(regions: pd.DataFrame, fasta: str, spec: WindowSpec, out_dir: str,
                 expected_shards: int, reference: str | None = None) -> int:
    """Cut every region into windows; write `shard_NNNNN.parquet` files and the
    per-sequence summary `sequences.parquet` into `out_dir`. The bases are read
    from `fasta`; provenance names `reference` (the configured file, default `fasta`).

    All files appear together or not at all: they are written into a temporary
    folder and moved into place only when every sequence has passed its checks.
    """
    spec.check()
    provenance = {
        "stage": "windows",
        "reference": str(reference or fasta),
        "reference_fai_sha256": fai_digest(fasta),
        "window_size": spec.size,
        "window_stride": spec.stride,
        "windows_per_shard": spec.per_shard,
        "iupac": spec.iupac,
    }
    if spec.mirrored:
        provenance["window_tiling"] = "mirrored"
    schema = with_provenance(WINDOWS_SCHEMA, provenance)
    summary = {name: [] for name in SEQUENCES_SCHEMA.names}
    fa = open_fasta(fasta)
    next_window = 0
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        writer = _ShardWriter(tmp, spec.per_shard, schema)
        for row in regions.itertuples(index=True):
            raw = fa.fetch(row.chrom, row.start, row.end)
            seq, ambiguous = clean_sequence(raw, spec.iupac, f"{row.seq_id} ({row.chrom}:{row.start}-{row.end})",
                                            fasta)
            if row.strand == "-":
                seq = reverse_complement(seq)
            length = len(seq)
            starts, status = window_starts(length, spec)
            ends = np.minimum(starts + spec.size, length)
            is_n = np.frombuffer(seq.encode("ascii"), dtype=np.uint8) == ord("N")
            n_cum = np.concatenate([[0], np.cumsum(is_n, dtype=np.int64)])
            n_windows = len(starts)
            ids = np.arange(next_window, next_window + n_windows, dtype=np.int64)
            writer.add(
                window_id=ids,
                seq_index=np.full(n_windows, row.Index, dtype=np.int64),
                window_index=np.arange(n_windows, dtype=np.int32),
                start=starts,
                length=(ends - starts).astype(np.int32),
                n_fraction=((n_cum[ends] - n_cum[starts]) / (ends - starts)).astype(np.float32),
                status=status,
                sequence=[seq[s:e] for s, e in zip(starts.tolist(), ends.tolist())],
            )
            summary["seq_index"].append(row.Index)
            summary["n_windows"].append(n_windows)
            summary["first_window_id"].append(next_window)
            summary["n_fraction"].append(float(n_cum[-1]) / max(length, 1))
            summary["ambiguous_bases"].append(ambiguous)
            next_window += n_windows
        if writer.buffered or writer.written == 0:
            writer.flush()
        if writer.written != expected_shards:
            raise RuntimeError(
                f"wrote {writer.written} shards but the plan has {expected_shards}: the regions table "
                "and the plan disagree (re-run so the plan is computed again)")
        seq_table = pa.Table.from_pydict(summary, schema=with_provenance(SEQUENCES_SCHEMA, provenance))
        pq.write_table(seq_table, tmp / SEQUENCES_FILE, **PARQUET_OPTIONS)
    # Shards of an earlier plan with more shards (a smaller windows.per_shard) are not
    # part of this run: remove them so nobody globbing the folder reads stale windows.
    for old in out.glob("shard_*.parquet"):
        if old.stem.removeprefix("shard_").isdigit() and int(old.stem.removeprefix("shard_")) >= writer.written:
            old.unlink()
    print(f"{next_window} windows of {len(regions)} sequences in {writer.written} shard(s)", file=sys.stderr)
    return writer.written
