"""Rule train_head: train one head on the frozen embeddings, write its test metrics."""

from pathlib import Path

from dnalm.compute import limit_torch_threads
from dnalm.io import write_json_atomic
from dnalm.learning.frozen import train_head
from dnalm.settings import TrainSettings
from dnalm.workflow.jobs import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    settings = TrainSettings(**snakemake.params.settings)
    metrics = train_head(list(snakemake.input.embeddings), snakemake.input.regions, snakemake.wildcards.head,
                         settings, str(Path(snakemake.output.weights).parent), labels_path=snakemake.input.labels)
    write_json_atomic(snakemake.output.metrics, metrics)
