"""Atomic file output, Parquet with provenance, and text input that may be gzip-compressed."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

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


def write_table_atomic(table: pa.Table, path: str | os.PathLike, provenance: dict | None = None) -> None:
    if provenance is not None:
        table = table.replace_schema_metadata(with_provenance(table.schema, provenance).metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None, *, rule: str | None = None) -> pa.Table:
    """A Parquet file the workflow wrote, as a table; a damaged or truncated file is one
    InputError naming it and the rule to re-run (`rule`, when the caller knows it)."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise _damaged(path, err, rule) from None


def read_parquet_schema(path: str | os.PathLike, *, rule: str | None = None) -> pa.Schema:
    """The schema (and metadata) of a Parquet file, with read_parquet's error."""
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise _damaged(path, err, rule) from None


def _damaged(path, err: Exception, rule: str | None) -> InputError:
    if not Path(path).exists():
        what = "does not exist"
    else:
        what = f"cannot be read as Parquet ({str(err).strip().splitlines()[0]})"
    rerun = f"snakemake --forcerun {rule}" if rule else "snakemake --forcerun <the rule that writes it>"
    return InputError(what, path=path,
                      fix=f"the file is missing, damaged or was cut short (a full disk, a killed copy): re-run the "
                          f"rule that writes it ({rerun}, with your usual options)")


def read_provenance(path: str | os.PathLike, *, rule: str | None = None) -> dict:
    """The provenance a Parquet file of the workflow carries (`rule`: the rule that writes it,
    named in the error when the file is damaged)."""
    meta = read_parquet_schema(path, rule=rule).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


# What bedtools and genome browsers take a BED line for when it starts with one of these:
# a comment, a track line or a browser line, whatever follows.
BED_HEADER_PREFIXES = ("#", "track", "browser")


def bed_header_like(contig: str) -> bool:
    """Whether a BED line on this contig would be read as a header, not as data."""
    return contig.startswith(BED_HEADER_PREFIXES)


def open_text(path: str | os.PathLike):
    """Open a text file that may be gzip-compressed; a UTF-8 byte-order mark is dropped."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")
