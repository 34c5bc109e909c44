"""Rule gather_mutagenesis: the per-base table, a bigWig per score and the heatmap."""

from dnalm.variants.stage import gather_mutagenesis
from dnalm.workflow.jobs import step

with step(snakemake):
    gather_mutagenesis(list(snakemake.input.shards), snakemake.input.table, snakemake.input.regions,
                       snakemake.input.fasta, snakemake.params.window_size, snakemake.params.max_length,
                       snakemake.output.parquet, snakemake.output.tsv, snakemake.output.tracks,
                       snakemake.output.heatmap)
