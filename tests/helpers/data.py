"""The bundled data the tests read, and small FASTA helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pysam

DATA = Path(__file__).resolve().parents[2] / "data"
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
    """Reverse complement written out base by base (independent of dnalm.windows.bases)."""
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


def read_only(folder: Path, cmd: list[str]) -> list[str]:
    """`cmd`, to be run with `folder` read-only. Root writes through file modes, so as
    root the folder becomes a read-only bind mount in a private mount namespace; any
    other user gets it with mode 555 (the caller restores the mode)."""
    import os
    import subprocess

    import pytest

    if os.geteuid() != 0:
        Path(folder).chmod(0o555)
        return cmd
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make {folder} read-only as root here (unshare -m: {probe.stderr.decode().strip()})")
    return ["unshare", "-m", "sh", "-c", script, str(folder), *cmd]
