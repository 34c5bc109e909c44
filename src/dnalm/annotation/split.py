"""Where the genome is cut into training, validation and test parts, and the windows each
part is read in.

By position (the default): on every contig, train [0, v), val [v, t), test [t, end), t at
`1 - test_fraction` of the contig and v `val_fraction` of the training stretch before it.
By contig (`annotation.test_contigs`): those contigs are test, the others train then val.
A training window lies whole inside the training part and a validation window inside the
validation part: no base of another part is ever read as a training input, nor its label.
Inference windows cover every contig end to end (a base of the test part is annotated
from the bases around it, whatever part they are in: labels are never an input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..settings import AnnotationSettings
from ..tiling import mirrored_starts, tile_starts

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Stretch:
    contig: str
    start: int
    end: int  # exclusive
    part: str  # train | val | test


def split_genome(lengths: dict[str, int], settings: AnnotationSettings, window_size: int,
                 where: object = "annotation") -> list[Stretch]:
    """The parts of every contig, checked: each part holds something to learn or score from."""
    unknown = [c for c in settings.test_contigs if c not in lengths]
    if unknown:
        raise InputError(f"annotation.test_contigs names contig(s) {', '.join(unknown)} that the reference does "
                         "not have", path=where, fix=f"use contigs of input.reference ({', '.join(list(lengths)[:5])}"
                                                     f"{', ...' if len(lengths) > 5 else ''})")
    stretches = []
    for contig, length in lengths.items():
        if settings.test_contigs:
            if contig in settings.test_contigs:
                stretches.append(Stretch(contig, 0, length, "test"))
                continue
            test_cut = length
        else:
            test_cut = int(length * (1 - settings.test_fraction))
        val_cut = int(test_cut * (1 - settings.val_fraction))
        for start, end, part in ((0, val_cut, "train"), (val_cut, test_cut, "val"), (test_cut, length, "test")):
            if end > start:
                stretches.append(Stretch(contig, start, end, part))
    for part in PARTS:
        longest = max((s.end - s.start for s in stretches if s.part == part), default=0)
        if longest < window_size:
            raise InputError(
                f"the {part} part of the genome has no stretch of a whole {window_size} bp window (longest: "
                f"{longest} bp)", path=where,
                fix="use a larger reference, smaller windows.size, or other annotation.test_fraction / "
                    "val_fraction / test_contigs")
    return stretches


def split_table(stretches: list[Stretch]) -> pd.DataFrame:
    """The split as written to annotate/split.tsv (0-based, end exclusive)."""
    return pd.DataFrame([(s.contig, s.start, s.end, s.part) for s in stretches],
                        columns=["contig", "start", "end", "part"])


def part_windows(stretches: list[Stretch], part: str, window_size: int, stride: int) -> list[tuple[str, int]]:
    """(contig, start) of every window of `window_size` lying whole inside a stretch of `part`."""
    out = []
    for s in stretches:
        if s.part == part:
            out += [(s.contig, int(x)) for x in range(s.start, s.end - window_size + 1, stride)]
    return out


def contig_windows(length: int, window_size: int, stride: int, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the inference windows of a contig, end to end (`tiling`): every
    `stride` bases, the last one ending at the contig's end, or, `mirrored` (both strands
    read), a set that is its own mirror image, so a contig and its reverse complement are
    read in the same windows; a contig shorter than a window is one window of its length."""
    starts = (mirrored_starts if mirrored else tile_starts)(length, window_size, stride)
    return starts, np.full(len(starts), min(window_size, length), np.int64)


def shard_count(lengths: dict[str, int], window_size: int, stride: int, per_shard: int, mirrored: bool = False) -> int:
    total = sum(len(contig_windows(n, window_size, stride, mirrored)[0]) for n in lengths.values())
    return max(1, -(-total // per_shard))
