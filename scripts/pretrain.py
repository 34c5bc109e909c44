"""Rule pretrain: masked-LM (continued) pretraining of the encoder on reference FASTAs."""

from dnalm.compute import limit_torch_threads
from dnalm.io import write_json_atomic
from dnalm.learning.pretrain import Pretrainer
from dnalm.settings import PretrainSettings
from dnalm.workflow.jobs import encoder_spec, step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    trainer = Pretrainer(encoder_spec(snakemake), list(snakemake.input.fasta),
                         snakemake.params.window_size, PretrainSettings(**snakemake.params.settings),
                         snakemake.params.checkpoint)
    trainer.run()
    write_json_atomic(snakemake.output.metrics, trainer.save(snakemake.output.encoder))
