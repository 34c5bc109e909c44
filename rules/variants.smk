# Variant effects (variants.vcf) and saturation mutagenesis (mutagenesis.regions): a
# checked table of the variants of each study, one scoring job per variants.per_shard
# variants (the GPU job on a cluster, like embed_shard), and a gather per study that keeps
# the table's order: the VCF with the scores written back, or per-base tracks and a heatmap.

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

    rule gather_variants:
        input:
            shards=expand(
                out("variants/shards/shard_{vshard}.parquet"),
                vshard=RUN.scoring_shards("variants"),
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


if RUN.mutagenesis:

    rule mutagenesis_table:
        input:
            regions=S.mutagenesis.regions,
            fasta=ancient(RUN.fasta),
        output:
            table=out("mutagenesis/variants.parquet"),
        log:
            logfile("mutagenesis/mutagenesis_table.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            window_size=S.windows.size,
            max_length=S.mutagenesis.max_length,
            expected=RUN.mutagenesis.scored,
        script:
            "../scripts/mutagenesis_table.py"

    rule gather_mutagenesis:
        input:
            shards=expand(
                out("mutagenesis/shards/shard_{vshard}.parquet"),
                vshard=RUN.scoring_shards("mutagenesis"),
            ),
            table=out("mutagenesis/variants.parquet"),
            regions=S.mutagenesis.regions,
            fasta=ancient(RUN.fasta),
        output:
            parquet=out("mutagenesis/scores.parquet"),
            tsv=out("mutagenesis/scores.tsv"),
            tracks=directory(out("mutagenesis/tracks")),
            heatmap=report(
                out("mutagenesis/heatmap.png"),
                caption="../report/mutagenesis.rst",
                category="Variants",
            ),
        log:
            logfile("mutagenesis/gather_mutagenesis.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
        params:
            window_size=S.windows.size,
            max_length=S.mutagenesis.max_length,
        script:
            "../scripts/gather_mutagenesis.py"


if RUN.scoring:

    rule score_variants:
        input:
            unpack(context_inputs),
            table=out("{study}/variants.parquet"),
            fasta=ancient(RUN.fasta),
            encoder=ENCODER.embed_files,
            zero_shot=RUN.zero_shot_files,
            heads=HEAD_FILES,
        output:
            out("{study}/shards/shard_{vshard}.parquet"),
        log:
            logfile("score_variants/{study}_{vshard}.log"),
        benchmark:
            logfile("score_variants/{study}_{vshard}.benchmark.tsv")
        wildcard_constraints:
            study="variants|mutagenesis",
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
            context=lambda wildcards: bool(context_inputs(wildcards)),
            windows_per_shard=S.windows.per_shard,
            max_n_fraction=S.train.max_n_fraction,
        script:
            "../scripts/score_variants.py"
