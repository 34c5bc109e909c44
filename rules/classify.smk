# Classification per group of classify.shards_per_job embedding shards (every head in
# one job), then one gather per head. A sequence is classified by the job of the shard
# where it closes; that job also reads the earlier shards holding its first windows
# (classify_inputs, planned from the sequence lengths in common.smk). The gather writes
# the per-sequence tables and the tracks; it needs no torch and no head, only the
# jobs' results.


if RUN.heads:

    rule classify_shards:
        input:
            embeddings=classify_inputs,
            heads=HEAD_FILES,
        output:
            expand(
                out("classify/{head}/shards/group_{{group}}.parquet"), head=RUN.heads
            ),
        log:
            logfile("classify_shards/{group}.log"),
        benchmark:
            logfile("classify_shards/{group}.benchmark.tsv")
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=classify_mem_mb,
            runtime=30,
        params:
            head_dirs=list(RUN.head_dirs.values()),
            max_n_fraction=S.train.max_n_fraction,
            shards=classify_shard_count,
            final=is_last_group,
        script:
            "../scripts/classify_shards.py"


# The k-mer heads (the run's k-mer baseline, or an annotation run's k-mer head) read
# the window shards, not embeddings: the same jobs and partial files, without torch.
if RUN.kmer_heads:

    rule classify_kmer_shards:
        input:
            windows=classify_window_inputs,
            heads=KMER_HEAD_FILES,
        output:
            expand(
                out("classify/{head}/shards/group_{{group}}.parquet"),
                head=RUN.kmer_heads,
            ),
        log:
            logfile("classify_kmer_shards/{group}.log"),
        benchmark:
            logfile("classify_kmer_shards/{group}.benchmark.tsv")
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            head_dirs=list(RUN.kmer_heads.values()),
            max_n_fraction=S.train.max_n_fraction,
            shards=classify_shard_count,
            final=is_last_group,
        script:
            "../scripts/classify_kmer_shards.py"


rule gather_predictions:
    input:
        shards=expand(
            out("classify/{{head}}/shards/group_{group}.parquet"),
            group=RUN.classify_groups,
        ),
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
        sequences=out("windows/sequences.parquet"),
        fasta=ancient(RUN.fasta),
    output:
        tsv=out("classify/{head}/predictions.tsv"),
        parquet=out("classify/{head}/predictions.parquet"),
        tracks=(directory(out("classify/{head}/tracks")) if S.classify.tracks else []),
    log:
        logfile("gather_predictions/{head}.log"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/gather_predictions.py"
