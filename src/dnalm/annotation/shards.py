"""An annotate_shard job's file (.npz, no pickles): `contigs` (names), `starts`, `ends`,
and per contig i `sum_i` (bases, classes + 1) float32, the window-weighted sums of the
probabilities over bases starts[i]..ends[i] - 1, and `weight_i` (bases,) float32, the
weights summed."""

from __future__ import annotations

import numpy as np

from ..io import atomic_path


def write_shard(path: str, contigs: list[str], starts: list[int], ends: list[int], arrays: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, contigs=np.array(contigs, dtype=str), starts=np.array(starts, np.int64),
                     ends=np.array(ends, np.int64), **arrays)


def read_shard(path: str):
    """(contig, start, end, sums, weight) of every contig in a shard file."""
    with np.load(path, allow_pickle=False) as data:
        for i, contig in enumerate(data["contigs"]):
            yield str(contig), int(data["starts"][i]), int(data["ends"][i]), data[f"sum_{i}"], data[f"weight_{i}"]
