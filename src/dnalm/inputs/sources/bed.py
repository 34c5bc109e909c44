"""Input `bed`: regions of a reference FASTA listed in a BED file (BED3..BED6, optional
label and split columns). Parsed line by line, so every error names its line."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ...errors import InputError
from ...settings import InputSettings
from ...io import open_text
from ..labels import check_labels, empty_or_none, normalise_split
from ..regions import regions_frame, typed
from . import RegionSource, register

# UCSC header lines: `track` then key=value pairs, `browser` then a word (position,
# hide, ...). A contig that merely starts with these words (track_1, browser\t0\t10)
# is data.
_HEADER = re.compile(r"(track\s+[A-Za-z_][\w.-]*=|browser\s+[A-Za-z])")


@register
class BedSource(RegionSource):
    mode = "bed"

    @property
    def label_file(self) -> str:
        return self.settings.bed

    def label_params(self) -> dict:
        s = self.settings
        return {**super().label_params(), "bed": s.bed,
                "bed_columns": {"label": s.label_column, "split": s.split_column, "group": s.group_column}}

    def check(self) -> None:
        if not self.settings.bed:
            raise InputError("input.mode is bed but no BED is configured", fix="set input.bed")

    def regions(self, contigs: dict[str, int], labels: bool = True) -> pd.DataFrame:
        return regions_from_bed(self.settings.bed, contigs, self.settings, labels)

    def labels(self, regions: pd.DataFrame) -> pd.DataFrame:
        """seq_id -> label, split, group from the BED's label, split and group columns."""
        s = self.settings
        rows, lines = {}, []
        for lineno, cols in bed_lines(s.bed):
            rows[bed_name(cols)] = _label_columns(cols, s, f"{s.bed}:{lineno}")
            lines.append(lineno)
        parsed = pd.DataFrame.from_dict(rows, orient="index", columns=["label", "split", "group"])
        check_labels([label for label, _, _ in rows.values()], s.bed, lambda i: lines[i])
        frame = regions.copy()
        for col in ("label", "split", "group"):
            frame[col] = frame["seq_id"].map(parsed[col])
        return typed(frame)


def _suggest_contigs(missing: str, available: list[str]) -> str:
    hint = ""
    if missing.startswith("chr") and missing[3:] in available:
        hint = f" The FASTA names it {missing[3:]!r} (no 'chr' prefix): rename the BED's contigs."
    elif f"chr{missing}" in available:
        hint = f" The FASTA names it 'chr{missing}': add the 'chr' prefix in the BED."
    shown = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
    return f"Contigs in the FASTA: {shown}.{hint}"


def _label_columns(cols: list[str], settings: InputSettings, where: str) -> tuple:
    """(label, split, group) of a BED line (None where the line has no such column)."""
    return (_column(cols, settings.label_column), normalise_split(_column(cols, settings.split_column), where),
            _column(cols, settings.group_column))


def regions_from_bed(bed: str, contigs: dict[str, int], settings: InputSettings, labels: bool = True) -> pd.DataFrame:
    """Parse a BED file line by line, so every error can name its line."""
    path = Path(bed)
    if not path.exists():
        raise InputError("BED file does not exist", path=path, fix="check input.bed in the config")
    rows: list[tuple] = []
    seen: dict[str, int] = {}
    skipped: list[int] = []
    for lineno, cols in bed_lines(path, skipped):
        where = f"{path}:{lineno}"
        if len(cols) < 3:
            raise InputError(
                f"has {len(cols)} tab-separated column(s), a BED line needs at least 3",
                path=where, fix="separate chrom, start and end with tabs")
        chrom = cols[0]
        try:
            start, end = int(cols[1]), int(cols[2])
        except ValueError:
            raise InputError(
                f"start/end {cols[1]!r}, {cols[2]!r} are not integers", path=where,
                fix="BED coordinates are 0-based integers") from None
        if chrom not in contigs:
            raise InputError(
                f"contig {chrom!r} is not in the reference FASTA. {_suggest_contigs(chrom, list(contigs))}",
                path=where, fix="use the reference the BED was made for, or rename the contigs")
        if start < 0 or start >= end:
            raise InputError(
                f"start {start} must be >= 0 and less than end {end}", path=where,
                fix="BED regions are 0-based half-open [start, end); drop or correct this line")
        if end > contigs[chrom]:
            raise InputError(
                f"region ends at {end}, past the end of {chrom} ({contigs[chrom]} bp)", path=where,
                fix="clip the region to the contig, or check the reference build")
        strand = cols[5] if len(cols) > 5 else "+"
        if strand == ".":
            strand = "+"
        if strand not in ("+", "-"):
            raise InputError(f"strand {strand!r} is not +, - or .", path=where, fix="fix column 6")
        name = bed_name(cols)
        if name in seen:
            raise InputError(
                f"region name {name!r} already used on line {seen[name]}", path=where,
                fix="give every region a unique name in column 4 (or leave column 4 empty)")
        seen[name] = lineno
        label, split, group = _label_columns(cols, settings, where) if labels else (None, None, None)
        rows.append((name, chrom, start, end, strand, end - start, label, split, group))
    if not rows:
        raise InputError("BED file has no regions", path=path, fix="give at least one region")
    frame = regions_frame(rows)
    check_labels(frame["label"].tolist(), path, lambda i: seen[rows[i][0]])
    frame.attrs["skipped_lines"] = len(skipped)
    return frame


def bed_lines(path, skipped: list[int] | None = None):
    """(line number, tab-separated columns) of each data line of a BED (gzip or plain),
    skipping blank, comment (#), track and browser lines (their numbers go into
    `skipped`). A byte that is not UTF-8 is one clear error naming the line."""
    lineno = 0
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if line.startswith("#") or _HEADER.match(line):
                    if skipped is not None:
                        skipped.append(lineno)
                    continue
                yield lineno, line.rstrip("\n\r").split("\t")
        except UnicodeDecodeError:
            raise InputError(f"line {lineno + 1} is not UTF-8 text", path=path,
                             fix="a BED file is plain tab-separated text; check it is not a binary or BigBed "
                                 "file") from None


def _column(cols: list[str], one_based: int) -> str | None:
    if one_based < 1 or len(cols) < one_based:
        return None
    return empty_or_none(cols[one_based - 1])


def bed_name(cols: list[str]) -> str:
    """The region name: column 4, else chrom:start-end (plus (strand) when column 6 exists)."""
    if len(cols) > 3 and cols[3] not in ("", "."):
        return cols[3]
    name = f"{cols[0]}:{int(cols[1])}-{int(cols[2])}"
    if len(cols) > 5:
        strand = "+" if cols[5] == "." else cols[5]
        name = f"{name}({strand})"
    return name
