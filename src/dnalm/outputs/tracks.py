"""Genome tracks of a head's predictions, and the label checks and file names that keep
label text from breaking them.

One folder per head, `classify/<head>/tracks/`:
    calls.bed               BED6 of calls: name = predicted class (multilabel: the predicted
                            labels, ';'-separated, '-' for none), score = 1000 x its (their
                            highest) probability; no calls.bed for regression
    prob_<name>.bedGraph    per base, the mean probability of one class (or label) over the
                            called sequences covering it (a UCSC track line, then bedGraph);
                            pred_<target>.bedGraph for regression, the mean predicted value
    prob_<name>.bw          the same intervals and values as bigWig (float32)
    tracks.tsv              class (label, target) -> its bedGraph and bigWig file
Rows are in the reference's contig order (its .fai), then by start. Track intervals never
overlap, leave no gap inside a stretch that called sequences cover, and skip bases no called
sequence covers. The bigWig header lists every contig with its .fai length. A contig whose
name starts with '#', 'track' or 'browser' (`io.bed_header_like`) has no rows in calls.bed
and the bedGraphs, where readers would take them for header lines; its bigWig values and
table rows are there as for any contig (the DAG says so when it is built).

Class labels are free text (a BED column, a labels table, a pretrained head's names):
- `inputs.labels.check_label_text` refuses control characters (tab, line breaks, other C0/C1 controls)
  where labels are read, and again here before anything is written:
  they cannot be written into a TSV, BED or track line at all.
- File names: `track_names` gives each class the label with every character other than
  ASCII letters, digits, `-`, `_` and `.` replaced by `_` (cut at 100 characters). Where
  two classes would get the same name (ignoring case, as some file systems do), each of
  them gets `-` and 8 hex digits of its label's SHA-256 appended, so `a/b` and `a_b` give
  `prob_a_b-<hash>.bedGraph` and `prob_a_b-<hash'>.bedGraph`. tracks.tsv maps them back.
- Text formats: BED and bedGraph fields are written unquoted (a `"` stays a `"`); in the
  track line, whose values are in double quotes, a label's `"` becomes `'`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..inputs.labels import check_label_text
from ..io import atomic_dir, bed_header_like

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 100
INDEX_FILE = "tracks.tsv"
CALLS_FILE = "calls.bed"


def _sanitise(label: str) -> str:
    return _UNSAFE.sub("_", label)[:_MAX_NAME]


def _digest(label: str, digits: int) -> str:
    return hashlib.sha256(label.encode("utf-8")).hexdigest()[:digits]


def track_names(class_names: list[str], prefix: str = "prob_") -> dict[str, str]:
    """Class -> file stem (`prob_<name>`, or another prefix), unique even ignoring case whatever the labels."""
    stems = {name: f"{prefix}{_sanitise(name)}" for name in class_names}
    for digits in (8, 64):
        folded = pd.Series([s.casefold() for s in stems.values()])
        clash = folded.duplicated(keep=False).to_numpy()
        if not clash.any():
            return stems
        for name, clashes in zip(list(stems), clash):
            if clashes:
                stems[name] = f"{prefix}{_sanitise(name)}-{_digest(name, digits)}"
    raise RuntimeError(f"no unique track names for the classes {class_names!r}")  # needs a SHA-256 collision


def track_line_text(label: str) -> str:
    """A label inside a double-quoted track line value."""
    return label.replace('"', "'")


CALL_COLUMNS = {"pred_label": "class", "pred_labels": "label"}  # call column -> what a track shows


def calls_bed(table: pd.DataFrame, call_column: str = "pred_label") -> pd.DataFrame:
    """BED6 of calls: name = the call, score = 1000 x the highest probability."""
    called = table[table[call_column].notna()]
    prob_cols = [c for c in table.columns if c.startswith("prob_")]
    score = (called[prob_cols].max(axis=1) * 1000).round().astype(int)
    return pd.DataFrame({"chrom": called["chrom"], "start": called["start"], "end": called["end"],
                         "name": called[call_column], "score": score, "strand": called["strand"]})


def coverage_mean(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Per-base mean of overlapping intervals, as non-overlapping segments.

    Returns start, end, value for every stretch covered by at least one
    interval; neighbouring segments with equal value are merged.
    """
    bounds = np.unique(np.concatenate([starts, ends]))
    delta_sum = np.zeros(len(bounds))
    delta_n = np.zeros(len(bounds))
    lo, hi = np.searchsorted(bounds, starts), np.searchsorted(bounds, ends)
    np.add.at(delta_sum, lo, values)
    np.add.at(delta_sum, hi, -values)
    np.add.at(delta_n, lo, 1)
    np.add.at(delta_n, hi, -1)
    total, count = np.cumsum(delta_sum)[:-1], np.cumsum(delta_n)[:-1]  # per segment [bounds[i], bounds[i+1])
    covered = count > 0.5
    seg = pd.DataFrame({"start": bounds[:-1][covered], "end": bounds[1:][covered],
                        "value": np.round(total[covered] / count[covered], 6)})
    # Merge runs of equal value that touch.
    new_run = (seg["start"].to_numpy() != np.r_[-1, seg["end"].to_numpy()[:-1]]) | \
              (seg["value"].to_numpy() != np.r_[np.nan, seg["value"].to_numpy()[:-1]])
    run = np.cumsum(new_run)
    return seg.groupby(run).agg(start=("start", "first"), end=("end", "last"), value=("value", "first"))


def contig_extents(table: pd.DataFrame) -> dict[str, int]:
    """Contig -> furthest end in the table, in table order: sizes where no reference is at hand."""
    return {str(chrom): int(end) for chrom, end in table.groupby("chrom", sort=False)["end"].max().items()}


def _write_rows(frame: pd.DataFrame, fh) -> None:
    """Tab-separated rows without quoting: BED and bedGraph have no quoting rules."""
    frame.to_csv(fh, sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE)


def write_tracks(table: pd.DataFrame, class_names: list[str], out_dir: str,
                 chrom_sizes: dict[str, int] | None = None, prefix: str = "prob_") -> list[str]:
    """Write calls.bed (where the table has a call column), a bedGraph and a bigWig per
    output (the table's `<prefix><name>` column) and tracks.tsv into `out_dir`.

    `chrom_sizes`: contig -> length in the reference's order (`inputs.fasta.read_fai`); without it
    the contigs of the table, each as long as its furthest sequence end. Returns the files
    written (a track's bedGraph and bigWig as one).
    """
    check_label_text(class_names, out_dir)
    sizes = chrom_sizes if chrom_sizes is not None else contig_extents(table)
    unknown = sorted(set(table["chrom"]) - set(sizes))
    if unknown:
        raise RuntimeError(f"contigs {unknown[:5]} of the predictions are not in the reference: re-run the workflow")
    order = {chrom: i for i, chrom in enumerate(sizes)}
    stems = track_names(class_names, prefix)
    call_column = next((c for c in CALL_COLUMNS if c in table.columns), None)
    shows = CALL_COLUMNS.get(call_column, "target")
    called = table[table[call_column].notna()] if call_column else \
        table[table[[f"{prefix}{name}" for name in class_names]].notna().all(axis=1)]
    called = called.iloc[np.lexsort((called["end"].to_numpy(), called["start"].to_numpy(),
                                     called["chrom"].map(order).to_numpy()))]
    past_end = called["end"].to_numpy() > called["chrom"].map(sizes).to_numpy()
    if past_end.any():
        row = called[past_end].iloc[0]
        raise RuntimeError(f"{row['seq_id']} ends at {row['end']}, past the end of {row['chrom']} in the reference "
                           f"({sizes[row['chrom']]} bp): re-run the workflow")
    by_chrom = list(called.groupby("chrom", sort=False))  # contigs in reference order
    in_text = ~called["chrom"].map(bed_header_like).astype(bool)  # rows a BED reader keeps
    with atomic_dir(out_dir) as tmp:
        if call_column:
            with open(tmp / CALLS_FILE, "w") as fh:
                _write_rows(calls_bed(called[in_text], call_column), fh)
        for name in class_names:
            parts = []
            for chrom, sub in by_chrom:
                seg = coverage_mean(sub["start"].to_numpy(), sub["end"].to_numpy(),
                                    sub[f"{prefix}{name}"].to_numpy(dtype=np.float64))
                seg.insert(0, "chrom", chrom)
                parts.append(seg)
            segments = pd.concat(parts, ignore_index=True) if parts else \
                pd.DataFrame({"chrom": [], "start": [], "end": [], "value": []})
            text = track_line_text(name)
            title, says = (f"P({text})", "probability of") if prefix == "prob_" else (text, "predicted")
            with open(tmp / f"{stems[name]}.bedGraph", "w") as fh:
                fh.write(f'track type=bedGraph name="{title}" description="dnalm {says} {text}"\n')
                _write_rows(segments[~segments["chrom"].map(bed_header_like).astype(bool)], fh)
            write_bigwig(tmp / f"{stems[name]}.bw", sizes, segments)
        index = pd.DataFrame({shows: class_names, "bedgraph": [f"{stems[n]}.bedGraph" for n in class_names],
                              "bigwig": [f"{stems[n]}.bw" for n in class_names]})
        index.to_csv(tmp / INDEX_FILE, sep="\t", index=False)
    return ([CALLS_FILE] if call_column else []) + [f"{stems[n]}.bedGraph/.bw" for n in class_names]


def write_bigwig(path: Path, sizes: dict[str, int], segments: pd.DataFrame) -> None:
    """Segments (chrom, start, end, value; contigs in `sizes` order, sorted) as a bigWig."""
    import pyBigWig  # only where tracks are written: the Snakefile imports the plan without it

    bw = pyBigWig.open(str(path), "w")
    try:
        bw.addHeader([(chrom, int(length)) for chrom, length in sizes.items() if length > 0], maxZooms=10)
        for chrom, seg in segments.groupby("chrom", sort=False):
            bw.addEntries([chrom] * len(seg), seg["start"].to_numpy(dtype=np.int64),
                          ends=seg["end"].to_numpy(dtype=np.int64), values=seg["value"].to_numpy(dtype=np.float64))
    finally:
        bw.close()
