"""Rule classify_shards: class probabilities of the sequences that close in a group of
embedding shards, by every head."""

from dnalm.compute import limit_torch_threads
from dnalm.outputs.classify import classify_shards
from dnalm.workflow.jobs import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    classify_shards(list(snakemake.input.embeddings), snakemake.params.shards,
                    dict(zip(snakemake.params.head_dirs, snakemake.output)), snakemake.params.max_n_fraction,
                    final=snakemake.params.final)
