rule build_tiny_encoder:
    output:
        ENCODER_FILES if ENC["source"] == "tiny" else [],
    log:
        logfile("build_tiny_encoder/build_tiny_encoder.log"),
    conda:
        "../envs/torch.yaml"
    params:
        shape=ENC["tiny"],
    script:
        "../scripts/build_tiny_encoder.py"


# One job per shard: the GPU job on a cluster. Batch size and threads are
# resources (profile knobs), not params, so changing them re-runs nothing.
rule embed_shard:
    input:
        shard=out("windows/shard_{shard}.parquet"),
        encoder=ENCODER_FILES,
    output:
        out("embeddings/shard_{shard}.parquet"),
    log:
        logfile("embed_shard/{shard}.log"),
    benchmark:
        logfile("embed_shard/{shard}.benchmark.tsv")
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
        batch_size=16,
    params:
        hub_id=ENCODER_HUB_ID,
        revision=ENC["revision"] if ENC["source"] == "pretrained" else None,
        trust_remote_code=ENC["trust_remote_code"],
        precision=ENC["precision"],
    script:
        "../scripts/embed_shard.py"
