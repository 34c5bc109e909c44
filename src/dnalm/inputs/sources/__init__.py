"""Where the sequences come from: one module per kind of input, behind one registry.

A source turns the `input:` settings into the regions table (inputs.regions), and knows
which FASTA the bases are read from, which settings the coordinates depend on (the
params of extract_regions) and which the labels depend on (extract_labels). A new kind of
input is one module here with a `RegionSource` subclass marked `@register`; nothing
outside this package asks which mode is configured.

    bed        regions of a reference listed in a BED file (bed.py)
    tiles      a whole-genome tiling of a reference (tiles.py)
    fasta      a FASTA of sequences, one record per sequence (sequences.py)
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
import pandas as pd

from ...errors import InputError
from ...io import bed_header_like
from ...settings import InputSettings
from ..fasta import read_fai
from ..regions import coordinates_digest, typed

SOURCES: dict[str, type["RegionSource"]] = {}


class PlannedRegions(NamedTuple):
    """What the DAG needs of the regions, from the records alone (`RegionSource.plan`)."""

    lengths: np.ndarray  # (n_sequences,) bp
    digest: str  # of the coordinates: a param of extract_regions
    classes: dict  # {"train": [...], "other": [...]}: classes of sequences marked (or defaulting to) train, others
    header_like: list[str]  # contigs whose BED lines readers take for headers (`io.bed_header_like`)


def header_like(contigs) -> list[str]:
    return sorted({str(c) for c in contigs if bed_header_like(str(c))})


def register(cls: type["RegionSource"]) -> type["RegionSource"]:
    SOURCES[cls.mode] = cls
    return cls


class RegionSource:
    """One kind of input, as the settings configure it."""

    mode: ClassVar[str]
    # Whether the plan reads every record by streaming (repeated names and empty records
    # are found), rather than the FASTA's index.
    scans_records: ClassVar[bool] = False

    def __init__(self, settings: InputSettings):
        self.settings = settings

    @property
    def fasta(self) -> str:
        """The FASTA the bases come from."""
        return self.settings.reference

    @property
    def label_file(self) -> str:
        """The file the labels are read from ("" when the input has none)."""
        return ""

    # The two params below keep the config's own shape (`InputSettings.from_section` reads
    # them back in the job), so what they re-run does not change with the package's names.

    def region_params(self) -> dict:
        """The `input:` keys the coordinates depend on: a key this mode ignores re-runs nothing."""
        return {"mode": self.mode, "reference": self.settings.reference}

    def label_params(self) -> dict:
        """The `input:` keys the labels depend on (besides the coordinates)."""
        return {"mode": self.mode, "bed": "", "bed_columns": {}, "labels": ""}

    def check(self) -> None:
        """Settings that need no file."""

    def records(self, fasta: str | None = None) -> dict[str, int]:
        """Record name -> length of the FASTA (`fasta`: the path the jobs read, default the
        configured one)."""
        return read_fai(fasta or self.fasta)

    def regions(self, contigs: dict[str, int], labels: bool = True) -> pd.DataFrame:
        """The regions table, checked against the FASTA's records (name -> length).
        `labels=False` leaves labels and splits unread."""
        raise NotImplementedError

    def labels(self, regions: pd.DataFrame) -> pd.DataFrame:
        """`regions` with the label and split of every sequence (None where none is given)."""
        frame = regions.copy()
        frame["label"], frame["split"], frame["group"] = None, None, None
        return typed(frame)

    def plan(self, contigs: dict[str, int]) -> PlannedRegions:
        """What the DAG needs, from the records alone."""
        frame = self.regions(contigs)
        return PlannedRegions(frame["length"].to_numpy(), coordinates_digest(frame), split_classes(frame),
                              header_like(frame["chrom"].unique()))


def split_classes(frame: pd.DataFrame) -> dict:
    labelled = frame["label"].notna().to_numpy()
    train = labelled & frame["split"].fillna("train").eq("train").to_numpy()
    return {"train": sorted(set(frame["label"][train])), "other": sorted(set(frame["label"][labelled & ~train]))}


def source_for(settings: InputSettings, check: bool = True) -> RegionSource:
    """The source of a configured mode, its settings checked (`check`: extract_labels, which
    is given only the settings the labels depend on, skips the rest)."""
    if settings.mode not in SOURCES:
        raise InputError(f"unknown input mode {settings.mode!r}",
                         fix=f"set input.mode to {', '.join(SOURCES)}")
    source = SOURCES[settings.mode](settings)
    if check:
        source.check()
    return source


def load_regions(source: RegionSource | InputSettings, contigs: dict[str, int] | None = None,
                 labels: bool = True) -> pd.DataFrame:
    """The regions table of a source (or of its settings), validated against the FASTA's
    records (`contigs`; read from the configured FASTA when not given)."""
    if isinstance(source, InputSettings):
        source = source_for(source)
    return source.regions(source.records() if contigs is None else contigs, labels)


# The kinds of input, each registering itself.
from . import bed, sequences, tiles  # noqa: E402,F401
