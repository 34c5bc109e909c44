"""The annotated features of a genome (GFF3 or BED6 + type) and the per-base class masks
made from them: the training labels, and the truth the calls are scored against.

Lines are split and checked one by one, so every problem is one InputError naming
`file:line` and what to change. pysam.asGFF3 is not used to read: it gives no line
numbers and turns a start that is not a number into -1 without a word. Only lines of the
types asked for are checked in full; the others are counted (the message for a missing
type lists what the file has), so a flaw in a type the run does not use does not stop it.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from ..errors import InputError

COLUMNS = ("contig", "start", "end", "type", "strand", "line")
MAX_CLASSES = 255  # base labels are uint8 and 0 is background
_STRANDS = {"+": "+", "-": "-", ".": ".", "?": "."}  # '?' (stranded, strand unknown) gives no strand to learn
_PHASES = frozenset({".", "0", "1", "2"})
_MITOCHONDRION = ("chrM", "chrMT", "MT", "M")  # the usual names of the same contig
_SHOWN = 5  # contigs named in one message
# UCSC header lines, as in inputs/sources/bed.py: a contig merely starting with these words is data.
_HEADER = re.compile(r"(track\s+[A-Za-z_][\w.-]*=|browser\s+[A-Za-z])")


@dataclass(frozen=True)
class AnnotationClass:
    """One class the model labels bases with: a feature type on one strand, or on either."""

    type: str
    strand: str | None  # '+', '-', or None: either strand

    @property
    def name(self) -> str:
        """The class in file names and outputs: CDS_plus, CDS_minus, or the type when unstranded."""
        if self.strand is None:
            return self.type
        return f"{self.type}_{'plus' if self.strand == '+' else 'minus'}"


def annotation_classes(types: list[str], stranded: bool) -> list[AnnotationClass]:
    """The classes in the order given, + then - per type when stranded. The order matters:
    class i is label i + 1, and where features of two classes overlap the earlier one wins."""
    if not types:
        raise InputError("annotation.classes is empty", fix="list the feature types to annotate in "
                                                            "annotation.classes, e.g. [CDS]")
    duplicated = sorted({t for t in types if types.count(t) > 1})
    if duplicated:
        raise InputError(f"annotation.classes names {', '.join(duplicated)} more than once",
                         fix="list each feature type once in annotation.classes")
    strands = ("+", "-") if stranded else (None,)
    classes = [AnnotationClass(t, strand) for t in types for strand in strands]
    if len(classes) > MAX_CLASSES:
        raise InputError(f"annotation.classes gives {len(classes)} classes, more than {MAX_CLASSES}",
                         fix="annotate fewer feature types in annotation.classes")
    return classes


def read_features(path: str, contig_lengths: dict[str, int], types: set[str] | None = None) -> pd.DataFrame:
    """The features of a GFF3 or BED6 + type file (plain or gzip) whose type is in `types`
    (None: all), sorted by contig and start: columns contig, start (0-based), end
    (exclusive), type, strand ('+', '-' or '.'; '?' becomes '.'), line (1-based, in the file).

    GFF3: suffix .gff3/.gff (.gz or not) or a first line `##gff-version 3`; read up to
    ##FASTA. BED: suffix .bed/.bed.gz, BED6 then the feature type in column 7.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("the features file does not exist", path=path,
                         fix="check the path of the annotation's GFF3 or BED file in the config")
    counts: Counter[str] = Counter()
    parse = _gff3_features if _format(path) == "gff3" else _bed_features
    rows = list(parse(path, contig_lengths, types, counts))
    if types is not None:
        missing = sorted(t for t in types if not counts[t])
        if missing:
            has = ", ".join(f"{t} ({n})" for t, n in counts.most_common(20)) or "none"
            raise InputError(f"has no feature of type {', '.join(missing)}; the types it has (features): {has}",
                             path=path, fix="name types the file has in annotation.classes (case matters), or use "
                                            "an annotation that has these types")
    if not rows:
        raise InputError("has no features", path=path, fix="give a GFF3 or BED6 + type file with features")
    frame = pd.DataFrame.from_records(rows, columns=COLUMNS)
    return frame.sort_values(["contig", "start"], kind="stable", ignore_index=True)


def _format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    with _open_binary(path) as fh:
        first = fh.readline()
    if first.removeprefix(b"\xef\xbb\xbf").startswith(b"##gff-version 3") or name.endswith((".gff3", ".gff")):
        return "gff3"
    if name.endswith(".bed"):
        return "bed"
    raise InputError("cannot tell whether the features file is GFF3 or BED", path=path,
                     fix="name it .gff3 (GFF3, first line '##gff-version 3') or .bed (BED6 with the feature type "
                         "in column 7), either optionally .gz")


def _open_binary(path: Path):
    """gzip or plain, told apart by the magic bytes, not by the name."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _data_lines(path: Path, gff3: bool):
    """(line number, tab-separated columns) of each data line, skipping blank, comment (#),
    track and browser lines; a GFF3 ends at its ##FASTA section. Lines are decoded one at
    a time, so a byte that is not UTF-8 is reported on its own line."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError("is not UTF-8 text", path=f"{path}:{lineno}",
                                 fix="a GFF3 or BED file is plain tab-separated text; check it is not a binary "
                                     "file, or re-save it as UTF-8") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):
                if gff3 and line.startswith("##FASTA"):
                    return
                continue
            if gff3 and line.startswith(">"):  # a FASTA section without its ##FASTA line
                return
            if not line.strip() or _HEADER.match(line):
                continue
            yield lineno, line.rstrip("\n\r").split("\t")


def _gff3_features(path: Path, lengths: dict[str, int], types: set[str] | None, counts: Counter):
    for lineno, cols in _data_lines(path, gff3=True):
        where = f"{path}:{lineno}"
        if len(cols) != 9:
            raise InputError(f"has {len(cols)} tab-separated column(s), a GFF3 line has 9", path=where,
                             fix="separate seqid, source, type, start, end, score, strand, phase and attributes "
                                 "with tabs ('.' for an empty one)")
        ftype = _unescape(cols[2])
        counts[ftype] += 1
        if types is not None and ftype not in types:
            continue
        try:
            start, end = int(cols[3]), int(cols[4])
        except ValueError:
            raise InputError(f"start/end {cols[3]!r}, {cols[4]!r} are not integers", path=where,
                             fix="columns 4 and 5 are 1-based integer coordinates") from None
        if start < 1:
            raise InputError(f"start {start} is below 1", path=where,
                             fix="GFF3 coordinates are 1-based: the first base is 1 (a 0-based BED start needs + 1)")
        if end < start:
            raise InputError(f"end {end} is before start {start}", path=where,
                             fix="GFF3 features are 1-based closed [start, end] with start <= end: correct or drop "
                                 "this line")
        contig = _unescape(cols[0])
        _check_contig(contig, end, lengths, where, "seqid")
        strand = _strand(cols[6], where, column=7)
        phase = cols[7]
        if phase not in _PHASES:
            raise InputError(f"phase {phase!r} is not ., 0, 1 or 2", path=where,
                             fix="column 8 is the phase: 0, 1 or 2 for a CDS, '.' for other types")
        if phase == "." and ftype == "CDS":
            raise InputError("CDS without a phase", path=where,
                             fix="GFF3 requires the phase of every CDS in column 8: 0, 1 or 2, the bases to skip "
                                 "from its 5' end to the first base of a codon")
        yield contig, start - 1, end, ftype, strand, lineno


def _bed_features(path: Path, lengths: dict[str, int], types: set[str] | None, counts: Counter):
    for lineno, cols in _data_lines(path, gff3=False):
        where = f"{path}:{lineno}"
        if len(cols) != 7:
            raise InputError(f"has {len(cols)} tab-separated column(s), a BED6 + type line has 7", path=where,
                             fix="give contig, start, end, name, score, strand and the feature type (e.g. CDS), "
                                 "separated by tabs")
        ftype = cols[6]
        counts[ftype] += 1
        if types is not None and ftype not in types:
            continue
        try:
            start, end = int(cols[1]), int(cols[2])
        except ValueError:
            raise InputError(f"start/end {cols[1]!r}, {cols[2]!r} are not integers", path=where,
                             fix="columns 2 and 3 are 0-based integer coordinates") from None
        if start < 0:
            raise InputError(f"start {start} is below 0", path=where,
                             fix="BED coordinates are 0-based: the first base is 0")
        if end <= start:
            raise InputError(f"end {end} is not after start {start}", path=where,
                             fix="BED features are 0-based half-open [start, end) with start < end: correct or "
                                 "drop this line")
        contig = cols[0]
        _check_contig(contig, end, lengths, where, "contig")
        yield contig, start, end, ftype, _strand(cols[5], where, column=6), lineno


def _unescape(text: str) -> str:
    """GFF3 percent-encoding (%09, %3B, ...) decoded."""
    return unquote(text) if "%" in text else text


def _strand(text: str, where: str, column: int) -> str:
    strand = _STRANDS.get(text)
    if strand is None:
        raise InputError(f"strand {text!r} is not +, -, . or ?", path=where,
                         fix=f"column {column} is the strand: + or -, '.' for none, '?' for unknown")
    return strand


def _check_contig(contig: str, end: int, lengths: dict[str, int], where: str, what: str) -> None:
    length = lengths.get(contig)
    if length is None:
        known = list(lengths)
        listed = ", ".join(known[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
        rename = _same_contig(contig, known)
        fix = (f"rename {contig!r} to {rename!r} throughout the file, the reference's name for it (the reference's "
               f"contigs: {listed})" if rename else
               f"use the annotation of this reference (its contigs: {listed}), or drop the lines on other contigs")
        raise InputError(f"{what} {contig!r} is not a contig of the reference", path=where, fix=fix)
    if end > length:
        raise InputError(f"feature ends at {end}, past the end of {contig} ({length} bp)", path=where,
                         fix="use the reference the annotation was made for (check the genome build), or clip "
                             "the feature to the contig")


def _same_contig(name: str, known: list[str]) -> str | None:
    """The reference's name for a contig named with or without 'chr', or by another usual
    mitochondrion name."""
    candidates = [name[3:]] if name.startswith("chr") else [f"chr{name}"]
    if name in _MITOCHONDRION:
        candidates += [other for other in _MITOCHONDRION if other != name]
    present = set(known)
    return next((c for c in candidates if c in present), None)


def class_masks(features: pd.DataFrame, classes: list[AnnotationClass], contig: str, start: int,
                end: int) -> np.ndarray:
    """(classes, end - start) bool: the bases of contig[start, end) each class's features
    cover. A stranded class takes its type on its strand; an unstranded class its type on
    any strand, and only an unstranded class counts features without a strand ('.').
    Coverage is a difference array summed up, so the cost is per feature, not per base."""
    n = end - start
    on = (features["contig"].to_numpy() == contig) & (features["end"].to_numpy() > start) & (
        features["start"].to_numpy() < end)
    f_start = np.clip(features["start"].to_numpy()[on] - start, 0, n)
    f_end = np.clip(features["end"].to_numpy()[on] - start, 0, n)
    f_type = features["type"].to_numpy()[on]
    f_strand = features["strand"].to_numpy()[on]
    masks = np.zeros((len(classes), n), dtype=bool)
    for i, cls in enumerate(classes):
        take = f_type == cls.type
        if cls.strand is not None:
            take &= f_strand == cls.strand
        depth = np.cumsum(np.bincount(f_start[take], minlength=n + 1) - np.bincount(f_end[take], minlength=n + 1))
        masks[i] = depth[:n] > 0
    return masks


def base_labels(masks: np.ndarray) -> np.ndarray:
    """(bases,) uint8: 0 for background, i + 1 for class i. Where classes overlap, the
    EARLIER class in the list labels the base (so list them in order of precedence);
    overlap_count says how many bases that decided."""
    covered = masks.any(axis=0)
    return np.where(covered, masks.argmax(axis=0) + 1, 0).astype(np.uint8)


def overlap_count(masks: np.ndarray) -> int:
    """Bases covered by more than one class: labelled by the earlier class only."""
    return int(np.count_nonzero(masks.sum(axis=0) > 1))
