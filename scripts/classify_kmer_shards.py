"""Rule classify_kmer_shards: what each k-mer head predicts for the sequences that close in a
group of window shards (from their bases; no torch, no embeddings)."""

from dnalm.compute import limit_torch_threads
from dnalm.outputs.classify import classify_kmer_shards
from dnalm.workflow.jobs import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))  # torch comes in with the tasks' module
    classify_kmer_shards(list(snakemake.input.windows), snakemake.params.shards,
                         dict(zip(snakemake.params.head_dirs, snakemake.output)), snakemake.params.max_n_fraction,
                         final=snakemake.params.final)
