"""Rule gather_annotation: probabilities combined, features called, tracks and scores written."""

import json
from pathlib import Path

from dnalm.annotation.gather import gather_annotation
from dnalm.settings import AnnotationSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    gather_annotation(list(snakemake.input.shards), snakemake.input.baseline, snakemake.input.fasta,
                      snakemake.input.features, AnnotationSettings(**snakemake.params.settings),
                      snakemake.params.window_size, json.loads(Path(snakemake.input.model).read_text()),
                      str(Path(snakemake.output.metrics).parent))
