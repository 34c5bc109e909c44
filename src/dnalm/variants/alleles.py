"""The two sequences a variant is scored on: a window of the reference around it, and
the same window with ALT in place of REF.

Placement, for a window of W bases on a contig of L bases:

- ref window: W reference bases with the REF span in the middle, i.e. a left flank of
  (W - len(REF)) // 2 bases before REF. Where that would start before the contig or end
  after it, the window is moved inside the contig (`shifted`).
- alt window: the same left flank (reference from the ref window's start up to REF),
  then ALT, then reference bases after the REF span until the window holds W bases: a
  deletion takes more right flank, an insertion less. Two cases move it:
  * the contig ends before the window is full (a deletion near the right end): the
    window takes more left flank instead;
  * ALT is too long to fit after the left flank (an insertion longer than the right
    half of the window): the window keeps less left flank, ALT ends the window.
  The alt window then starts elsewhere than the ref window (`alt_start0` != `start0`,
  `alt_offset` != `ref_offset`), and `shifted` is set.

Both windows always hold exactly W bases, both alleles whole. The ref window is the
reference itself (upper case), so a model sees the same bases wherever a window of the
genome holds them. Read the alt window as the W bases of the alternative haplotype
(reference with ALT for REF) starting at `alt_start0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pysam

from .records import Variant


class AlleleTooLong(ValueError):
    """REF or ALT is longer than the window; callers list the variant as skipped."""


class ContigTooShort(ValueError):
    """The contig (with REF or with ALT) is shorter than the window; callers list the
    variant as skipped."""


@dataclass(frozen=True)
class AlleleWindows:
    ref_seq: str  # exactly window_size bases of the reference
    alt_seq: str  # exactly window_size bases of the alternative haplotype
    start0: int  # 0-based contig coordinate of ref_seq[0]
    alt_start0: int  # 0-based contig coordinate of alt_seq[0] (its first left-flank base, or ALT's start)
    ref_offset: int  # index in ref_seq where REF begins
    alt_offset: int  # index in alt_seq where ALT begins (== ref_offset unless the alt window moved)
    ref_len: int  # len(REF): ref_seq[ref_offset:ref_offset + ref_len] is REF, never clipped
    alt_len: int  # len(ALT): alt_seq[alt_offset:alt_offset + alt_len] is ALT, never clipped
    shifted: bool  # a window is not where the centring rule puts it (a contig end, or a long ALT)


def window_problem(variant: Variant, window_size: int, contig_length: int) -> str | None:
    """Why the variant cannot have windows of `window_size` on its contig (the reason
    for skipped.tsv), or None."""
    longest = max(len(variant.ref), len(variant.alt))
    if longest > window_size:
        return f"allele longer than the window ({longest} bp > {window_size} bp)"
    if contig_length < window_size:
        return f"contig shorter than the window ({contig_length} bp < {window_size} bp)"
    alt_contig = contig_length - len(variant.ref) + len(variant.alt)
    if alt_contig < window_size:  # a deletion on a contig barely one window long
        return f"contig shorter than the window once ALT replaces REF ({alt_contig} bp < {window_size} bp)"
    return None


def allele_windows(variant: Variant, fasta: pysam.FastaFile, window_size: int, contig_length: int,
                   lean: int = 0) -> AlleleWindows:
    """The ref and alt windows of `variant` (see the module's placement rules).

    Raises AlleleTooLong or ContigTooShort (both ValueError) where `window_problem`
    gives a reason, and ValueError for a variant outside its contig.
    """
    if window_size < 1:
        raise ValueError(f"window_size must be at least 1, not {window_size}")
    problem = window_problem(variant, window_size, contig_length)
    if problem is not None:
        too_long = problem.startswith("allele")
        raise (AlleleTooLong if too_long else ContigTooShort)(f"{_where(variant)}: {problem}")
    if variant.start0 < 0 or variant.ref_end0 > contig_length:
        raise ValueError(f"{_where(variant)}: REF lies outside the contig ({contig_length} bp)")

    ref_start = _ref_window_start(variant, window_size, contig_length, lean)
    alt_start = _alt_window_start(variant, ref_start, window_size, contig_length)
    ref_seq = _fetch(fasta, variant.chrom, ref_start, ref_start + window_size)
    left_flank = _fetch(fasta, variant.chrom, alt_start, variant.start0)
    right_count = window_size - len(left_flank) - len(variant.alt)
    right_flank = _fetch(fasta, variant.chrom, variant.ref_end0, variant.ref_end0 + right_count)
    alt_seq = left_flank + variant.alt + right_flank
    if len(ref_seq) != window_size or len(alt_seq) != window_size:  # contig_length is not the FASTA's
        raise ValueError(f"{_where(variant)}: the reference has fewer bases than contig_length "
                         f"({contig_length}) says")
    centred = variant.start0 - (window_size - len(variant.ref) + lean) // 2
    return AlleleWindows(ref_seq=ref_seq, alt_seq=alt_seq, start0=ref_start, alt_start0=alt_start,
                         ref_offset=variant.start0 - ref_start, alt_offset=variant.start0 - alt_start,
                         ref_len=len(variant.ref), alt_len=len(variant.alt),
                         shifted=ref_start != centred or alt_start != ref_start)


def _ref_window_start(variant: Variant, window_size: int, contig_length: int, lean: int = 0) -> int:
    """REF centred, then moved inside the contig. Where the flanks cannot be equal (W -
    len(REF) odd) the right one has the extra base, or with `lean=1` the left one: the
    reverse complement of one placement is the other on the reverse-complemented contig."""
    centred = variant.start0 - (window_size - len(variant.ref) + lean) // 2
    return min(max(centred, 0), contig_length - window_size)


def _alt_window_start(variant: Variant, ref_start: int, window_size: int, contig_length: int) -> int:
    """The ref window's start, unless the alternative haplotype (contig with ALT for REF)
    ends before the window is full, or ALT would run past the window's end.

    In haplotype coordinates the window starts where the ref window does (the bases
    before REF are the same in both); it must end by the haplotype's end and hold ALT
    whole. window_problem guarantees both can hold at once, at a start >= 0.
    """
    haplotype_length = contig_length - len(variant.ref) + len(variant.alt)
    start = min(ref_start, haplotype_length - window_size)  # more left flank near the right end
    return max(start, variant.start0 + len(variant.alt) - window_size)  # less left flank for a long ALT


def _fetch(fasta: pysam.FastaFile, chrom: str, start0: int, end0: int) -> str:
    return fasta.fetch(chrom, start0, end0).upper() if end0 > start0 else ""


def _where(variant: Variant) -> str:
    return f"{variant.chrom}:{variant.pos} {variant.ref}>{variant.alt}"
