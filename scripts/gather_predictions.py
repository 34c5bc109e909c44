"""Rule gather_predictions: per-sequence tables (TSV + Parquet) and genome tracks of one head."""

from dnalm.inputs.fasta import read_fai
from dnalm.outputs.classify import gather
from dnalm.workflow.jobs import step

with step(snakemake):
    tracks = snakemake.output.get("tracks") or None
    gather(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.sequences, snakemake.output.tsv,
           snakemake.output.parquet, tracks, labels_path=snakemake.input.labels,
           chrom_sizes=read_fai(snakemake.input.fasta) if tracks else None)
