"""Atomic file output, Parquet with provenance, and FASTA access through pysam."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pysam

from . import __version__
from .errors import InputError

# Parquet options shared by every file the workflow writes. No timestamps go
# into the metadata, so identical content gives identical bytes and Snakemake's
# checksum comparison keeps unchanged shards from re-running downstream jobs.
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True)
PROVENANCE_KEY = b"dnalm.provenance"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place on success.

    On any exception the temporary file is removed, so a failed step leaves
    no output that looks finished.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a job killed with SIGKILL
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like atomic_path, for a step that writes several files into one folder.

    The caller writes into the yielded folder; on success each file is moved
    into `path` (an existing folder keeps files it does not replace).
    """
    final = Path(path)
    final.mkdir(parents=True, exist_ok=True)
    for stale in final.glob(".tmp.*"):  # left by a job killed with SIGKILL (no finally ran)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp.", dir=final))
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, final / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: object) -> object:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def with_provenance(schema: pa.Schema, provenance: dict) -> pa.Schema:
    """Attach provenance (JSON) to a schema's metadata, keeping what is there."""
    meta = dict(schema.metadata or {})
    full = {"dnalm_version": __version__, **provenance}
    meta[PROVENANCE_KEY] = json.dumps(full, sort_keys=True).encode()
    return schema.with_metadata(meta)


def read_provenance(path: str | os.PathLike) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def write_table_atomic(table: pa.Table, path: str | os.PathLike, provenance: dict | None = None) -> None:
    if provenance is not None:
        table = table.replace_schema_metadata(with_provenance(table.schema, provenance).metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


# ---------------------------------------------------------------- FASTA access


def _is_plain_gzip(path: Path) -> bool:
    """True for gzip that is not BGZF (pysam cannot index it)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return False
    # BGZF sets FEXTRA with a 'BC' subfield right after the fixed header.
    return not (head[3] & 4 and head[12:14] == b"BC")


def ensure_fasta_index(fasta: str | os.PathLike) -> Path:
    """Return the .fai of a plain or bgzip FASTA, building it with pysam if missing."""
    if not str(fasta):
        raise InputError("no FASTA is configured", fix="set input.reference (modes bed, tiles) or "
                         "input.sequences (mode fasta)")
    path = Path(fasta)
    if not path.is_file():
        raise InputError("FASTA file does not exist", path=path, fix="check the path in the config")
    if path.stat().st_size == 0:
        raise InputError("FASTA file is empty", path=path, fix="point the config at a FASTA with at least one record")
    if _is_plain_gzip(path):
        raise InputError(
            "is compressed with plain gzip, which cannot be indexed for random access",
            path=path,
            fix=f"recompress it with bgzip: zcat {path} | bgzip > {path.with_suffix('')}.bgz.gz "
            "(or decompress it)",
        )
    fai = Path(f"{path}.fai")
    stale = fai.exists() and fai.stat().st_mtime < path.stat().st_mtime
    writable = os.access(path.parent, os.W_OK)
    if not fai.exists() and not writable:
        raise InputError(
            f"has no .fai index and its folder {path.parent} is not writable, so none can be built",
            path=path, fix=f"index it where you can write (samtools faidx {path}), or copy the FASTA "
                           "to a writable folder and point the config there")
    if not fai.exists() or (stale and writable):
        try:
            pysam.faidx(str(path))
        except pysam.SamtoolsError as err:  # malformed FASTA: say so, not samtools' words alone
            raise InputError(
                f"could not be indexed as FASTA ({str(err).strip()})",
                path=path,
                fix="check that it is a FASTA file with '>' headers and equal-length sequence lines",
            ) from None
    return fai


def read_fai(fasta: str | os.PathLike) -> dict[str, int]:
    """Contig name -> length, in file order."""
    fai = ensure_fasta_index(fasta)
    lengths: dict[str, int] = {}
    with open(fai) as fh:
        for line in fh:
            name, length = line.split("\t")[:2]
            lengths[name] = int(length)
    if not lengths:
        raise InputError("FASTA file has no records", path=fasta, fix="point the config at a non-empty FASTA")
    return lengths


def fai_digest(fasta: str | os.PathLike) -> str:
    """sha256 of the .fai: names, lengths and layout of the reference, cheaply."""
    fai = ensure_fasta_index(fasta)
    return "sha256:" + hashlib.sha256(Path(fai).read_bytes()).hexdigest()


def open_fasta(fasta: str | os.PathLike) -> pysam.FastaFile:
    ensure_fasta_index(fasta)
    return pysam.FastaFile(str(fasta))


def open_text(path: str | os.PathLike):
    """Open a text file that may be gzip-compressed."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt")
    return open(path)
