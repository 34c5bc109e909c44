rule train_head:
    input:
        embeddings=EMBEDDINGS,
        regions="results/regions/regions.parquet",
    output:
        weights="results/heads/{head}/head.safetensors",
        config="results/heads/{head}/head.json",
        metrics="results/heads/{head}/metrics.json",
    params:
        settings=train_settings,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/train_head/{head}.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train_head.py"
