"""Sequences as batches of their window vectors, for the heads: training, fine-tuning
and classification all read them the same way.

A batch is what every head takes:
    windows   (batch, max_windows, dim)  float, padded
    positions (batch, max_windows)       float, window start / stride
    mask      (batch, max_windows)       bool, True = a window the head may read
Batches are sized by a window budget, not a number of sequences, so a 20,000-window
contig and a thousand 3-window regions both fit the same memory.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..embedding.shards import read_embeddings
from .heads import WINDOW_BUDGET
from .toolkit import usable_windows


def budget_batches(counts: np.ndarray, rows: np.ndarray, budget: int = WINDOW_BUDGET) -> list[np.ndarray]:
    """Consecutive groups of `rows` whose padded size (rows x longest) stays within `budget`
    windows; a sequence longer than the budget is a batch of its own."""
    batches, start, longest = [], 0, 0
    for i, row in enumerate(rows):
        longest_with = max(longest, int(counts[row]))
        if i > start and (i - start + 1) * longest_with > budget:
            batches.append(rows[start:i])
            start, longest_with = i, int(counts[row])
        longest = longest_with
    if len(rows) > start:
        batches.append(rows[start:])
    return batches


class WindowSets:
    """Window vectors of a run of whole sequences, addressable by row.

    Row i is the sequence with regions index seq_index[i]; its windows are
    matrix[offsets[i] : offsets[i] + counts[i]], in window order.

    matrix:    (n_windows, embed_dim) float32
    seq_index: (n_rows,) regions-table index of each row
    offsets, counts: (n_rows,)
    positions: (n_windows,) window start / stride (fractional for a right-anchored tail)
    usable:    (n_windows,) bool, False for windows with too many N or no sequence token
               (e.g. shorter than k)
    """

    def __init__(self, keys: pa.Table, matrix: np.ndarray, provenance: dict, max_n_fraction: float):
        window_seq = keys.column("seq_index").to_numpy()
        if window_seq.size and np.any(np.diff(window_seq) < 0):
            raise RuntimeError("embedding shards are not in sequence order")
        self.matrix, self.provenance = matrix, provenance
        self.seq_index, self.offsets, counts = np.unique(window_seq, return_index=True, return_counts=True)
        self.counts = counts.astype(np.int64)
        stride = float(provenance.get("window_stride", 1))
        self.positions = keys.column("start").to_numpy().astype(np.float32) / stride
        self.usable = usable_windows(keys.column("n_fraction").to_numpy(), max_n_fraction,
                                     keys.column("tokens").to_numpy())
        self.embed_dim = matrix.shape[1]

    @classmethod
    def from_files(cls, embedding_paths: list[str], pooling: str, max_n_fraction: float) -> "WindowSets":
        keys, matrix, provenance = read_embeddings(embedding_paths, pooling)
        return cls(keys, matrix, provenance, max_n_fraction)

    def _any(self, per_window: np.ndarray) -> np.ndarray:
        counts = np.add.reduceat(per_window.astype(np.int64), self.offsets) if per_window.size \
            else np.zeros_like(self.counts)
        return (self.counts > 0) & (counts > 0)

    def has_usable(self) -> np.ndarray:
        """Per sequence: at least one window below the N threshold with a sequence token."""
        return self._any(self.usable)

    def window_rows(self, rows: np.ndarray) -> np.ndarray:
        """Matrix rows of the usable windows of these sequences."""
        idx = np.concatenate([np.arange(self.offsets[r], self.offsets[r] + self.counts[r]) for r in rows])
        return idx[self.usable[idx]]

    def batch(self, rows: np.ndarray):
        """Padded (batch, max_windows, dim) vectors, (batch, max_windows) positions and mask."""
        import torch

        counts = self.counts[rows]
        width = int(counts.max())
        slot = np.arange(width)
        valid = slot[None, :] < counts[:, None]  # (batch, width)
        index = np.where(valid, self.offsets[rows][:, None] + slot[None, :], 0)
        windows = self.matrix[index] * valid[..., None]
        mask = valid & self.usable[index]
        return (torch.from_numpy(windows), torch.from_numpy(self.positions[index] * valid),
                torch.from_numpy(mask))

    def batches(self, rows: np.ndarray, budget: int = WINDOW_BUDGET) -> list[np.ndarray]:
        return budget_batches(self.counts, np.asarray(rows), budget)
