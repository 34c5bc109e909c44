"""Classification per shard, then a gather: every sequence classified once, by the job of
the shard where it closes, with exactly the result of one streaming pass over all
shards, also where sequences straddle shards and where one spans many."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from helpers.data import ECOLI, PHIX, read_records, write_fasta
from helpers.workflow import Workdir

from dnalm.embedding.shards import read_embeddings
from dnalm.inputs.regions import read_regions
from dnalm.io import read_provenance, write_table_atomic
from dnalm.learning.heads import load_head, predict
from dnalm.learning.windowsets import WindowSets
from dnalm.outputs.classify import (
    classify,
    classify_jobs,
    classify_shard,
    classify_shards,
    closing_widths,
    gather,
    prediction_table,
    shard_memory_mb,
    shard_reads,
    write_tables,
)
from dnalm.settings import WindowSpec
from dnalm.windows.shards import window_starts


def single_pass(head, paths: list[str], n_sequences: int, max_n_fraction: float = 0.5) -> np.ndarray:
    """The one classify job that the per-shard rules replaced: the shards streamed in order,
    each one's last sequence carried into the next, each chunk batched by predict."""
    proba = np.full((n_sequences, head.config.n_classes), np.nan)
    carry = None
    for i, path in enumerate(paths):
        keys, matrix, provenance = read_embeddings([path], head.config.pooling)
        if carry is not None:
            keys, matrix = pa.concat_tables([carry[0], keys]), np.concatenate([carry[1], matrix])
            carry = None
        if i < len(paths) - 1 and keys.num_rows:
            seq = keys.column("seq_index").to_numpy()
            cut = int(np.searchsorted(seq, seq[-1]))
            carry = (keys.slice(cut), matrix[cut:])
            keys, matrix = keys.slice(0, cut), matrix[:cut]
        if keys.num_rows:
            chunk = WindowSets(keys, matrix, provenance, max_n_fraction)
            rows = np.flatnonzero(chunk.has_usable())
            proba[chunk.seq_index[rows]] = predict(head, chunk, rows)
    return proba


def prob_columns(path) -> np.ndarray:
    table = pq.read_table(path).to_pandas()
    return table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()


# ------------------------------------------------------------------ the plan


def brute_force_plan(lengths, spec) -> tuple[list[list[int]], list[int]]:
    """Window by window: which shard each sequence closes in, the shards of its windows, and
    per shard the most windows of a sequence closing there."""
    counts = np.array([len(window_starts(int(length), spec)[0]) for length in lengths])  # as make_windows cuts
    shard_of = np.arange(int(counts.sum())) // spec.per_shard  # per window id
    n_shards = int(shard_of[-1]) + 1
    seq_of = np.repeat(np.arange(len(lengths)), counts)
    reads = [{i} for i in range(n_shards)]
    widths = [0] * n_shards
    for s in range(len(lengths)):
        windows = np.flatnonzero(seq_of == s)
        closes = int(shard_of[windows[-1] + 1]) if windows[-1] + 1 < len(shard_of) else n_shards - 1
        reads[closes] |= set(shard_of[windows].tolist())
        widths[closes] = max(widths[closes], len(windows))
    return [sorted(r) for r in reads], widths


@pytest.mark.parametrize("seed", range(12))
def test_shard_reads_equal_the_windows_each_job_needs(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.choice([50, 512, 513, 1000, 1025, 3_000, 20_000], size=int(rng.integers(1, 40)))
    spec = WindowSpec(size=512, stride=256, per_shard=int(rng.choice([1, 2, 3, 7, 64, 10_000])),
                      mirrored=bool(seed % 2))
    reads = shard_reads(lengths, spec)
    expected_reads, expected_widths = brute_force_plan(lengths, spec)
    assert reads == expected_reads
    assert all(r == list(range(r[0], i + 1)) for i, r in enumerate(reads))  # contiguous, own shard last
    assert closing_widths(lengths, spec) == expected_widths


def test_a_contig_of_many_shards_is_read_by_the_job_where_it_closes():
    """5 Mbp at stride 256 is 19,531 windows: shards of 2,000 hold it in 10 shards (plus the next contig)."""
    lengths = np.array([1_000, 5_000_000, 1_000, 1_000])
    spec = WindowSpec(size=512, stride=256, per_shard=2_000)
    reads = shard_reads(lengths, spec)
    assert len(reads) == 10
    assert reads[:9] == [[i] for i in range(9)]  # shards inside the contig read only themselves
    assert reads[9] == list(range(10))  # the contig closes in the last shard, which reads it whole
    widths = closing_widths(lengths, spec)
    assert widths[:9] == [3] + [0] * 8 and widths[9] == 19_531
    # That job asks for the memory of the hierarchical head's attention over 19,531 windows,
    # in blocks of 256 windows: linear in the length (full attention would need 12 GB).
    assert shard_memory_mb(widths[0], 4) == 4001 and 4_100 < shard_memory_mb(widths[9], 4) < 4_200
    assert shard_memory_mb(widths[9], 0) == 4000  # the mean head has no attention


# ------------------------------------------------- real data, real workflow runs

# Real sequences of very different lengths: pieces of E. coli (one window up to 117)
# and phage phiX174 whole. At 512/256 they give 300 windows.
PIECES = [("ecoli_a", 0, 30_000), ("ecoli_b", 40_000, 400), ("ecoli_c", 50_000, 12_000), ("ecoli_d", 70_000, 700),
          ("phix", None, None), ("ecoli_e", 80_000, 1_000), ("ecoli_f", 90_000, 25_000), ("ecoli_g", 120_000, 512),
          ("ecoli_h", 130_000, 100), ("ecoli_i", 140_000, 3_000)]


@pytest.fixture(scope="module")
def long_run(trained_bed_run, tmp_path_factory):
    """Annotation run on long real sequences with 75 windows per shard: the first spans shards 0-1
    (shard 0 lies inside it), others straddle 1-2 and 2-3."""
    torch.set_num_threads(1)  # as the workflow's jobs, so batch results compare bit for bit
    trained, _, _ = trained_bed_run
    wd = Workdir(tmp_path_factory.mktemp("longrun") / "wd")
    ecoli = next(iter(read_records(ECOLI).values()))
    records = {name: (next(iter(read_records(PHIX).values())) if start is None else ecoli[start : start + n])
               for name, start, n in PIECES}
    write_fasta(wd.path("long.fa"), records)
    cfg = wd.write_config("long.yaml", {
        "input": {"mode": "fasta", "sequences": "long.fa"}, "windows": {"per_shard": 75},
        "encoder": {"source": "pretrained", "model": str(trained.path("results/encoder/tiny"))},
        # one shard a classification job, so the test sees each shard's share
        "classify": {"pretrained_head": str(trained.path("results/heads/hierarchical")), "shards_per_job": 1}})
    wd.snakemake(configs=[cfg])
    return wd, trained.path("results/heads/hierarchical")


@pytest.mark.workflow
def test_workflow_per_shard_equals_one_streaming_pass(long_run):
    wd, head_dir = long_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    assert len(paths) == 4  # 300 windows, 75 per shard
    head = load_head(head_dir)
    regions = read_regions(str(wd.path("results/regions/regions.parquet")))
    expected = single_pass(head, paths, len(regions))
    out = wd.path("results/classify/pretrained")
    assert np.array_equal(prob_columns(out / "predictions.parquet"), expected)
    # The tables are those the single pass's probabilities give, byte for byte.
    sequences = pq.read_table(wd.path("results/windows/sequences.parquet")).to_pandas()
    table = prediction_table(regions, sequences, expected, head.config.class_names)
    provenance = read_provenance(out / "predictions.parquet")
    write_tables(table, str(wd.path("expected.tsv")), str(wd.path("expected.parquet")), provenance)
    assert (out / "predictions.tsv").read_bytes() == wd.path("expected.tsv").read_bytes()
    assert (out / "predictions.parquet").read_bytes() == wd.path("expected.parquet").read_bytes()
    assert provenance == {**read_provenance(paths[-1]), "stage": "classify", "head": str(head_dir),
                          "head_kind": "hierarchical", "pooling": head.config.pooling, "max_n_fraction": 0.5}
    # Each job wrote the sequences closing in its shard; those inside a long one wrote none.
    shard_rows = [pq.read_table(p).num_rows for p in sorted(out.glob("shards/group_*.parquet"))]
    assert sum(shard_rows) == len(PIECES) and 0 in shard_rows
    log = wd.path("logs/classify_shards/00003.log").read_text()
    assert "1 thread(s)" in log and "windows/s" in log and "read back from earlier shards" in log


@pytest.mark.workflow
def test_bed_run_per_shard_equals_one_streaming_pass(trained_bed_run):
    """3-window regions in shards of 64: one straddles each boundary, one ends exactly on one."""
    torch.set_num_threads(1)
    wd, _, _ = trained_bed_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    for kind in ("hierarchical", "mean"):
        head = load_head(wd.path(f"results/heads/{kind}"))
        expected = single_pass(head, paths, 72)
        assert np.array_equal(prob_columns(wd.path(f"results/classify/{kind}/predictions.parquet")), expected), kind


def reshard(paths: list[str], per_shard: int, folder) -> list[str]:
    """The same windows and vectors cut into shards of `per_shard` windows."""
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, lo in enumerate(range(0, table.num_rows, per_shard)):
        out.append(str(folder / f"shard_{i:05d}.parquet"))
        pq.write_table(table.slice(lo, per_shard), out[-1])
    return out


@pytest.mark.workflow
@pytest.mark.parametrize("per_shard", [1, 3, 7, 64, 1000])
def test_resharded_real_embeddings_give_the_single_pass_result(long_run, tmp_path, per_shard):
    """Shards of 1 window put the 117-window sequence in 117 shards; each job gets only the
    shards the plan names (fewer would fail), and the tables equal the single pass's."""
    torch.set_num_threads(1)
    wd, head_dir = long_run
    paths = reshard(sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet")), per_shard,
                    tmp_path / "emb")
    regions = pq.read_table(wd.path("results/regions/regions.parquet")).to_pandas()
    plan = shard_reads(regions["length"].to_numpy(), WindowSpec(size=512, stride=256, per_shard=per_shard))
    assert len(plan) == len(paths)
    partials = []
    for i, reads in enumerate(plan):
        partials.append(str(tmp_path / "partial" / f"{i:05d}.parquet"))
        classify_shard([paths[j] for j in reads], {str(head_dir): partials[-1]}, 0.5, final=i == len(plan) - 1)
    gather(partials, wd.path("results/regions/regions.parquet"), wd.path("results/windows/sequences.parquet"),
           str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"), str(tmp_path / "tracks"))
    head = load_head(head_dir)
    got = prob_columns(tmp_path / "p.parquet")
    assert np.array_equal(got, single_pass(head, paths, len(regions)))
    # Against one in-memory pass over every window (other batches): equal but for rounding.
    whole = WindowSets.from_files(paths, head.config.pooling, 0.5)
    in_memory = np.concatenate([predict(head, whole, np.array([r])) for r in range(len(regions))])
    np.testing.assert_allclose(got, in_memory, rtol=1e-5, atol=1e-6)
    # The library's one-process path gives the same bytes.
    classify(paths, wd.path("results/regions/regions.parquet"), wd.path("results/windows/sequences.parquet"),
             str(head_dir), 0.5, str(tmp_path / "lib.tsv"), str(tmp_path / "lib.parquet"), None)
    assert (tmp_path / "lib.tsv").read_bytes() == (tmp_path / "p.tsv").read_bytes()
    if per_shard == 1:
        with pytest.raises(RuntimeError, match="shard plan and the shards disagree"):
            classify_shard(paths[-2:], {str(head_dir): str(tmp_path / "short.parquet")}, 0.5, final=True)


@pytest.mark.workflow
def test_gather_refuses_shards_of_two_heads(long_run, tmp_path):
    wd, _ = long_run
    partials = sorted(str(p) for p in wd.root.glob("results/classify/pretrained/shards/*.parquet"))
    write_table_atomic(pq.read_table(partials[0]), tmp_path / "other.parquet",
                       {**read_provenance(partials[0]), "head": "elsewhere"})
    with pytest.raises(RuntimeError, match="differ in \\['head'\\]"):
        gather([str(tmp_path / "other.parquet"), *partials[1:]], wd.path("results/regions/regions.parquet"),
               wd.path("results/windows/sequences.parquet"), str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"),
               None)
    with pytest.raises(RuntimeError, match="not each of the 10 of the regions table"):
        gather(partials[:-1], wd.path("results/regions/regions.parquet"),
               wd.path("results/windows/sequences.parquet"), str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"),
               None)
    assert not (tmp_path / "p.tsv").exists()


def test_windows_without_sequence_tokens_are_not_usable():
    """A window that gave the encoder no sequence token (fewer than k bases) must not produce a call."""
    import pyarrow as pa

    from dnalm.learning.windowsets import WindowSets

    keys = pa.table({"seq_index": pa.array([0, 1, 1], pa.int64()), "start": pa.array([0, 0, 256], pa.int64()),
                     "length": pa.array([3, 512, 300], pa.int32()), "tokens": pa.array([0, 507, 295], pa.int32()),
                     "n_fraction": pa.array([0.0, 0.0, 0.9], pa.float32())})
    data = WindowSets(keys, np.zeros((3, 4), np.float32), {"window_stride": 256}, 0.5)
    assert data.usable.tolist() == [False, True, False]
    assert data.has_usable().tolist() == [False, True]


def test_jobs_of_several_shards_equal_one_shard_a_job(long_run, tmp_path):
    """Grouping shards into classification jobs changes nothing in the results: every group
    size gives the one-shard-a-job tables, and the plan reads only what each job needs."""
    torch.set_num_threads(1)
    wd, head_dir = long_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    regions = pq.read_table(wd.path("results/regions/regions.parquet")).to_pandas()
    spec = WindowSpec(size=512, stride=256, per_shard=75)
    single = [pq.read_table(p) for p in sorted(wd.root.glob("results/classify/pretrained/shards/group_*.parquet"))]
    one_a_job = pa.concat_tables(single)
    for group in (2, 3, 8):
        jobs = classify_jobs(regions["length"].to_numpy(), spec, group)
        assert [s for job in jobs for s in job.shards] == list(range(len(paths)))
        widths = closing_widths(regions["length"].to_numpy(), spec)
        parts = []
        for i, job in enumerate(jobs):
            assert job.width == max(widths[s] for s in job.shards)
            out = str(tmp_path / f"g{group}_{i}.parquet")
            classify_shards([paths[j] for j in job.reads], len(job.shards), {str(head_dir): out}, 0.5,
                            final=i == len(jobs) - 1)
            parts.append(pq.read_table(out))
        assert pa.concat_tables(parts).equals(one_a_job), group


def test_a_job_of_several_shards_reads_each_shard_once(long_run, tmp_path, monkeypatch):
    """A carried sequence is read back from the shard before; in a job of several shards that
    shard was just read, so each shard of the job is read once."""
    import dnalm.outputs.classify

    wd, head_dir = long_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    reads = []
    real = dnalm.outputs.classify.read_embeddings
    monkeypatch.setattr(dnalm.outputs.classify, "read_embeddings", lambda ps, pooling: reads.append(ps) or real(ps, pooling))
    classify_shards(paths, len(paths), {str(head_dir): str(tmp_path / "all.parquet")}, 0.5, final=True)
    assert sorted(p for ps in reads for p in ps) == paths  # 4 shards, 3 of them carrying a sequence on


@pytest.mark.workflow
def test_changing_shards_per_job_leaves_no_stale_group_files(long_run, tmp_path):
    """One job a shard wrote groups 0-3; two shards a job write groups 0-1, and 2-3 are gone."""
    wd, head_dir = long_run
    copy = Workdir.__new__(Workdir)
    copy.root = tmp_path / "wd"
    shutil.copytree(wd.root, copy.root, symlinks=True)
    groups = copy.path("results/classify/pretrained/shards")
    assert len(list(groups.glob("group_*.parquet"))) == 4
    cfg = copy.write_config("two.yaml", {**yaml.safe_load(copy.path("long.yaml").read_text()),
                                         "classify": {"pretrained_head": str(head_dir), "shards_per_job": 2}})
    copy.snakemake(configs=[cfg])
    assert sorted(p.name for p in groups.glob("group_*.parquet")) == ["group_00000.parquet", "group_00001.parquet"]


@pytest.mark.workflow
def test_classification_memory_follows_the_configured_attention_block(workdir):
    """The memory a classification job asks for is that of the hierarchical head it runs:
    attention within blocks of heads.hierarchical.attention_block windows (not the default)."""
    import re

    from dnalm.outputs.classify import shard_memory_mb

    # A 4.6-Mbp region (17,969 windows: its attention dominates the job's memory) and a short one.
    bed = workdir.path("long.bed")
    bed.write_text("NC_000913.3\t0\t4600000\tlong\t0\t+\ta\ttrain\nNC_000913.3\t4600000\t4641000\tshort\t0\t+\tb\ttrain\n")
    asked = {}
    for block in (256, 64):
        cfg = workdir.write_config(f"block{block}.yaml", {
            "input": {"mode": "bed", "bed": "long.bed"}, "heads": {"hierarchical": {"attention_block": block}}})
        run = workdir.snakemake("-n", configs=[cfg])
        jobs = run.output.split("rule classify_shards:")[1:]
        asked[block] = max(int(re.search(r"mem_mb=(\d+)", job).group(1)) for job in jobs)
    heads = 2  # tests/helpers/workflow.py FAST: heads.hierarchical.attention_heads
    assert asked == {block: shard_memory_mb(17_969, heads, block) for block in (256, 64)}
    assert asked[64] < asked[256]
