"""Rule build_tiny_encoder: the demo's small random DNABERT-architecture encoder."""

from pathlib import Path

from dnalm.encoder import build_tiny_encoder
from dnalm.workflow import step

with step(snakemake):
    shape = snakemake.params.shape
    build_tiny_encoder(str(Path(snakemake.output[0]).parent), k=shape["kmer"], hidden=shape["hidden"],
                       layers=shape["layers"], heads=shape["attention_heads"], seed=shape["seed"])
