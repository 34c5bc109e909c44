"""Rule embed_shard: per-window summary and mean vectors for one shard."""

from dnalm.compute import limit_torch_threads
from dnalm.embedding.engine import EngineSettings
from dnalm.embedding.shards import embed_shard
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    settings = EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch),
                              compile=bool(int(snakemake.resources.compile)))
    embed_shard(snakemake.input.shard, snakemake.output[0], encoder_spec(snakemake), settings=settings)
