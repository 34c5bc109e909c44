"""Rule classify: per-sequence predictions (TSV + Parquet) and genome tracks."""

from dnalm.classify import classify
from dnalm.workflow import step

with step(snakemake):
    import torch

    torch.set_num_threads(snakemake.threads)
    classify(list(snakemake.input.embeddings), snakemake.input.regions, snakemake.input.sequences,
             snakemake.params.head_dir, snakemake.params.max_n_fraction, snakemake.output.tsv,
             snakemake.output.parquet, snakemake.output.get("tracks") or None, labels_path=snakemake.input.labels)
