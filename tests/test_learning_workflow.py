"""Learning through the real workflow: pretraining, fine-tuning and the baselines in a
labelled run; an annotation run that reuses the fine-tuned encoder and head like any
checkpoint; a fine-tuning job killed with SIGKILL mid-epoch that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import psutil
import pytest
from helpers.workflow import REPO, SNAKEMAKE, Workdir, write_bed_subset
from safetensors.torch import load_file

from dnalm.encoders import ModelFolder
from dnalm.io import read_provenance

pytestmark = pytest.mark.workflow

LEARN = {"input": {"mode": "bed", "bed": "regions.bed"},
         "finetune": {"activate": True, "epochs": 2, "max_windows": 2, "gradient_checkpointing": False},
         "pretrain": {"activate": True, "windows_per_epoch": 48, "heldout_fraction": 0.002}}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    wd = Workdir(tmp_path_factory.mktemp("learn") / "wd")
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 12)
    cfg = wd.write_config("learn.yaml", LEARN)
    return wd, wd.snakemake(configs=[cfg])


def test_pretrain_finetune_and_baselines_in_one_labelled_run(learned):
    wd, run = learned
    out = wd.path("results")
    # pretraining wrote a model folder and scored held-out windows against the frequency baseline
    pretrain = json.loads((out / "pretrain/metrics.json").read_text())
    assert pretrain["heldout"]["masked_tokens"] > 0 and pretrain["masking"]["span_tokens"] == 6
    assert pretrain["fasta"] == ["data/ecoli_k12_mg1655_NC_000913.3.fa.gz"]
    # fine-tuning started from it, wrote an encoder folder and the head `finetuned`
    assert json.loads((out / "finetune/encoder/dnalm_finetuned.json").read_text())["base_model"] == \
        str(out / "pretrain/encoder").removeprefix(str(wd.root) + "/")
    metrics = json.loads((out / "heads/finetuned/metrics.json").read_text())
    assert metrics["test"]["n"] == 24 and metrics["kind"] == "hierarchical" and len(metrics["history"]) == 2
    # every sequence was embedded with the fine-tuned encoder, which the head is tied to
    head = json.loads((out / "heads/finetuned/head.json").read_text())
    embeddings = read_provenance(next(out.glob("embeddings/shard_*.parquet")))
    assert embeddings["model_sha256"] == head["encoder"]["model_sha256"] == \
        ModelFolder.open(str(out / "finetune/encoder")).weights_sha256()
    for name in ("finetuned", "hierarchical", "mean"):
        table = pd.read_csv(out / f"classify/{name}/predictions.tsv", sep="\t")
        assert len(table) == 48 and table["pred_label"].notna().all()
    # the baselines ran on exactly the heads' splits, and the run says so at a glance
    baselines = json.loads((out / "baselines/metrics.json").read_text())
    assert baselines["sequences"] == metrics["sequences"]
    assert "6-mer frequencies, logistic regression, test split (n=24)" in run.output
    assert "GC content, logistic regression, test split (n=24)" in run.output
    assert "finetuned head, test split (n=24)" in run.output
    assert "resuming" not in wd.path("logs/finetune/finetune.log").read_text()
    assert not (out / "finetune/checkpoint").exists() and not (out / "pretrain/checkpoint").exists()


def test_annotation_run_reuses_the_finetuned_encoder_and_head(learned, workdir):
    trained, _ = learned
    cfg = workdir.write_config("annotate.yaml", {
        "input": {"mode": "tiles", "reference": "data/lambda_phage_NC_001416.1.fa.gz",
                  "tiles": {"length": 2000, "step": 2000}},
        "encoder": {"source": "pretrained", "model": str(trained.path("results/finetune/encoder"))},
        "classify": {"pretrained_head": str(trained.path("results/heads/finetuned"))}})
    run = workdir.snakemake(configs=[cfg])
    assert "finetune" not in run.output.split("Job stats")[1].split("\n\n")[0]  # nothing trained again
    table = pd.read_csv(workdir.path("results/classify/pretrained/predictions.tsv"), sep="\t")
    assert len(table) == 25 and set(table["pred_label"]) <= {"coding", "intergenic"}
    assert workdir.path("results/classify/pretrained/tracks/calls.bed").exists()


@pytest.mark.parametrize("encoder, named", [
    ({}, "which is not a tiny encoder"),  # the tiny encoder the run would build, not the fine-tuned one
    ({"source": "pretrained", "model": "results/pretrain/encoder"}, "whose weights differ"),  # where it started
])
def test_a_head_is_refused_before_any_job_with_another_encoder_than_its_own(learned, workdir, encoder, named):
    """The head of a fine-tuned run read vectors of its fine-tuned encoder: annotating with the
    encoder fine-tuning started from (same family, tokenizer and size) is refused when the DAG
    is built, naming the encoder to use, not in the classification job after the embeddings."""
    trained, _ = learned
    if "model" in encoder:
        encoder = {**encoder, "model": str(trained.path(encoder["model"]))}
    cfg = workdir.write_config("annotate.yaml", {
        "input": {"mode": "tiles", "reference": "data/lambda_phage_NC_001416.1.fa.gz"}, "encoder": encoder,
        "classify": {"pretrained_head": str(trained.path("results/heads/finetuned"))}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0 and named in run.output, run.output[-3000:]
    assert f"encoder.model: {trained.path('results/finetune/encoder')}" in run.output
    assert not workdir.path("results").exists() or not any(workdir.path("results").rglob("*.parquet"))


def test_finetuning_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    overlay = {"input": {"mode": "bed", "bed": "regions.bed"},
               "finetune": {"activate": True, "epochs": 3, "patience": 3, "max_windows": 3,
                            "gradient_checkpointing": False}, "heads": {"train": []}}

    def prepare(name):
        wd = Workdir(tmp_path / name)
        write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 12)
        return wd, wd.write_config("ft.yaml", overlay)

    whole, whole_cfg = prepare("whole")
    whole.snakemake("--cores", "1", configs=[whole_cfg])

    wd, cfg = prepare("killed")
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd.root), "--cores", "1",
           "--configfile", str(wd.path("config/config.yaml")), str(cfg)]
    proc = subprocess.Popen(cmd, cwd=wd.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = wd.path("logs/finetune/finetune.log")
    killed = False
    deadline = time.monotonic() + 300
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "epoch 1:" in log.read_text():  # a checkpoint exists, epoch 2 is running
            for p in psutil.process_iter(["cmdline", "cwd"]):
                if "finetune" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(wd.root) \
                        and ".snakemake/scripts" in " ".join(p.info["cmdline"] or []):
                    os.kill(p.pid, signal.SIGKILL)
                    killed = True
        time.sleep(0.05)
    output = proc.communicate(timeout=300)[0]
    assert killed, f"the fine-tuning job was not caught running:\n{output[-3000:]}"
    assert proc.returncode != 0
    assert not wd.path("results/heads/finetuned/head.safetensors").exists()
    assert json.loads(wd.path("results/finetune/checkpoint/state.json").read_text())["epoch"] >= 1

    wd.snakemake("--cores", "1", configs=[cfg])
    assert "resuming from the checkpoint after epoch" in log.read_text()
    for name in ("heads/finetuned/head.safetensors", "finetune/encoder/model.safetensors"):
        a, b = (load_file(str(w.path(f"results/{name}"))) for w in (whole, wd))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), name
    assert wd.path("results/classify/finetuned/predictions.tsv").read_bytes() == \
        whole.path("results/classify/finetuned/predictions.tsv").read_bytes()
