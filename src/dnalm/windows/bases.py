"""The bases a window holds: upper-case ACGTN, IUPAC ambiguity codes by the configured
policy (`windows.iupac`), anything else refused naming the record and offset; and the
reverse complement, for minus-strand regions and `encoder.strands: both`."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

IUPAC_AMBIGUOUS = "RYKMSWBDHVU"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")

# Byte classes: 0 = ACGT, 1 = N, 2 = IUPAC ambiguity code, 3 = anything else.
_CLASS = np.full(256, 3, dtype=np.uint8)
for _c in b"ACGT":
    _CLASS[_c] = 0
_CLASS[ord("N")] = 1
for _c in IUPAC_AMBIGUOUS.encode():
    _CLASS[_c] = 2


def clean_sequence(raw: str, policy: str, record: str, fasta: str) -> tuple[str, int]:
    """Upper-case a sequence and apply the IUPAC policy; reject other letters.

    Returns the cleaned sequence (ACGTN only) and how many ambiguity codes
    were read as N.
    """
    seq = raw.upper()
    codes = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
    classes = _CLASS[codes]
    bad = np.flatnonzero(classes == 3)
    if bad.size:
        pos = int(bad[0])
        raise InputError(
            f"record {record} holds {seq[pos]!r} at offset {pos}, which is not a DNA letter "
            f"({bad.size} such character(s))",
            path=fasta, fix="remove gaps/digits/symbols from the sequence; only A, C, G, T, N "
            "and IUPAC codes are read")
    ambiguous = np.flatnonzero(classes == 2)
    if ambiguous.size:
        if policy == "error":
            pos = int(ambiguous[0])
            raise InputError(
                f"record {record} holds the IUPAC ambiguity code {seq[pos]!r} at offset {pos} "
                f"({ambiguous.size} in this record); the policy windows.iupac=error rejects them",
                path=fasta, fix="set windows.iupac: as_n to read IUPAC codes as N (their k-mers "
                "become [UNK]), or clean the FASTA")
        table = str.maketrans(IUPAC_AMBIGUOUS, "N" * len(IUPAC_AMBIGUOUS))
        seq = seq.translate(table)
    return seq, int(ambiguous.size)


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


_NOT_BASE = bytes(c for c in range(256) if c not in b"ACGTN")
_TO_N = bytes.maketrans(_NOT_BASE, b"N" * len(_NOT_BASE))


def as_n(seq: str) -> str:
    """Upper-case ACGTN, every other letter (IUPAC codes, anything else) read as N: bases a
    model reads where no `windows.iupac` policy applies (pretraining windows, variant flanks)."""
    return seq.upper().encode("ascii").translate(_TO_N).decode("ascii")


def assemble(starts, windows) -> str:
    """A sequence's bases (its own orientation) from its windows and their offsets in it;
    a base no window holds reads N."""
    length = max(int(start) + len(window) for start, window in zip(starts, windows))
    buffer = bytearray(b"N" * length)
    for start, window in zip(starts, windows):
        buffer[int(start): int(start) + len(window)] = window.encode("ascii")
    return buffer.decode("ascii")
