"""The files between annotation jobs, in numpy's .npz layout (no pickles): written one
array at a time, so a job holds one contig's arrays, and read one array at a time.

An annotate_shard file: `contigs` (names), `starts`, `ends`, and per contig i `sum_i`
(bases, classes + 1) float32, the window-weighted sums of the probabilities over bases
starts[i]..ends[i] - 1, and `weight_i` (bases,) float32, the weights summed.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict

import numpy as np

from ..errors import InputError
from ..io import atomic_path


class ArrayWriter:
    """An .npz file written array by array (np.load reads it like np.savez's), atomically."""

    def __init__(self, path: str):
        self._atomic = atomic_path(path)
        self._zip = zipfile.ZipFile(self._atomic.__enter__(), "w", allowZip64=True)

    def add(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)

    def __enter__(self) -> "ArrayWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()
        self._atomic.__exit__(*exc)


def write_shard(path: str, contigs: list[str], starts: list[int], ends: list[int], arrays: dict) -> None:
    with ArrayWriter(path) as out:
        out.add("contigs", np.array(contigs, dtype=str))
        out.add("starts", np.array(starts, np.int64))
        out.add("ends", np.array(ends, np.int64))
        for name, array in arrays.items():
            out.add(name, array)


class ShardIndex:
    """Which shard files hold which contig (from their `contigs` arrays), and a contig's
    probabilities from them: the weighted sums of the shards added, over their weights."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self.where: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
        for path in self.paths:
            with np.load(path, allow_pickle=False) as data:
                for i, contig in enumerate(data["contigs"]):
                    self.where[str(contig)].append((path, i, int(data["starts"][i]), int(data["ends"][i])))

    def probabilities(self, contig: str, length: int) -> np.ndarray:
        sums, weight = None, np.zeros(length, np.float32)
        for path, i, start, end in self.where.get(contig, []):
            with np.load(path, allow_pickle=False) as data:
                part = data[f"sum_{i}"]
                if sums is None:
                    sums = np.zeros((length, part.shape[1]), np.float32)
                sums[start:end] += part
                weight[start:end] += data[f"weight_{i}"]
        missing = int((weight <= 0).sum())
        if sums is None or missing:
            raise InputError(f"{missing or length} bases of {contig} have no prediction from any shard",
                             path=self.paths[0] if self.paths else None,
                             fix="run the workflow again (a shard file is stale or incomplete)")
        return sums / weight[:, None]
