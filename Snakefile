# dnalm: classify DNA sequences of any length with DNA language models.
# Stages: extract regions -> windows in Parquet shards -> [pretrain the encoder]
# -> [fine-tune it with a head] -> embeddings per shard -> heads trained on them
# (and the k-mer/GC baselines) -> per-sequence tables and tracks. See README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/extract.smk"
include: "rules/windows.smk"
include: "rules/embed.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/train.smk"
include: "rules/classify.smk"
include: "rules/variants.smk"
include: "rules/annotate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


onstart:
    start_run()


onsuccess:
    end_run()
    print_outputs()


onerror:
    end_run()
