"""What a finished run prints: where the tables are, one line of test metrics per head
and per baseline, the model validation picks, warnings (a head predicting one class,
windows shared between splits), the tracks and the report."""

from __future__ import annotations

import json
from pathlib import Path

from ..learning.metrics import (
    baseline_keys,
    baseline_label,
    choice_line,
    leak_line,
    spread_line,
    summary_line,
    task_name,
)
from .dag import RunPlan

TRACKS = {"classification": "calls.bed, prob_<class>.bedGraph and .bw",
          "regression": "pred_<target>.bedGraph and .bw",
          "multilabel": "calls.bed, prob_<label>.bedGraph and .bw"}


def print_summary(plan: RunPlan) -> None:
    out = plan.outdir
    print("\ndnalm finished." + (" Per-sequence tables:" if plan.classifiers else ""))
    heads = {}
    task = plan.task
    for head in plan.heads:
        print(f"  {out}/classify/{head}/predictions.tsv (and .parquet)")
        metrics = Path(f"{out}/heads/{head}/metrics.json")
        if metrics.exists() and not plan.settings.annotating:
            heads[head] = json.loads(metrics.read_text())
            task = task_name(heads[head])
            print(f"    {summary_line(f'{head} head', heads[head]['test'], task)}  [{metrics}]")
            if "seeds" in heads[head]:
                print(f"    {spread_line(heads[head]['seeds'], task)}")
            for warning in heads[head].get("warnings", []):
                print(f"    warning: {warning}")
    for head, folder in plan.kmer_heads.items():
        print(f"  {out}/classify/{head}/predictions.tsv (and .parquet): the k-mer head {folder}, from bases")
    baselines = Path(f"{out}/baselines/metrics.json")
    if plan.trained_heads and baselines.exists():
        found = json.loads(baselines.read_text())
        print(f"  baselines on the same splits [{baselines}]:")
        task = task_name(found)
        for key in baseline_keys(found):
            print(f"    {summary_line(baseline_label(key, task), found[key]['test'], task)}")
        if "leak" in found:
            print(f"  {leak_line(found['leak'])}")
        if heads:
            print(f"  {choice_line(heads, found)}")
    if plan.settings.classify.tracks and plan.classifiers:
        print(f"  tracks: {out}/classify/<head>/tracks/ ({TRACKS[task]}; tracks.tsv maps them to files)")
    if plan.variants:
        print(f"  variants: {plan.variants.scored} scored, {plan.variants.skipped} ALT(s) skipped (why: "
              f"{out}/variants/skipped.tsv): {out}/variants/scores.tsv (and .parquet), {out}/variants/scored.vcf.gz "
              "(+ .tbi; the scores as INFO fields)")
    if plan.mutagenesis:
        print(f"  mutagenesis: {plan.mutagenesis.scored} single-base changes scored: {out}/mutagenesis/scores.tsv "
              f"(and .parquet), tracks/ (per-base bigWig per score), heatmap.png")
    if plan.annotation:
        print_annotation(out)
    print("  report: snakemake --report report.html (with the same --configfile options)")


def print_annotation(out: str) -> None:
    """Per class, the test part's per-base F1 and exactly found features of the model and the
    baselines (annotate/metrics.json), and where the calls and tracks are."""
    path = Path(f"{out}/annotate/metrics.json")
    print(f"  base annotation: {out}/annotate/calls.gff3 (and calls.bed), tracks/<class>.bw, metrics.tsv")
    if not path.exists():
        return
    found = json.loads(path.read_text())
    for model, per_class in found["test"].items():
        parts = []
        for name, m in per_class.items():
            f1, exact = m["per_base"]["f1"], m["per_feature"]["exact"]["sensitivity"]
            parts.append(f"{name} per-base F1 {'n/a' if f1 is None else f'{f1:.3f}'}, features exact "
                         f"{'n/a' if exact is None else f'{exact:.3f}'}")
        print(f"    test, {model}: " + "; ".join(parts))
    for warning in found.get("warnings", []):
        print(f"    warning: {warning}")
