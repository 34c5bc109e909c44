"""Rerun semantics, read from the reasons of real `snakemake -n` runs.

What changes re-runs what: a head setting -> training and classification only;
the window size -> everything from the windows on; the encoder -> embeddings
and after; nothing changed -> nothing; shards rewritten byte-identical -> no
re-embedding (Snakemake compares small inputs by checksum).
"""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from helpers.workflow import Workdir, jobs_in_dry_run

pytestmark = pytest.mark.workflow

BED = {"input": {"mode": "bed", "bed": "regions.bed"}}


def after_embedding(shards: int = 4) -> dict[str, int]:
    """Jobs downstream of the embeddings: two heads, both classified by one job per 8 shards, then
    gathered; and the baselines, whose k-mer + language-model regression reads the embeddings."""
    return {"all": 1, "train_head": 2, "classify_shards": -(-shards // 8), "gather_predictions": 2,
            "report_metrics": 1, "report_run": 1, "baselines": 1}


def dry_run_with(wd: Workdir, name: str, overlay: dict) -> dict[str, int]:
    from helpers.workflow import deep_merge

    cfg = wd.write_config(name, deep_merge(BED, overlay))
    return jobs_in_dry_run(wd.snakemake("-n", configs=[cfg]).output)


def test_window_size_reruns_everything_from_windows_on(trained_bed_run):
    wd, _, _ = trained_bed_run
    jobs = dry_run_with(wd, "win.yaml", {"windows": {"size": 400, "stride": 200}})
    # 72 regions x 4 windows (0, 200, 400, 600) = 288 windows -> 5 shards of 64
    assert jobs == {**after_embedding(shards=5), "make_windows": 1, "embed_shard": 5, "baselines": 1}


def test_encoder_reruns_embeddings_and_after(trained_bed_run):
    wd, _, _ = trained_bed_run
    jobs = dry_run_with(wd, "enc.yaml", {"encoder": {"precision": "bf16"}})
    assert jobs == {**after_embedding(), "embed_shard": 4}
    jobs = dry_run_with(wd, "enc_seed.yaml", {"encoder": {"tiny": {"seed": 1}}})
    assert jobs == {**after_embedding(), "build_tiny_encoder": 1, "embed_shard": 4}


def test_batch_size_and_threads_rerun_nothing(trained_bed_run):
    wd, cfg, _ = trained_bed_run
    run = wd.snakemake("-n", "--set-threads", "embed_shard=2", "--set-resources", "embed_shard:tokens_per_batch=3000",
                       configs=[cfg])
    assert "Nothing to be done" in run.output


@pytest.fixture
def copied_run(trained_bed_run, tmp_path) -> Workdir:
    """A copy of the trained run (metadata and mtimes too) that a test may change."""
    source, _, _ = trained_bed_run
    target = tmp_path / "copy"
    shutil.copytree(source.root, target, symlinks=True)
    wd = Workdir.__new__(Workdir)
    wd.root = target
    return wd


def test_identical_shards_rewritten_do_not_reembed(copied_run):
    wd = copied_run
    shards = sorted((wd.root / "results/windows").glob("shard_*.parquet"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards}
    wd.snakemake("results/windows/sequences.parquet", "--forcerun", "make_windows", configs=[wd.path("bed.yaml")])
    for p in shards:
        data, mtime = before[p.name]
        assert p.stat().st_mtime_ns > mtime, "make_windows did not rewrite the shard"
        assert p.read_bytes() == data, "a rewritten shard differs: Parquet output is not deterministic"
    run = wd.snakemake("-n", configs=[wd.path("bed.yaml")])
    assert "Nothing to be done" in run.output, run.output


def test_relabelling_retrains_without_reembedding(copied_run):
    wd = copied_run
    bed = wd.path("regions.bed")
    lines = bed.read_text().splitlines()
    cols = lines[0].split("\t")
    cols[7] = "test" if cols[7] == "train" else "train"  # move one region to the other split
    bed.write_text("\n".join(["\t".join(cols)] + lines[1:]) + "\n")
    jobs = jobs_in_dry_run(wd.snakemake("-n", configs=[wd.path("bed.yaml")]).output)
    assert jobs == {**after_embedding(), "extract_labels": 1, "baselines": 1}
    embeddings = {p: p.stat().st_mtime_ns for p in wd.root.glob("results/embeddings/*.parquet")}
    wd.snakemake(configs=[wd.path("bed.yaml")])
    assert {p: p.stat().st_mtime_ns for p in wd.root.glob("results/embeddings/*.parquet")} == embeddings
    labels = pq.read_table(wd.path("results/regions/labels.parquet")).column("split").to_pylist()
    assert labels[0] == cols[7]  # the new split reached training


def test_coordinates_change_reruns_from_regions(copied_run):
    wd = copied_run
    bed = wd.path("regions.bed")
    lines = bed.read_text().splitlines()
    cols = lines[0].split("\t")
    cols[2] = str(int(cols[2]) - 100)  # shorter region: other windows
    bed.write_text("\n".join(["\t".join(cols)] + lines[1:]) + "\n")
    jobs = jobs_in_dry_run(wd.snakemake("-n", configs=[wd.path("bed.yaml")]).output)
    assert jobs == {**after_embedding(), "extract_regions": 1, "extract_labels": 1, "make_windows": 1,
                    "embed_shard": 4, "baselines": 1}


def test_keys_of_another_mode_rerun_nothing(trained_bed_run):
    wd, _, _ = trained_bed_run
    jobs = dry_run_with(wd, "tiles_keys.yaml", {"input": {"tiles": {"length": 999}, "sequences": "x.fa"}})
    assert jobs == {}


def test_relabelling_through_a_new_bed_file_reembeds_nothing(copied_run):
    """input.bed pointed at a new file whose coordinates are the old ones: the coordinates
    decide, not the path, so only labels, training and classification re-run."""
    from helpers.workflow import deep_merge

    wd = copied_run
    lines = wd.path("regions.bed").read_text().splitlines()
    relabelled = []
    for line in lines:
        cols = line.split("\t")
        cols[7] = "test" if cols[7] == "train" else "train"
        relabelled.append("\t".join(cols))
    wd.path("relabelled.bed").write_text("\n".join(relabelled) + "\n")
    cfg = wd.write_config("relabel.yaml", deep_merge(BED, {"input": {"bed": "relabelled.bed"}}))
    run = wd.snakemake("-n", configs=[cfg])
    assert jobs_in_dry_run(run.output) == {**after_embedding(), "extract_labels": 1, "baselines": 1}, run.output
    # A new file with other coordinates re-runs everything from the regions on.
    cols = relabelled[0].split("\t")
    cols[2] = str(int(cols[2]) - 100)
    wd.path("moved.bed").write_text("\n".join(["\t".join(cols)] + relabelled[1:]) + "\n")
    cfg = wd.write_config("moved.yaml", deep_merge(BED, {"input": {"bed": "moved.bed"}}))
    jobs = jobs_in_dry_run(wd.snakemake("-n", configs=[cfg]).output)
    assert jobs["extract_regions"] == 1 and jobs["make_windows"] == 1 and jobs["embed_shard"] == 4
