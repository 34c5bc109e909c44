"""Rule score_variants: one shard of the variant table scored by every head, zero-shot by
the masked LM and by the distance of the window vectors."""

from pathlib import Path

from dnalm.compute import limit_torch_threads
from dnalm.embedding.engine import EngineSettings
from dnalm.settings import EncoderSpec
from dnalm.variants.stage import score_shard
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    params = snakemake.params
    mlm_spec = None
    if params.zero_shot:  # the chain's masked LM: a hub id, or the files of a local or pretrained model
        local = Path(snakemake.input.zero_shot[0]) if snakemake.input.zero_shot else None
        model = params.zero_shot_hub_id or str(local if local.is_dir() else local.parent)
        mlm_spec = EncoderSpec(**{**params.spec, "model": model, "precision": "fp32"})
    context = None
    if params.context:  # variants.context: the regions' windows and their vectors
        context = {"regions": snakemake.input.regions, "sequences": snakemake.input.sequences,
                   "windows": list(snakemake.input.windows), "embeddings": list(snakemake.input.embeddings),
                   "per_shard": params.windows_per_shard, "max_n_fraction": params.max_n_fraction}
    score_shard(snakemake.input.table, int(snakemake.wildcards.vshard), params.per_shard, snakemake.input.fasta,
                params.window_size, params.window_stride, encoder_spec(snakemake), dict(params.head_dirs),
                params.pooling, snakemake.output[0], mlm_spec=mlm_spec, context=context,
                max_n_fraction=params.max_n_fraction,
                engine_settings=EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch)))
