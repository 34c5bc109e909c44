"""The scored VCF: the input VCF written back with one INFO field per score.

Every input record is written, in the input order, with all its fields; each score
column becomes an INFO field with Number=A (one value per ALT), and an ALT that was
not scored gets the missing value `.`. The output is bgzip-compressed and
tabix-indexed, so the input must be sorted (check_sortable says so up front).

Floats go through htslib, which stores them as float32 and prints them with six
significant digits (like printf's %g): a value read back matches the score to a
relative 5e-6.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from .. import __version__
from ..errors import InputError
from ..io import _json_default, atomic_path
from .records import open_variant_file

INFO_PREFIX = "DNALM_"
# The VCF specification's reserved END; a VCF with symbolic alleles (<DEL>) that does not
# declare it reads, but htslib refuses to write its records back.
END_LINE = '##INFO=<ID=END,Number=1,Type=Integer,Description="End position of the variant">'
PROVENANCE_HEADER_KEY = "dnalm_provenance"
KEY_COLUMNS = ("record", "alt_index")
SORT_FIX = "sort it: bcftools sort in.vcf -Oz -o sorted.vcf.gz"

# VCF 4.3 section 1.6.1: INFO keys match ^([A-Za-z_][0-9A-Za-z_.]*|1000G)$. The prefix
# supplies the leading letter, so only the rest needs cleaning.
_NOT_IN_KEY = re.compile(r"[^0-9A-Za-z_.]")


# ---------------------------------------------------------------- INFO keys


def info_key(column: str) -> str:
    """The INFO key of a score column: INFO_PREFIX + the name, each character that a
    key may not hold replaced by "_" ("hierarchical.log2_odds.coding" keeps its dots)."""
    return INFO_PREFIX + _NOT_IN_KEY.sub("_", str(column))


def info_keys(columns) -> dict[str, str]:
    """Each column's INFO key; ValueError when two columns would share one (e.g. "a-b"
    and "a b"), since one would silently overwrite the other."""
    keys: dict[str, str] = {}
    column_of_key: dict[str, str] = {}
    for column in columns:
        key = info_key(column)
        if key in column_of_key:
            raise ValueError(f"score columns {column_of_key[key]!r} and {column!r} both give the INFO key "
                             f"{key!r}: rename one of them")
        column_of_key[key] = column
        keys[column] = key
    return keys


# ---------------------------------------------------------------- reading the input


def _open_vcf(vcf_path) -> pysam.VariantFile:
    """The input opened with pysam (VCF, bgzipped VCF or BCF: htslib tells them apart)."""
    try:
        return open_variant_file(vcf_path)
    except FileNotFoundError:
        raise InputError("does not exist", path=vcf_path, fix="check the path of the VCF in the config") from None
    except (OSError, ValueError) as err:
        raise InputError(f"cannot be read as VCF or BCF ({err})", path=vcf_path,
                         fix="give a VCF, bgzipped VCF (.vcf.gz) or BCF file; bcftools view in.vcf shows "
                             "what is wrong with it") from None


class _SortCheck:
    """Whether records arrive as a tabix index needs them: each contig's records together
    (contigs in any order: the index looks contigs up by name) and positions not
    decreasing within a contig."""

    def __init__(self, vcf_path):
        self.vcf_path = vcf_path
        self.finished: set[str] = set()  # contigs already left behind
        self.contig: str | None = None
        self.pos = 0

    def see(self, number: int, contig: str, pos: int) -> None:
        """Check record `number` (1-based, in file order) at contig:pos (1-based)."""
        if contig != self.contig:
            if contig in self.finished:
                self._fail(number, contig, pos, f"contig {contig} already had records before {self.contig}, "
                                                f"and a contig's records must come together")
            if self.contig is not None:
                self.finished.add(self.contig)
            self.contig = contig
        elif pos < self.pos:
            self._fail(number, contig, pos, f"it comes after {contig}:{self.pos}")
        self.pos = pos

    def _fail(self, number: int, contig: str, pos: int, why: str) -> None:
        raise InputError(f"record {number} ({contig}:{pos}) is out of order: {why}. The scored VCF is "
                         f"tabix-indexed, which needs the records sorted by position within each contig",
                         path=self.vcf_path, fix=SORT_FIX)


@dataclass
class _Scan:
    n_records: int
    header: pysam.VariantHeader  # the input header plus whatever htslib added for undeclared names


def _scan(vcf_path) -> _Scan:
    """Read the input once: check the order and count the records.

    htslib adds a header line for each contig, INFO, FORMAT or FILTER name a plain VCF
    uses without declaring it; the header after the pass has them all, so the writing
    pass can declare them before its first record (a record on an undeclared contig
    cannot be written otherwise).
    """
    check = _SortCheck(vcf_path)
    number = 0
    with _open_vcf(vcf_path) as vcf:
        try:
            for number, record in enumerate(vcf, start=1):
                check.see(number, record.contig, record.pos)
        except (OSError, ValueError) as err:
            raise InputError(f"record {number + 1} cannot be read ({err})", path=vcf_path,
                             fix="correct or remove that line; bcftools view in.vcf shows the problem") from None
        return _Scan(number, vcf.header.copy())


def check_sortable(vcf_path) -> None:
    """InputError naming the first record out of order, when the VCF is not sorted as a
    tabix index needs (each contig's records together, positions not decreasing)."""
    _scan(vcf_path)


def _declare_missing(header: pysam.VariantHeader, seen: pysam.VariantHeader) -> None:
    """Add to `header` the contigs, INFO, FORMAT and FILTER lines that `seen` has and it lacks."""
    for name, contig in seen.contigs.items():
        if name not in header.contigs:
            header.add_record(contig.header_record)
    for kind in ("info", "formats", "filters"):
        have = getattr(header, kind)
        for name, meta in getattr(seen, kind).items():
            if name not in have:
                header.add_record(meta.record)


# ---------------------------------------------------------------- the scores


@dataclass
class _Scores:
    """The score table sorted by (record, alt_index), as plain arrays."""

    columns: list[str]
    record: np.ndarray     # int64, sorted
    alt_index: np.ndarray  # int64
    values: np.ndarray     # float64, one row per score row, one column per score column

    def by_record(self):
        """(record, alt indices, value rows) for each record that has scores, in record order."""
        if not len(self.record):
            return
        starts = np.flatnonzero(np.r_[True, self.record[1:] != self.record[:-1]])
        stops = np.r_[starts[1:], len(self.record)]
        for start, stop in zip(starts.tolist(), stops.tolist()):
            yield (int(self.record[start]), self.alt_index[start:stop].tolist(),
                   self.values[start:stop].tolist())


def _sorted_scores(scores: pd.DataFrame) -> _Scores:
    """Validate the table the scoring stage made (a problem here is a bug, not bad input:
    ValueError) and sort it so it can be walked alongside the VCF in one pass."""
    missing = [c for c in KEY_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack the column(s) {missing}")
    columns = [c for c in scores.columns if c not in KEY_COLUMNS]
    if not columns:
        raise ValueError("scores have no score column besides record and alt_index")
    keys = {}
    for name in KEY_COLUMNS:
        column = scores[name]
        if not pd.api.types.is_integer_dtype(column.dtype):
            raise ValueError(f"scores column {name!r} must hold integers, not {column.dtype}")
        keys[name] = column.to_numpy(dtype=np.int64)
        if len(column) and keys[name].min() < 0:
            raise ValueError(f"scores column {name!r} has a negative value")
    values = scores[columns].to_numpy(dtype=np.float64)
    order = np.lexsort((keys["alt_index"], keys["record"]))
    record, alt_index = keys["record"][order], keys["alt_index"][order]
    same = (record[1:] == record[:-1]) & (alt_index[1:] == alt_index[:-1])
    if same.any():
        at = int(np.flatnonzero(same)[0])
        raise ValueError(f"scores have more than one row for record {record[at]}, ALT {alt_index[at]}")
    return _Scores(columns, record, alt_index, values[order])


# ---------------------------------------------------------------- the header


def _escape(text: str) -> str:
    """A header Description value: on one line, quotes and backslashes escaped (VCF 4.3 1.4)."""
    one_line = " ".join(str(text).split())
    return one_line.replace("\\", "\\\\").replace('"', '\\"')


def _info_line(key: str, description: str) -> str:
    return f'##INFO=<ID={key},Number=A,Type=Float,Description="{_escape(description)}">'


def _provenance_line(provenance: dict) -> str:
    """One compact JSON line, with the package version as the Parquet outputs carry it."""
    full = {"dnalm_version": __version__, **provenance}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"), default=_json_default)
    return f"##{PROVENANCE_HEADER_KEY}={text}"


def check_input_vcf(vcf_path, columns: list[str], prefixes: list[str]) -> None:
    """When the DAG is built, before any scoring job: the input VCF can take the scores. It
    is sorted (the output is tabix-indexed), and it has no INFO field a score would be
    written to: `columns` (score columns known now, e.g. llr) or any column starting with
    one of `prefixes` (a head's `<head>.`), as in a VCF this run scored before."""
    header = _scan(vcf_path).header
    wanted = {info_key(column) for column in columns}
    starts = tuple(info_key(prefix + "x")[:-1] for prefix in prefixes)
    clash = sorted(key for key in header.info if key in wanted or (starts and key.startswith(starts)))
    if clash:
        raise InputError(f"already has the INFO field(s) {', '.join(clash[:5])}"
                         f"{f' and {len(clash) - 5} more' if len(clash) > 5 else ''}, which this run's scores "
                         "would be written to (was it scored by this run before?)", path=vcf_path,
                         fix="score the original VCF, or remove those fields first (bcftools annotate -x "
                             f"{','.join('INFO/' + k for k in clash[:3])}{',...' if len(clash) > 3 else ''} "
                             "in.vcf.gz -Oz -o out.vcf.gz)")


def _refuse_existing_keys(header: pysam.VariantHeader, keys: dict[str, str], vcf_path) -> None:
    """Never overwrite an INFO field the input has (declared, or used undeclared)."""
    clash = [key for key in keys.values() if key in header.info]
    if clash:
        raise InputError(f"already has the INFO field(s) {', '.join(clash)}, which the scores would be "
                         f"written to", path=vcf_path,
                         fix=f"rename or remove them from the input (bcftools annotate -x "
                             f"{','.join('INFO/' + k for k in clash)} in.vcf.gz -Oz -o out.vcf.gz)")


# ---------------------------------------------------------------- writing


def _annotate(record: pysam.VariantRecord, number: int, keys: list[str], alt_indices: list[int],
              rows: list[list[float]]) -> None:
    """Set one Number=A value per ALT for each score; an ALT without a score row (or with a
    NaN) is missing, and a score missing for every ALT is left out of the record."""
    n_alts = len(record.alts or ())
    if alt_indices[-1] >= n_alts:  # sorted, so the last is the largest
        raise ValueError(f"scores name ALT {alt_indices[-1]} of record {number} ({record.contig}:{record.pos}), "
                         f"which has {n_alts} ALT(s)")
    for j, key in enumerate(keys):
        per_alt: list[float | None] = [None] * n_alts
        for alt, row in zip(alt_indices, rows):
            if not math.isnan(row[j]):  # NaN is missing
                per_alt[alt] = row[j]
        if any(value is not None for value in per_alt):
            record.info[key] = tuple(per_alt)


def _write_records(vcf_in, scan: _Scan, scores: _Scores, keys: dict[str, str], descriptions: dict[str, str],
                   provenance: dict | None, tmp_vcf: Path) -> None:
    with _open_vcf(vcf_in) as vcf:
        header = vcf.header
        # Declared before the first record is read, so the records parse against the
        # output header's dictionary and can be written as they are.
        _declare_missing(header, scan.header)
        if "END" not in header.info:  # htslib cannot write a symbolic allele's record without it
            header.add_line(END_LINE)
        for column in scores.columns:
            header.add_line(_info_line(keys[column], descriptions[column]))
        if provenance is not None:
            header.add_line(_provenance_line(provenance))
        ordered_keys = [keys[c] for c in scores.columns]
        scored = scores.by_record()
        next_scored = next(scored, None)
        with pysam.VariantFile(str(tmp_vcf), "wz", header=header) as out:
            for number, record in enumerate(vcf):
                if next_scored is not None and next_scored[0] == number:
                    _annotate(record, number, ordered_keys, next_scored[1], next_scored[2])
                    next_scored = next(scored, None)
                out.write(record)


def write_scored_vcf(vcf_in, scores: pd.DataFrame, descriptions: dict[str, str], out_path, *,
                     provenance: dict | None = None) -> None:
    """Write `vcf_in` (VCF, bgzipped VCF or BCF) to `out_path` (.vcf.gz, with its .tbi)
    with each score column of `scores` as a Number=A Float INFO field.

    `scores` has integer columns `record` (0-based index in the input's file order) and
    `alt_index` (0-based among the record's ALTs) and one float column per score;
    `descriptions` gives each score column's meaning for its header line. `provenance`,
    when given, becomes one `##dnalm_provenance={json}` header line.

    Both files are written under temporary names in the output folder, then renamed:
    first any old index is removed, then the VCF is renamed into place, and the index
    last. A reader thus never pairs a new VCF with an old index (which would point at
    the wrong offsets); at worst, for that moment, it finds the VCF without an index.
    On any error neither file nor any temporary file is left.
    """
    out_path = Path(out_path)
    if not out_path.name.endswith(".vcf.gz"):
        raise ValueError(f"the scored VCF must be named *.vcf.gz, not {out_path.name}")
    table = _sorted_scores(scores)
    keys = info_keys(table.columns)
    lacking = [c for c in table.columns if c not in descriptions]
    if lacking:
        raise ValueError(f"descriptions lack the score column(s) {lacking}")
    scan = _scan(vcf_in)
    _refuse_existing_keys(scan.header, keys, vcf_in)
    if len(table.record) and table.record[-1] >= scan.n_records:
        raise ValueError(f"scores name record {table.record[-1]}, but {vcf_in} has {scan.n_records} records")

    final_index = out_path.with_name(out_path.name + ".tbi")
    tmp_index: Path | None = None
    try:
        with atomic_path(out_path) as tmp_vcf:
            # Named like atomic_path's own temporary files (.NAME.*.tmp), so a run killed
            # with SIGKILL leaves nothing the next run does not sweep away.
            tmp_index = tmp_vcf.with_name(tmp_vcf.name[:-len(".tmp")] + ".tbi.tmp")
            _write_records(vcf_in, scan, table, keys, descriptions, provenance, tmp_vcf)
            pysam.tabix_index(str(tmp_vcf), preset="vcf", index=str(tmp_index), force=True)
            final_index.unlink(missing_ok=True)
        os.replace(tmp_index, final_index)
    finally:
        if tmp_index is not None:
            tmp_index.unlink(missing_ok=True)
