rule classify:
    input:
        embeddings=EMBEDDINGS,
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
        sequences=out("windows/sequences.parquet"),
        head=head_files,
    output:
        tsv=out("classify/{head}/predictions.tsv"),
        parquet=out("classify/{head}/predictions.parquet"),
        tracks=(
            directory(out("classify/{head}/tracks"))
            if config["classify"]["tracks"]
            else []
        ),
    log:
        logfile("classify/{head}.log"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        head_dir=head_dir,
        max_n_fraction=config["heads"]["max_n_fraction"],
    script:
        "../scripts/classify.py"
