"""The input plan the Snakefile needs when it builds the DAG, and its cache.

The plan holds the sequence lengths (for the shard plan), a digest of the coordinates
(a param of extract_regions), whether any sequence is labelled, the classes of the
labelled sequences, and how jobs read the FASTA. Making it parses and checks every input,
so bad input stops a run before any job. It is saved under `<outdir>/.dnalm/plan.npz`
when a run starts and read back, while its inputs are unchanged, by every later DAG
build (the cluster jobs' included), so a large BED or genome is parsed once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from .. import io as _io
from ..io import atomic_path
from . import fasta as _fasta
from . import labels as _labels
from . import regions as _regions
from . import sources as _sources
from .fasta import FastaAccess, plan_fasta, reference_dir
from .sources import RegionSource
from .sources import bed as _bed
from .sources import sequences as _sequences
from .sources import tiles as _tiles


@dataclass(frozen=True)
class InputPlan:
    """What the DAG is built from; `key` says which inputs it was made from (`plan_key`)."""

    lengths: np.ndarray
    coordinates_digest: str
    labelled: bool
    fasta: FastaAccess
    key: str = ""
    # Classes of the labelled sequences marked (or defaulting to) train, and of those
    # marked val/test: enough to refuse an untrainable label set before any job.
    classes: dict = field(default_factory=lambda: {"train": [], "other": []})
    # Contigs of the sequences whose lines BED readers take for headers (io.bed_header_like).
    header_like: list = field(default_factory=list)


def plan_inputs(source: RegionSource, outdir: str) -> InputPlan:
    """The input plan, from the cache under `outdir` when the inputs have not changed
    since it was saved (`save_plan`), else made afresh."""
    cached = load_plan(outdir, plan_key(source, outdir))
    if cached is not None:
        return cached
    fasta, contigs = plan_fasta(source.fasta, outdir, scan=source.scans_records)
    planned = source.plan(contigs)
    labelled = bool(planned.classes["train"] or planned.classes["other"])
    # Indexes may have been (re)built just now: the key is taken after.
    return InputPlan(planned.lengths, planned.digest, labelled, fasta, plan_key(source, outdir), planned.classes,
                     planned.header_like)


def _plan_file(outdir: str) -> Path:
    return Path(outdir) / ".dnalm" / "plan.npz"


def file_state(path: str | os.PathLike) -> list | None:
    """[absolute path, size, mtime in ns] of a file (None: it does not exist): what a cache key holds."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


# The modules a plan is computed by: their source is part of the plan's key.
_PLAN_CODE = (sys.modules[__name__], _fasta, _io, _labels, _regions, _sources, _bed, _sequences, _tiles)


def plan_key(source: RegionSource, outdir: str) -> str:
    """A digest of everything a plan is made from: the input settings, the size and
    mtime of every input file and index (beside the FASTA or under `outdir`), and the
    code that parses them. Any change makes a new key, so a stale plan is never used."""
    files = [source.fasta, source.label_file]
    if source.fasta:
        local = reference_dir(outdir) / Path(source.fasta).name
        for fasta in (source.fasta, local):
            files += [f"{fasta}.fai", f"{fasta}.gzi"]
    code = [Path(module.__file__).read_bytes() for module in _PLAN_CODE]
    state = {
        "version": __version__,
        "code": hashlib.sha256(b"".join(code)).hexdigest(),
        "source": dataclasses.asdict(source.settings),
        "outdir": os.path.abspath(outdir),
        "files": [file_state(f) if f else None for f in files],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def load_plan(outdir: str, key: str) -> InputPlan | None:
    """The saved plan, if it was made from the inputs `key` describes."""
    path = _plan_file(outdir)
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta["key"] != key:
                return None
            return InputPlan(stored["lengths"], meta["coordinates_digest"], meta["labelled"],
                             FastaAccess(**meta["fasta"]), key, meta["classes"], meta["header_like"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_plan(plan: InputPlan, outdir: str) -> None:
    """Keep the plan under `outdir`, so the DAG builds of cluster jobs (and reruns)
    read it instead of parsing the inputs again."""
    meta = {"key": plan.key, "coordinates_digest": plan.coordinates_digest, "labelled": plan.labelled,
            "fasta": dataclasses.asdict(plan.fasta), "classes": plan.classes, "header_like": plan.header_like}
    with atomic_path(_plan_file(outdir)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, lengths=plan.lengths, meta=np.array(json.dumps(meta)))
