# The run's plan (settings, input plan, shards, encoder chain and every check made before
# any job: src/dnalm/workflow/dag.py), then the paths and input functions of the rules.
# Nothing else computes paths.

import os
import sys
from dataclasses import asdict

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, workflow.source_path("../config/schema.yaml"))

try:  # the package these rules were written for, installed from this checkout (README)
    from dnalm.errors import InputError
    from dnalm.workflow.jobs import (
        check_package_origin,
        release_run_lock,
        take_run_lock,
    )

    check_package_origin(workflow.basedir)
    from dnalm.outputs.classify import shard_memory_mb
    from dnalm.workflow.dag import kmer_head_dir, plan_run
    from dnalm.workflow.summary import print_summary
except ImportError as err:
    raise WorkflowError(
        f"the dnalm package does not import ({err}).\nFix: install this checkout into the environment "
        f"that runs snakemake: pip install --no-deps -e {workflow.basedir} (make demo does it in .venv)"
    )
except InputError as err:
    raise WorkflowError(str(err))

# The conda envs install the package from this checkout after they are made
# (envs/*.post-deploy.sh reads this variable).
os.environ.update(DNALM_CHECKOUT=workflow.basedir)

try:  # every input error stops the run here, before any job, as one message
    RUN = plan_run(config)
except InputError as err:
    raise WorkflowError(str(err))
if RUN.encoder.note:
    print(RUN.encoder.note, file=sys.stderr)
S = RUN.settings
SOURCE = RUN.source
ENCODER = RUN.encoder


def out(path):
    """A path under the results folder (wildcards in braces pass through)."""
    return f"{RUN.outdir}/{path}"


def logfile(path):
    """A path under the logs folder."""
    return f"{RUN.logdir}/{path}"


def start_run():
    """onstart (real runs only, not dry runs): lock the outdir, save the input plan."""
    from dnalm.inputs.plan import save_plan
    from dnalm.annotation.stage import save_annotation_plan
    from dnalm.variants.stage import save_variant_plan

    try:
        take_run_lock(RUN.outdir)
    except InputError as err:
        raise WorkflowError(str(err))
    save_plan(RUN.inputs, RUN.outdir)
    if RUN.variants:
        save_variant_plan(RUN.variants, RUN.outdir)  # the VCF is read once
    if RUN.annotation:
        save_annotation_plan(RUN.annotation, RUN.outdir)  # the features are read once


def end_run():
    """onsuccess/onerror: give the outdir lock back."""
    release_run_lock(RUN.outdir)


wildcard_constraints:
    shard=r"\d{5}",
    vshard=r"\d{5}",
    ashard=r"\d{5}",
    group=r"\d{5}",
    head=r"[A-Za-z0-9_]+",


# ------------------------------------------------------------------- paths
FASTA_COPY = [RUN.fasta] if RUN.inputs.fasta.recompress else []
KMER_HEAD_DIR = kmer_head_dir(RUN.outdir, S.baseline_kmer)  # written by rule baselines
MUTAGENESIS_OUTPUTS = ("scores.parquet", "scores.tsv", "tracks", "heatmap.png")
VARIANT_OUTPUTS = (
    "scores.parquet",
    "scores.tsv",
    "scored.vcf.gz",
    "scored.vcf.gz.tbi",
    "skipped.tsv",
)
ANNOTATION_OUTPUTS = (
    "tracks",
    "calls.gff3",
    "calls.bed",
    "split.tsv",
    "metrics.json",
    "metrics.tsv",
    "browser.png",
)
# What train_annotator writes: the head, and the encoder where it is fine-tuned with it;
# the encoder annotate_shard loads.
ANNOTATOR_OUTPUTS = {
    "weights": out("annotate/model/head.safetensors"),
    "config": out("annotate/model/head.json"),
}
ANNOTATOR_ENCODER = ENCODER.base_files
if RUN.annotation and RUN.annotation.finetune:
    ANNOTATOR_OUTPUTS["encoder"] = directory(out("annotate/model/encoder"))
    ANNOTATOR_ENCODER = [out("annotate/model/encoder")]
WINDOW_SHARDS = expand(out("windows/shard_{shard}.parquet"), shard=RUN.shards)
EMBEDDINGS = expand(out("embeddings/shard_{shard}.parquet"), shard=RUN.shards)
HEAD_FILES = [
    f"{folder}/{name}"
    for folder in RUN.head_dirs.values()
    for name in ("head.json", "head.safetensors")
]
KMER_HEAD_FILES = [
    f"{folder}/{name}"
    for folder in RUN.kmer_heads.values()
    for name in ("head.json", "head.safetensors")
]


def final_outputs():
    # Base annotation alone (annotation.alone, or no sequence labels): its outputs only.
    if not RUN.classifiers:
        return [out(f"annotate/{name}") for name in ANNOTATION_OUTPUTS]
    outputs = expand(out("classify/{head}/predictions.tsv"), head=RUN.classifiers)
    if S.classify.tracks:
        outputs += expand(out("classify/{head}/tracks"), head=RUN.classifiers)
    outputs += [out("report/window_counts.png"), out("report/provenance.tsv")]
    if RUN.trained_heads:
        outputs += expand(out("heads/{head}/metrics.json"), head=RUN.trained_heads)
        outputs += [
            out("baselines/metrics.json"),
            out("report/metrics.tsv"),
            *RUN.report_figures.values(),
        ]
    if RUN.variants:
        outputs += [out(f"variants/{name}") for name in VARIANT_OUTPUTS]
    if RUN.mutagenesis:
        outputs += [out(f"mutagenesis/{name}") for name in MUTAGENESIS_OUTPUTS]
    if RUN.annotation:
        outputs += [out(f"annotate/{name}") for name in ANNOTATION_OUTPUTS]
    return outputs


def print_outputs():
    print_summary(RUN)


# ----------------------------------------------------------- input functions


def classify_job(wildcards):
    return RUN.classify_jobs[int(wildcards.group)]


def classify_inputs(wildcards):
    """The embedding shards a classification job reads, its own last."""
    return [EMBEDDINGS[i] for i in classify_job(wildcards).reads]


def classify_window_inputs(wildcards):
    """The window shards a k-mer classification job reads, its own last."""
    return [WINDOW_SHARDS[i] for i in classify_job(wildcards).reads]


def classify_mem_mb(wildcards, attempt):
    """More where a long sequence closes (the hierarchical head's attention)."""
    heads, block = RUN.attention
    return attempt * shard_memory_mb(classify_job(wildcards).width, heads, block)


def classify_shard_count(wildcards):
    return len(classify_job(wildcards).shards)


def is_last_group(wildcards):
    return wildcards.group == RUN.classify_groups[-1]


def context_inputs(wildcards):
    """What a variant-scoring job reads to score in the regions' context (variants.context):
    the regions, the window shards and their embeddings (it reads only those holding its
    variants' regions)."""
    if wildcards.study != "variants" or not S.variants.context:
        return {}
    return {
        "regions": out("regions/regions.parquet"),
        "sequences": out("windows/sequences.parquet"),
        "windows": WINDOW_SHARDS,
        "embeddings": EMBEDDINGS,
    }


def train_settings(wildcards):
    """Only the settings a head depends on: the mean head ignores the hierarchical shape."""
    return S.train.job_params(wildcards.head)
