"""Rule build_tiny_encoder: the demo's small random encoder of the configured family."""

from dnalm.compute import limit_torch_threads
from dnalm.encoders.tiny import build_tiny_encoder
from dnalm.workflow.jobs import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    shape = snakemake.params.shape
    build_tiny_encoder(snakemake.output[0], shape["family"], kmer=shape["kmer"], hidden=shape["hidden"],
                       layers=shape["layers"], heads=shape["attention_heads"], seed=shape["seed"],
                       train_fasta=snakemake.input.train_fasta[0] if snakemake.input.train_fasta else None)
