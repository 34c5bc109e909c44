"""Rule finetune: the encoder and a head trained together end to end."""

from pathlib import Path

from dnalm.compute import limit_torch_threads
from dnalm.embedding.engine import EngineSettings
from dnalm.io import write_json_atomic
from dnalm.learning.finetune import finetune
from dnalm.settings import FinetuneSettings
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    metrics = finetune(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.labels,
                       encoder_spec(snakemake), FinetuneSettings(**snakemake.params.settings),
                       snakemake.params.checkpoint, snakemake.output.encoder,
                       str(Path(snakemake.output.weights).parent),
                       engine=EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch)))
    write_json_atomic(snakemake.output.metrics, metrics)
