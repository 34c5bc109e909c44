# Figures and tables that `snakemake --report report.html` shows, made during
# the run. Metrics figures exist only where heads were trained.


rule report_metrics:
    input:
        metrics=expand(out("heads/{head}/metrics.json"), head=RUN.trained_heads),
        baselines=[out("baselines/metrics.json")] if RUN.trained_heads else [],
        predictions=expand(
            out("classify/{head}/predictions.parquet"), head=RUN.trained_heads
        ),
    output:
        metrics=report(
            out("report/metrics.tsv"),
            caption="../report/metrics.rst",
            category="Metrics",
        ),
        confusion=report(
            out("report/confusion.png"),
            caption="../report/confusion.rst",
            category="Metrics",
        ),
        roc_pr=report(
            out("report/roc_pr.png"),
            caption="../report/roc_pr.rst",
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
        embeddings=EMBEDDINGS[0],
        predictions=expand(out("classify/{head}/predictions.parquet"), head=RUN.heads),
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
        heads=RUN.heads,
    script:
        "../scripts/report_run.py"
