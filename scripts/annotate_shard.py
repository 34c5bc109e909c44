"""Rule annotate_shard: per-base class probabilities of one shard of the genome's windows."""

from pathlib import Path

from dnalm.annotation.infer import annotate_shard
from dnalm.compute import limit_torch_threads
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    params = snakemake.params
    annotate_shard(snakemake.input.fasta, int(snakemake.wildcards.ashard), params.per_shard, params.window_size,
                   params.window_stride, encoder_spec(snakemake), str(Path(snakemake.input.model[0]).parent),
                   snakemake.output[0], tokens_per_batch=int(snakemake.resources.tokens_per_batch))
