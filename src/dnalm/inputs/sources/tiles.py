"""Input `tiles`: a whole-genome tiling of a reference FASTA, contigs kept or dropped by
full-match regular expressions. The plan counts tiles from the index, without building
the millions of rows a large genome has."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from ...errors import InputError
from ...tiling import count_tiles, tile_starts
from ..regions import typed
from . import PlannedRegions, RegionSource, header_like, register


@register
class TileSource(RegionSource):
    mode = "tiles"

    def region_params(self) -> dict:
        s = self.settings
        return {**super().region_params(), "tiles": {"length": s.tile_length, "step": s.tile_step,
                                                     "include": list(s.include), "exclude": list(s.exclude)}}

    def check(self) -> None:
        s = self.settings
        if s.tile_length < 1 or s.tile_step < 1:
            raise InputError("tile length and step must be positive", fix="set input.tiles.length and .step")
        if s.tile_step > s.tile_length:
            raise InputError(
                f"input.tiles.step ({s.tile_step}) is larger than input.tiles.length ({s.tile_length}): "
                "the bases between tiles would never be classified",
                fix="use a step no larger than the tile length (equal: tiles touch; smaller: they overlap)")

    def tiled_contigs(self, contigs: dict[str, int]) -> dict[str, int]:
        """The non-empty contigs the include/exclude patterns keep (full matches), in FASTA order."""
        include = [_regex(p, "input.tiles.include") for p in self.settings.include]
        exclude = [_regex(p, "input.tiles.exclude") for p in self.settings.exclude]
        kept = {chrom: length for chrom, length in contigs.items()
                if length > 0 and (not include or any(p.fullmatch(chrom) for p in include))
                and not any(p.fullmatch(chrom) for p in exclude)}
        if not kept:
            raise InputError(
                f"no contig of {self.settings.reference} passes the include/exclude patterns "
                f"(contigs: {', '.join(list(contigs)[:5])}{', ...' if len(contigs) > 5 else ''})",
                fix="loosen input.tiles.include / input.tiles.exclude (full-match regular expressions)")
        return kept

    def regions(self, contigs: dict[str, int], labels: bool = True) -> pd.DataFrame:
        length, step = self.settings.tile_length, self.settings.tile_step
        chrom_col, start_col, end_col = [], [], []
        for chrom, size in self.tiled_contigs(contigs).items():
            starts = tile_starts(size, length, step)
            chrom_col.append(np.full(len(starts), chrom, dtype=object))
            start_col.append(starts)
            end_col.append(np.minimum(starts + length, size))
        chrom = np.concatenate(chrom_col)
        start = np.concatenate(start_col)
        end = np.concatenate(end_col)
        seq_id = pd.Series(chrom) + ":" + pd.Series(start).astype(str) + "-" + pd.Series(end).astype(str)
        frame = pd.DataFrame({"seq_id": seq_id, "chrom": chrom, "start": start, "end": end, "strand": "+",
                              "length": end - start, "label": None, "split": None, "group": None})
        return typed(frame)

    def plan(self, contigs: dict[str, int]) -> PlannedRegions:
        """Counted from the contig lengths: every tile is `tile_length` long, but on a contig
        shorter than one tile."""
        s = self.settings
        kept = self.tiled_contigs(contigs)
        sizes = np.fromiter(kept.values(), dtype=np.int64, count=len(kept))
        lengths = np.repeat(np.minimum(sizes, s.tile_length), count_tiles(sizes, s.tile_length, s.tile_step))
        names = hashlib.sha256("\n".join(f"{c}\t{n}" for c, n in kept.items()).encode()).hexdigest()
        digest = hashlib.sha256(f"{names}|{s.tile_length}|{s.tile_step}".encode()).hexdigest()[:16]
        return PlannedRegions(lengths, digest, {"train": [], "other": []}, header_like(kept))


def _regex(pattern: str, key: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise InputError(f"{key} pattern {pattern!r} is not a regular expression ({err})",
                         fix="write a Python regular expression, e.g. 'chr[0-9XY]+' or '.*_alt'") from None
