"""The variants of a VCF or BCF, checked against the reference they were called on.

Every record is read in file order (plain VCF, bgzip VCF and BCF alike, through
pysam.VariantFile); a multi-allelic record becomes one row per ALT. Each ALT ends up in
exactly one of two lists: `Variant` (to be scored) or `Skipped` (with the reason, for
skipped.tsv). Nothing is dropped without a row, with one exception: with `regions`,
records whose REF does not overlap a region are simply outside what was asked for and
are listed nowhere.

Problems with the whole file are one InputError each, raised after the whole file was
read so the message can count them: contigs the reference does not have (never
dropped, whatever `regions` says, since a naming mismatch would otherwise look like an
empty result) and, with ref_mismatch="stop", REF alleles that disagree with the
reference (a wrong genome build is the usual cause).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

from ..errors import InputError
from ..inputs.fasta import open_fasta, read_fai
from ..inputs.sources.bed import bed_lines
from ..io import write_text_atomic

Region = tuple[str, int, int]  # chrom, start0, end0 (half-open, as in BED)

REF_MISMATCH_POLICIES = ("stop", "skip")
SKIPPED_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "reason")
_ACGT = frozenset("ACGT")
_SHOWN = 5  # records or contigs named in one error message; the rest are counted
_MITOCHONDRION = ("chrM", "chrMT", "MT", "M")  # the usual names of the same contig


@dataclass(frozen=True)
class Variant:
    """One ALT of one VCF record, REF checked against the reference."""

    record: int  # 0-based index of the record in the file (every record counts, skipped or outside the regions)
    alt_index: int  # 0-based index of this ALT among the record's ALTs
    chrom: str
    pos: int  # 1-based, as in the VCF
    id: str  # the VCF's ID column, "." when missing
    ref: str  # upper case
    alt: str  # upper case

    @property
    def start0(self) -> int:
        return self.pos - 1

    @property
    def ref_end0(self) -> int:
        return self.start0 + len(self.ref)

    @property
    def kind(self) -> str:
        """snv, mnv, insertion, deletion or complex, from the alleles once the bases they
        share at both ends are set aside: a split multi-allelic record keeps the padding
        of its longest allele (REF ACG, ALT ACGT is an insertion; REF AC, ALT GC an snv)."""
        ref, alt = _distinct_bases(self.ref, self.alt)
        if len(self.ref) == len(self.alt):
            return "snv" if len(ref) <= 1 else "mnv"
        if not ref:
            return "insertion"
        if not alt:
            return "deletion"
        return "complex"


@dataclass(frozen=True)
class Skipped:
    """One ALT (or one record without ALT) that is not scored, and why."""

    record: int
    alt_index: int
    chrom: str
    pos: int
    id: str
    ref: str
    alt: str  # "." for a record without ALT
    reason: str

    @classmethod
    def of(cls, variant: Variant, reason: str) -> Skipped:
        """A variant read fine but left out later (an allele longer than the window...)."""
        return cls(variant.record, variant.alt_index, variant.chrom, variant.pos, variant.id,
                   variant.ref, variant.alt, reason)


@dataclass(frozen=True)
class _Record:
    """The fields of a VCF record this module reads, copied out of pysam while the
    reader is guarded (a malformed field fails on access, not only on read)."""

    index: int
    chrom: str
    pos: int
    id: str
    ref: str
    alts: tuple[str, ...]  # upper case; empty when the ALT column is "."

    @property
    def where(self) -> str:
        return f"{self.chrom}:{self.pos}"


def read_variants(vcf: str | os.PathLike, fasta: str | os.PathLike, *, regions: list[Region] | None = None,
                  ref_mismatch: str = "stop") -> tuple[list[Variant], list[Skipped]]:
    """The variants of `vcf` to score, and the ALTs skipped with their reason, both in
    file order (record, then ALT).

    `regions`: (chrom, start0, end0) intervals; only records whose REF span overlaps one
    are read further (the others are listed nowhere). `ref_mismatch`: "stop" raises one
    InputError for all records whose REF differs from the reference; "skip" lists their
    ALTs in the skipped rows.
    """
    if ref_mismatch not in REF_MISMATCH_POLICIES:
        raise ValueError(f"ref_mismatch must be one of {REF_MISMATCH_POLICIES}, not {ref_mismatch!r}")
    lengths = read_fai(fasta)
    wanted = None if regions is None else _merged_regions(regions, lengths)
    variants: list[Variant] = []
    skipped: list[Skipped] = []
    mismatches: list[tuple[_Record, str]] = []  # (record, what the reference has there, for messages)
    unknown: dict[str, int] = {}  # contig -> records on it, in order of first appearance
    with open_fasta(fasta) as reference:
        for rec in _read_records(vcf):
            if rec.chrom not in lengths:
                unknown[rec.chrom] = unknown.get(rec.chrom, 0) + 1
                continue
            if wanted is not None and not _overlaps(wanted.get(rec.chrom, []), rec.pos - 1,
                                                    rec.pos - 1 + len(rec.ref)):
                continue
            found, note = _reference_bases(reference, rec, lengths[rec.chrom])
            if not _ref_matches(rec.ref, found):
                shown = _shown_reference(found, note)
                mismatches.append((rec, shown))
                reason = f"REF does not match the reference (reference has {shown})"
                skipped.extend(_skipped(rec, alt_index, alt, reason) for alt_index, alt in _alts(rec))
                continue
            for alt_index, alt in _alts(rec):
                reason = allele_problem(rec.ref, alt)
                if reason is None:
                    variants.append(Variant(rec.index, alt_index, rec.chrom, rec.pos, rec.id, rec.ref, alt))
                else:
                    skipped.append(_skipped(rec, alt_index, alt, reason))
    if unknown:
        raise _unknown_contigs_error(vcf, unknown, list(lengths))
    if mismatches and ref_mismatch == "stop":
        raise _mismatch_error(vcf, mismatches)
    return variants, skipped


def allele_problem(ref: str, alt: str) -> str | None:
    """Why this ALT (upper case, "." when missing) cannot be scored as a sequence change
    of REF, or None. Structural notations first: their brackets and dots are not bases."""
    if alt == ".":
        return "no ALT allele"
    if alt.startswith("<"):
        return "symbolic allele"
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return "breakend"
    if alt == "*":
        return "spanning deletion '*'"
    if not _ACGT.issuperset(ref) or not _ACGT.issuperset(alt):
        return "REF/ALT has bases other than ACGT"
    if alt == ref:
        return "ALT equals REF"
    return None


def write_skipped(skipped: list[Skipped], path: str | os.PathLike) -> None:
    """skipped.tsv: a header of SKIPPED_COLUMNS, then one row per skipped ALT in file
    order (rows added after reading, e.g. for windows, are sorted into place). Written
    even when empty, so 'nothing skipped' is a file and not a missing output."""
    lines = ["\t".join(SKIPPED_COLUMNS)]
    for row in sorted(skipped, key=lambda s: (s.record, s.alt_index)):
        lines.append("\t".join(str(value) for value in (row.chrom, row.pos, row.id, row.ref, row.alt, row.reason)))
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_regions_bed(path: str | os.PathLike) -> list[Region]:
    """(chrom, start0, end0) of each line of a BED (plain or gzip; columns past the third
    are ignored; comment, track and browser lines skipped). Contigs are checked against
    the reference by read_variants."""
    path = Path(path)
    if not path.is_file():
        raise InputError("regions BED file does not exist", path=path, fix="check the path in the config")
    regions = []
    for lineno, cols in bed_lines(path):
        where = f"{path}:{lineno}"
        if len(cols) < 3:
            raise InputError(f"has {len(cols)} tab-separated column(s), a BED line needs at least 3", path=where,
                             fix="separate chrom, start and end with tabs")
        try:
            start, end = int(cols[1]), int(cols[2])
        except ValueError:
            raise InputError(f"start/end {cols[1]!r}, {cols[2]!r} are not integers", path=where,
                             fix="BED coordinates are 0-based integers") from None
        if start < 0 or start >= end:
            raise InputError(f"start {start} must be >= 0 and less than end {end}", path=where,
                             fix="BED regions are 0-based half-open [start, end); drop or correct this line")
        regions.append((cols[0], start, end))
    if not regions:
        # An empty list would keep no variant at all, which looks like a finished run.
        raise InputError("regions BED file has no regions", path=path,
                         fix="give at least one region, or leave the regions setting out to read every variant")
    return regions


# ----------------------------------------------------------------------- reading the VCF


def open_variant_file(path: str | os.PathLike) -> pysam.VariantFile:
    """pysam.VariantFile, without htslib's error line that a bgzipped VCF has no index:
    none is needed to read it in order, and a line saying "[E::...]" in a user's log
    would read as a failure."""
    before = pysam.set_verbosity(0)
    try:
        return pysam.VariantFile(str(path))
    finally:
        pysam.set_verbosity(before)


def _read_records(vcf: str | os.PathLike) -> Iterator[_Record]:
    """Every record of the file in order; any htslib failure is one InputError naming
    the file and the last record read before it."""
    path = Path(vcf)
    if not path.is_file():
        raise InputError("VCF file does not exist", path=path, fix="check the path in the config")
    try:
        reader = open_variant_file(path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot be read as VCF or BCF ({err})", path=path,
                         fix="give a VCF (plain or bgzip-compressed) or a BCF with its header lines; "
                             f"`bcftools view -h {path}` shows what htslib reads of it") from None
    index, last = 0, None
    with reader:
        records = iter(reader)
        while True:
            try:
                pysam_rec = next(records, None)
                if pysam_rec is None:
                    return
                rec = _Record(index, pysam_rec.chrom, pysam_rec.pos, pysam_rec.id or ".", pysam_rec.ref.upper(),
                              tuple(alt.upper() for alt in pysam_rec.alts or ()))
            except (OSError, ValueError) as err:
                after = f"after record {index} ({last.where})" if last else "before any record"
                raise InputError(f"record {index + 1} ({after}) cannot be parsed ({err})", path=path,
                                 fix=f"check the line of that record (tab-separated, 8+ columns, integer POS); "
                                     f"`bcftools view {path}` names the problem") from None
            yield rec
            index, last = index + 1, rec


def _alts(rec: _Record) -> list[tuple[int, str]]:
    """(alt_index, ALT) of a record; a record without ALT gives one row, ALT ".", so it
    is listed as skipped rather than vanishing."""
    return list(enumerate(rec.alts or (".",)))


def _skipped(rec: _Record, alt_index: int, alt: str, reason: str) -> Skipped:
    return Skipped(rec.index, alt_index, rec.chrom, rec.pos, rec.id, rec.ref, alt, reason)


def _distinct_bases(ref: str, alt: str) -> tuple[str, str]:
    """REF and ALT without the bases they share at the start, then at the end."""
    shortest = min(len(ref), len(alt))
    head = 0
    while head < shortest and ref[head] == alt[head]:
        head += 1
    tail = 0
    while tail < shortest - head and ref[-1 - tail] == alt[-1 - tail]:
        tail += 1
    return ref[head:len(ref) - tail], alt[head:len(alt) - tail]


# ------------------------------------------------------------------- the reference check


def _reference_bases(reference: pysam.FastaFile, rec: _Record, contig_length: int) -> tuple[str, str]:
    """The reference (upper case) where REF claims to be, and a note when REF runs past
    the contig's end (it is then compared with the bases there are)."""
    start0, end0 = rec.pos - 1, rec.pos - 1 + len(rec.ref)
    if start0 < 0:  # POS 0: a telomere record, before the first base
        return "", "POS 0 is before the contig's first base"
    bases = reference.fetch(rec.chrom, start0, min(end0, contig_length)).upper() if start0 < contig_length else ""
    return bases, (f"the contig ends at {contig_length} bp" if end0 > contig_length else "")


def _shown_reference(bases: str, note: str) -> str:
    """What the reference has, for a message: 'ACG', 'AC; the contig ends at 100 bp'."""
    return f"{_abbreviate(bases) or 'nothing'}; {note}" if note else _abbreviate(bases)


def _ref_matches(ref: str, found: str) -> bool:
    """Whether REF agrees with the reference base by base. N in REF matches any base:
    the VCF standard lets N stand for a base not known (some structural-variant callers
    write it), and such ALTs are skipped for their N anyway."""
    return len(ref) == len(found) and all(r == f or r == "N" for r, f in zip(ref, found))


def _mismatch_error(vcf, mismatches: list[tuple[_Record, str]]) -> InputError:
    shown = "; ".join(f"{rec.where} REF {_abbreviate(rec.ref)} vs reference {found}"
                      for rec, found in mismatches[:_SHOWN])
    more = f" (first {_SHOWN} shown)" if len(mismatches) > _SHOWN else ""
    return InputError(
        f"{len(mismatches)} record(s) have a REF that does not match the reference{more}: {shown}", path=vcf,
        fix="wrong genome build? check input.reference against the VCF, or set variants.ref_mismatch: skip to "
            "list them in skipped.tsv")


def _abbreviate(bases: str, keep: int = 20) -> str:
    """Long alleles (a 5 kb deletion) cut for a message, their length said."""
    if len(bases) <= keep:
        return bases
    return f"{bases[:keep]}... ({len(bases)} bp)"


# ----------------------------------------------------------------------------- contigs


def _unknown_contigs_error(vcf, unknown: dict[str, int], available: list[str]) -> InputError:
    names = list(unknown)
    shown = ", ".join(f"{name} ({unknown[name]} record(s))" for name in names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    hints = [hint for name in names if (hint := _rename_hint(name, available))]
    if hints:
        fix = (f"{'; '.join(hints[:_SHOWN])}: rename with bcftools annotate --rename-chrs (a file of "
               "'old new' lines), or use the reference the VCF was called against")
    else:
        listed = ", ".join(available[:_SHOWN]) + (", ..." if len(available) > _SHOWN else "")
        fix = (f"use the reference the VCF was called against (this one has {listed}), or rename the VCF's "
               "contigs with bcftools annotate --rename-chrs")
    return InputError(f"{len(names)} contig(s) of the VCF are not in the reference: {shown}{more}", path=vcf,
                      fix=fix)


def _rename_hint(name: str, available: list[str]) -> str | None:
    """'the VCF says chr1, the reference 1' when the reference names the same contig
    with or without a 'chr' prefix, or by another usual mitochondrion name."""
    candidates = [name[3:]] if name.startswith("chr") else [f"chr{name}"]
    if name in _MITOCHONDRION:
        candidates += [other for other in _MITOCHONDRION if other != name]
    present = set(available)
    for candidate in candidates:
        if candidate in present:
            return f"the VCF says {name}, the reference {candidate}"
    return None


# ----------------------------------------------------------------------------- regions


def _merged_regions(regions: list[Region], lengths: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """Per contig, the regions sorted and merged where they overlap or touch, so that one
    bisection finds the only region that can overlap a variant."""
    unknown = sorted({chrom for chrom, _, _ in regions if chrom not in lengths})
    if unknown:
        hints = [hint.replace("the VCF says", "the regions say") for name in unknown
                 if (hint := _rename_hint(name, list(lengths)))]
        raise InputError(f"{len(unknown)} contig(s) of the regions are not in the reference: "
                         f"{', '.join(unknown[:_SHOWN])}{' ...' if len(unknown) > _SHOWN else ''}",
                         fix=f"{'; '.join(hints)}: rename them" if hints else
                             "give regions on the reference's contigs (0-based half-open, as in BED)")
    merged: dict[str, list[tuple[int, int]]] = {}
    for chrom, start, end in sorted(regions):
        if start < 0 or start >= end:
            raise InputError(f"region {chrom}:{start}-{end} is empty or starts before 0",
                             fix="regions are 0-based half-open [start, end) with start < end")
        spans = merged.setdefault(chrom, [])
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return merged


def _overlaps(spans: list[tuple[int, int]], start0: int, end0: int) -> bool:
    """Whether [start0, end0) overlaps one of the merged, sorted `spans`: the last span
    starting before end0 reaches furthest right of all that could."""
    i = bisect.bisect_left(spans, (end0,)) - 1
    return i >= 0 and spans[i][1] > start0
