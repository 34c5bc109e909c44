"""The tiling rules: starts of pieces of a fixed length along a sequence. Genome tiles
(inputs), windows of a sequence (windows) and pretraining windows (learning) are all cut
by `tile_starts`, so they agree everywhere; windows of runs that embed both strands use
its mirror-symmetric form, `mirrored_starts`.
"""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int, step: int) -> np.ndarray:
    """Starts of tiles (or windows) of `tile` bp every `step` bp over `length` bp.

    The last one is right-anchored so the tail is covered; a sequence no longer than one
    piece gives a single piece starting at 0.
    """
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


def count_mirrored(lengths: np.ndarray, tile: int, step: int) -> np.ndarray:
    """Pieces per sequence, the count `mirrored_starts` gives: `count_tiles`', plus one where
    that count is odd and the slack (length - tile) odd (no integer start sits in the middle)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    count = count_tiles(lengths, tile, step)
    span = np.maximum(lengths - tile, 0)
    return count + ((lengths > tile) & (count % 2 == 1) & (span % 2 == 1))


def mirrored_starts(length: int, tile: int, step: int) -> np.ndarray:
    """Starts of pieces spread evenly from 0 to length - tile, at most `step` apart, as a
    set that is its own mirror image (start s <-> length - tile - s): a sequence and its
    reverse complement are cut into the same pieces, in opposite orders.

    The k-th of n starts at k * span / (n - 1), rounded to the nearest integer (halves up
    in the first half, down in the second, which mirrors the first): neighbours stay at
    most `step` apart, as n - 1 >= span / step.
    """
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    span = length - tile
    n = int(count_mirrored(np.array([length]), tile, step)[0])
    k = np.arange(n, dtype=np.int64)

    def nearest(j):  # round(j * span / (n - 1)), halves up
        return (2 * j * span + (n - 1)) // (2 * (n - 1))

    return np.where(2 * k < n - 1, nearest(k), span - nearest(n - 1 - k))
