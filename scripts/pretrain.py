"""Rule pretrain: masked-LM (continued) pretraining of the encoder on reference FASTAs."""

from pathlib import Path

from dnalm.compute import limit_torch_threads
from dnalm.encoders import EncoderSpec
from dnalm.io import write_json_atomic
from dnalm.pretrain import Pretrainer
from dnalm.settings import PretrainSettings
from dnalm.workflow import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    local = Path(snakemake.input.encoder[0]) if snakemake.input.encoder else None
    model = snakemake.params.hub_id or str(local if local.is_dir() else local.parent)
    trainer = Pretrainer(EncoderSpec(**{**snakemake.params.spec, "model": model}), list(snakemake.input.fasta),
                         snakemake.params.window_size, PretrainSettings(**snakemake.params.settings),
                         snakemake.params.checkpoint)
    trainer.run()
    write_json_atomic(snakemake.output.metrics, trainer.save(snakemake.output.encoder))
