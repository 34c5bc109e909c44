"""Rule report_metrics: metrics table, confusion matrices, ROC/PR curves."""

from dnalm.outputs import report
from dnalm.workflow.jobs import step

with step(snakemake):
    metrics = dict(zip(snakemake.params.heads, snakemake.input.metrics))
    predictions = dict(zip(snakemake.params.heads, snakemake.input.predictions))
    report.write_tsv(report.metrics_table(metrics, snakemake.input.baselines[0]), snakemake.output.metrics)
    report.plot_confusion(metrics, snakemake.output.confusion)
    report.plot_roc_pr(predictions, snakemake.output.roc_pr)
