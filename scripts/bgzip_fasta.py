"""Rule bgzip_fasta: recompress a plain-gzip FASTA with bgzip (and index it), once."""

from dnalm.inputs.fasta import bgzip_copy
from dnalm.workflow.jobs import step

with step(snakemake):
    bgzip_copy(snakemake.input[0], snakemake.output.fasta[0])
    print(f"recompressed {snakemake.input[0]} with bgzip: {snakemake.output.fasta[0]}")
