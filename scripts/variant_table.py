"""Rule variant_table: the variants to score (VCF order) and the ALTs skipped, with why."""

from dnalm.variants.stage import variant_table
from dnalm.workflow.jobs import step

with step(snakemake):
    variant_table(snakemake.input.vcf, snakemake.input.fasta, snakemake.params.window_size,
                  snakemake.params.regions, snakemake.params.ref_mismatch, snakemake.output.table,
                  snakemake.output.skipped, snakemake.params.expected)
