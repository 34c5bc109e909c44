"""Rule finetune: the encoder and a head trained together end to end."""

from pathlib import Path

from dnalm.compute import limit_torch_threads
from dnalm.encoders import job_spec
from dnalm.engine import EngineSettings
from dnalm.finetune import Finetuner
from dnalm.io import write_json_atomic
from dnalm.settings import FinetuneSettings
from dnalm.workflow import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    tuner = Finetuner(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.labels,
                      job_spec(snakemake),
                      FinetuneSettings(**snakemake.params.settings), snakemake.params.checkpoint,
                      engine=EngineSettings(tokens_per_batch=int(snakemake.resources.tokens_per_batch)))
    tuner.run()
    write_json_atomic(snakemake.output.metrics,
                      tuner.save(snakemake.output.encoder, str(Path(snakemake.output.weights).parent)))
