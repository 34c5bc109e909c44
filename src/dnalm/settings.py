"""Settings: the one place a configuration becomes the settings objects that rules, jobs
and tests use.

Every default lives in the schema, `schema.yaml` beside this module (config/schema.yaml
links to it): `complete` fills a config's missing keys from it, each settings class takes
its field defaults from it (`default`), and `from_config` turns a config into one
`RunSettings`. Nothing here imports torch: the Snakefile builds these when it builds the
DAG, and a job rebuilds its part from the rule's params (`dataclasses.asdict` of it).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import InputError

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def _is_section(node: dict) -> bool:
    return node.get("type") == "object" and "properties" in node


def complete(config: dict | None, node: dict | None = None, where: str = "") -> dict:
    """`config` with every key the schema defines: given values kept, the rest the schema's
    defaults. A key the schema does not define is refused (as the Snakefile's validation
    refuses it)."""
    node = node if node is not None else schema()
    given = dict(config or {})
    unknown = sorted(set(given) - set(node["properties"]))
    if unknown:
        raise InputError(f"unknown config key(s) {', '.join(where + k for k in unknown)}",
                         fix="see config/README.md for the keys each section takes")
    out = {}
    for key, child in node["properties"].items():
        if _is_section(child):
            out[key] = complete(given.get(key), child, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(given[key] if key in given else child.get("default"))
    return out


@functools.cache
def _defaults() -> dict:
    return complete({})


def default(key: str):
    """The schema's default of a dotted config key, e.g. default("heads.training.epochs")."""
    value = _defaults()
    for part in key.split("."):
        value = value[part]
    return copy.deepcopy(value)


def check_hierarchical_shape(d_model: int, attention_heads: int, key: str = "heads.hierarchical") -> None:
    if d_model % attention_heads:
        raise InputError(f"{key}.attention_heads ({attention_heads}) does not divide {key}.d_model ({d_model})",
                         fix="pick a number of attention heads that divides d_model (e.g. 4 for 128)")


def check_lora_rank(rank: int, hidden_size: int | None) -> None:
    """A LoRA rank above the encoder's hidden size adds no capacity, only memory (a rank of
    100,000 on a hidden size of 128 builds half a billion weights): refuse it before any job."""
    if hidden_size and rank > hidden_size:
        raise InputError(f"finetune.lora.r is {rank}, above the encoder's hidden size ({hidden_size}): a rank "
                         "above it adds weights and memory, not capacity",
                         fix=f"set finetune.lora.r to at most {hidden_size} (8-64 is usual), or 0 to train "
                             "every encoder weight")


# ------------------------------------------------------------------ stages 1-3


@dataclass(frozen=True)
class InputSettings:
    """The `input:` section: which sequences, from which files (`inputs.sources` reads them)."""

    mode: str = default("input.mode")  # bed | tiles | fasta: a source registered in inputs.sources
    reference: str = default("input.reference")
    bed: str = default("input.bed")
    label_column: int = default("input.bed_columns.label")  # 1-based BED column with the class label
    split_column: int = default("input.bed_columns.split")  # 1-based BED column with train/val/test
    group_column: int = default("input.bed_columns.group")  # 1-based BED column with the group
    tile_length: int = default("input.tiles.length")
    tile_step: int = default("input.tiles.step")
    include: tuple[str, ...] = tuple(default("input.tiles.include"))
    exclude: tuple[str, ...] = tuple(default("input.tiles.exclude"))
    sequences: str = default("input.sequences")
    labels: str = default("input.labels")

    @classmethod
    def from_section(cls, section: dict) -> "InputSettings":
        """The `input:` section of a config (missing keys take the schema's defaults)."""
        c = complete({"input": section})["input"]
        return cls(mode=c["mode"], reference=c["reference"], bed=c["bed"], label_column=c["bed_columns"]["label"],
                   split_column=c["bed_columns"]["split"], group_column=c["bed_columns"]["group"],
                   tile_length=c["tiles"]["length"],
                   tile_step=c["tiles"]["step"], include=tuple(c["tiles"]["include"] or ()),
                   exclude=tuple(c["tiles"]["exclude"] or ()), sequences=c["sequences"], labels=c["labels"] or "")


@dataclass(frozen=True)
class WindowSpec:
    """The `windows:` section: how sequences are cut into windows and shards."""

    size: int = default("windows.size")
    stride: int = default("windows.stride")
    per_shard: int = default("windows.per_shard")
    iupac: str = default("windows.iupac")  # error | as_n
    # Not a key of its own: set where encoder.strands is both, so that a sequence and its
    # reverse complement are cut into the same windows (tiling.mirrored_starts).
    mirrored: bool = False

    def check(self) -> None:
        if self.size < 1 or self.stride < 1 or self.per_shard < 1:
            raise InputError("windows.size, windows.stride and windows.per_shard must be positive")
        if self.stride > self.size:
            raise InputError(
                f"windows.stride ({self.stride}) is larger than windows.size ({self.size}): "
                "bases between windows would never be seen",
                fix="use a stride no larger than the window size")
        if self.iupac not in ("error", "as_n"):
            raise InputError(f"windows.iupac is {self.iupac!r}", fix="use 'error' or 'as_n'")


@dataclass(frozen=True)
class EncoderSpec:
    """Which model a job loads and how: the `encoder:` keys that choose and apply it."""

    model: str = default("encoder.model")  # local directory or hub id
    revision: str | None = default("encoder.revision")
    family: str = default("encoder.family")
    trust_remote_code: bool = default("encoder.trust_remote_code")
    precision: str = default("encoder.precision")  # auto | fp32 | bf16 | fp16
    strands: str = default("encoder.strands")  # single | both (average each window with its reverse complement)


@dataclass(frozen=True)
class TinyEncoder:
    """`encoder.tiny`: the shape of the small random encoder the demo and tests build."""

    family: str = default("encoder.tiny.family")
    kmer: int = default("encoder.tiny.kmer")
    hidden: int = default("encoder.tiny.hidden")
    layers: int = default("encoder.tiny.layers")
    attention_heads: int = default("encoder.tiny.attention_heads")
    seed: int = default("encoder.tiny.seed")


@dataclass(frozen=True)
class EncoderSettings:
    source: str  # tiny | pretrained
    spec: EncoderSpec
    tiny: TinyEncoder

    def job_params(self) -> dict:
        """The encoder settings the encoder-loading jobs depend on (their params): a tiny
        encoder ignores the keys that only choose and load a pretrained model."""
        keys = ["precision", "strands"] + (["revision", "family", "trust_remote_code"]
                                           if self.source == "pretrained" else [])
        return {key: getattr(self.spec, key) for key in keys}


# ------------------------------------------------------------------ stage 4

# The fields of the hierarchical head's shape: a job that trains another head does not
# depend on them (they are left out of its params, so changing them re-runs nothing there).
HIERARCHICAL_SHAPE = ("d_model", "layers", "attention_heads", "dropout", "attention_block")
# What the run's splits and the learners' input are made of: every learner's params, the
# baselines' included (`HeadSettings.learner_params`).
SHARED_BY_LEARNERS = ("pooling", "max_n_fraction", "val_fraction", "val_by", "val_block", "class_weights", "seed",
                      "task", "targets")
# How fine-tuning trains an encoder (learning rates, schedule, LoRA, arithmetic): shared by
# base annotation (`annotation.encoder: finetune`).
OPTIMISER_KEYS = ("encoder_learning_rate", "head_learning_rate", "warmup_fraction", "weight_decay",
                  "gradient_checkpointing", "lora_r", "lora_alpha", "lora_dropout", "precision")
# What a head learns (`heads.task`): keys a classification run's params leave out, so a run of
# an earlier version, which had only classification, re-runs nothing.
TASK_KEYS = ("task", "targets", "regression_loss")
# The validation measure `select_by: auto` means, by task: one a constant predictor cannot win.
SELECT_BY = {"classification": "mcc", "regression": "r2", "multilabel": "auprc"}


@dataclass(frozen=True)
class HeadSettings:
    """What every learner of a run shares: the head's input and shape, and the splits."""

    pooling: str = default("heads.pooling")  # which window vector the head reads: cls | mean
    max_n_fraction: float = default("heads.max_n_fraction")
    d_model: int = default("heads.hierarchical.d_model")
    layers: int = default("heads.hierarchical.layers")
    attention_heads: int = default("heads.hierarchical.attention_heads")
    dropout: float = default("heads.hierarchical.dropout")
    attention_block: int = default("heads.hierarchical.attention_block")
    val_fraction: float = default("heads.training.val_fraction")
    val_by: str = default("heads.training.val_by")  # auto | group | contig | position | random
    val_block: int = default("heads.training.val_block")  # bp, for val_by position
    # The kept epoch's measure: auto (the task's, SELECT_BY) | mcc | loss | r2 | auprc
    select_by: str = default("heads.training.select_by")
    class_weights: bool = default("heads.training.class_weights")
    seed: int = default("heads.training.seed")
    task: str = default("heads.task")  # classification | regression | multilabel
    targets: tuple[str, ...] = tuple(default("heads.targets"))  # regression: the names of the values
    regression_loss: str = default("heads.regression_loss")  # mse | huber

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.select_by == "auto" and self.task in SELECT_BY:
            object.__setattr__(self, "select_by", SELECT_BY[self.task])

    def check(self) -> None:
        check_hierarchical_shape(self.d_model, self.attention_heads)
        self.check_task()

    def check_task(self) -> None:
        """heads.task, heads.targets and select_by agree (the DAG checks this before any job)."""
        if self.task not in SELECT_BY:
            raise InputError(f"heads.task is {self.task!r}", fix=f"use one of {', '.join(SELECT_BY)}")
        if self.select_by not in ("loss", SELECT_BY[self.task]):
            raise InputError(f"heads.training.select_by is {self.select_by!r}, which does not measure a "
                             f"{self.task} head",
                             fix=f"use auto (= {SELECT_BY[self.task]} for {self.task}) or loss")
        if self.targets and self.task != "regression":
            raise InputError(f"heads.targets names values, but heads.task is {self.task!r}",
                             fix="set heads.task: regression, or leave heads.targets empty")

    def _params(self, params: dict) -> dict:
        if self.task == "classification":
            for key in TASK_KEYS:
                params.pop(key, None)
        return params

    def job_params(self, kind: str) -> dict:
        """These settings as a rule's params, for a job training a head of `kind`."""
        params = asdict(self)
        if kind != "hierarchical":
            for key in HIERARCHICAL_SHAPE:
                params.pop(key)
        return self._params(params)

    def learner_params(self) -> dict:
        """What every learner of the run reads, the baselines included: which window vector,
        the N threshold, the splits and what is learnt (no head's shape, no optimiser, no
        selection)."""
        return self._params({key: getattr(self, key) for key in SHARED_BY_LEARNERS})


@dataclass(frozen=True)
class TrainSettings(HeadSettings):
    """Training a head on frozen window vectors (rule train_head)."""

    epochs: int = default("heads.training.epochs")
    patience: int = default("heads.training.patience")
    min_epochs: int = default("heads.training.min_epochs")
    learning_rate: float = default("heads.training.learning_rate")
    weight_decay: float = default("heads.training.weight_decay")
    batch_size: int = default("heads.training.batch_size")
    seeds: int = default("heads.training.seeds")  # trainings from seed, seed + 1, ...: their spread is reported


@dataclass(frozen=True)
class FinetuneSettings(HeadSettings):
    """Training the encoder and a head together (rule finetune)."""

    head: str = default("finetune.head")  # the seed's two models: hierarchical | mean
    epochs: int = default("finetune.epochs")
    patience: int = default("finetune.patience")
    min_epochs: int = default("finetune.min_epochs")
    max_windows: int = default("finetune.max_windows")  # windows of a sequence per step (random); all to evaluate
    sequences_per_step: int = default("finetune.sequences_per_step")
    accumulate: int = default("finetune.accumulate")  # steps whose gradients add up before one optimiser step
    encoder_learning_rate: float = default("finetune.encoder_learning_rate")
    head_learning_rate: float = default("finetune.head_learning_rate")
    warmup_fraction: float = default("finetune.warmup_fraction")
    weight_decay: float = default("finetune.weight_decay")
    gradient_checkpointing: bool = default("finetune.gradient_checkpointing")
    lora_r: int = default("finetune.lora.r")  # > 0: train LoRA adapters of this rank, not every encoder weight
    lora_alpha: int = default("finetune.lora.alpha")
    lora_dropout: float = default("finetune.lora.dropout")
    precision: str = default("finetune.precision")  # auto: bf16 autocast on a GPU, fp32 on the CPU | fp32 | bf16
    seeds: int = default("finetune.seeds")  # fine-tunings from seed, seed + 1, ...: their spread is reported

    def _params(self, params: dict) -> dict:
        params = super()._params(params)
        if params.get("seeds") == 1:  # one fine-tuning, as before the key existed: nothing re-runs
            params.pop("seeds")
        return params

    def optimiser_params(self) -> dict:
        """How an encoder is trained, apart from any head or split: what base annotation shares
        with fine-tuning (rule train_annotator's params)."""
        return {key: getattr(self, key) for key in OPTIMISER_KEYS}

    def check(self) -> None:
        super().check()
        if self.head not in ("hierarchical", "mean"):
            raise InputError(f"finetune.head is {self.head!r}", fix="use hierarchical or mean")


@dataclass(frozen=True)
class PretrainSettings:
    """Masked-language-model (continued) pretraining on reference FASTAs (rule pretrain)."""

    epochs: int = default("pretrain.epochs")
    windows_per_epoch: int = default("pretrain.windows_per_epoch")  # 0: every window of the FASTAs
    batch_size: int = default("pretrain.batch_size")
    learning_rate: float = default("pretrain.learning_rate")
    warmup_fraction: float = default("pretrain.warmup_fraction")
    weight_decay: float = default("pretrain.weight_decay")
    mask_fraction: float = default("pretrain.mask_fraction")
    heldout_fraction: float = default("pretrain.heldout_fraction")  # windows kept out to score the model
    max_n_fraction: float = default("pretrain.max_n_fraction")
    precision: str = default("pretrain.precision")
    seed: int = default("pretrain.seed")


# ------------------------------------------------------------------ stage 5


@dataclass(frozen=True)
class ClassifySettings:
    pretrained_head: str = default("classify.pretrained_head")  # set: annotate with it, train nothing
    shards_per_job: int = default("classify.shards_per_job")
    tracks: bool = default("classify.tracks")
    kmer_baseline: bool = default("classify.kmer_baseline")  # also classify with the k-mer baseline


@dataclass(frozen=True)
class VariantSettings:
    vcf: str = default("variants.vcf")  # set: the run scores the VCF's variants
    regions: str = default("variants.regions")
    ref_mismatch: str = default("variants.ref_mismatch")  # stop | skip
    per_shard: int = default("variants.per_shard")
    zero_shot: bool = default("variants.zero_shot")
    context: bool = default("variants.context")  # also score in the region that holds the variant


@dataclass(frozen=True)
class MutagenesisSettings:
    regions: str = default("mutagenesis.regions")  # set: saturation mutagenesis of these regions
    max_length: int = default("mutagenesis.max_length")


@dataclass(frozen=True)
class AnnotationSettings:
    """`annotation:`: labelling every base of the reference (`dnalm.annotation`)."""

    features: str = default("annotation.features")  # set: the run annotates the genome
    alone: bool = default("annotation.alone")  # and classifies no sequence
    classes: tuple[str, ...] = tuple(default("annotation.classes"))
    stranded: bool = default("annotation.stranded")
    test_contigs: tuple[str, ...] = tuple(default("annotation.test_contigs"))  # set: split by contig
    test_fraction: float = default("annotation.test_fraction")  # else: the last part of every contig
    val_fraction: float = default("annotation.val_fraction")
    encoder: str = default("annotation.encoder")  # finetune | frozen
    epochs: int = default("annotation.epochs")
    patience: int = default("annotation.patience")
    windows_per_epoch: int = default("annotation.windows_per_epoch")
    batch_size: int = default("annotation.batch_size")
    min_length: int = default("annotation.min_length")
    per_shard: int = default("annotation.per_shard")
    seed: int = default("annotation.seed")
    baseline_kmer: int = default("annotation.baseline.kmer")
    baseline_flank: int = default("annotation.baseline.flank")
    baseline_bases: int = default("annotation.baseline.bases")

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "test_contigs", tuple(self.test_contigs))

    @classmethod
    def from_section(cls, section: dict) -> "AnnotationSettings":
        c = complete({"annotation": section})["annotation"]
        baseline = {f"baseline_{k}": v for k, v in c.pop("baseline").items()}
        return cls(**c, **baseline)

    def _without(self, *keys: str) -> dict:
        params = asdict(self)
        for key in keys:
            params.pop(key)
        return params

    def training_params(self) -> dict:
        """What the trained model depends on (rule train_annotator's params): not how it
        is called or how inference is sharded."""
        return self._without("alone", "min_length", "per_shard", "baseline_kmer", "baseline_flank", "baseline_bases")

    def gather_params(self) -> dict:
        """What the calls and scores depend on beyond their inputs (rule gather_annotation)."""
        return self._without("alone", "per_shard")

    def baseline_params(self) -> dict:
        """What the per-base k-mer baseline depends on (rule annotation_baseline's params):
        the classes, the split and its own keys, not the model's training."""
        return self._without("alone", "encoder", "epochs", "patience", "windows_per_epoch", "batch_size",
                             "min_length", "per_shard")


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class RunSettings:
    """A whole configuration, as the package sees it."""

    outdir: str
    logdir: str
    input: InputSettings
    windows: WindowSpec
    encoder: EncoderSettings
    heads: tuple[str, ...]  # heads.train: heads trained on frozen vectors
    train: TrainSettings
    finetune: FinetuneSettings
    finetune_active: bool
    pretrain: PretrainSettings
    pretrain_active: bool
    pretrain_fasta: tuple[str, ...]  # empty: the run's own FASTA
    baseline_kmer: int
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    variants: VariantSettings = field(default_factory=VariantSettings)
    mutagenesis: MutagenesisSettings = field(default_factory=MutagenesisSettings)
    annotation: AnnotationSettings = field(default_factory=AnnotationSettings)

    @property
    def annotating(self) -> bool:
        """An annotation run: a trained head classifies, nothing is trained."""
        return bool(self.classify.pretrained_head)


def from_config(config: dict) -> RunSettings:
    """The settings of a configuration (validated by the Snakefile against the schema;
    keys it leaves out take the schema's defaults)."""
    c = complete(config)
    heads, training, finetune, pretrain = c["heads"], c["heads"]["training"], c["finetune"], c["pretrain"]
    from_training = ("val_fraction", "val_by", "val_block", "select_by", "class_weights", "seed")
    shared = dict(pooling=heads["pooling"], max_n_fraction=heads["max_n_fraction"], **heads["hierarchical"],
                  task=heads["task"], targets=tuple(heads["targets"] or ()), regression_loss=heads["regression_loss"],
                  **{k: training[k] for k in from_training})
    learner = {k: v for k, v in training.items() if k not in from_training}
    tuner = {k: v for k, v in finetune.items() if k not in ("activate", "lora")}  # seeds included
    lora = {f"lora_{k}": v for k, v in finetune["lora"].items()}
    encoder = c["encoder"]
    return RunSettings(
        outdir=c["outdir"], logdir=c["logdir"],
        input=InputSettings.from_section(c["input"]),
        windows=WindowSpec(**c["windows"], mirrored=c["encoder"]["strands"] == "both"),
        encoder=EncoderSettings(
            source=encoder["source"],
            spec=EncoderSpec(**{k: v for k, v in encoder.items() if k not in ("source", "tiny")}),
            tiny=TinyEncoder(**encoder["tiny"])),
        heads=tuple(heads["train"]),
        train=TrainSettings(**shared, **learner),
        finetune=FinetuneSettings(**shared, **tuner, **lora),
        finetune_active=finetune["activate"],
        pretrain=PretrainSettings(**{k: v for k, v in pretrain.items() if k not in ("activate", "fasta")}),
        pretrain_active=pretrain["activate"],
        pretrain_fasta=tuple(pretrain["fasta"]),
        baseline_kmer=c["baselines"]["kmer"],
        classify=ClassifySettings(**c["classify"]),
        variants=VariantSettings(**c["variants"]),
        mutagenesis=MutagenesisSettings(**c["mutagenesis"]),
        annotation=AnnotationSettings.from_section(c["annotation"]),
    )
