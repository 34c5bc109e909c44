# Genome annotation at base resolution (annotation.features): a token-classification head
# trained on the features of the training part (the encoder fine-tuned with it, or
# frozen), per-base probabilities of the whole genome in one job per shard of windows
# (the GPU job on a cluster, like embed_shard), a per-base k-mer baseline, and a gather
# that chooses thresholds on validation, calls features and scores the test part.

if RUN.annotation:

    rule train_annotator:
        input:
            fasta=ancient(RUN.fasta),
            features=S.annotation.features,
            encoder=ENCODER.base_files,
        output:
            **ANNOTATOR_OUTPUTS,
        log:
            logfile("annotate/train_annotator.log"),
        conda:
            "../envs/torch.yaml"
        threads: 4
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=720,
        params:
            hub_id=ENCODER.base_hub_id,
            spec=S.encoder.job_params(),
            settings=S.annotation.training_params(),
            tuning=S.finetune.optimiser_params(),
            window_size=S.windows.size,
            window_stride=S.windows.stride,
            checkpoint=out("annotate/checkpoint"),
        script:
            "../scripts/train_annotator.py"

    rule annotate_shard:
        input:
            fasta=ancient(RUN.fasta),
            model=multiext(out("annotate/model/head"), ".json", ".safetensors"),
            encoder=ANNOTATOR_ENCODER,
        output:
            out("annotate/shards/shard_{ashard}.npz"),
        log:
            logfile("annotate/annotate_shard_{ashard}.log"),
        benchmark:
            logfile("annotate/annotate_shard_{ashard}.benchmark.tsv")
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            gpu=0 if S.encoder.spec.precision == "int8" else 1,
            mem_mb=8000,
            runtime=120,
            tokens_per_batch=8192,
        params:
            hub_id="" if RUN.annotation.finetune else ENCODER.base_hub_id,
            spec=S.encoder.job_params(),
            window_size=S.windows.size,
            window_stride=S.windows.stride,
            per_shard=S.annotation.per_shard,
        script:
            "../scripts/annotate_shard.py"

    rule annotation_baseline:
        input:
            fasta=ancient(RUN.fasta),
            features=S.annotation.features,
        output:
            out("annotate/baseline/kmer_probabilities.npz"),
        log:
            logfile("annotate/annotation_baseline.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
        params:
            settings=S.annotation.baseline_params(),
            window_size=S.windows.size,
        script:
            "../scripts/annotation_baseline.py"

    rule gather_annotation:
        input:
            shards=expand(
                out("annotate/shards/shard_{ashard}.npz"),
                ashard=RUN.annotation.shard_names(),
            ),
            baseline=out("annotate/baseline/kmer_probabilities.npz"),
            model=out("annotate/model/head.json"),
            fasta=ancient(RUN.fasta),
            features=S.annotation.features,
        output:
            tracks=directory(out("annotate/tracks")),
            gff3=out("annotate/calls.gff3"),
            bed=out("annotate/calls.bed"),
            split=out("annotate/split.tsv"),
            metrics=out("annotate/metrics.json"),
            table=out("annotate/metrics.tsv"),
            figure=report(
                out("annotate/browser.png"),
                caption="../report/annotation.rst",
                category="Annotation",
            ),
        log:
            logfile("annotate/gather_annotation.log"),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=16000,
            runtime=60,
        params:
            settings=S.annotation.gather_params(),
            window_size=S.windows.size,
        script:
            "../scripts/gather_annotation.py"
