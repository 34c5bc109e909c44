"""Faults on a local run: an embedding job killed with SIGKILL mid-shard leaves
nothing that looks finished, and the rerun gives results identical to an
uninterrupted run (which also shows two CPU runs agree byte for byte)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pyarrow.parquet as pq
import pytest
from helpers.workflow import REPO, SNAKEMAKE, Workdir, write_bed_subset

pytestmark = pytest.mark.workflow

# The demo's encoder (hidden 128, 2 layers) and shards of 150 windows: each
# embedding job runs for a few seconds, long enough to be killed mid-shard.
SLOW = {"input": {"mode": "bed", "bed": "regions.bed"}, "windows": {"per_shard": 150},
        "encoder": {"tiny": {"hidden": 128, "layers": 2, "attention_heads": 4}}}


def make_run(root) -> tuple[Workdir, object]:
    wd = Workdir(root)
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 18)
    return wd, wd.write_config("slow.yaml", SLOW)


def embed_processes(root) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "embed_shard" in cmd and ".snakemake/scripts" in cmd and proc.info["cwd"] == str(root):
            found.append(proc)
    return found


def test_sigkill_mid_shard_then_rerun_matches_uninterrupted(tmp_path):
    baseline, base_cfg = make_run(tmp_path / "baseline")
    baseline.snakemake(configs=[base_cfg])

    wd, cfg = make_run(tmp_path / "killed")
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd.root), "--cores", "1",
           "--configfile", str(wd.path("config/config.yaml")), str(cfg)]
    proc = subprocess.Popen(cmd, cwd=wd.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for log in sorted(wd.root.glob("logs/embed_shard/*.log")):
            if "embedding " in log.read_text():  # the model is loaded and the batches have started
                time.sleep(0.5)
                victims = embed_processes(wd.root)
                if victims:
                    for victim in victims:
                        os.kill(victim.pid, signal.SIGKILL)
                    killed = log.stem
                break
        time.sleep(0.1)
    output = proc.communicate(timeout=300)[0]
    assert killed is not None, f"no embedding job was caught running:\n{output[-3000:]}"
    assert proc.returncode != 0, "snakemake should report the killed job"

    # Nothing that looks finished: no shard output, at most a hidden temporary.
    assert not wd.path(f"results/embeddings/shard_{killed}.parquet").exists()
    leftovers = [p.name for p in wd.root.glob("results/embeddings/*") if not p.name.startswith(".")]
    assert f"shard_{killed}.parquet" not in leftovers

    rerun = wd.snakemake(configs=[cfg])
    assert "dnalm finished" in rerun.output
    for head in ("hierarchical", "mean"):
        ours = wd.path(f"results/classify/{head}/predictions.tsv").read_bytes()
        theirs = baseline.path(f"results/classify/{head}/predictions.tsv").read_bytes()
        assert ours == theirs, f"{head}: rerun after the kill differs from the uninterrupted run"
    for shard in sorted(baseline.root.glob("results/embeddings/shard_*.parquet")):
        assert pq.read_table(wd.path(f"results/embeddings/{shard.name}")).equals(pq.read_table(shard))
