"""Called features: the runs of bases where a class's probability holds at or above a
threshold, written as GFF3 (gene-finder comparisons, annotation tools) and BED6 (genome
browsers)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path

CALL_COLUMNS = ("contig", "start", "end", "type", "strand", "score", "class")


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and exclusive ends of the runs of True in a 1-D mask."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False])).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def call_runs(prob: np.ndarray, threshold: float, min_length: int) -> pd.DataFrame:
    """The runs of at least `min_length` bases with prob >= threshold: columns start, end
    (exclusive), score (the mean probability over the run, to 4 decimals)."""
    prob = np.asarray(prob, dtype=np.float64)
    starts, ends = runs(prob >= threshold)
    keep = ends - starts >= min_length
    starts, ends = starts[keep], ends[keep]
    total = np.concatenate(([0.0], np.cumsum(prob)))
    score = np.round((total[ends] - total[starts]) / (ends - starts), 4)
    return pd.DataFrame({"start": starts.astype(np.int64), "end": ends.astype(np.int64), "score": score})


def _escaper(pattern: str):
    """A function percent-encoding (UTF-8 bytes) every character `pattern` matches."""
    regex = re.compile(pattern)
    return lambda text: regex.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


# GFF3 escaping (spec 1.26): a seqid keeps only [a-zA-Z0-9.:^*$@!+_?-|]; every column
# escapes tab, newline, carriage return, % and control characters; column 9 also the
# characters with a meaning there (; = & ,).
_escape_seqid = _escaper(r"[^a-zA-Z0-9.:^*$@!+_?|-]")
_escape_column = _escaper(r"[\x00-\x1f\x7f%]")
_escape_attribute = _escaper(r"[\x00-\x1f\x7f%;=&,]")


def write_gff3(path: str | os.PathLike, calls: pd.DataFrame, source: str = "dnalm", header_lines: Sequence[str] = (),
               contig_lengths: dict[str, int] | None = None) -> None:
    """Calls (columns contig, start 0-based, end exclusive, type, strand, score, class) as
    GFF3, sorted by contig and start, written atomically.

    A ##sequence-region line is written for every contig of `contig_lengths` (the contigs
    that were annotated; none without it), then `header_lines` as comments. Coordinates
    are 1-based closed. A CDS gets phase 0: the model says nothing of the reading frame,
    so a call is taken to start (at its 5' end, on its strand) at a codon's first base.
    Attributes: ID=<class>_<n> (n counts the class's calls in file order), Name=<class>.
    """
    calls = _sorted(calls)
    lines = ["##gff-version 3"]
    if contig_lengths is not None:
        unknown = sorted(set(calls["contig"]) - set(contig_lengths))
        if unknown:
            raise ValueError(f"calls on contigs without a length: {', '.join(unknown)}")
        lines += [f"##sequence-region {_escape_seqid(c)} 1 {n}" for c, n in contig_lengths.items()]
    lines += [text if text.startswith("#") else f"# {text}"
              for header in header_lines for text in str(header).splitlines()]
    source = _escape_column(source)
    seqids = {c: _escape_seqid(c) for c in calls["contig"].unique()}
    types = {t: _escape_column(t) for t in calls["type"].unique()}
    names = {c: _escape_attribute(c) for c in calls["class"].unique()}
    numbers = calls.groupby("class", sort=False).cumcount() + 1
    for contig, start, end, ftype, strand, score, cls, n in zip(*(calls[c] for c in CALL_COLUMNS), numbers):
        lines.append("\t".join((seqids[contig], source, types[ftype], str(start + 1), str(end), f"{score:g}",
                                strand, "0" if ftype == "CDS" else ".", f"ID={names[cls]}_{n};Name={names[cls]}")))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_bed(path: str | os.PathLike, calls: pd.DataFrame) -> None:
    """Calls as BED6 (name: the class; score: 0-1000, the mean probability x 1000),
    sorted by contig and start, written atomically."""
    calls = _sorted(calls)
    score = np.clip(np.rint(calls["score"].to_numpy(dtype=np.float64) * 1000), 0, 1000).astype(np.int64)
    bed = pd.DataFrame({"contig": calls["contig"], "start": calls["start"], "end": calls["end"],
                        "name": calls["class"], "score": score, "strand": calls["strand"]})
    with atomic_path(path) as tmp:
        bed.to_csv(tmp, sep="\t", header=False, index=False)


def _sorted(calls: pd.DataFrame) -> pd.DataFrame:
    return calls.sort_values(["contig", "start", "end", "class"], kind="stable", ignore_index=True)
