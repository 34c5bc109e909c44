# Masked-LM (continued) pretraining of the configured encoder on reference FASTAs.
# Writes a model folder the rest of the run (fine-tuning, embeddings) loads like any
# checkpoint. A checkpoint under pretrain/checkpoint lets a killed job resume.


rule pretrain:
    input:
        fasta=RUN.pretrain_fastas,
        encoder=ENCODER.model_files,
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
        hub_id=ENCODER.hub_id,
        spec=S.encoder.job_params(),
        settings=asdict(S.pretrain),
        window_size=S.windows.size,
        checkpoint=out("pretrain/checkpoint"),
    script:
        "../scripts/pretrain.py"
