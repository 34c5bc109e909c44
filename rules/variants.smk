# Variant effects (variants.vcf set): the checked variant table, one scoring job per
# variants.per_shard variants (the GPU job on a cluster, like embed_shard), and a gather
# that keeps the VCF's order and writes the scores back into it.

if RUN.variants:

    rule variant_table:
        input:
            vcf=S.variants.vcf,
            regions=[S.variants.regions] if S.variants.regions else [],
            fasta=ancient(RUN.fasta),
        output:
            table=out("variants/variants.parquet"),
            skipped=out("variants/skipped.tsv"),
        log:
            logfile("variants/variant_table.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            window_size=S.windows.size,
            regions=S.variants.regions,
            ref_mismatch=S.variants.ref_mismatch,
            expected=RUN.variants.scored,
        script:
            "../scripts/variant_table.py"

    rule score_variants:
        input:
            table=out("variants/variants.parquet"),
            fasta=ancient(RUN.fasta),
            encoder=ENCODER.embed_files,
            zero_shot=RUN.zero_shot_files,
            heads=HEAD_FILES,
        output:
            out("variants/shards/shard_{vshard}.parquet"),
        log:
            logfile("score_variants/{vshard}.log"),
        benchmark:
            logfile("score_variants/{vshard}.benchmark.tsv")
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            gpu=0 if S.encoder.spec.precision == "int8" else 1,
            mem_mb=8000,
            runtime=60,
            tokens_per_batch=8192,
        params:
            hub_id=ENCODER.embed_hub_id,
            zero_shot_hub_id=RUN.zero_shot_hub_id,
            zero_shot=bool(RUN.zero_shot_files or RUN.zero_shot_hub_id),
            spec=S.encoder.job_params(),
            head_dirs=RUN.head_dirs,
            pooling=S.train.pooling,
            per_shard=S.variants.per_shard,
            window_size=S.windows.size,
            window_stride=S.windows.stride,
        script:
            "../scripts/score_variants.py"

    rule gather_variants:
        input:
            shards=expand(
                out("variants/shards/shard_{vshard}.parquet"),
                vshard=RUN.variant_shards,
            ),
            table=out("variants/variants.parquet"),
            vcf=S.variants.vcf,
        output:
            parquet=out("variants/scores.parquet"),
            tsv=out("variants/scores.tsv"),
            vcf=out("variants/scored.vcf.gz"),
            tbi=out("variants/scored.vcf.gz.tbi"),
        log:
            logfile("variants/gather_variants.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
        script:
            "../scripts/gather_variants.py"
