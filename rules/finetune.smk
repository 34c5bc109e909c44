# End-to-end fine-tuning: the encoder and a head trained together on the labelled
# sequences' windows. Writes the fine-tuned encoder (a model folder every later rule
# loads like any checkpoint) and the head `finetuned`; a checkpoint under
# finetune/checkpoint lets a killed job resume from its last finished epoch.


rule finetune:
    input:
        shards=WINDOW_SHARDS,
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
        encoder=ENCODER.base_files,
    output:
        encoder=directory(out("finetune/encoder")),
        weights=out("heads/finetuned/head.safetensors"),
        config=out("heads/finetuned/head.json"),
        metrics=out("heads/finetuned/metrics.json"),
    log:
        logfile("finetune/finetune.log"),
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
        tokens_per_batch=8192,
    params:
        hub_id=ENCODER.base_hub_id,
        spec=S.encoder.job_params(),
        settings=S.finetune.job_params(S.finetune.head),
        checkpoint=out("finetune/checkpoint"),
    script:
        "../scripts/finetune.py"
