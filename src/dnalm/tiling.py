"""The one tiling rule: starts of pieces of a fixed length every fixed step along a
sequence. Genome tiles (inputs), windows of a sequence (windows) and pretraining windows
(learning) are all cut by it, so they agree everywhere.

The last piece is right-anchored so the tail is covered; a sequence no longer than one
piece gives a single piece starting at 0.
"""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int, step: int) -> np.ndarray:
    """Starts of tiles (or windows) of `tile` bp every `step` bp over `length` bp."""
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - tile + 1, step, dtype=np.int64)
    if starts[-1] + tile < length:
        starts = np.append(starts, length - tile)
    return starts


def count_tiles(lengths: np.ndarray, tile: int, step: int) -> np.ndarray:
    """Pieces per sequence, the count `tile_starts` gives, for many lengths at once."""
    lengths = np.asarray(lengths, dtype=np.int64)
    over = np.maximum(lengths - tile, 0)
    return np.where(lengths <= tile, 1, -(-over // step) + 1).astype(np.int64)
