"""The plan of a run, made when Snakemake builds the DAG (rules/common.smk calls
`plan_run` once): the settings, the input plan, the shard and classification-job plans,
the encoder chain, and every check that can refuse bad input before any job runs (a GPU
hour on a cluster is the expensive part). Imports no torch.

The encoder chain: the configured model -> [pretrain] -> [finetune] -> embeddings. Each
step hands the next a model folder (a directory output) like any checkpoint; a local model
reaches jobs through its files (rule inputs, so replacing its weights re-runs what depends
on them), a hub id, which has no local path to track, through a param.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..annotation.stage import AnnotationPlan, plan_annotation
from ..encoders import ModelFolder, identify, is_local, masked_lm_head_in, preflight, window_fit
from ..encoders.tiny import planned_identity, tiny_positions, tiny_window_limits
from ..errors import InputError
from ..identity import EmbeddingSpace
from ..inputs.fasta import (
    check_pretrain_lengths,
    ensure_fasta_index,
    is_plain_gzip,
    reference_dir,
)
from ..inputs.plan import InputPlan, plan_inputs
from ..inputs.sources import RegionSource, source_for
from ..inputs.targets import target_kind
from ..io import write_json_atomic
from ..learning.kmer_head import KMER_HEAD, is_kmer_head
from ..outputs.classify import ClassifyJob, classify_jobs
from ..settings import (
    RunSettings,
    check_hierarchical_shape,
    check_lora_rank,
    from_config,
)
from ..variants.stage import VariantPlan, plan_mutagenesis, plan_variants
from ..windows.shards import plan_shards, shard_name
from .jobs import check_run_folder


@dataclass
class EncoderChain:
    """Which model each encoder-loading rule starts from, as files (a local model or the
    previous step's folder) or a hub id."""

    note: str  # said once when the DAG is built ("" when there is nothing to say)
    space: EmbeddingSpace  # what the embeddings will be, as far as it is known before any job
    folder: ModelFolder | None  # the configured model's files (None: a tiny one, built by the run)
    model_dir: str  # the configured model's folder (or hub id), or where build_tiny_encoder writes it
    model_files: list[str]  # what pretrain (else finetune, else embed_shard) reads
    hub_id: str
    base_files: list[str] = field(default_factory=list)  # what finetune starts from
    base_hub_id: str = ""
    embed_files: list[str] = field(default_factory=list)  # what embed_shard embeds with
    embed_hub_id: str = ""


# The report's figures of a trained run (`outputs.report`), by task.
REPORT_FIGURES = {"classification": ("confusion", "roc_pr"), "regression": ("scatter",), "multilabel": ("roc_pr",)}


@dataclass
class RunPlan:
    settings: RunSettings
    outdir: str
    logdir: str
    source: RegionSource
    inputs: InputPlan
    shards: list[str]
    classify_jobs: list[ClassifyJob]
    encoder: EncoderChain
    heads: list[str]  # every head that classifies embeddings: trained ones, `finetuned`, or `pretrained`
    head_dirs: dict[str, str]
    pretrained_head: dict = field(default_factory=dict)  # its head.json, in an annotation run
    pretrain_fastas: list[str] = field(default_factory=list)
    # Heads that classify from bases (`learning.kmer_head`): the run's own k-mer baseline
    # (`classify.kmer_baseline`), or in an annotation run a k-mer head, which needs no embeddings.
    kmer_heads: dict[str, str] = field(default_factory=dict)  # name -> folder
    variants: VariantPlan | None = None  # variants.vcf set: the variants to score, checked
    mutagenesis: VariantPlan | None = None  # mutagenesis.regions set: the changes to score
    annotation: AnnotationPlan | None = None  # annotation.features set: the genome labelled base by base
    # The masked-LM model of the variants' zero-shot score (files, hub id); empty: no LLR.
    zero_shot_files: list[str] = field(default_factory=list)
    zero_shot_hub_id: str = ""

    @property
    def scoring(self) -> dict[str, VariantPlan]:
        """The variant studies of the run (folder under outdir -> plan): what score_variants scores."""
        return {name: plan for name, plan in (("variants", self.variants), ("mutagenesis", self.mutagenesis))
                if plan is not None}

    def scoring_shards(self, study: str) -> list[str]:
        return [shard_name(i) for i in range(self.scoring[study].shards)]

    @property
    def classifiers(self) -> list[str]:
        """Every name under classify/: the heads, then the k-mer heads."""
        return self.heads + list(self.kmer_heads)

    @property
    def embeds(self) -> bool:
        """Whether the run embeds windows at all (not an annotation run with a k-mer head)."""
        return bool(self.heads)

    @property
    def trained_heads(self) -> list[str]:
        return [] if self.settings.annotating else self.heads

    @property
    def task(self) -> str:
        """What the heads predict (`heads.task`; in an annotation run, the pretrained head's)."""
        if self.settings.annotating:
            return (self.pretrained_head.get("task") or {}).get("name", "classification")
        return self.settings.train.task

    @property
    def report_figures(self) -> dict[str, str]:
        """The report's figures of the heads' metrics (rule report_metrics), by task."""
        return {name: f"{self.outdir}/report/{name}.png" for name in REPORT_FIGURES[self.task]}

    @property
    def finetune(self) -> bool:
        return self.settings.finetune_active and not self.settings.annotating and bool(self.heads)

    @property
    def pretrain(self) -> bool:
        return self.settings.pretrain_active

    @property
    def classify_groups(self) -> list[str]:
        return [shard_name(i) for i in range(len(self.classify_jobs))]

    @property
    def fasta(self) -> str:
        """The FASTA the jobs read: the configured one, or under <outdir>/reference/ a symlink
        to it with an index (read-only folder) or the bgzip copy rule bgzip_fasta makes of
        plain gzip."""
        return self.inputs.fasta.path

    @property
    def attention(self) -> tuple[int, int]:
        """(attention heads, windows per attention block) of the hierarchical head that
        classifies this run ((0, 0) when none does): a classification job's memory."""
        if self.settings.annotating:
            head = self.pretrained_head
            return (head.get("attention_heads", 0), head.get("attention_block", 256)) \
                if head.get("kind") == "hierarchical" else (0, 0)
        if trains_hierarchical(self.settings, self.heads):
            shape = self.settings.train
            return shape.attention_heads, shape.attention_block
        return 0, 0


def header_like_note(contigs: list[str]) -> str:
    shown = ", ".join(repr(c) for c in contigs[:3]) + (f" and {len(contigs) - 3} more" if len(contigs) > 3 else "")
    return (f"note: BED readers (bedtools, genome browsers) take lines starting with '#', 'track' or 'browser' for "
            f"headers, so calls.bed and the bedGraph tracks leave out the rows of contig(s) {shown}; the bigWig "
            "tracks and the per-sequence tables keep them. To have them in the BED files too, rename those contigs "
            "in the FASTA (and the BED).")


def trains_hierarchical(settings: RunSettings, heads: list[str]) -> bool:
    """A head this run trains is hierarchical: the frozen one, or the fine-tuned model's."""
    return "hierarchical" in heads or ("finetuned" in heads and settings.finetune.head == "hierarchical")


def plan_run(config: dict) -> RunPlan:
    """Everything the rules need, checked; any bad input is one InputError."""
    settings = from_config(config)
    outdir = check_run_folder(settings.outdir, "outdir")
    logdir = check_run_folder(settings.logdir, "logdir")
    settings.windows.check()
    source = source_for(settings.input)
    # The shard plan comes from sequence lengths, so the DAG is static and a dry run shows
    # every embedding job. The input plan is read back from its cache while the inputs are
    # unchanged (inputs.plan).
    inputs = plan_inputs(source, outdir)
    if inputs.header_like and settings.classify.tracks:
        print(header_like_note(inputs.header_like), file=sys.stderr)
    shards = [shard_name(i) for i in range(plan_shards(inputs.lengths, settings.windows))]
    jobs = classify_jobs(inputs.lengths, settings.windows, settings.classify.shards_per_job)
    pretrained = _read_pretrained_head(settings, outdir) if settings.annotating else {}
    if is_kmer_head(pretrained):  # it reads bases: the configured encoder is never loaded, nor checked
        settings = replace(settings, encoder=from_config({}).encoder)
    encoder = _encoder_chain(settings, outdir)
    if settings.annotating and not is_kmer_head(pretrained):
        _check_head_encoder(settings, pretrained, encoder, outdir)
    kmer_heads = {}
    if settings.annotating and is_kmer_head(pretrained):
        heads, kmer_heads = [], {"pretrained": settings.classify.pretrained_head}
    elif settings.annotating:
        heads = ["pretrained"]
    elif settings.annotation.features and (settings.annotation.alone or not inputs.labelled):
        heads = []  # base annotation alone: asked for, or no sequence has a label to learn from
    else:
        heads = _trained_heads(settings, source, inputs)
        if settings.classify.kmer_baseline:
            kmer_heads = {KMER_HEAD.format(k=settings.baseline_kmer): kmer_head_dir(outdir, settings.baseline_kmer)}
    plan = RunPlan(settings, outdir, logdir, source, inputs, shards, jobs, encoder, heads,
                   {head: settings.classify.pretrained_head if head == "pretrained" else f"{outdir}/heads/{head}"
                    for head in heads}, pretrained, kmer_heads=kmer_heads)
    plan.pretrain_fastas = _pretrain_fastas(settings, plan.fasta, outdir) if plan.pretrain else [plan.fasta]
    _chain_steps(plan)
    if settings.variants.vcf or settings.mutagenesis.regions:
        _plan_variants(plan)
    if settings.annotation.features:
        _plan_annotation(plan)
    return plan


def _plan_annotation(plan: RunPlan) -> None:
    """The genome's base annotation: features and split checked before any job. It trains
    from the model fine-tuning would start from (configured or pretrained)."""
    if not (plan.encoder.base_files or plan.encoder.base_hub_id) or plan.kmer_heads and not plan.heads:
        raise InputError("annotation.features is set, but this run classifies with a k-mer head and loads no "
                         "encoder to annotate with", fix="annotate in a run with an encoder (no k-mer "
                                                         "classify.pretrained_head)")
    plan.annotation = plan_annotation(plan.settings, plan.fasta, plan.encoder.space.encoder.hidden_size,
                                      plan.outdir)


def _plan_variants(plan: RunPlan) -> None:
    """The variants to score, checked against the reference before any job, and the model
    of their zero-shot score: the chain's masked LM (the configured or pretrained model;
    fine-tuning keeps no masked-LM head)."""
    settings = plan.settings
    if not plan.heads:
        raise InputError("variants.vcf or mutagenesis.regions is set, but this run classifies with a k-mer head, "
                         "which reads no windows a variant changes through a language model",
                         path=settings.classify.pretrained_head,
                         fix="score variants in a labelled run, or with a head trained on embeddings")
    if plan.inputs.fasta.recompress:
        raise InputError("variants are read against the reference before any job, which needs it bgzipped or plain, "
                         "not gzip", path=plan.inputs.fasta.source,
                         fix=f"recompress it: zcat {plan.inputs.fasta.source} | bgzip > reference.fa.gz")
    if settings.variants.vcf:
        plan.variants = plan_variants(settings.variants, plan.fasta, settings.windows.size, plan.outdir,
                                      tuple(plan.heads))
    if settings.mutagenesis.regions:
        plan.mutagenesis = plan_mutagenesis(settings.mutagenesis, plan.fasta, settings.windows.size,
                                            settings.variants.per_shard)
    chain = plan.encoder
    if settings.variants.zero_shot and _has_masked_lm_head(plan):
        plan.zero_shot_files, plan.zero_shot_hub_id = chain.base_files, chain.base_hub_id


def _has_masked_lm_head(plan: RunPlan) -> bool:
    """Whether the model the chain starts fine-tuning from carries a masked-LM head: the
    tiny encoders and pretrained models do; a configured model where its folder says so
    (a native port's form, else a *ForMaskedLM architecture with LM-head weights)."""
    if plan.pretrain or plan.settings.encoder.source == "tiny":
        return True
    folder = plan.encoder.folder
    has = masked_lm_head_in(folder)
    if not has:
        print(f"note: {folder.path} has no masked-LM head, so variants get no zero-shot score (llr)", file=sys.stderr)
    return has


def kmer_head_dir(outdir: str, k: int) -> str:
    """Where the baselines rule saves its k-mer model as a head."""
    return f"{outdir}/baselines/{KMER_HEAD.format(k=k)}"


def _encoder_chain(settings: RunSettings, outdir: str) -> EncoderChain:
    """The configured model, checked from its files (no torch): it exists, ships no code
    the user did not allow, its weights are whole, and a window fits it."""
    enc, windows = settings.encoder, settings.windows
    if enc.source == "tiny":
        tiny = enc.tiny
        note = window_fit(windows.size, tiny_window_limits(tiny.family, tiny.kmer), tiny_positions(tiny.family),
                          f"tiny {tiny.family}", "encoder.tiny")
        identity = planned_identity(tiny)
        model_dir = f"{outdir}/encoder/tiny"
        files = [model_dir]  # a directory() output of build_tiny_encoder
        folder = None
    else:
        # A missing/unfit model, an uncached hub id, or remote code not allowed stops the run here.
        family, note = preflight(enc.spec, windows.size, masked_lm=settings.pretrain_active)
        identity = identify(family, enc.spec.model, enc.spec.revision, hash_weights=False)
        model_dir = enc.spec.model
        # Local files are inputs, so replacing the weights or tokenizer re-runs the embeddings.
        files = [str(p) for p in family.folder.tracked_files()] if is_local(model_dir) else []
        folder = family.folder
    space = EmbeddingSpace(identity, windows.size, windows.stride, enc.spec.strands)
    return EncoderChain(note, space, folder, model_dir, files, "" if files else model_dir)


def _chain_steps(plan: RunPlan) -> None:
    chain = plan.encoder
    chain.base_files, chain.base_hub_id = chain.model_files, chain.hub_id
    if plan.pretrain:
        chain.base_files, chain.base_hub_id = [f"{plan.outdir}/pretrain/encoder"], ""
    chain.embed_files, chain.embed_hub_id = chain.base_files, chain.base_hub_id
    if plan.finetune:
        chain.embed_files, chain.embed_hub_id = [f"{plan.outdir}/finetune/encoder"], ""
        check_lora_rank(plan.settings.finetune.lora_r, chain.space.encoder.hidden_size)


def _read_pretrained_head(settings: RunSettings, outdir: str) -> dict:
    """An annotation run's head.json, from a folder this run will not overwrite."""
    folder = settings.classify.pretrained_head
    if Path(folder).resolve().is_relative_to(Path(f"{outdir}/heads").resolve()):
        raise InputError(
            f"classify.pretrained_head lies inside this run's own heads folder ({outdir}/heads), which this "
            "run would train and overwrite", path=folder,
            fix="give the annotation run its own outdir, or copy the head elsewhere first")
    if not (Path(folder) / "head.json").exists():
        raise InputError("no trained head here (head.json missing)", path=folder,
                         fix="set classify.pretrained_head to a results/heads/<kind> folder of a labelled run "
                             "(or results/baselines/kmer<k> for its k-mer baseline)")
    return json.loads((Path(folder) / "head.json").read_text())


def _check_head_encoder(settings: RunSettings, head: dict, encoder: EncoderChain, outdir: str) -> None:
    """An annotation run's head, checked against what the embeddings will be, before any job:
    the same embedding space, and the very encoder it was trained with (a head trained with
    the fine-tuned encoder reads nothing meaningful from the encoder it started from)."""
    folder = settings.classify.pretrained_head
    trained = EmbeddingSpace.from_dict(head.get("encoder", {}))
    where = f"{folder}/head.json"
    for key, was, now in trained.differences(encoder.space)[:1]:
        raise InputError(
            f"the head was trained on embeddings with {key}={was!r}, but this run's encoder and windows give "
            f"{key}={now!r}", path=where,
            fix=f"run with the encoder and window settings the head was trained with (encoder "
                f"{trained.encoder.model!r}), or train a head for this setting")
    _check_same_encoder(settings, trained, encoder, where, Path(outdir) / ".dnalm")


def _check_same_encoder(settings: RunSettings, trained: EmbeddingSpace, encoder: EncoderChain, where: str,
                        cache_dir: Path) -> None:
    """The encoder a head was trained with is the one this run embeds with: the weights' hash
    of a configured model (cached by file size and mtime), or, for the tiny encoder this run
    builds, the shape and seed of the one the head's run built."""
    model = trained.encoder.model
    fix = (f"set encoder.source: pretrained and encoder.model: {model} (the encoder the head was trained with; "
           "after fine-tuning that is the run's finetune/encoder folder, not the model it started from)")
    if encoder.folder is not None:
        want = trained.encoder.model_sha256
        have = cached_weights_sha256(encoder.folder, cache_dir) if want else None
        if want and have != want:
            raise InputError(
                f"the head was trained on vectors of the encoder at {model}, whose weights differ from those of "
                f"encoder.model ({encoder.folder.path}): its classes would be read from vectors it never saw",
                path=where, fix=fix)
        return
    trained_tiny = Path(model or "") / "dnalm_tiny_encoder.json"
    if not model or not Path(model).is_dir():
        return  # a head of an older run, whose encoder folder is not known: the jobs compare hashes
    built = json.loads(trained_tiny.read_text()) if trained_tiny.exists() else None
    tiny = settings.encoder.tiny
    wanted = {"family": tiny.family, "hidden": tiny.hidden, "layers": tiny.layers, "heads": tiny.attention_heads,
              "seed": tiny.seed}
    if built is None or any(built.get(key) != value for key, value in wanted.items()) or \
            built.get("k", tiny.kmer) != tiny.kmer:
        what = "is not a tiny encoder" if built is None else "is a tiny encoder of another shape or seed"
        raise InputError(
            f"the head was trained on vectors of the encoder at {model}, which {what}: this run would embed with "
            f"the tiny encoder of encoder.tiny, whose vectors the head never saw", path=where, fix=fix)


def cached_weights_sha256(folder: ModelFolder, cache_dir: Path) -> str:
    """`folder.weights_sha256()`, kept in `cache_dir/hashes.json` under the files' sizes and
    mtimes, so every DAG build of a run (each cluster job's) reads the weights once at most."""
    key = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in folder.weight_files()])
    cache = Path(cache_dir) / "hashes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = folder.weights_sha256()
        write_json_atomic(cache, known)
    return known[key]


def _trained_heads(settings: RunSettings, source: RegionSource, inputs: InputPlan) -> list[str]:
    """The heads a labelled run trains, after what can be checked before any (GPU) job:
    labels that `heads.task` can read and learn from (two classes to train on, numbers, ...),
    a head shape that builds."""
    if not inputs.labelled:
        raise InputError(
            f"No sequence has a label, so no head can be trained (input mode {source.mode})",
            fix="give labels (BED label column, or input.labels for a FASTA), or set classify.pretrained_head "
                "to annotate with a trained head")
    heads = list(settings.heads) + (["finetuned"] if settings.finetune_active else [])
    if not heads:
        raise InputError("heads.train is empty and finetune.activate is false: nothing would classify",
                         fix="list heads in heads.train (hierarchical, mean) or set finetune.activate: true")
    settings.train.check_task()
    kind = target_kind(settings.train.task, settings.train.targets)
    for note in kind.check(inputs.classes["train"], inputs.classes["other"], source.label_file or None):
        print(f"note: {note}", file=sys.stderr)
    if trains_hierarchical(settings, heads):
        check_hierarchical_shape(settings.train.d_model, settings.train.attention_heads)
    return heads


def _pretrain_fastas(settings: RunSettings, run_fasta: str, outdir: str) -> list[str]:
    """The FASTAs pretraining reads, their indexes checked now (rebuilt under <outdir>/reference/
    when their folder is read-only), not in the GPU job; at least one window long."""
    fastas = []
    for source in settings.pretrain_fasta or ():
        if Path(source).is_file() and is_plain_gzip(Path(source)):
            raise InputError(
                "pretrain.fasta is compressed with plain gzip, which cannot be read at random", path=source,
                fix=f"recompress it with bgzip (zcat {source} | bgzip > {Path(source).with_suffix('')}.bgz.gz) "
                    "and list that file")
        fastas.append(str(ensure_fasta_index(source, reference_dir(outdir))))
    fastas = fastas or [run_fasta]
    check_pretrain_lengths(fastas, settings.windows.size)
    return fastas
