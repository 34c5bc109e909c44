# Config validation, the parse-time shard plan, and every path and input function.
# Nothing else computes paths.

import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package lives in src/. The Snakefile imports it from there; scripts find
# it through the scripts/dnalm symlink (Snakemake appends a script's folder to
# its sys.path), so jobs in the conda envs need no installed package. Where
# dnalm is installed (`pip install -e .` by `make`), that copy comes first:
# install it from the checkout you run.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from dnalm.classify import classify_jobs, shard_memory_mb
from dnalm.encoders import (
    EncoderSpec,
    identity_mismatches,
    is_local,
    preflight,
    tiny_identity,
    tiny_positions,
    tiny_window_limits,
    window_fit,
)
from dnalm.errors import InputError
from dnalm.extract import RegionSource, plan_inputs, save_plan
from dnalm.fasta import (
    check_pretrain_lengths,
    ensure_fasta_index,
    is_plain_gzip,
    reference_dir,
)
from dnalm.settings import check_hierarchical_shape, check_lora_rank
from dnalm.splits import check_training_classes
from dnalm.windows import WindowSpec, plan_shards, shard_name
from dnalm.workflow import check_run_folder, release_run_lock, take_run_lock

validate(config, workflow.source_path("../config/schema.yaml"))

try:  # an empty or root outdir/logdir would put every file at the filesystem root
    OUT = check_run_folder(config["outdir"], "outdir")
    LOGS = check_run_folder(config["logdir"], "logdir")
except InputError as err:
    raise WorkflowError(str(err))


def out(path):
    """A path under the results folder (wildcards in braces pass through)."""
    return f"{OUT}/{path}"


def logfile(path):
    """A path under the logs folder."""
    return f"{LOGS}/{path}"


INPUT = RegionSource.from_config(config["input"])
WINDOWS = WindowSpec(
    size=config["windows"]["size"],
    stride=config["windows"]["stride"],
    per_shard=config["windows"]["per_shard"],
    iupac=config["windows"]["iupac"],
)

# The shard plan comes from sequence lengths, so the DAG is static and a dry
# run shows every embedding job. Bad input is reported here, before any job. The
# plan is saved under the outdir when a run starts, and read back (while the inputs
# are unchanged) by every later DAG build, the cluster jobs' included.
try:
    WINDOWS.check()
    PLAN = plan_inputs(INPUT, OUT)
except InputError as err:
    raise WorkflowError(str(err))
SHARDS = [shard_name(i) for i in range(plan_shards(PLAN.lengths, WINDOWS))]
COORDINATES_DIGEST, LABELLED = PLAN.coordinates_digest, PLAN.labelled
# The FASTA the jobs read: the configured one, or under <outdir>/reference/ a
# symlink to it with an index (read-only folder) or a bgzip copy that rule
# bgzip_fasta makes of plain gzip.
FASTA = PLAN.fasta.path
FASTA_COPY = [FASTA] if PLAN.fasta.recompress else []
# Classification jobs, each of classify.shards_per_job consecutive embedding shards: the
# shards a job reads (its own, preceded by those holding the first windows of a sequence
# carried into them) and its longest sequence (its memory); src/dnalm/classify.py explains.
CLASSIFY_JOBS = classify_jobs(
    PLAN.lengths, WINDOWS, config["classify"]["shards_per_job"]
)
CLASSIFY_GROUPS = [shard_name(i) for i in range(len(CLASSIFY_JOBS))]

# Only the input keys of the active mode reach the rules (as params), so a key that
# mode ignores re-runs nothing. The BED's path is not among them: its coordinates
# (COORDINATES_DIGEST) decide, so a relabelled copy of the BED re-runs no windows.
_MODE_KEYS = {
    "bed": ["reference"],
    "tiles": ["reference", "tiles"],
    "fasta": ["sequences"],
}
REGION_SOURCE = {
    key: config["input"][key] for key in ["mode", *_MODE_KEYS[config["input"]["mode"]]]
}
LABEL_SOURCE = {
    "mode": INPUT.mode,
    "bed": INPUT.bed if INPUT.mode == "bed" else "",
    "bed_columns": config["input"]["bed_columns"] if INPUT.mode == "bed" else {},
    "labels": INPUT.labels if INPUT.mode == "fasta" else "",
}


def start_run():
    """onstart (real runs only, not dry runs): lock the outdir, save the input plan."""
    try:
        take_run_lock(OUT)
    except InputError as err:
        raise WorkflowError(str(err))
    save_plan(PLAN, OUT)


def end_run():
    """onsuccess/onerror: give the outdir lock back."""
    release_run_lock(OUT)


wildcard_constraints:
    shard=r"\d{5}",
    group=r"\d{5}",
    head=r"[A-Za-z0-9_]+",


# ------------------------------------------------------------------- encoder
ENC = config["encoder"]
ENCODER_SPEC = EncoderSpec(
    model=ENC["model"],
    revision=ENC["revision"],
    family=ENC["family"],
    trust_remote_code=ENC["trust_remote_code"],
    precision=ENC["precision"],
    strands=ENC["strands"],
)
# What the embeddings will be made with, as far as it is known before any job: a
# pretrained head is checked against it here (the model's hash is checked in jobs).
try:
    if ENC["source"] == "tiny":
        TINY = ENC["tiny"]
        ENCODER_NOTE = window_fit(
            WINDOWS.size,
            tiny_window_limits(TINY["family"], TINY["kmer"]),
            tiny_positions(TINY["family"]),
            f"tiny {TINY['family']}",
            "encoder.tiny",
        )
        ENCODER_DIR = out("encoder/tiny")
        ENCODER_FILES = [ENCODER_DIR]  # a directory() output of build_tiny_encoder
        STATIC_IDENTITY = tiny_identity(TINY)
    else:
        # A missing/unfit model, an uncached hub id, or remote code not allowed stops the run here.
        _family, ENCODER_NOTE = preflight(
            ENCODER_SPEC, WINDOWS.size, masked_lm=config["pretrain"]["activate"]
        )
        ENCODER_DIR = ENC["model"]
        # Local files are inputs, so replacing the weights or tokenizer re-runs the embeddings.
        ENCODER_FILES = (
            [str(p) for p in _family.folder.tracked_files()]
            if is_local(ENCODER_DIR)
            else []
        )
        STATIC_IDENTITY = {
            "family": _family.name,
            "tokenizer": _family.tokenizer_name,
            "hidden_size": _family.folder.hidden_size,
        }
except InputError as err:
    raise WorkflowError(str(err))
STATIC_IDENTITY.update(
    window_size=WINDOWS.size, window_stride=WINDOWS.stride, strands=ENC["strands"]
)
# The encoder settings embed_shard depends on (params): a tiny encoder ignores the
# keys that only choose and load a pretrained model, so they re-run nothing there.
_LOAD_KEYS = ["precision", "strands"]
if ENC["source"] == "pretrained":
    _LOAD_KEYS += ["revision", "family", "trust_remote_code"]
ENCODER_PARAMS = {key: ENC[key] for key in _LOAD_KEYS}
if ENCODER_NOTE:
    print(ENCODER_NOTE, file=sys.stderr)

# --------------------------------------------------------------------- heads


def _trains_hierarchical(heads):
    """A head this run trains is hierarchical: the frozen one, or the fine-tuned model's."""
    return "hierarchical" in heads or (
        "finetuned" in heads and config["finetune"]["head"] == "hierarchical"
    )


PRETRAINED_HEAD = config["classify"]["pretrained_head"]
if PRETRAINED_HEAD:
    if Path(PRETRAINED_HEAD).resolve().is_relative_to(Path(out("heads")).resolve()):
        raise WorkflowError(
            f"{PRETRAINED_HEAD}: classify.pretrained_head lies inside this run's own heads folder "
            f"({out('heads')}), which this run would train and overwrite.\nFix: give the annotation run "
            "its own outdir, or copy the head elsewhere first."
        )
    if not (Path(PRETRAINED_HEAD) / "head.json").exists():
        raise WorkflowError(
            f"{PRETRAINED_HEAD}: no trained head here (head.json missing).\nFix: set "
            "classify.pretrained_head to a results/heads/<kind> folder of a labelled run."
        )
    # Checked here, not after every embedding job: the head must read vectors like the ones it was trained on.
    PRETRAINED_HEAD_CONFIG = json.loads(
        (Path(PRETRAINED_HEAD) / "head.json").read_text()
    )
    _trained = PRETRAINED_HEAD_CONFIG.get("encoder", {})
    for _key, _was, _now in identity_mismatches(_trained, STATIC_IDENTITY)[:1]:
        raise WorkflowError(
            f"{PRETRAINED_HEAD}/head.json: the head was trained on embeddings with {_key}={_was!r}, but this "
            f"run's encoder and windows give {_key}={_now!r}.\nFix: run with the encoder and window settings the "
            f"head was trained with (encoder {_trained.get('model')!r}), or train a head for this setting."
        )
    HEADS = ["pretrained"]
else:
    if not LABELLED:
        raise WorkflowError(
            f"No sequence has a label, so no head can be trained (input mode {INPUT.mode}).\n"
            "Fix: give labels (BED label column, or input.labels for a FASTA), or set "
            "classify.pretrained_head to annotate with a trained head."
        )
    HEADS = list(config["heads"]["train"]) + (
        ["finetuned"] if config["finetune"]["activate"] else []
    )
    if not HEADS:
        raise WorkflowError(
            "heads.train is empty and finetune.activate is false: nothing would classify.\n"
            "Fix: list heads in heads.train (hierarchical, mean) or set finetune.activate: true."
        )
    # What can be checked before any (GPU) job: two classes to train on, a head shape that builds.
    try:
        for _note in check_training_classes(
            PLAN.classes["train"], PLAN.classes["other"], INPUT.bed or INPUT.labels
        ):
            print(f"note: {_note}", file=sys.stderr)
        _hier = config["heads"]["hierarchical"]
        if _trains_hierarchical(HEADS):
            check_hierarchical_shape(_hier["d_model"], _hier["attention_heads"])
    except InputError as err:
        raise WorkflowError(str(err))
TRAINED_HEADS = [] if PRETRAINED_HEAD else HEADS
FINETUNE = config["finetune"]["activate"] and not PRETRAINED_HEAD
PRETRAIN = config["pretrain"]["activate"]


# A local model is given to jobs through its files (inputs); a hub id, which has no
# local path to track, through a param.
ENCODER_HUB_ID = "" if ENCODER_FILES else ENCODER_DIR

# The encoder chain: the configured model -> [pretrain] -> [finetune] -> embeddings.
# Each step hands the next a model folder (a directory output) like any checkpoint.


def _pretrain_fasta(source):
    """The path pretraining reads `source` through, its index checked now (rebuilt under
    <outdir>/reference/ when its folder is read-only), not in the GPU job."""
    try:
        if Path(source).is_file() and is_plain_gzip(Path(source)):
            raise InputError(
                "pretrain.fasta is compressed with plain gzip, which cannot be read at random",
                path=source,
                fix=f"recompress it with bgzip (zcat {source} | bgzip > "
                f"{Path(source).with_suffix('')}.bgz.gz) and list that file",
            )
        return str(ensure_fasta_index(source, reference_dir(OUT)))
    except InputError as err:
        raise WorkflowError(str(err))


PRETRAIN_FASTAS = [FASTA]
if PRETRAIN and config["pretrain"]["fasta"]:
    PRETRAIN_FASTAS = [_pretrain_fasta(f) for f in config["pretrain"]["fasta"]]
if PRETRAIN:
    try:
        check_pretrain_lengths(PRETRAIN_FASTAS, WINDOWS.size)
    except InputError as err:
        raise WorkflowError(str(err))
BASE_FILES, BASE_HUB_ID = ENCODER_FILES, ENCODER_HUB_ID  # what pretrain starts from
if PRETRAIN:
    BASE_FILES, BASE_HUB_ID = [out("pretrain/encoder")], ""  # what finetune starts from
EMBED_FILES, EMBED_HUB_ID = BASE_FILES, BASE_HUB_ID
if FINETUNE:
    EMBED_FILES, EMBED_HUB_ID = [out("finetune/encoder")], ""
    try:
        check_lora_rank(config["finetune"]["lora"]["r"], STATIC_IDENTITY["hidden_size"])
    except InputError as err:
        raise WorkflowError(str(err))


def learning_settings():
    """The heads' shared settings (pooling, N threshold, validation cut, seed, class weights)."""
    heads = config["heads"]
    return dict(
        pooling=heads["pooling"],
        max_n_fraction=heads["max_n_fraction"],
        val_fraction=heads["training"]["val_fraction"],
        class_weights=heads["training"]["class_weights"],
        seed=heads["training"]["seed"],
    )


def finetune_settings():
    """Everything fine-tuning depends on (params): its section, the shared head settings,
    and the hierarchical shape when that is the head it trains."""
    ft = config["finetune"]
    settings = {k: v for k, v in ft.items() if k not in ("activate", "lora")}
    settings.update(learning_settings())
    settings.update(
        lora_r=ft["lora"]["r"],
        lora_alpha=ft["lora"]["alpha"],
        lora_dropout=ft["lora"]["dropout"],
    )
    if ft["head"] == "hierarchical":
        settings.update(config["heads"]["hierarchical"])
    return settings


def _attention_heads():
    """Attention heads of the hierarchical head classifying this run (0: none)."""
    if PRETRAINED_HEAD:
        head = PRETRAINED_HEAD_CONFIG
        return (
            head.get("attention_heads", 0) if head.get("kind") == "hierarchical" else 0
        )
    if _trains_hierarchical(HEADS):
        return config["heads"]["hierarchical"]["attention_heads"]
    return 0


ATTENTION_HEADS = _attention_heads()


# Each head's folder: a trained one of this run, or the pretrained head.
HEAD_DIRS = {
    head: PRETRAINED_HEAD if head == "pretrained" else out(f"heads/{head}")
    for head in HEADS
}
HEAD_FILES = [
    f"{folder}/{f}"
    for folder in HEAD_DIRS.values()
    for f in ("head.json", "head.safetensors")
]


def classify_job(wildcards):
    return CLASSIFY_JOBS[int(wildcards.group)]


def classify_inputs(wildcards):
    """The embedding shards a classification job reads, its own last."""
    return [EMBEDDINGS[i] for i in classify_job(wildcards).reads]


def classify_mem_mb(wildcards, attempt):
    """More where a long sequence closes (the hierarchical head's attention)."""
    return attempt * shard_memory_mb(classify_job(wildcards).width, ATTENTION_HEADS)


def classify_shard_count(wildcards):
    return len(classify_job(wildcards).shards)


def is_last_group(wildcards):
    return wildcards.group == CLASSIFY_GROUPS[-1]


def train_settings(wildcards):
    """Only the settings a head depends on: the mean head ignores the hierarchical shape."""
    heads = config["heads"]
    settings = dict(
        heads["training"],
        pooling=heads["pooling"],
        max_n_fraction=heads["max_n_fraction"],
    )
    if wildcards.head == "hierarchical":
        settings.update(heads["hierarchical"])
    return settings


# ------------------------------------------------------------------- outputs
WINDOW_SHARDS = expand(out("windows/shard_{shard}.parquet"), shard=SHARDS)
EMBEDDINGS = expand(out("embeddings/shard_{shard}.parquet"), shard=SHARDS)


def final_outputs():
    outputs = expand(out("classify/{head}/predictions.tsv"), head=HEADS)
    if config["classify"]["tracks"]:
        outputs += expand(out("classify/{head}/tracks"), head=HEADS)
    outputs += [out("report/window_counts.png"), out("report/provenance.tsv")]
    if TRAINED_HEADS:
        outputs += expand(out("heads/{head}/metrics.json"), head=TRAINED_HEADS)
        outputs += [
            out("baselines/metrics.json"),
            out("report/metrics.tsv"),
            out("report/confusion.png"),
            out("report/roc_pr.png"),
        ]
    return outputs


def print_outputs():
    from dnalm.baselines import baseline_keys, baseline_label
    from dnalm.metrics import summary_line

    print("\ndnalm finished. Per-sequence tables:")
    for head in HEADS:
        print(f"  {out(f'classify/{head}/predictions.tsv')} (and .parquet)")
        metrics = Path(out(f"heads/{head}/metrics.json"))
        if metrics.exists() and not PRETRAINED_HEAD:
            print(
                f"    {summary_line(f'{head} head', json.loads(metrics.read_text())['test'])}  [{metrics}]"
            )
    baselines = Path(out("baselines/metrics.json"))
    if TRAINED_HEADS and baselines.exists():
        found = json.loads(baselines.read_text())
        print(f"  baselines on the same splits [{baselines}]:")
        for key in baseline_keys(found):
            print(f"    {summary_line(baseline_label(key), found[key]['test'])}")
    if config["classify"]["tracks"]:
        print(
            f"  tracks: {out('classify/<head>/tracks/')} (calls.bed, prob_<class>.bedGraph "
            "and .bw; tracks.tsv maps classes to files)"
        )
    print(
        "  report: snakemake --report report.html (with the same --configfile options)"
    )
