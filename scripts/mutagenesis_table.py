"""Rule mutagenesis_table: every single-base change of the mutagenesis regions."""

from dnalm.variants.stage import mutagenesis_table
from dnalm.workflow.jobs import step

with step(snakemake):
    mutagenesis_table(snakemake.input.regions, snakemake.input.fasta, snakemake.params.window_size,
                      snakemake.params.max_length, snakemake.output.table, snakemake.params.expected)
