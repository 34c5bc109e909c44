rule build_tiny_encoder:
    input:
        # The byte-pair tiny encoder trains its tokenizer on the run's own FASTA.
        train_fasta=(
            [SOURCE.fasta]
            if S.encoder.source == "tiny" and S.encoder.tiny.family == "bpe"
            else []
        ),
    output:
        directory(ENCODER.model_dir) if S.encoder.source == "tiny" else [],
    log:
        logfile("build_tiny_encoder/build_tiny_encoder.log"),
    conda:
        "../envs/torch.yaml"
    params:
        shape=asdict(S.encoder.tiny),
    script:
        "../scripts/build_tiny_encoder.py"


# One job per shard: the GPU job on a cluster. The token budget per batch, threads
# and torch.compile are resources (profile knobs), not params: changing them
# re-runs nothing.
rule embed_shard:
    input:
        shard=out("windows/shard_{shard}.parquet"),
        encoder=ENCODER.embed_files,
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
        gpu=0 if S.encoder.spec.precision == "int8" else 1,  # int8 is CPU arithmetic
        mem_mb=8000,
        runtime=60,
        tokens_per_batch=8192,
        compile=0,
    params:
        hub_id=ENCODER.embed_hub_id,
        spec=S.encoder.job_params(),
    script:
        "../scripts/embed_shard.py"
