"""Input `fasta`: a FASTA of sequences, one record per sequence, with an optional labels
table (id, label[, split]). Its records are read by streaming, so repeated names and
empty records are found before any job."""

from __future__ import annotations

import sys

import pandas as pd

from ...errors import InputError
from ..fasta import scan_fasta
from ..labels import attach_labels_table
from ..regions import typed
from . import RegionSource, register


@register
class SequencesSource(RegionSource):
    mode = "fasta"
    scans_records = True

    @property
    def fasta(self) -> str:
        return self.settings.sequences

    @property
    def label_file(self) -> str:
        return self.settings.labels

    def region_params(self) -> dict:
        return {"mode": self.mode, "sequences": self.settings.sequences}

    def label_params(self) -> dict:
        return {**super().label_params(), "labels": self.settings.labels}

    def check(self) -> None:
        if not self.settings.sequences:
            raise InputError("input.mode is fasta but no FASTA of sequences is configured",
                             fix="set input.sequences")

    def records(self, fasta: str | None = None) -> dict[str, int]:
        return scan_fasta(fasta or self.fasta)

    def regions(self, contigs: dict[str, int], labels: bool = True) -> pd.DataFrame:
        """One sequence per record (`contigs`: name -> length, in file order, as `scan_fasta`
        gives them). Every record needs bases."""
        fasta = self.settings.sequences
        for number, (name, length) in enumerate(contigs.items(), start=1):
            if length == 0:
                raise InputError(f"record {number} ({name}) has no sequence", path=fasta,
                                 fix="remove the empty record")
        frame = pd.DataFrame({"seq_id": list(contigs), "chrom": list(contigs), "start": 0,
                              "end": list(contigs.values()), "strand": "+"})
        frame["length"] = frame["end"]
        frame["label"], frame["split"], frame["group"] = None, None, None
        if self.settings.labels:
            attach_labels_table(frame, self.settings.labels, fasta)
        return typed(frame)

    def labels(self, regions: pd.DataFrame) -> pd.DataFrame:
        frame = regions.copy()
        frame["label"], frame["split"], frame["group"] = None, None, None
        if self.settings.labels:
            unlabelled = attach_labels_table(frame, self.settings.labels, self.settings.sequences or "the FASTA")
            if unlabelled:
                print(f"{unlabelled} of {len(frame)} FASTA records have no row in {self.settings.labels}: they are "
                      "unlabelled (classified, not trained)", file=sys.stderr)
        return typed(frame)
