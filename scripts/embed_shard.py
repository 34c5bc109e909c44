"""Rule embed_shard: per-window [CLS] and mean vectors for one shard."""

from dnalm.embed import embed_shard
from dnalm.encoder import EncoderSpec
from dnalm.workflow import step

with step(snakemake):
    spec = EncoderSpec(model=snakemake.params.model, revision=snakemake.params.revision,
                       trust_remote_code=snakemake.params.trust_remote_code,
                       precision=snakemake.params.precision)
    embed_shard(snakemake.input.shard, snakemake.output[0], spec,
                batch_size=int(snakemake.resources.batch_size), threads=snakemake.threads)
