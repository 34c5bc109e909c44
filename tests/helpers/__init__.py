"""Helpers the test files share: bundled data and FASTA helpers (`data`), real snakemake
runs in scratch working directories (`workflow`), small model shapes (`models`)."""
