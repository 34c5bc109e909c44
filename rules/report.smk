# Figures and tables that `snakemake --report report.html` shows, made during
# the run. Metrics figures exist only where heads were trained, and depend on the
# task (RUN.report_figures): confusion and roc_pr for classification, scatter for
# regression, roc_pr for multilabel.


rule report_metrics:
    input:
        metrics=expand(out("heads/{head}/metrics.json"), head=RUN.trained_heads),
        baselines=[out("baselines/metrics.json")] if RUN.trained_heads else [],
        predictions=expand(
            out("classify/{head}/predictions.parquet"), head=RUN.trained_heads
        ),
    output:
        **{
            name: report(path, caption=f"../report/{name}.rst", category="Metrics")
            for name, path in RUN.report_figures.items()
        },
        metrics=report(
            out("report/metrics.tsv"),
            caption="../report/metrics.rst",
            category="Metrics",
        ),
    log:
        logfile("report/report_metrics.log"),
    conda:
        "../envs/torch.yaml"
    params:
        heads=RUN.trained_heads,
    script:
        "../scripts/report_metrics.py"


rule report_run:
    input:
        sequences=out("windows/sequences.parquet"),
        embeddings=EMBEDDINGS[:1] if RUN.embeds else [],
        predictions=expand(
            out("classify/{head}/predictions.parquet"), head=RUN.classifiers
        ),
    output:
        windows=report(
            out("report/window_counts.png"),
            caption="../report/windows.rst",
            category="Windows",
        ),
        provenance=report(
            out("report/provenance.tsv"),
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        logfile("report/report_run.log"),
    conda:
        "../envs/torch.yaml"
    params:
        heads=RUN.classifiers,
    script:
        "../scripts/report_run.py"
