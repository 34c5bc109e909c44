"""Rule train_annotator: the token-classification head for base annotation, with the
encoder fine-tuned end to end or frozen."""

from pathlib import Path

from dnalm.annotation.train import train_annotator
from dnalm.compute import limit_torch_threads
from dnalm.settings import AnnotationSettings, FinetuneSettings
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    params = snakemake.params
    train_annotator(snakemake.input.fasta, snakemake.input.features, AnnotationSettings(**params.settings),
                    FinetuneSettings(**params.tuning), encoder_spec(snakemake), params.window_size,
                    params.window_stride, params.checkpoint, str(Path(snakemake.output.config).parent),
                    snakemake.output.get("encoder"))
