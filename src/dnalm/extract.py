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

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InputError
from .io import fai_digest, open_text, read_fai, write_table_atomic

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


def load_regions(source: RegionSource) -> pd.DataFrame:
    """The regions table for a source, validated against the FASTA's index."""
    if source.mode == "bed" and not source.bed:
        raise InputError("input.mode is bed but no BED is configured", fix="set input.bed")
    if source.mode == "fasta" and not source.sequences:
        raise InputError("input.mode is fasta but no FASTA of sequences is configured",
                         fix="set input.sequences")
    if source.mode == "bed":
        regions = regions_from_bed(source.bed, read_fai(source.reference), source)
    elif source.mode == "tiles":
        regions = regions_from_tiles(read_fai(source.reference), source)
    elif source.mode == "fasta":
        regions = regions_from_fasta(source.sequences, source.labels)
    else:
        raise InputError(f"unknown input mode {source.mode!r}", fix="set input.mode to bed, tiles or fasta")
    return regions


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


def regions_from_bed(bed: str, contigs: dict[str, int], source: RegionSource) -> pd.DataFrame:
    """Parse a BED file line by line, so every error can name its line."""
    path = Path(bed)
    if not path.exists():
        raise InputError("BED file does not exist", path=path, fix="check input.bed in the config")
    rows: list[tuple] = []
    seen: dict[str, int] = {}
    for lineno, cols in _bed_lines(path):
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
        label = _column(cols, source.label_column)
        split = normalise_split(_column(cols, source.split_column), where)
        rows.append((name, chrom, start, end, strand, end - start, label, split))
    if not rows:
        raise InputError("BED file has no regions", path=path, fix="give at least one region")
    return _frame(rows)


def _bed_lines(path):
    """(line number, tab-separated columns) of each data line of a BED (gzip or plain),
    skipping blank, comment, track and browser lines. A byte that is not UTF-8 is
    one clear error naming the line."""
    lineno = 0
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if line.strip() and not line.startswith(("#", "track", "browser")):
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
    """The contigs the include/exclude patterns keep (full matches), in FASTA order."""
    if source.tile_length < 1 or source.tile_step < 1:
        raise InputError("tile length and step must be positive", fix="set input.tiles.length and .step")
    include = [_regex(p, "input.tiles.include") for p in source.include]
    exclude = [_regex(p, "input.tiles.exclude") for p in source.exclude]
    kept = {chrom: length for chrom, length in contigs.items()
            if (not include or any(p.fullmatch(chrom) for p in include))
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


def regions_from_fasta(fasta: str, labels: str) -> pd.DataFrame:
    contigs = read_fai(fasta)
    frame = pd.DataFrame({"seq_id": list(contigs), "chrom": list(contigs), "start": 0,
                          "end": list(contigs.values()), "strand": "+"})
    frame["length"] = frame["end"]
    frame["label"] = None
    frame["split"] = None
    if labels:
        _attach_labels_table(frame, labels, fasta)
    return _typed(frame)


def _attach_labels_table(frame: pd.DataFrame, labels: str, fasta: str) -> None:
    """Fill frame's label/split from a labels table that must cover every sequence."""
    table = read_labels(labels)
    missing = frame.loc[~frame["seq_id"].isin(table.index), "seq_id"].tolist()
    if missing:
        raise InputError(
            f"the labels table lacks {len(missing)} of the {len(frame)} sequences in {fasta}, "
            f"e.g. {', '.join(missing[:3])}",
            path=labels, fix="add a row (id, label, split) for each, or remove them from the FASTA")
    frame["label"] = table.loc[frame["seq_id"], "label"].to_numpy()
    frame["split"] = table.loc[frame["seq_id"], "split"].to_numpy()


def read_labels(path: str) -> pd.DataFrame:
    """A labels table (TSV or CSV, header: id, label[, split]) indexed by id."""
    p = Path(path)
    if not p.exists():
        raise InputError("labels table does not exist", path=p, fix="check input.labels in the config")
    sep = "," if p.name.endswith((".csv", ".csv.gz")) else "\t"
    try:
        table = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read as a {'CSV' if sep == ',' else 'TSV'} table ({err})", path=p,
                         fix="write a header line id<TAB>label<TAB>split and one row per sequence") from None
    if "id" not in table.columns or "label" not in table.columns:
        raise InputError(
            f"needs columns 'id' and 'label' (and optionally 'split'); found {list(table.columns)}",
            path=p, fix="add a header line: id<TAB>label<TAB>split")
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise InputError(f"id {dup.iloc[0]!r} appears more than once", path=p, fix="keep one row per id")
    table["label"] = table["label"].map(_empty_or_none)
    if "split" in table.columns:
        table["split"] = [normalise_split(v, f"{p} (id {i})") for i, v in zip(table["id"], table["split"])]
    else:
        table["split"] = None
    return table.set_index("id")[["label", "split"]]


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
        _attach_labels_table(frame, full.labels, "the FASTA")
    return _typed(frame)


def _bed_labels(source: RegionSource) -> pd.DataFrame:
    """seq_id -> label, split from the BED's label/split columns (names as regions_from_bed gives them)."""
    rows = {}
    for lineno, cols in _bed_lines(source.bed):
        rows[_bed_name(cols)] = (_column(cols, source.label_column),
                                 normalise_split(_column(cols, source.split_column), f"{source.bed}:{lineno}"))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["label", "split"])


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
    import pyarrow.parquet as pq

    frame = pq.read_table(regions_path).to_pandas()
    if labels_path:
        labels = pq.read_table(labels_path).to_pandas()
        if labels["seq_id"].tolist() != frame["seq_id"].tolist():
            raise RuntimeError(f"{labels_path} and {regions_path} list different sequences: re-run extract_regions")
        frame["label"], frame["split"] = labels["label"].to_numpy(), labels["split"].to_numpy()
    for col in ("label", "split"):
        if col not in frame:
            frame[col] = None
    return _typed(frame)


def check_fasta_records(fasta: str) -> None:
    """Mode fasta: every record is one sequence, so each needs a unique name and some
    bases. The .fai silently keeps the first of two records with one name and skips
    empty ones; one pass over the headers catches both."""
    import pysam

    seen: set[str] = set()
    with pysam.FastxFile(str(fasta)) as records:
        for number, record in enumerate(records, start=1):
            if record.name in seen:
                raise InputError(f"record {number} repeats the name {record.name!r}", path=fasta,
                                 fix="give every record a unique name (the first word of its header)")
            if not record.sequence:
                raise InputError(f"record {number} ({record.name}) has no sequence", path=fasta,
                                 fix="remove the empty record")
            seen.add(record.name)


def coordinates_digest(frame: pd.DataFrame) -> str:
    """A short hash of what the windows are cut from (ids, coordinates, strands).

    The Snakefile passes it as a param of extract_regions, so editing only labels
    or splits in a BED re-runs no windows and no embeddings.
    """
    digest = hashlib.sha256()
    hashed = pd.util.hash_pandas_object(frame[COORDINATE_COLUMNS], index=False).to_numpy()
    digest.update(hashed.tobytes())
    return digest.hexdigest()[:16]


def plan_inputs(source: RegionSource) -> tuple[np.ndarray, str, bool]:
    """What the Snakefile needs when it builds the DAG, as cheaply as possible:
    sequence lengths (for the shard plan), a digest of the coordinates (a param
    of extract_regions) and whether any sequence is labelled.

    A genome tiling is counted from the .fai without building millions of rows;
    BED and FASTA inputs are parsed and validated here, so bad input stops the
    run before any job.
    """
    if source.mode == "tiles":
        kept = tiled_contigs(read_fai(source.reference), source)
        lengths = [np.full(len(tile_starts(length, source.tile_length, source.tile_step)),
                           min(length, source.tile_length), dtype=np.int64) for length in kept.values()]
        settings = f"{fai_digest(source.reference)}|{source.tile_length}|{source.tile_step}|{sorted(kept)}"
        return np.concatenate(lengths), hashlib.sha256(settings.encode()).hexdigest()[:16], False
    frame = load_regions(source)
    return frame["length"].to_numpy(), coordinates_digest(frame), bool(frame["label"].notna().any())
