"""Rule classify_shard: class probabilities of the sequences that close in one embedding shard."""

from dnalm.classify import classify_shard
from dnalm.workflow import step

with step(snakemake):
    import torch

    torch.set_num_threads(snakemake.threads)
    classify_shard(list(snakemake.input.embeddings), snakemake.params.head_dir, snakemake.params.max_n_fraction,
                   snakemake.output[0], final=snakemake.params.final)
