"""Small helpers shared by the unit tests (owned by the unit-test files, not conftest)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pysam

DATA = Path(__file__).resolve().parents[1] / "data"
PHIX = DATA / "phiX174_NC_001422.1.fa.gz"
ECOLI = DATA / "ecoli_k12_mg1655_NC_000913.3.fa.gz"
ORCHID = DATA / "orchid_its.fa.gz"
ORCHID_LABELS = DATA / "orchid_its_labels.tsv"
VOCAB6 = DATA / "dnabert6_vocab.txt"

_COMP = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def read_records(path: str | Path) -> dict[str, str]:
    """All records of a (gzip/bgzip/plain) FASTA, read sequentially with pysam (no index needed)."""
    with pysam.FastxFile(str(path)) as fh:
        return {rec.name: rec.sequence for rec in fh}


def revcomp(seq: str) -> str:
    """Reverse complement written out base by base (independent of dnalm.windows)."""
    return "".join(_COMP[b] for b in reversed(seq))


def write_fasta(path: str | Path, records: dict[str, str], width: int = 60) -> Path:
    path = Path(path)
    with open(path, "w") as fh:
        for name, seq in records.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")
    return path


def copy_fasta(src: Path, folder: Path) -> Path:
    """Copy a bundled FASTA (without its index) into a test folder, so indexing writes there."""
    dst = Path(folder) / src.name
    shutil.copyfile(src, dst)
    return dst
