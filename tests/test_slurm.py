"""The workflow through a live single-node SLURM cluster and the users' profile.

tests/slurm/cluster.sh starts real slurmctld/slurmd daemons (with a fake GPU
gres, so `gpu=1` jobs schedule); the workflow runs through
snakemake-executor-plugin-slurm with profiles/slurm, adjusted only for this
cluster's size and for its lack of an accounting database. One embedding job
is cancelled while it runs: the profile's retries must resubmit it, and the
results must equal a local run's.

Skipped, with the reason, where the machine cannot run SLURM (not root, no apt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.workflow import REPO, SNAKEMAKE, Workdir, write_bed_subset

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


def sh(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    available = sh("bash", str(CLUSTER), "available")
    if available.returncode != 0:
        pytest.skip(f"live SLURM test skipped: this machine cannot run SLURM "
                    f"({(available.stdout + available.stderr).strip()})")
    started = sh("bash", str(CLUSTER), "start")
    assert started.returncode == 0, f"SLURM did not start:\n{started.stdout}\n{started.stderr}"
    try:
        yield
    finally:
        stopped = sh("bash", str(CLUSTER), "stop")
        assert stopped.returncode == 0, stopped.stderr


def profile_for_this_cluster(profile_dir: Path) -> Path:
    """profiles/slurm with only what this one-node, no-accounting cluster needs changed."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert "gpu" not in profile["set-resources"]["embed_shard"]  # the rule's own: 1, 0 for int8
    assert "embed_shard" in profile["slurm-array-jobs"]
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1,
                    "jobs": 4, "latency-wait": 5})
    profile["default-resources"] = {"mem_mb": "500 * attempt", "runtime": "10 * attempt"}
    for resources in profile["set-resources"].values():
        resources.update({"mem_mb": "1500 * attempt", "runtime": "10 * attempt"})
    profile["set-threads"] = {"embed_shard": 1}  # as the local run, so results compare exactly
    profile_dir.mkdir(parents=True)
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    return profile_dir


def squeue_all() -> list[dict]:
    out = sh("squeue", "-h", "-t", "all", "-o", "%i|%k|%T").stdout
    rows = []
    for line in out.splitlines():
        job_id, comment, state = line.split("|")
        rows.append({"id": job_id, "base": int(job_id.split("_")[0]), "comment": comment, "state": state})
    return rows


def test_workflow_through_slurm_matches_local_and_survives_a_cancelled_job(slurm_cluster, trained_bed_run,
                                                                          tmp_path):
    local, _, _ = trained_bed_run
    wd = Workdir(tmp_path / "wd")
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 18)
    cfg = wd.write_config("bed.yaml", {"input": {"mode": "bed", "bed": "regions.bed"}})
    profile = profile_for_this_cluster(tmp_path / "profile")
    first_job = max((row["base"] for row in squeue_all()), default=0)

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(wd.root), "--profile", str(profile),
           "--configfile", str(wd.path("config/config.yaml")), str(cfg)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=wd.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    cancelled = None
    while proc.poll() is None and cancelled is None and time.monotonic() - started < 400:
        for row in squeue_all():
            if row["base"] > first_job and "embed_shard" in row["comment"] and row["state"] == "RUNNING":
                sh("scancel", row["id"])
                cancelled = row["id"]
                break
        time.sleep(0.5)
    output = proc.communicate(timeout=540)[0]
    wall = time.monotonic() - started
    print(f"\nworkflow through SLURM: {wall:.0f} s wall (cancelled job {cancelled})")
    assert proc.returncode == 0, output[-6000:]
    assert cancelled is not None, "no embedding job was seen running in SLURM"

    jobs = [row for row in squeue_all() if row["base"] > first_job]
    embeds = [row for row in jobs if "embed_shard" in row["comment"]]
    n_shards = len(list(local.root.glob("results/embeddings/shard_*.parquet")))
    assert sum(row["state"] == "COMPLETED" for row in embeds) >= n_shards, jobs
    assert any(row["id"] == cancelled and row["state"] in ("CANCELLED", "FAILED") for row in embeds), jobs
    resubmitted = [row for row in embeds if row["base"] > int(cancelled.split("_")[0])]
    assert any(row["state"] == "COMPLETED" for row in resubmitted), f"no resubmission after the cancel: {jobs}"
    # Every other rule went through SLURM too.
    for rule in ("extract_regions", "make_windows", "build_tiny_encoder", "train_head", "classify_shards",
                 "gather_predictions"):
        assert any(rule in row["comment"] and row["state"] == "COMPLETED" for row in jobs), rule

    for head in ("hierarchical", "mean"):
        ours = wd.path(f"results/classify/{head}/predictions.tsv").read_bytes()
        assert ours == local.path(f"results/classify/{head}/predictions.tsv").read_bytes(), head
    for shard in sorted(local.root.glob("results/embeddings/shard_*.parquet")):
        assert pq.read_table(wd.path(f"results/embeddings/{shard.name}")).equals(pq.read_table(shard))
