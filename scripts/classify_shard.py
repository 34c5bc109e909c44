"""Rule classify_shard: class probabilities of the sequences that close in one embedding shard, by every head."""

from dnalm.classify import classify_shard
from dnalm.workflow import step

with step(snakemake):
    import torch

    torch.set_num_threads(snakemake.threads)
    classify_shard(list(snakemake.input.embeddings), dict(zip(snakemake.params.head_dirs, snakemake.output)),
                   snakemake.params.max_n_fraction, final=snakemake.params.final)
