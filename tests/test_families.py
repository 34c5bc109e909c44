"""Every encoder family through the real workflow, by configuration alone: a model
folder written by save_pretrained (as a hub checkpoint is), `encoder.source:
pretrained`, and nothing else."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.workflow import Workdir

from dnalm.io import read_provenance

pytestmark = pytest.mark.workflow

ORCHIDS = {"mode": "fasta", "sequences": "data/orchid_its.fa.gz", "labels": "data/orchid_its_labels.tsv"}
STRANDS = {"nucleotide_transformer": "single", "bpe": "both", "per_base": "single"}


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory, tiny_models) -> dict[str, tuple[Workdir, object]]:
    """One labelled run per non-DNABERT family (the DNABERT runs are the rest of the suite)."""
    runs = {}
    for family, strands in STRANDS.items():
        workdir = Workdir(tmp_path_factory.mktemp(family) / "wd")
        cfg = workdir.write_config(f"{family}.yaml", {
            "input": ORCHIDS, "heads": {"train": ["mean"]},
            "encoder": {"source": "pretrained", "model": str(tiny_models[family]), "strands": strands}})
        runs[family] = (workdir, workdir.snakemake(configs=[cfg]))
    return runs


@pytest.mark.parametrize("family, tokenizer", [("nucleotide_transformer", "nt-6mer"), ("bpe", "byte-pair"),
                                               ("per_base", "per-base")])
def test_family_runs_through_the_workflow(family_runs, family, tokenizer):
    workdir, run = family_runs[family]
    strands = STRANDS[family]
    assert "dnalm finished" in run.output
    out = workdir.path("results")
    table = pd.read_csv(out / "classify/mean/predictions.tsv", sep="\t")
    assert len(table) == 94 and table["pred_label"].notna().all()
    metrics = json.loads((out / "heads/mean/metrics.json").read_text())
    assert metrics["test"]["n"] > 0 and metrics["test"]["accuracy"] is not None
    shards = sorted(out.glob("embeddings/shard_*.parquet"))
    prov = read_provenance(shards[0])
    assert prov["family"] == ("hf_tokenizer" if family in ("bpe", "per_base") else family)
    assert prov["tokenizer"] == tokenizer and prov["strands"] == strands and prov["hidden_size"] == 32
    tokens = pq.read_table(shards[0], columns=["tokens"]).column("tokens").to_numpy()
    assert (tokens > 0).all()
    head = json.loads((out / "heads/mean/head.json").read_text())
    assert head["encoder"]["tokenizer"] == tokenizer and head["encoder"]["strands"] == strands
    # every torch job kept to its rule's single thread
    for log in ("embed_shard/00000.log", "train_head/mean.log"):
        assert "threads: 1 (torch 1, interop 1, tokenizers 1)" in workdir.path(f"logs/{log}").read_text(), log


def test_head_of_another_strand_setting_is_refused_before_any_job(family_runs, tiny_models):
    """A head trained on single-strand vectors cannot read reverse-complement averages."""
    workdir, _ = family_runs["nucleotide_transformer"]
    model = {"source": "pretrained", "model": str(tiny_models["nucleotide_transformer"])}
    annotate = workdir.write_config("both.yaml", {
        "outdir": "annotate", "logdir": "logs_annotate", "input": {**ORCHIDS, "labels": ""},
        "encoder": {**model, "strands": "both"},
        "classify": {"pretrained_head": str(workdir.path("results/heads/mean"))}})
    run = workdir.snakemake("-n", configs=[annotate], check=False)
    assert run.returncode != 0
    assert "strands='single'" in run.output and "strands='both'" in run.output and "Fix:" in run.output
    # the same head with the strand setting it was trained with plans fine
    same = workdir.write_config("same.yaml", {
        "outdir": "annotate", "logdir": "logs_annotate", "input": {**ORCHIDS, "labels": ""}, "encoder": model,
        "classify": {"pretrained_head": str(workdir.path("results/heads/mean"))}})
    assert workdir.snakemake("-n", configs=[same]).returncode == 0


def test_tiny_byte_pair_encoder_builds_inside_the_workflow(workdir):
    """encoder.source tiny of another family: the build rule makes it; the byte-pair one trains its
    tokenizer on the run's own FASTA. (The other tiny families are built by tests/test_cli.py.)"""
    cfg = workdir.write_config("tiny_bpe.yaml", {"input": ORCHIDS, "heads": {"train": ["mean"]},
                                                 "encoder": {"tiny": {"family": "bpe"}}})
    workdir.snakemake("--until", "embed_shard", configs=[cfg])
    prov = read_provenance(next(workdir.path("results").glob("embeddings/shard_*.parquet")))
    assert prov["tokenizer"] == "byte-pair" and prov["family"] == "hf_tokenizer"
    made = json.loads(workdir.path("results/encoder/tiny/dnalm_tiny_encoder.json").read_text())
    assert made["trained_on"] == "data/orchid_its.fa.gz"
