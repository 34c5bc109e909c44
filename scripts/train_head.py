"""Rule train_head: train one head on the frozen embeddings, write its test metrics."""

from pathlib import Path

from dnalm.train import TrainSettings, train_head, write_metrics
from dnalm.compute import limit_torch_threads
from dnalm.workflow import step

with step(snakemake):
    print(limit_torch_threads(snakemake.threads))
    settings = TrainSettings(**snakemake.params.settings)
    metrics = train_head(list(snakemake.input.embeddings), snakemake.input.regions, snakemake.wildcards.head,
                         settings, str(Path(snakemake.output.weights).parent), labels_path=snakemake.input.labels)
    write_metrics(metrics, snakemake.output.metrics)
