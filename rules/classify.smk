rule classify:
    input:
        embeddings=EMBEDDINGS,
        regions="results/regions/regions.parquet",
        sequences="results/windows/sequences.parquet",
        head=head_files,
    output:
        tsv="results/classify/{head}/predictions.tsv",
        parquet="results/classify/{head}/predictions.parquet",
        tracks=directory("results/classify/{head}/tracks") if config["classify"]["tracks"] else [],
    params:
        head_dir=head_dir,
        max_n_fraction=config["heads"]["max_n_fraction"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/classify/{head}.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/classify.py"
