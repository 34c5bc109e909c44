"""The reference and its per-base labels, as training and the baseline read them."""

from __future__ import annotations

import sys

import numpy as np

from ..inputs.fasta import open_fasta, read_fai
from ..settings import AnnotationSettings
from ..windows.bases import as_n
from .features import annotation_classes, base_labels, class_masks, overlap_count, read_features


class GenomeLabels:
    """Each contig's per-base labels (0 background, i + 1 class i) and the reference."""

    def __init__(self, fasta: str, features_path: str, settings: AnnotationSettings, log=None):
        log = log or sys.stderr  # the job's log: stderr as redirected at call time
        self.lengths = read_fai(fasta)
        self.classes = annotation_classes(list(settings.classes), settings.stranded)
        features = read_features(features_path, self.lengths, {c.type for c in self.classes})
        self.labels = {}
        for contig, length in self.lengths.items():
            masks = class_masks(features, self.classes, contig, 0, length)
            self.labels[contig] = base_labels(masks)
            overlaps = overlap_count(masks)
            if overlaps:
                print(f"{contig}: {overlaps} bases are in more than one class; each takes the first of "
                      f"annotation.classes", file=log)
        self.reference = open_fasta(fasta)

    def window(self, contig: str, start: int, length: int) -> tuple[str, np.ndarray]:
        return as_n(self.reference.fetch(contig, start, start + length)), self.labels[contig][start : start + length]
