"""Rule embed_shard: per-window summary and mean vectors for one shard."""

from dnalm.embed import embed_shard
from dnalm.encoders import job_spec
from dnalm.engine import EngineSettings
from dnalm.compute import limit_torch_threads
from dnalm.workflow import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    spec = job_spec(snakemake)
    settings = EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch),
                              compile=bool(int(snakemake.resources.compile)))
    embed_shard(snakemake.input.shard, snakemake.output[0], spec, settings=settings)
