"""FASTA access through pysam, with indexes checked before they are trusted.

pysam reads a FASTA through its .fai (and, for bgzip, .gzi) index. An index that
does not belong to the file gives wrong bases without any error, so an index is
checked against the file before it is used (`check_fai`), and rebuilt when it does
not match: beside the FASTA when that folder is writable, else under the results
folder (`<outdir>/reference/`, the FASTA symlinked beside its index). Plain gzip
cannot be indexed: the workflow recompresses it once with bgzip (`bgzip_copy`).
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import mmap
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pysam
import pysam.libcbgzf

from ..errors import InputError
from ..io import atomic_path, write_json_atomic


class FaiRecord(NamedTuple):
    name: str
    length: int
    offset: int  # of the first base, in uncompressed bytes
    linebases: int
    linewidth: int

    @property
    def seq_end(self) -> int:
        """Offset just past the last base (past the last line's terminator when that line is full)."""
        full, rest = divmod(self.length, self.linebases)
        return self.offset + full * self.linewidth + rest


@dataclass
class FaiCheck:
    """What comparing a .fai with its FASTA found: the first mismatch (stale), records
    the .fai leaves out because their name repeats an earlier one (htslib keeps the
    first), and empty records (htslib leaves them out too)."""

    stale: str | None = None
    duplicates: list[tuple[int, str, int]] = field(default_factory=list)  # (record, name, first record)
    empty: list[tuple[int, str]] = field(default_factory=list)  # (record, name)


def is_plain_gzip(path: Path) -> bool:
    """True for gzip that is not BGZF (pysam cannot index it)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return False
    # BGZF sets FEXTRA with a 'BC' subfield right after the fixed header.
    return not (head[3] & 4 and head[12:14] == b"BC")


def _is_gzip(path: Path) -> bool:
    """Any gzip; where an index is read or built, plain gzip was refused already, so gzip
    there means BGZF (which has a .gzi beside its .fai)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _parse_fai(fai: Path) -> list[FaiRecord]:
    records = []
    with open(fai) as fh:
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                raise ValueError(f"{fai}: not a .fai line: {line!r}")
            records.append(FaiRecord(cols[0], *(int(c) for c in cols[1:5])))
    return records


class _FastaBytes:
    """Reads ranges of a FASTA's uncompressed bytes: a plain file through mmap, a BGZF
    file through its .gzi. Ranges are expected in increasing order; short hops are
    read through rather than sought, so a file of many small records costs about
    one pass and a genome of a few large contigs a few blocks."""

    _HOP = 1 << 20

    def __init__(self, path: Path, gzi: Path | None):
        self.path, self.gzi = path, gzi
        self._file = open(path, "rb")
        self._map = None
        self._bgzf = None
        if gzi is None:
            if path.stat().st_size:
                self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            raw = gzi.read_bytes()
            (count,) = struct.unpack_from("<Q", raw)
            pairs = struct.unpack_from(f"<{2 * count}Q", raw, 8)
            self._blocks = [0] + list(pairs[0::2])  # compressed offsets
            self._starts = [0] + list(pairs[1::2])  # uncompressed offsets
            self._bgzf = pysam.libcbgzf.BGZFile(str(path), "rb")
            self._pos = 0

    def read(self, start: int, end: int) -> bytes:
        if self._bgzf is None:
            return self._map[start:end] if self._map is not None else b""
        if not (self._pos <= start <= self._pos + self._HOP):
            i = bisect.bisect_right(self._starts, start) - 1
            self._bgzf.seek((self._blocks[i] << 16) | (start - self._starts[i]))
            self._pos = self._starts[i] + (start - self._starts[i])
        if start > self._pos:
            self._bgzf.read(start - self._pos)
        data = self._bgzf.read(end - start)
        self._pos = start + len(data)
        return data

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        if self._bgzf is not None:
            self._bgzf.close()
        self._file.close()


_WINDOW = 1 << 16  # of a gap between records, read from each end when it is larger than two of these


def check_fai(fasta: str | os.PathLike) -> FaiCheck:
    """Compare `fasta`'s .fai (and .gzi) with the file itself, reading only the bytes
    between records (the headers) and each record's first line.

    For every record the bytes from the end of the previous one to its offset must be
    line ends and one header line naming it, and its first line must hold `linebases`
    bases and end where `linewidth` says. An index of an older version of the file, of
    a re-wrapped copy or of another file fails this at the first record that moved.
    Headers the index skipped are either repeats of an earlier name or empty records.
    """
    path = Path(fasta)
    fai = Path(f"{path}.fai")
    gzi = Path(f"{path}.gzi") if _is_gzip(path) else None
    try:
        records = _parse_fai(fai)
    except (OSError, ValueError) as err:
        return FaiCheck(stale=f"its .fai cannot be read ({err})")
    if not records:
        return FaiCheck(stale="its .fai lists no record")
    check = FaiCheck()
    try:
        reader = _FastaBytes(path, gzi)
    except (OSError, struct.error, ValueError) as err:
        return FaiCheck(stale=f"its .gzi cannot be read ({err})")
    known: dict[str, int] = {}
    listed = {rec.name for rec in records}
    counter = [0]
    try:
        prev_end = 0
        for rec in records:
            if rec.linebases < 1 or rec.linewidth - rec.linebases not in (1, 2) or rec.offset < prev_end:
                check.stale = f"the .fai entry of {rec.name} is not consistent"
                break
            if rec.offset - prev_end > 2 * _WINDOW:
                lines = _lines(reader.read(prev_end, prev_end + _WINDOW))[:-1]
                lines += [None]  # bytes not read
                lines += _lines(reader.read(rec.offset - _WINDOW, rec.offset))[1:]
            else:
                lines = _lines(reader.read(prev_end, rec.offset))
            if lines[-1] != b"":  # the header must end right before the offset
                check.stale = f"the .fai puts record {rec.name} where no header line ends"
                break
            check.stale = _read_gap(lines[:-1], rec.name, known, counter, check, listed)
            if check.stale:
                break
            first = reader.read(rec.offset, rec.offset + min(rec.length, rec.linebases) +
                                (rec.linewidth - rec.linebases if rec.length > rec.linebases else 0))
            bases = first[: min(rec.length, rec.linebases)]
            if any(c in bases for c in b">\r\n") or (
                    rec.length > rec.linebases and first[rec.linebases:] not in (b"\n", b"\r\n")):
                check.stale = f"the first line of record {rec.name} does not have the {rec.linebases} bases " \
                              "the .fai says"
                break
            prev_end = rec.seq_end
        else:
            tail = reader.read(prev_end, prev_end + _WINDOW)
            lines = _lines(tail)
            if len(tail) == _WINDOW:
                lines = lines[:-1] + [None]
            check.stale = _read_gap(lines, None, known, counter, check, listed)
    finally:
        reader.close()
    return check


def _lines(data: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n")]


def _read_gap(lines: list, expect: str | None, known: dict[str, int], counter: list[int],
              check: FaiCheck, listed: set[str]) -> str | None:
    """Walk the lines between two indexed records (None stands for bytes not read): blank
    lines, headers the .fai skipped (with their bodies), then the header `expect`."""
    last = max((i for i, line in enumerate(lines) if line and line.strip()), default=-1) if expect else -1
    pending = None  # [record, name, has bases]

    def settle():
        record, name, has_bases = pending
        if name in known:
            check.duplicates.append((record, name, known[name]))
        elif has_bases and name in listed:
            return f"the .fai puts record {name} at an offset where the file does not have it"
        elif has_bases:
            return f"the .fai does not list record {name}"
        else:
            check.empty.append((record, name))
            known[name] = record
        return None

    for i, line in enumerate(lines):
        if line is None:
            if pending is None:
                return "the .fai leaves out a stretch of the file"
            pending[2] = True
            continue
        if not line.strip():
            continue
        if line.startswith(b">"):
            if pending is not None and (problem := settle()):
                return problem
            pending = None
            counter[0] += 1
            name = (line[1:].split(None, 1) or [b""])[0].decode(errors="replace")
            if i == last:
                if name != expect:
                    return f"the .fai names record {counter[0]} {expect!r} but its header says {name!r}"
                known[name] = counter[0]
            else:
                pending = [counter[0], name, False]
        elif pending is not None:
            pending[2] = True
        else:
            return f"the .fai puts the end of a record (before {expect or 'the end of the file'}) mid-sequence"
    if pending is not None:
        return settle()
    if expect is not None and last < 0:
        return f"the .fai puts record {expect} where there is no header line"
    return None


def _check_fasta_file(fasta: str | os.PathLike) -> Path:
    if not str(fasta):
        raise InputError("no FASTA is configured", fix="set input.reference (modes bed, tiles) or "
                         "input.sequences (mode fasta)")
    path = Path(fasta)
    if not path.is_file():
        raise InputError("FASTA file does not exist", path=path, fix="check the path in the config")
    if path.stat().st_size == 0:
        raise InputError("FASTA file is empty", path=path, fix="point the config at a FASTA with at least one record")
    return path


def _index_files(path: Path) -> list[Path]:
    return [Path(f"{path}.fai")] + ([Path(f"{path}.gzi")] if _is_gzip(path) else [])


def _index_problem(path: Path) -> str | None:
    """Why the index beside `path` cannot be used, or None. Repeated record names are
    an error of the FASTA itself, whatever the index."""
    fasta_mtime = path.stat().st_mtime  # a symlink's target
    for index in _index_files(path):
        if not index.exists():
            return f"has no {index.suffix} index"
        if index.stat().st_mtime < fasta_mtime:
            return f"has a {index.suffix} index older than the file"
    check = check_fai(path)
    if check.duplicates:
        record, name, first = check.duplicates[0]
        raise InputError(
            f"record {record} repeats the name {name!r} of record {first}; the index keeps only the first, "
            "so the other would be silently ignored", path=path,
            fix="give every record a unique name (the first word of its header line), or remove the repeat")
    if check.stale:
        return f"has a .fai index that does not belong to it ({check.stale})"
    return None


def _can_write_index(path: Path) -> bool:
    folder = path.parent
    return os.access(folder, os.W_OK | os.X_OK) and all(
        not index.exists() or os.access(index, os.W_OK) for index in _index_files(path))


def _build_index(path: Path) -> None:
    """Index `path` with pysam; the new .fai/.gzi replace old ones only when complete."""
    indexes = _index_files(path)
    tmps = [index.with_name(f".{index.name}.{os.getpid()}.tmp") for index in indexes]
    args = [str(path), "--fai-idx", str(tmps[0])] + (["--gzi-idx", str(tmps[1])] if len(tmps) > 1 else [])
    try:
        pysam.faidx(*args)
        for tmp, index in zip(tmps, indexes):
            os.replace(tmp, index)
    except pysam.SamtoolsError as err:  # malformed FASTA: say so, not samtools' words alone
        said = str(err).split("stderr=", 1)[-1].strip().strip("'\"").replace("\\n", " ").strip()
        for tmp, index in zip(tmps, indexes):  # name the index files, not this process's temporary ones
            said = said.replace(str(tmp), str(index))
        raise InputError(
            f"could not be indexed as FASTA ({said})", path=path,
            fix="check that it is a FASTA file with '>' headers and equal-length sequence lines") from None
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def _link_into(path: Path, folder: Path) -> Path:
    """`folder/<name>`: a symlink to `path`, so pysam finds an index built beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / path.name
    target = os.path.abspath(path)
    if not (link.is_symlink() and os.readlink(link) == target):
        tmp = folder / f".{path.name}.{os.getpid()}.link"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    return link


# Indexes this process has checked: (FASTA, fallback folder, the files' stat) -> the path
# to read through. Planning and each job read the index several times (lengths, digest,
# fetches); a check reads the whole .fai and samples the FASTA, so it is done once while
# none of the files changes (a rewrite changes ctime, which no copy can set back).
_CHECKED: dict[tuple, Path] = {}


def _index_state(fasta: str | os.PathLike, fallback_dir: str | os.PathLike | None) -> tuple:
    paths = [Path(fasta)]
    if fallback_dir is not None:
        paths.append(Path(fallback_dir) / Path(fasta).name)
    stats = []
    for path in paths:
        for name in (path, Path(f"{path}.fai"), Path(f"{path}.gzi")):
            try:
                st = name.stat()
                stats.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                stats.append(None)
    return (os.path.abspath(fasta), None if fallback_dir is None else os.path.abspath(fallback_dir), *stats)


def ensure_fasta_index(fasta: str | os.PathLike, fallback_dir: str | os.PathLike | None = None) -> Path:
    """The path to open `fasta` through, with a checked index beside it.

    That is `fasta` itself when its index matches it or can be rebuilt beside it; else,
    when its folder is not writable, a symlink in `fallback_dir` with an index there.
    """
    checked = _CHECKED.get(_index_state(fasta, fallback_dir))
    if checked is not None:
        return checked
    read_path = _ensure_fasta_index(fasta, fallback_dir)
    _CHECKED[_index_state(fasta, fallback_dir)] = read_path  # the state after any rebuild
    return read_path


def _ensure_fasta_index(fasta: str | os.PathLike, fallback_dir: str | os.PathLike | None) -> Path:
    path = _check_fasta_file(fasta)
    if is_plain_gzip(path):
        raise InputError(
            "is compressed with plain gzip, which cannot be indexed for random access", path=path,
            fix="the workflow recompresses it with bgzip by itself (rule bgzip_fasta); outside the workflow "
                f"recompress it: zcat {path} | bgzip > {path.with_suffix('')}.bgz.gz")
    problem = _index_problem(path)
    if problem is None:
        return path
    target = path
    if not _can_write_index(path):
        if fallback_dir is None:
            raise InputError(
                f"{problem}, and its folder {path.parent} is not writable, so no index can be built there",
                path=path, fix=f"index it where you can write (samtools faidx {path}), or copy the FASTA to a "
                               "writable folder and point the config there")
        target = _link_into(path, Path(fallback_dir))
        if _index_problem(target) is None:
            return target
        print(f"dnalm: {path} {problem} in a read-only folder; indexing it in {fallback_dir}", file=sys.stderr)
    elif Path(f"{path}.fai").exists():
        print(f"dnalm: {path} {problem}; rebuilding it", file=sys.stderr)
    _build_index(target)
    problem = _index_problem(target)
    if problem:
        raise InputError(f"htslib's index of it does not match the file ({problem})", path=path,
                         fix="check the FASTA: '>' header lines, and sequence lines of one length within a "
                             "record (the last may be shorter)")
    return target


def read_fai(fasta: str | os.PathLike, fallback_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Contig name -> length, in file order, from a checked index."""
    fai = Path(f"{ensure_fasta_index(fasta, fallback_dir)}.fai")
    lengths = {rec.name: rec.length for rec in _parse_fai(fai)}
    if not lengths:
        raise InputError("FASTA file has no records", path=fasta, fix="point the config at a non-empty FASTA")
    return lengths


def fai_digest(fasta: str | os.PathLike) -> str:
    """sha256 of the .fai: names, lengths and layout of the reference, cheaply."""
    fai = Path(f"{ensure_fasta_index(fasta)}.fai")
    return "sha256:" + hashlib.sha256(fai.read_bytes()).hexdigest()


def open_fasta(fasta: str | os.PathLike) -> pysam.FastaFile:
    return pysam.FastaFile(str(ensure_fasta_index(fasta)))


def scan_fasta(fasta: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Record name -> length, in file order, by one streaming pass (plain, gzip or bgzip;
    no index). A repeated name is an error naming both records. With `cache_dir`, the
    result is kept there, keyed by the file's size and mtime, so a rerun does not read
    the file again."""
    path = _check_fasta_file(fasta)
    stat = path.stat()
    key = {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache = Path(cache_dir) / f"{path.name}.records.json" if cache_dir is not None else None
    if cache is not None and cache.exists():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key:
                return dict(stored["records"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    lengths: dict[str, int] = {}
    try:
        with pysam.FastxFile(str(path)) as records:
            for number, record in enumerate(records, start=1):
                if record.name in lengths:
                    first = list(lengths).index(record.name) + 1
                    raise InputError(
                        f"record {number} repeats the name {record.name!r} of record {first}", path=path,
                        fix="give every record a unique name (the first word of its header line), or remove "
                            "the repeat")
                lengths[record.name] = len(record.sequence or "")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot be read as FASTA ({err})", path=path,
                         fix="check that it is a (gzip-compressed) FASTA file with '>' header lines") from None
    if not lengths:
        raise InputError("FASTA file has no records", path=path, fix="point the config at a non-empty FASTA")
    if cache is not None:
        write_json_atomic(cache, {"key": key, "records": list(lengths.items())})
    return lengths


def bgzip_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Recompress a plain-gzip FASTA with BGZF, byte for byte, and index the copy
    (.fai, .gzi). The three files appear together when complete."""
    target = Path(target)
    indexes = [Path(f"{target}.fai"), Path(f"{target}.gzi")]
    with atomic_path(target) as tmp:
        with gzip.open(source, "rb") as src, pysam.libcbgzf.BGZFile(str(tmp), "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        with atomic_path(indexes[0]) as fai, atomic_path(indexes[1]) as gzi:
            try:
                pysam.faidx(str(tmp), "--fai-idx", str(fai), "--gzi-idx", str(gzi))
            except pysam.SamtoolsError as err:
                raise InputError(f"could not be indexed as FASTA ({str(err).strip()})", path=source,
                                 fix="check that it is a FASTA file with '>' headers and equal-length sequence "
                                     "lines") from None


@dataclass(frozen=True)
class FastaAccess:
    """How the jobs read a configured FASTA (`source`): through `path`, which has a
    checked index beside it. `recompress`: `path` is a bgzip copy of a plain-gzip
    `source` that rule bgzip_fasta makes under the results folder."""

    source: str
    path: str
    recompress: bool = False


def reference_dir(outdir: str | os.PathLike) -> Path:
    """Where indexes of read-only FASTAs, bgzip copies and record scans are kept."""
    return Path(outdir) / "reference"


def bgzip_copy_path(source: str | os.PathLike, outdir: str | os.PathLike) -> str:
    name = Path(source).name
    stem = name[: -len(".gz")] if name.endswith(".gz") else name
    return str(reference_dir(outdir) / f"{stem}.bgz.gz")


def plan_fasta(source: str, outdir: str | os.PathLike, scan: bool = False) -> tuple[FastaAccess, dict[str, int]]:
    """How jobs will read `source`, and its records (name -> length).

    Plain gzip is scanned by one streaming pass (cached under `<outdir>/reference/`,
    where the bgzip copy the jobs read will be made). Otherwise the index is checked
    (and rebuilt where needed); `scan` also reads every record by streaming, for a
    FASTA whose records are the sequences (repeated names and empty records are found).
    """
    path = _check_fasta_file(source)
    folder = reference_dir(outdir)
    if is_plain_gzip(path):
        return FastaAccess(source, bgzip_copy_path(source, outdir), True), scan_fasta(path, folder)
    read_path = ensure_fasta_index(path, folder)
    records = scan_fasta(path) if scan else read_fai(read_path)
    return FastaAccess(source, str(read_path)), records


def check_pretrain_lengths(fastas: list[str], window_size: int) -> None:
    """Pretraining cuts records into windows of `window_size`: refuse, from the indexes
    alone (DAG time), FASTAs whose records are all shorter than one window."""
    longest = max((length for fasta in fastas for length in read_fai(fasta).values()), default=0)
    if longest < window_size:
        raise InputError(f"no record is at least one window ({window_size} bp) long (the longest is {longest} bp), "
                         "so pretraining has nothing to train on", path=", ".join(map(str, fastas)),
                         fix="pretrain on a genome (pretrain.fasta), or use smaller windows (windows.size)")
