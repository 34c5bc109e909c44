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
    wildcard_constraints:
        head="hierarchical|mean",
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


# The k-mer and GC logistic regressions, on exactly the heads' splits: what a user
# compares the language model against; and the k-mer + language-model regression, never
# worse than the k-mer one on validation.
rule baselines:
    input:
        shards=WINDOW_SHARDS,
        regions=out("regions/regions.parquet"),
        labels=out("regions/labels.parquet"),
        embeddings=EMBEDDINGS,  # for the k-mer + language-model regression
    output:
        metrics=out("baselines/metrics.json"),
        # the k-mer model as a head classify can annotate with (classify.kmer_baseline)
        kmer_head=multiext(f"{KMER_HEAD_DIR}/head", ".json", ".safetensors"),
    log:
        logfile("baselines/baselines.log"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        kmer=S.baseline_kmer,
        settings=S.train.learner_params(),
    script:
        "../scripts/baselines.py"
