"""What a finished run prints: where the tables are, one line of test metrics per head
and per baseline, the model validation picks, warnings (a head predicting one class,
windows shared between splits), the tracks and the report."""

from __future__ import annotations

import json
from pathlib import Path

from ..learning.metrics import baseline_keys, baseline_label, choice_line, leak_line, spread_line, summary_line
from .dag import RunPlan


def print_summary(plan: RunPlan) -> None:
    out = plan.outdir
    print("\ndnalm finished. Per-sequence tables:")
    heads = {}
    for head in plan.heads:
        print(f"  {out}/classify/{head}/predictions.tsv (and .parquet)")
        metrics = Path(f"{out}/heads/{head}/metrics.json")
        if metrics.exists() and not plan.settings.annotating:
            heads[head] = json.loads(metrics.read_text())
            print(f"    {summary_line(f'{head} head', heads[head]['test'])}  [{metrics}]")
            if "seeds" in heads[head]:
                print(f"    {spread_line(heads[head]['seeds'])}")
            for warning in heads[head].get("warnings", []):
                print(f"    warning: {warning}")
    baselines = Path(f"{out}/baselines/metrics.json")
    if plan.trained_heads and baselines.exists():
        found = json.loads(baselines.read_text())
        print(f"  baselines on the same splits [{baselines}]:")
        for key in baseline_keys(found):
            print(f"    {summary_line(baseline_label(key), found[key]['test'])}")
        if "leak" in found:
            print(f"  {leak_line(found['leak'])}")
        if heads:
            print(f"  {choice_line(heads, found)}")
    if plan.settings.classify.tracks:
        print(f"  tracks: {out}/classify/<head>/tracks/ (calls.bed, prob_<class>.bedGraph and .bw; tracks.tsv "
              "maps classes to files)")
    print("  report: snakemake --report report.html (with the same --configfile options)")
