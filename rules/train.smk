rule train_head:
    input:
        embeddings=EMBEDDINGS,
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
    output:
        weights=out("heads/{head}/head.safetensors"),
        config=out("heads/{head}/head.json"),
        metrics=out("heads/{head}/metrics.json"),
    log:
        logfile("train_head/{head}.log"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=train_settings,
    script:
        "../scripts/train_head.py"
