"""Rule embed_shard: per-window summary and mean vectors for one shard."""

from pathlib import Path

from dnalm.embed import embed_shard
from dnalm.encoders import EncoderSpec
from dnalm.engine import EngineSettings
from dnalm.compute import limit_torch_threads
from dnalm.workflow import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    # A hub id arrives as a param; a local model as its files, the tiny one as its folder.
    local = Path(snakemake.input.encoder[0]) if snakemake.input.encoder else None
    model = snakemake.params.hub_id or str(local if local.is_dir() else local.parent)
    spec = EncoderSpec(**{**snakemake.params.spec, "model": model})
    settings = EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch),
                              compile=bool(int(snakemake.resources.compile)))
    embed_shard(snakemake.input.shard, snakemake.output[0], spec, settings=settings)
