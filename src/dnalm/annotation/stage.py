"""The annotation stage as the workflow plans it, before any job: the features read and
checked (file:line), the split checked to leave every part something to learn or score,
and the inference shards counted from the reference's lengths (so a dry run shows every
annotate_shard job)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..errors import InputError
from ..inputs.fasta import read_fai
from ..inputs.plan import file_state
from ..io import write_json_atomic
from ..settings import RunSettings, check_lora_rank
from ..windows.shards import shard_name
from . import features as features_module
from . import split as split_module
from .features import annotation_classes, read_features
from .split import shard_count, split_genome


@dataclass(frozen=True)
class AnnotationPlan:
    features: str
    classes: tuple[str, ...]  # class names (track and call names), background excluded
    shards: int  # annotate_shard jobs
    finetune: bool  # the encoder is trained with the head (a fine-tuned encoder folder is written)
    features_per_class: dict
    key: str = ""  # what the checks were made from (the cache's key)

    def shard_names(self) -> list[str]:
        return [shard_name(i) for i in range(self.shards)]


def _plan_key(settings: RunSettings, fasta: str) -> str:
    """A digest of what the checked plan is made from: the annotation and window settings,
    the features file, the reference and its index, and the code that reads them."""
    code = b"".join(Path(m.__file__).read_bytes() for m in (features_module, split_module, sys.modules[__name__]))
    state = {"version": __version__, "code": hashlib.sha256(code).hexdigest(),
             "annotation": asdict(settings.annotation), "strands": settings.encoder.spec.strands,
             "windows": [settings.windows.size, settings.windows.stride],
             "files": [file_state(f) for f in (settings.annotation.features, fasta, f"{fasta}.fai")]}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _plan_file(outdir: str) -> Path:
    return Path(outdir) / ".dnalm" / "annotation_plan.json"


def plan_annotation(settings: RunSettings, fasta: str, hidden_size: int | None, outdir: str) -> AnnotationPlan:
    """The annotation's plan, every check made; the features file is read again only when
    it, the reference or the settings changed since the plan was saved (`save_annotation_plan`,
    at the start of a run): a cluster job builds the DAG again, and a human GFF3 takes seconds."""
    a = settings.annotation
    if 2 * a.baseline_flank + 1 < a.baseline_kmer:
        raise InputError(f"annotation.baseline.flank ({a.baseline_flank}) counts {2 * a.baseline_flank + 1} bases "
                         f"around a base, fewer than one {a.baseline_kmer}-mer: the baseline would count nothing",
                         fix=f"set annotation.baseline.flank to at least {a.baseline_kmer // 2}")
    finetune = a.encoder == "finetune"
    if finetune:
        check_lora_rank(settings.finetune.lora_r, hidden_size)
    key = _plan_key(settings, fasta)
    try:
        cached = json.loads(_plan_file(outdir).read_text())
        if cached.get("key") == key:
            return AnnotationPlan(**{**cached, "classes": tuple(cached["classes"])})
    except (OSError, ValueError, TypeError):
        pass
    lengths = read_fai(fasta)
    classes = annotation_classes(list(a.classes), a.stranded)
    features = read_features(a.features, lengths, {c.type for c in classes})
    split_genome(lengths, a, settings.windows.size, a.features)
    counts = {}
    for c in classes:
        rows = features["type"] == c.type
        if c.strand:
            rows &= features["strand"] == c.strand
        counts[c.name] = int(rows.sum())
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        print(f"note: no feature of class {', '.join(empty)} in {a.features}: every base of it is background",
              file=sys.stderr)
    return AnnotationPlan(a.features, tuple(c.name for c in classes),
                          shard_count(lengths, settings.windows.size, settings.windows.stride, a.per_shard,
                                      settings.encoder.spec.strands == "both"),
                          finetune, counts, key)


def save_annotation_plan(plan: AnnotationPlan, outdir: str) -> None:
    write_json_atomic(_plan_file(outdir), asdict(plan))
