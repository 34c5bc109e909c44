"""Rule report_metrics: metrics table and the task's figures (confusion, roc_pr, scatter)."""

from dnalm.outputs import report
from dnalm.workflow.jobs import step

with step(snakemake):
    metrics = dict(zip(snakemake.params.heads, snakemake.input.metrics))
    predictions = dict(zip(snakemake.params.heads, snakemake.input.predictions))
    report.write_tsv(report.metrics_table(metrics, snakemake.input.baselines[0]), snakemake.output.metrics)
    figures = {name: path for name, path in snakemake.output.items() if name != "metrics"}
    report.plot_figures(figures, metrics, predictions)
