# Masked-LM (continued) pretraining of the configured encoder on reference FASTAs.
# Writes a model folder the rest of the run (fine-tuning, embeddings) loads like any
# checkpoint. A checkpoint under pretrain/checkpoint lets a killed job resume.


rule pretrain:
    input:
        fasta=PRETRAIN_FASTAS,
        encoder=ENCODER_FILES,
    output:
        encoder=directory(out("pretrain/encoder")),
        metrics=out("pretrain/metrics.json"),
    log:
        logfile("pretrain/pretrain.log"),
    conda:
        "../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    params:
        hub_id=ENCODER_HUB_ID,
        spec=ENCODER_PARAMS,
        settings={
            k: v
            for k, v in config["pretrain"].items()
            if k not in ("activate", "fasta")
        },
        window_size=WINDOWS.size,
        checkpoint=out("pretrain/checkpoint"),
    script:
        "../scripts/pretrain.py"
