"""Rule baselines: k-mer and GC logistic regressions on the heads' splits."""

from dnalm.io import write_json_atomic
from dnalm.learning.baselines import run_baselines
from dnalm.workflow.jobs import step

with step(snakemake):
    settings = snakemake.params.settings
    metrics = run_baselines(list(snakemake.input.shards), snakemake.input.regions, snakemake.input.labels,
                            k=snakemake.params.kmer, val_fraction=settings["val_fraction"], seed=settings["seed"],
                            max_n_fraction=settings["max_n_fraction"])
    write_json_atomic(snakemake.output[0], metrics)
