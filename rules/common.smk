# Config validation, the parse-time shard plan, and every path and input function.
# Nothing else computes paths.

import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The package lives in src/. The Snakefile imports it from there; scripts find
# it through the scripts/dnalm symlink (Snakemake appends a script's folder to
# its sys.path), so jobs in the conda envs need no installed package. Where
# dnalm is installed (`pip install -e .` by `make`), that copy comes first:
# install it from the checkout you run.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from dnalm.classify import closing_widths, shard_memory_mb, shard_reads
from dnalm.encoder import TINY_MAX_POSITIONS, check_fits, is_local, preflight
from dnalm.errors import InputError
from dnalm.extract import RegionSource, plan_inputs
from dnalm.windows import WindowSpec, plan_shards, shard_name

validate(config, workflow.source_path("../config/schema.yaml"))

OUT = config["outdir"].rstrip("/")
LOGS = config["logdir"].rstrip("/")


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
# run shows every embedding job. Bad input is reported here, before any job.
try:
    WINDOWS.check()
    _LENGTHS, COORDINATES_DIGEST, LABELLED = plan_inputs(INPUT)
except InputError as err:
    raise WorkflowError(str(err))
SHARDS = [shard_name(i) for i in range(plan_shards(_LENGTHS, WINDOWS))]
# The embedding shards each classify_shard job reads: its own, preceded by those holding
# the first windows of a sequence carried into it (src/dnalm/classify.py explains).
CLASSIFY_READS = shard_reads(_LENGTHS, WINDOWS)
# The most windows of a sequence each classify_shard job classifies: its memory.
CLASSIFY_WIDTHS = closing_widths(_LENGTHS, WINDOWS)
del _LENGTHS

# Only the input keys of the active mode reach the rules (as params), so a key that
# mode ignores re-runs nothing.
_MODE_KEYS = {
    "bed": ["reference", "bed"],
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


wildcard_constraints:
    shard=r"\d{5}",
    head=r"[A-Za-z0-9_]+",


# ------------------------------------------------------------------- encoder
ENC = config["encoder"]
if ENC["source"] == "tiny":
    try:
        check_fits(
            SimpleNamespace(max_position_embeddings=TINY_MAX_POSITIONS),
            ENC["tiny"]["kmer"],
            WINDOWS.size,
            "encoder.tiny",
        )
    except InputError as err:
        raise WorkflowError(str(err))
    ENCODER_DIR = out("encoder/tiny")
    ENCODER_FILES = [
        f"{ENCODER_DIR}/{f}" for f in ("config.json", "model.safetensors", "vocab.txt")
    ]
else:
    ENCODER_DIR = ENC["model"]
    try:  # a missing/unfit model or an uncached hub id stops the run here, before any job
        preflight(ENCODER_DIR, ENC["revision"], WINDOWS.size)
    except InputError as err:
        raise WorkflowError(str(err))
    # Local weights are inputs, so replacing them re-runs the embeddings.
    ENCODER_FILES = (
        sorted(
            str(p)
            for p in Path(ENCODER_DIR).iterdir()
            if p.name in ("config.json", "vocab.txt")
            or p.suffix in (".safetensors", ".bin")
        )
        if is_local(ENCODER_DIR)
        else []
    )

# --------------------------------------------------------------------- heads
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
    HEADS = ["pretrained"]
else:
    if not LABELLED:
        raise WorkflowError(
            f"No sequence has a label, so no head can be trained (input mode {INPUT.mode}).\n"
            "Fix: give labels (BED label column, or input.labels for a FASTA), or set "
            "classify.pretrained_head to annotate with a trained head."
        )
    HEADS = list(config["heads"]["train"])
TRAINED_HEADS = [] if PRETRAINED_HEAD else HEADS


# A local model is given to embed_shard through its files (inputs); a hub id,
# which has no local path to track, through this param.
ENCODER_HUB_ID = "" if ENCODER_FILES else ENCODER_DIR


def _attention_heads():
    """Attention heads of the hierarchical head classifying this run (0: none)."""
    if PRETRAINED_HEAD:
        import json

        head = json.loads((Path(PRETRAINED_HEAD) / "head.json").read_text())
        return (
            head.get("attention_heads", 0) if head.get("kind") == "hierarchical" else 0
        )
    if "hierarchical" in HEADS:
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


def classify_inputs(wildcards):
    """The embedding shards a classify_shard job reads: its own last."""
    return [EMBEDDINGS[i] for i in CLASSIFY_READS[int(wildcards.shard)]]


def classify_mem_mb(wildcards, attempt):
    """More for a shard where a long sequence closes (the hierarchical head's attention)."""
    width = CLASSIFY_WIDTHS[int(wildcards.shard)]
    return attempt * shard_memory_mb(width, ATTENTION_HEADS)


def is_last_shard(wildcards):
    return wildcards.shard == SHARDS[-1]


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
            out("report/metrics.tsv"),
            out("report/confusion.png"),
            out("report/roc_pr.png"),
        ]
    return outputs


def print_outputs():
    import json

    print("\ndnalm finished. Per-sequence tables:")
    for head in HEADS:
        print(f"  {out(f'classify/{head}/predictions.tsv')} (and .parquet)")
        metrics = Path(out(f"heads/{head}/metrics.json"))
        if metrics.exists() and not PRETRAINED_HEAD:
            test = json.loads(metrics.read_text())["test"]
            if test.get("n"):
                auroc = test["auroc"] if test["auroc"] is not None else float("nan")
                print(
                    f"    {head} head, test split (n={test['n']}): accuracy {test['accuracy']:.3f}  "
                    f"macro-F1 {test['macro_f1']:.3f}  MCC {test['mcc']:.3f}  AUROC {auroc:.3f}  "
                    f"[{metrics}]"
                )
    if config["classify"]["tracks"]:
        print(
            f"  tracks: {out('classify/<head>/tracks/')} (calls.bed, prob_<class>.bedGraph "
            "and .bw; tracks.tsv maps classes to files)"
        )
    print(
        "  report: snakemake --report report.html (with the same --configfile options)"
    )
