"""encoder.strands: both promises a result that does not depend on the strand a sequence
is read from: a region given on + and on - gets the same probabilities from every head."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.workflow import REPO, Workdir, write_bed_subset

pytestmark = pytest.mark.workflow


def test_every_head_gives_a_region_on_either_strand_one_result(tmp_path):
    wd = Workdir(tmp_path / "wd")
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("train.bed"), 10)
    # 22 unlabelled regions, each on both strands; lengths whose slack (length - 512) is and is not
    # a multiple of the stride, odd and even.
    pairs = []
    for i in range(22):
        start, length = 1_000_000 + i * 7_919, (700, 1000, 1301, 1792)[i % 4]
        pairs += [f"NC_000913.3\t{start}\t{start + length}\tpair{i}{s}\t0\t{strand}\n"
                  for s, strand in (("p", "+"), ("m", "-"))]
    wd.path("regions.bed").write_text(wd.path("train.bed").read_text() + "".join(pairs))
    cfg = wd.write_config("both.yaml", {
        "input": {"mode": "bed", "bed": "regions.bed"}, "encoder": {"strands": "both"},
        "finetune": {"activate": True, "epochs": 1, "max_windows": 2, "gradient_checkpointing": False}})
    wd.snakemake(configs=[cfg])
    for head in ("hierarchical", "mean", "finetuned"):
        table = pd.read_csv(wd.path(f"results/classify/{head}/predictions.tsv"), sep="\t").set_index("seq_id")
        probs = [c for c in table.columns if c.startswith("prob_")]
        plus = table.loc[[f"pair{i}p" for i in range(22)]]
        minus = table.loc[[f"pair{i}m" for i in range(22)]]
        gap = (plus[probs].to_numpy() - minus[probs].to_numpy())
        assert abs(gap).max() < 1e-5, (head, abs(gap).max())
        assert plus["pred_label"].tolist() == minus["pred_label"].tolist(), head
