"""Rule baselines: k-mer, GC and k-mer + language-model logistic regressions on the heads' splits;
the k-mer model also saved as a head."""

from pathlib import Path

from dnalm.io import write_json_atomic
from dnalm.learning.baselines import run_baselines
from dnalm.settings import HeadSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    metrics = run_baselines(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.labels,
                            HeadSettings(**snakemake.params.settings), k=snakemake.params.kmer,
                            embedding_paths=list(snakemake.input.embeddings),
                            head_dir=str(Path(snakemake.output.kmer_head[0]).parent))
    write_json_atomic(snakemake.output.metrics, metrics)
