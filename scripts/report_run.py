"""Rule report_run: window-count distribution and the run's provenance."""

from dnalm.outputs import report
from dnalm.workflow.jobs import step

with step(snakemake):
    report.plot_window_counts(snakemake.input.sequences, snakemake.output.windows)
    files = {"embeddings": path for path in snakemake.input.embeddings}  # none: a k-mer head's run
    files.update({f"predictions ({h})": p for h, p in zip(snakemake.params.heads, snakemake.input.predictions)})
    report.write_tsv(report.provenance_table(files), snakemake.output.provenance)
