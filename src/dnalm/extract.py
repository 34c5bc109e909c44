"""Stage 1: which sequences to classify, as a regions table.

Three sources, one output shape (0-based half-open coordinates, as in BED):
- `bed`: regions of a reference FASTA (BED3..BED6, optional label/split columns);
- `tiles`: a whole-genome tiling of the reference (contigs filtered by regex);
- `fasta`: a FASTA of sequences, one record = one sequence, with an optional
  labels table (id, label, split).

Only coordinates and labels live in the table; the bases are read from the
FASTA when windows are cut, so no genome is ever held in memory here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import __version__
from . import fasta as _fasta
from . import io as _io
from .errors import InputError
from .fasta import FastaAccess, plan_fasta, read_fai, reference_dir, scan_fasta
from .io import atomic_path, open_text, read_parquet, write_table_atomic

# The regions table, declared once: writer (extract_regions) and readers agree.
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
    ]
)

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_MISSING = {"", ".", "na", "nan", "none", "null"}
# C0 controls (tab, LF, CR, ...), DEL, C1 controls (NEL, ...) and the Unicode line and
# paragraph separators: each breaks a line- or tab-separated format, or a reader of one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class RegionSource:
    """What the `input:` section of the config says, as the package sees it."""

    mode: str  # bed | tiles | fasta
    reference: str = ""
    bed: str = ""
    label_column: int = 7  # 1-based BED column with the class label (if present)
    split_column: int = 8  # 1-based BED column with train/val/test (if present)
    tile_length: int = 2048
    tile_step: int = 2048
    include: tuple[str, ...] = field(default_factory=tuple)
    exclude: tuple[str, ...] = field(default_factory=tuple)
    sequences: str = ""
    labels: str = ""

    @property
    def fasta(self) -> str:
        """The FASTA the bases come from."""
        return self.sequences if self.mode == "fasta" else self.reference

    @classmethod
    def from_config(cls, cfg: dict) -> "RegionSource":
        tiles = cfg.get("tiles", {})
        bed_cols = cfg.get("bed_columns", {})
        return cls(
            mode=cfg["mode"],
            reference=cfg.get("reference", ""),
            bed=cfg.get("bed", ""),
            label_column=int(bed_cols.get("label", 7)),
            split_column=int(bed_cols.get("split", 8)),
            tile_length=int(tiles.get("length", 2048)),
            tile_step=int(tiles.get("step", 2048)),
            include=tuple(tiles.get("include", []) or []),
            exclude=tuple(tiles.get("exclude", []) or []),
            sequences=cfg.get("sequences", ""),
            labels=cfg.get("labels", "") or "",
        )


    def check(self) -> None:
        """Settings that need no file: the mode, its paths, the tiling."""
        if self.mode not in ("bed", "tiles", "fasta"):
            raise InputError(f"unknown input mode {self.mode!r}", fix="set input.mode to bed, tiles or fasta")
        if self.mode == "bed" and not self.bed:
            raise InputError("input.mode is bed but no BED is configured", fix="set input.bed")
        if self.mode == "fasta" and not self.sequences:
            raise InputError("input.mode is fasta but no FASTA of sequences is configured",
                             fix="set input.sequences")
        if self.mode == "tiles":
            if self.tile_length < 1 or self.tile_step < 1:
                raise InputError("tile length and step must be positive", fix="set input.tiles.length and .step")
            if self.tile_step > self.tile_length:
                raise InputError(
                    f"input.tiles.step ({self.tile_step}) is larger than input.tiles.length ({self.tile_length}): "
                    "the bases between tiles would never be classified",
                    fix="use a step no larger than the tile length (equal: tiles touch; smaller: they overlap)")


def fasta_records(source: RegionSource, fasta: str | None = None) -> dict[str, int]:
    """Record name -> length of the FASTA the sequences come from (`fasta`: the path the
    jobs read, default the configured one). Mode fasta reads every record by streaming,
    so repeated names and empty records are found; the other modes read the index."""
    fasta = fasta or source.fasta
    return scan_fasta(fasta) if source.mode == "fasta" else read_fai(fasta)


def load_regions(source: RegionSource, contigs: dict[str, int] | None = None, labels: bool = True) -> pd.DataFrame:
    """The regions table for a source, validated against the FASTA's records
    (`contigs`, name -> length; read from the configured FASTA when not given).
    `labels=False` leaves the BED's label and split columns unread."""
    source.check()
    if contigs is None:
        contigs = fasta_records(source)
    if source.mode == "bed":
        return regions_from_bed(source.bed, contigs, source, labels)
    if source.mode == "tiles":
        return regions_from_tiles(contigs, source)
    return regions_from_fasta(source.sequences, source.labels, contigs)


def _empty_or_none(value: str) -> str | None:
    return None if value.strip().lower() in _MISSING else value.strip()


def normalise_split(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    if key in _MISSING:
        return None
    if key not in _SPLIT_ALIASES:
        raise InputError(
            f"unknown split {value!r}",
            path=where,
            fix="use train, val (or validation/dev) or test, or leave it empty",
        )
    return _SPLIT_ALIASES[key]


def _suggest_contigs(missing: str, available: list[str]) -> str:
    hint = ""
    if missing.startswith("chr") and missing[3:] in available:
        hint = f" The FASTA names it {missing[3:]!r} (no 'chr' prefix): rename the BED's contigs."
    elif f"chr{missing}" in available:
        hint = f" The FASTA names it 'chr{missing}': add the 'chr' prefix in the BED."
    shown = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
    return f"Contigs in the FASTA: {shown}.{hint}"


def regions_from_bed(bed: str, contigs: dict[str, int], source: RegionSource, labels: bool = True) -> pd.DataFrame:
    """Parse a BED file line by line, so every error can name its line."""
    path = Path(bed)
    if not path.exists():
        raise InputError("BED file does not exist", path=path, fix="check input.bed in the config")
    rows: list[tuple] = []
    seen: dict[str, int] = {}
    skipped: list[int] = []
    for lineno, cols in _bed_lines(path, skipped):
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
        name = _bed_name(cols)
        if name in seen:
            raise InputError(
                f"region name {name!r} already used on line {seen[name]}", path=where,
                fix="give every region a unique name in column 4 (or leave column 4 empty)")
        seen[name] = lineno
        label = _column(cols, source.label_column) if labels else None
        split = normalise_split(_column(cols, source.split_column), where) if labels else None
        rows.append((name, chrom, start, end, strand, end - start, label, split))
    if not rows:
        raise InputError("BED file has no regions", path=path, fix="give at least one region")
    frame = _frame(rows)
    check_labels(frame["label"].tolist(), path, lambda i: seen[rows[i][0]])
    frame.attrs["skipped_lines"] = len(skipped)
    return frame


# UCSC header lines: `track` then key=value pairs, `browser` then a word (position,
# hide, ...). A contig that merely starts with these words (track_1, browser\t0\t10)
# is data.
_HEADER = re.compile(r"(track\s+[A-Za-z_][\w.-]*=|browser\s+[A-Za-z])")


def _bed_lines(path, skipped: list[int] | None = None):
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
    return _empty_or_none(cols[one_based - 1])


def tile_starts(length: int, tile: int, step: int) -> np.ndarray:
    """Starts of tiles (or windows) of `tile` bp every `step` bp over `length` bp.

    The last one is right-anchored so the tail is covered; a sequence shorter
    than one tile gives a single start at 0. Shared by genome tiling and by
    window cutting, so both follow one rule.
    """
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - tile + 1, step, dtype=np.int64)
    if starts[-1] + tile < length:
        starts = np.append(starts, length - tile)
    return starts


def _regex(pattern: str, key: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise InputError(f"{key} pattern {pattern!r} is not a regular expression ({err})",
                         fix="write a Python regular expression, e.g. 'chr[0-9XY]+' or '.*_alt'") from None


def tiled_contigs(contigs: dict[str, int], source: RegionSource) -> dict[str, int]:
    """The non-empty contigs the include/exclude patterns keep (full matches), in FASTA order."""
    source.check()
    include = [_regex(p, "input.tiles.include") for p in source.include]
    exclude = [_regex(p, "input.tiles.exclude") for p in source.exclude]
    kept = {chrom: length for chrom, length in contigs.items()
            if length > 0 and (not include or any(p.fullmatch(chrom) for p in include))
            and not any(p.fullmatch(chrom) for p in exclude)}
    if not kept:
        raise InputError(
            f"no contig of {source.reference} passes the include/exclude patterns "
            f"(contigs: {', '.join(list(contigs)[:5])}{', ...' if len(contigs) > 5 else ''})",
            fix="loosen input.tiles.include / input.tiles.exclude (full-match regular expressions)")
    return kept


def regions_from_tiles(contigs: dict[str, int], source: RegionSource) -> pd.DataFrame:
    chrom_col, start_col, end_col = [], [], []
    for chrom, length in tiled_contigs(contigs, source).items():
        starts = tile_starts(length, source.tile_length, source.tile_step)
        chrom_col.append(np.full(len(starts), chrom, dtype=object))
        start_col.append(starts)
        end_col.append(np.minimum(starts + source.tile_length, length))
    chrom = np.concatenate(chrom_col)
    start = np.concatenate(start_col)
    end = np.concatenate(end_col)
    seq_id = pd.Series(chrom) + ":" + pd.Series(start).astype(str) + "-" + pd.Series(end).astype(str)
    frame = pd.DataFrame({"seq_id": seq_id, "chrom": chrom, "start": start, "end": end, "strand": "+",
                          "length": end - start, "label": None, "split": None})
    return _typed(frame)


def regions_from_fasta(fasta: str, labels: str, contigs: dict[str, int]) -> pd.DataFrame:
    """One sequence per record (`contigs`: name -> length, in file order, as
    `scan_fasta` gives them). Every record needs bases."""
    for number, (name, length) in enumerate(contigs.items(), start=1):
        if length == 0:
            raise InputError(f"record {number} ({name}) has no sequence", path=fasta,
                             fix="remove the empty record")
    frame = pd.DataFrame({"seq_id": list(contigs), "chrom": list(contigs), "start": 0,
                          "end": list(contigs.values()), "strand": "+"})
    frame["length"] = frame["end"]
    frame["label"] = None
    frame["split"] = None
    if labels:
        _attach_labels_table(frame, labels, fasta)
    return _typed(frame)


def _attach_labels_table(frame: pd.DataFrame, labels: str, fasta: str) -> int:
    """Fill frame's label/split from a labels table. Records without a row stay
    unlabelled (classified, not trained); their count is returned. An id that no
    record has is an error: it is most often a typo."""
    table = read_labels(labels)
    unknown = table.index[~table.index.isin(frame["seq_id"])].tolist()
    if unknown:
        line = table["line"].loc[unknown[0]]
        raise InputError(
            f"{len(unknown)} id(s) name no record of {fasta}, e.g. {unknown[0]!r} (line {line})"
            + (f", {', '.join(map(repr, unknown[1:3]))}" if len(unknown) > 1 else ""),
            path=labels, fix="correct the id to the record's name (the first word of its FASTA header), or "
                             "remove the row")
    frame["label"] = table["label"].reindex(frame["seq_id"]).to_numpy()
    frame["split"] = table["split"].reindex(frame["seq_id"]).to_numpy()
    return int((~frame["seq_id"].isin(table.index)).sum())


def _sniff_separator(path: Path) -> str:
    """Tab or comma, from the header line: what the file holds, whatever its name says."""
    with open_text(path) as fh:
        try:
            header = fh.readline()
        except UnicodeDecodeError:
            raise InputError("is not UTF-8 text", path=path,
                             fix="save the labels table as plain (UTF-8) TSV or CSV text") from None
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return "," if path.name.endswith((".csv", ".csv.gz")) else "\t"


def read_labels(path: str) -> pd.DataFrame:
    """A labels table (TSV or CSV, header: id, label[, split]) indexed by id, with the
    file's line number of each row in column `line`. The separator is read from the
    header line, so a comma-separated file named .tsv is read as CSV."""
    p = Path(path)
    if not p.exists():
        raise InputError("labels table does not exist", path=p, fix="check input.labels in the config")
    sep = _sniff_separator(p) if p.stat().st_size else "\t"
    kind = "CSV" if sep == "," else "TSV"
    try:
        table = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read as a {kind} table ({str(err).strip()})", path=p,
                         fix="write a header line id<TAB>label<TAB>split (or id,label,split) and one row per "
                             "sequence") from None
    if "id" not in table.columns or "label" not in table.columns:
        raise InputError(
            f"read as {kind}, its first line has the columns {list(table.columns)}; the header needs 'id' and "
            "'label' (and optionally 'split')",
            path=p, fix="make the first line the header id<TAB>label<TAB>split (tabs or commas, one kind "
                        "throughout)")
    table["line"] = np.arange(len(table)) + 2
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        first = table.loc[table["id"] == dup.iloc[0], "line"].tolist()
        raise InputError(f"id {dup.iloc[0]!r} appears on lines {first[0]} and {first[1]}", path=p,
                         fix="keep one row per id")
    table["label"] = table["label"].map(_empty_or_none)
    check_labels(table["label"].tolist(), p, lambda i: table["line"].iloc[i])
    if "split" in table.columns:
        table["split"] = [normalise_split(v, f"{p}:{line} (id {i})")
                          for i, v, line in zip(table["id"], table["split"], table["line"])]
    else:
        table["split"] = None
    return table.set_index("id")[["label", "split", "line"]]


def check_labels(labels: list, path, line_of) -> None:
    """A label column as read from `path`: no control characters, and no number written
    two ways (`line_of(i)`: the line of labels[i], named in the message)."""
    check_label_text(labels, path)
    check_label_spellings(labels, lambda i: f"{path}:{line_of(i)}")


def check_label_text(labels, where: object) -> None:
    """Refuse labels holding control characters, naming the first such label and the fix.

    `labels`: any iterable of labels (None and NaN, i.e. unknown, are skipped);
    `where`: the file (or head folder) they come from, named in the message.
    """
    bad = sorted({label for label in labels if isinstance(label, str) and _CONTROL.search(label)})
    if not bad:
        return
    first = bad[0]
    char = _CONTROL.search(first).group()
    more = f" ({len(bad)} labels hold such characters)" if len(bad) > 1 else ""
    raise InputError(
        f"the label {first!r} holds the control character {char!r}{more}; tabs, line breaks and other "
        "control characters cannot be written into the per-sequence TSV, the BED of calls or the tracks",
        path=where, fix="remove the control characters from the labels (e.g. replace a tab by a space) "
                        "and run again")


def check_label_spellings(labels: list, where) -> None:
    """Labels that are one number written two ways ('1' and '1.0', '0' and '00') would
    become two classes: refuse them, naming where each spelling first appears
    (`where(i)` describes the place of labels[i])."""
    spellings: dict[float, list[str]] = {}
    for label in pd.unique(pd.Series(labels, dtype=object).dropna()):
        try:
            number = float(label)
        except ValueError:
            continue
        if not math.isnan(number):
            spellings.setdefault(number, []).append(label)
    for seen in spellings.values():
        if len(seen) > 1:
            a, b = seen[:2]
            raise InputError(
                f"labels {a!r} ({where(labels.index(a))}) and {b!r} ({where(labels.index(b))}) are the same "
                "number written two ways; they would become two classes",
                fix=f"write each class one way throughout (e.g. all {a!r}); if they are different classes, give "
                    "them names that are not numbers")


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return _typed(pd.DataFrame(rows, columns=REGIONS_SCHEMA.names))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[REGIONS_SCHEMA.names].copy()
    for col in ("start", "end", "length"):
        frame[col] = frame[col].astype("int64")
    for col in ("seq_id", "chrom", "strand", "label", "split"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame.reset_index(drop=True)


def regions_to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=REGIONS_SCHEMA, preserve_index=False)


# On disk the coordinates and the labels are two files, written by two rules
# (extract_regions, extract_labels): relabelling a training set touches only
# labels.parquet, and nothing that depends on the coordinates (windows,
# embeddings) re-runs.
COORDINATE_COLUMNS = [name for name in REGIONS_SCHEMA.names if name not in ("label", "split")]
LABEL_COLUMNS = ["seq_id", "label", "split"]


def write_coordinates(frame: pd.DataFrame, path: str, provenance: dict) -> None:
    write_table_atomic(regions_to_arrow(frame).select(COORDINATE_COLUMNS), path, provenance)


def write_labels(frame: pd.DataFrame, path: str) -> None:
    write_table_atomic(regions_to_arrow(frame).select(LABEL_COLUMNS), path, {"stage": "labels"})


def labels_for(regions: pd.DataFrame, source: dict) -> pd.DataFrame:
    """Label and split per sequence of the regions table, from the BED or labels table."""
    full = RegionSource.from_config(source)
    frame = regions.copy()
    frame["label"], frame["split"] = None, None
    if full.mode == "bed":
        parsed = _bed_labels(full)
        frame["label"] = frame["seq_id"].map(parsed["label"])
        frame["split"] = frame["seq_id"].map(parsed["split"])
    elif full.mode == "fasta" and full.labels:
        unlabelled = _attach_labels_table(frame, full.labels, full.sequences or "the FASTA")
        if unlabelled:
            print(f"{unlabelled} of {len(frame)} FASTA records have no row in {full.labels}: they are "
                  "unlabelled (classified, not trained)", file=sys.stderr)
    return _typed(frame)


def _bed_labels(source: RegionSource) -> pd.DataFrame:
    """seq_id -> label, split from the BED's label/split columns (names as regions_from_bed gives them)."""
    rows = {}
    lines = []
    for lineno, cols in _bed_lines(source.bed):
        rows[_bed_name(cols)] = (_column(cols, source.label_column),
                                 normalise_split(_column(cols, source.split_column), f"{source.bed}:{lineno}"))
        lines.append(lineno)
    parsed = pd.DataFrame.from_dict(rows, orient="index", columns=["label", "split"])
    check_labels([label for label, _ in rows.values()], source.bed, lambda i: lines[i])
    return parsed


def _bed_name(cols: list[str]) -> str:
    """The region name: column 4, else chrom:start-end (plus (strand) when column 6 exists)."""
    if len(cols) > 3 and cols[3] not in ("", "."):
        return cols[3]
    name = f"{cols[0]}:{int(cols[1])}-{int(cols[2])}"
    if len(cols) > 5:
        strand = "+" if cols[5] == "." else cols[5]
        name = f"{name}({strand})"
    return name


def read_regions(regions_path: str, labels_path: str | None = None) -> pd.DataFrame:
    """The regions table with label and split (None where unknown)."""
    frame = read_parquet(regions_path, rule="extract_regions").to_pandas()
    if labels_path:
        labels = read_parquet(labels_path, rule="extract_labels").to_pandas()
        if labels["seq_id"].tolist() != frame["seq_id"].tolist():
            raise RuntimeError(f"{labels_path} and {regions_path} list different sequences: re-run extract_regions")
        frame["label"], frame["split"] = labels["label"].to_numpy(), labels["split"].to_numpy()
    for col in ("label", "split"):
        if col not in frame:
            frame[col] = None
    return _typed(frame)


def coordinates_digest(frame: pd.DataFrame) -> str:
    """A short hash of what the windows are cut from (ids, coordinates, strands).

    The Snakefile passes it as a param of extract_regions, so editing only labels
    or splits in a BED re-runs no windows and no embeddings.
    """
    digest = hashlib.sha256()
    hashed = pd.util.hash_pandas_object(frame[COORDINATE_COLUMNS], index=False).to_numpy()
    digest.update(hashed.tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class InputPlan:
    """What the Snakefile needs when it builds the DAG: sequence lengths (for the shard
    plan), a digest of the coordinates (a param of extract_regions), whether any
    sequence is labelled, and how jobs read the FASTA. `key` says which inputs it was
    made from (see `plan_key`)."""

    lengths: np.ndarray
    coordinates_digest: str
    labelled: bool
    fasta: FastaAccess
    key: str = ""
    # Classes of the labelled sequences marked (or defaulting to) train, and of those
    # marked val/test: enough to refuse an untrainable label set before any job.
    classes: dict = field(default_factory=lambda: {"train": [], "other": []})


def plan_inputs(source: RegionSource, outdir: str) -> InputPlan:
    """The input plan, from the cache under `outdir` when the inputs have not changed
    since it was saved (`save_plan`), else made afresh: a genome tiling is counted
    from the index without building millions of rows; BED and FASTA inputs are parsed
    and validated, so bad input stops the run before any job."""
    source.check()
    cached = load_plan(outdir, plan_key(source, outdir))
    if cached is not None:
        return cached
    fasta, contigs = plan_fasta(source.fasta, outdir, scan=source.mode == "fasta")
    if source.mode == "tiles":
        kept = tiled_contigs(contigs, source)
        lengths = np.concatenate([
            np.full(len(tile_starts(length, source.tile_length, source.tile_step)),
                    min(length, source.tile_length), dtype=np.int64) for length in kept.values()])
        names = hashlib.sha256("\n".join(f"{c}\t{n}" for c, n in kept.items()).encode()).hexdigest()
        digest = hashlib.sha256(f"{names}|{source.tile_length}|{source.tile_step}".encode()).hexdigest()[:16]
        labelled, classes = False, {"train": [], "other": []}
    else:
        frame = load_regions(source, contigs)
        lengths, digest = frame["length"].to_numpy(), coordinates_digest(frame)
        labelled = bool(frame["label"].notna().any())
        classes = _split_classes(frame)
    # Indexes may have been (re)built just now: the key is taken after.
    return InputPlan(lengths, digest, labelled, fasta, plan_key(source, outdir), classes)


def _split_classes(frame: pd.DataFrame) -> dict:
    labelled = frame["label"].notna().to_numpy()
    train = labelled & frame["split"].fillna("train").eq("train").to_numpy()
    return {"train": sorted(set(frame["label"][train])), "other": sorted(set(frame["label"][labelled & ~train]))}


def _plan_file(outdir: str) -> Path:
    return Path(outdir) / ".dnalm" / "plan.npz"


def _file_state(path: str | os.PathLike) -> list | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


# The modules a plan is computed by: their source is part of the plan's key.
_PLAN_CODE = (sys.modules[__name__], _fasta, _io)


def plan_key(source: RegionSource, outdir: str) -> str:
    """A digest of everything a plan is made from: the input settings, the size and
    mtime of every input file and index (beside the FASTA or under `outdir`), and the
    code that parses them. Any change makes a new key, so a stale plan is never used."""
    files = [source.fasta, source.bed if source.mode == "bed" else "",
             source.labels if source.mode == "fasta" else ""]
    if source.fasta:
        local = reference_dir(outdir) / Path(source.fasta).name
        for fasta in (source.fasta, local):
            files += [f"{fasta}.fai", f"{fasta}.gzi"]
    code = [Path(module.__file__).read_bytes() for module in _PLAN_CODE]
    state = {
        "version": __version__,
        "code": hashlib.sha256(b"".join(code)).hexdigest(),
        "source": dataclasses.asdict(source),
        "outdir": os.path.abspath(outdir),
        "files": [_file_state(f) if f else None for f in files],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def load_plan(outdir: str, key: str) -> InputPlan | None:
    """The saved plan, if it was made from the inputs `key` describes."""
    path = _plan_file(outdir)
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta["key"] != key:
                return None
            return InputPlan(stored["lengths"], meta["coordinates_digest"], meta["labelled"],
                             FastaAccess(**meta["fasta"]), key, meta["classes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_plan(plan: InputPlan, outdir: str) -> None:
    """Keep the plan under `outdir`, so the DAG builds of cluster jobs (and reruns)
    read it instead of parsing the inputs again."""
    meta = {"key": plan.key, "coordinates_digest": plan.coordinates_digest, "labelled": plan.labelled,
            "fasta": dataclasses.asdict(plan.fasta), "classes": plan.classes}
    with atomic_path(_plan_file(outdir)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, lengths=plan.lengths, meta=np.array(json.dumps(meta)))
