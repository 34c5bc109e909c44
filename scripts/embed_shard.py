"""Rule embed_shard: per-window [CLS] and mean vectors for one shard."""

from pathlib import Path

from dnalm.embed import embed_shard
from dnalm.encoder import EncoderSpec
from dnalm.workflow import step

with step(snakemake):
    # A local model arrives as input files, a hub id (resolved from the cache) as a param.
    model = snakemake.params.hub_id or str(Path(snakemake.input.encoder[0]).parent)
    spec = EncoderSpec(model=model, revision=snakemake.params.revision,
                       trust_remote_code=snakemake.params.trust_remote_code,
                       precision=snakemake.params.precision)
    embed_shard(snakemake.input.shard, snakemake.output[0], spec,
                batch_size=int(snakemake.resources.batch_size), threads=snakemake.threads)
