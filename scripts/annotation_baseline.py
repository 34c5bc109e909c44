"""Rule annotation_baseline: per-base k-mer logistic regression, trained on the training part."""

from dnalm.annotation.baseline import run_baseline
from dnalm.settings import AnnotationSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    run_baseline(snakemake.input.fasta, snakemake.input.features, AnnotationSettings(**snakemake.params.settings),
                 snakemake.params.window_size, snakemake.output[0])
