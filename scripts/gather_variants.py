"""Rule gather_variants: scores.parquet and scores.tsv in VCF order, and the input VCF with
every score as an INFO field (bgzipped, tabix-indexed)."""

from dnalm.variants.stage import gather_scores
from dnalm.workflow.jobs import step

with step(snakemake):
    gather_scores(list(snakemake.input.shards), snakemake.input.table, snakemake.input.vcf,
                  snakemake.output.parquet, snakemake.output.tsv, snakemake.output.vcf)
