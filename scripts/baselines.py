"""Rule baselines: k-mer, GC and k-mer + language-model logistic regressions on the heads' splits."""

from dnalm.io import write_json_atomic
from dnalm.learning.baselines import run_baselines
from dnalm.settings import HeadSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    metrics = run_baselines(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.labels,
                            HeadSettings(**snakemake.params.settings), k=snakemake.params.kmer,
                            embedding_paths=list(snakemake.input.embeddings))
    write_json_atomic(snakemake.output[0], metrics)
