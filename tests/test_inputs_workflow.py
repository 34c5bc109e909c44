"""The input layer in real snakemake runs: bad input stops the DAG before any job,
read-only and plain-gzip references are read right, the input plan is cached under
the outdir, and two runs on one outdir lock each other out."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pytest
from helpers.data import (
    ORCHID,
    ORCHID_LABELS,
    PHIX,
    read_only,
    read_records,
    write_fasta,
)
from helpers.workflow import REPO, SNAKEMAKE, Workdir, jobs_in_dry_run, write_bed_subset

pytestmark = pytest.mark.workflow

WINDOWS = "results/windows/sequences.parquet"  # target: extract and cut windows, embed nothing


def _phix() -> str:
    (seq,) = read_records(PHIX).values()
    return seq


def _windows(root: Path) -> list[str]:
    shards = sorted((root / "results/windows").glob("shard_*.parquet"))
    return [s for p in shards for s in pq.read_table(p, columns=["sequence"]).column("sequence").to_pylist()]


# ------------------------------------------------- bad input stops the DAG


def _dup_reference(wd: Workdir) -> str:
    phix = _phix()
    fasta = write_fasta(wd.path("dup.fa"), {"chr1": phix[:2000], "chr2": phix[2000:4000]})
    with open(fasta, "a") as fh:
        fh.write(f">chr1 again\n{phix[4000:5000]}\n")
    return "dup.fa"


def _number_labels(wd: Workdir) -> str:
    wd.path("numbers.bed").write_text("".join(
        f"NC_000913.3\t{i * 1000}\t{i * 1000 + 600}\tr{i}\t0\t+\t{label}\ttrain\n"
        for i, label in enumerate(["1", "0", "1.0", "0"])))
    return "numbers.bed"


def _labels_typo(wd: Workdir) -> str:
    wd.path("typo.tsv").write_text(ORCHID_LABELS.read_text() + "Z7853.1\tPaphiopedilum\ttrain\n")
    return "typo.tsv"


def _plain_gzip_genome(wd: Workdir) -> dict:
    fasta = wd.path("genome.fa")
    write_fasta(fasta, {"chr1": _phix()})
    with open(fasta, "rb") as src, gzip.open(wd.path("genome.fa.gz"), "wb") as dst:
        dst.write(src.read())
    return {"pretrain": {"activate": True, "fasta": ["genome.fa.gz"]}}


def _short_genome(wd: Workdir) -> dict:
    write_fasta(wd.path("short.fa"), {"chr1": _phix()[:88]})
    return {"pretrain": {"activate": True, "fasta": ["short.fa"]}}


BAD = {
    "pretrain FASTA shorter than a window": (_short_genome, "no record is at least one window (512 bp) long "
                                                            "(the longest is 88 bp)"),
    "pretrain FASTA plain gzip": (_plain_gzip_genome,
                                  "genome.fa.gz: pretrain.fasta is compressed with plain gzip"),
    "pretrain FASTA missing": (lambda wd: {"pretrain": {"activate": True, "fasta": ["nowhere.fa"]}},
                               "nowhere.fa: FASTA file does not exist"),
    "tile step > length": (lambda wd: {"input": {"mode": "tiles", "reference": "data/phiX174_NC_001422.1.fa.gz",
                                                 "tiles": {"length": 1000, "step": 1001}}},
                           "input.tiles.step (1001) is larger than input.tiles.length (1000)"),
    "duplicate contig, bed": (lambda wd: {"input": {"mode": "bed", "reference": _dup_reference(wd),
                                                    "bed": "r.bed"}},
                              "dup.fa: record 3 repeats the name 'chr1' of record 1"),
    "duplicate contig, tiles": (lambda wd: {"input": {"mode": "tiles", "reference": _dup_reference(wd)}},
                                "dup.fa: record 3 repeats the name 'chr1' of record 1"),
    "LoRA rank above the hidden size": (lambda wd: {"finetune": {"activate": True, "lora": {"r": 100000}}},
                                        "finetune.lora.r is 100000, above the encoder's hidden size (32)"),
    "outdir empty": (lambda wd: {"outdir": ""}, "outdir is '': every result path is '<outdir>/...'"),
    "outdir root": (lambda wd: {"outdir": "/"}, "outdir is '/'"),
    "outdir the working directory": (lambda wd: {"outdir": "."}, "outdir is '.', the working directory itself"),
    "logdir root": (lambda wd: {"logdir": "/"}, "logdir is '/'"),
    "labels 1 and 1.0": (lambda wd: {"input": {"mode": "bed", "bed": _number_labels(wd)}},
                         "labels '1' (numbers.bed:1) and '1.0' (numbers.bed:3) are the same number"),
    "labels id typo": (lambda wd: {"input": {"mode": "fasta", "sequences": "data/orchid_its.fa.gz",
                                             "labels": _labels_typo(wd)}},
                       "typo.tsv: 1 id(s) name no record of data/orchid_its.fa.gz, e.g. 'Z7853.1'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_stops_the_dag_with_the_fix(workdir, case):
    overlay, needle = BAD[case]
    workdir.path("r.bed").write_text("chr1\t0\t500\tr1\t0\t+\tx\ttrain\n")
    cfg = workdir.write_config("bad.yaml", overlay(workdir))
    run = workdir.snakemake(configs=[cfg], check=False)  # a real run, not only a dry run
    assert run.returncode != 0
    assert needle in run.output, run.output[-3000:]
    assert "Fix:" in run.output
    assert not workdir.path("results").exists() and not workdir.path("logs").exists()
    assert not Path("/regions").exists() and not Path("/extract_regions").exists()


# ------------------------------------------------- references as users keep them


def test_read_only_reference_with_a_stale_index_gives_the_right_windows(workdir):
    """The reference folder cannot be written and holds a .fai of an older wrapping of
    the FASTA: the windows are the FASTA's bases, read through an index under results/."""
    ref = workdir.root.parent / "ref"
    ref.mkdir()
    phix = _phix()
    records = {"chr1": phix[:3000], "chr2": phix[3000:]}
    fasta = write_fasta(ref / "genome.fa", records, width=60)
    pysam.faidx(str(fasta))
    write_fasta(fasta, records, width=70)
    os.utime(f"{fasta}.fai")  # newer than the FASTA: only its content gives it away
    workdir.path("r.bed").write_text("chr1\t100\t600\tr1\t0\t+\ta\ttrain\nchr2\t50\t550\tr2\t0\t-\tb\ttrain\n")
    cfg = workdir.write_config("ro.yaml", {"input": {"mode": "bed", "reference": str(fasta), "bed": "r.bed"}})
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir.root), "--cores", "2", WINDOWS,
           "--configfile", str(workdir.path("config/config.yaml")), str(cfg)]
    try:
        run = subprocess.run(read_only(ref, cmd), cwd=workdir.root, capture_output=True, text=True, timeout=600)
    finally:
        ref.chmod(0o755)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "in a read-only folder; indexing it in results/reference" in run.stderr
    assert _windows(workdir.root) == [records["chr1"][100:600],  # one window each (512 bp)
                                      records["chr2"][50:550][::-1].translate(str.maketrans("ACGT", "TGCA"))]
    assert os.readlink(workdir.path("results/reference/genome.fa")) == str(fasta)
    assert workdir.path("results/reference/genome.fa.fai").exists()
    assert Path(f"{fasta}.fai").read_text().split("\t")[3] == "60"  # the user's stale index is untouched


def _plain_gzip(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(gzip.decompress(src.read_bytes())))  # BGZF -> one plain gzip member
    return dst


def test_plain_gzip_reference_is_recompressed_once_by_a_rule(workdir):
    plain = _plain_gzip(PHIX, workdir.path("phix.fa.gz"))
    regions = "".join(f"NC_001422.1\t{s}\t{s + 900}\tr{s}\t0\t{'+-'[s % 2]}\t{'xy'[s % 2]}\ttrain\n"
                      for s in range(0, 4400, 401))
    for wd in (workdir, reference := Workdir(workdir.root.parent / "bgzip")):
        wd.path("r.bed").write_text(regions)
    genes = {"mode": "bed", "bed": "r.bed"}
    cfg = workdir.write_config("plain.yaml", {"input": {**genes, "reference": "phix.fa.gz"}})
    jobs = jobs_in_dry_run(workdir.snakemake("-n", WINDOWS, configs=[cfg]).output)
    assert jobs == {"bgzip_fasta": 1, "extract_regions": 1, "make_windows": 1}
    workdir.snakemake(WINDOWS, configs=[cfg])
    copy = workdir.path("results/reference/phix.fa.bgz.gz")
    assert gzip.decompress(copy.read_bytes()) == gzip.decompress(plain.read_bytes())
    assert workdir.path("results/reference/phix.fa.gz.records.json").exists()  # the DAG-time scan, cached
    assert "Nothing to be done" in workdir.snakemake("-n", WINDOWS, configs=[cfg]).output
    # The windows are those of the bgzip original.
    cfg2 = reference.write_config("bgz.yaml", {"input": {**genes, "reference": "data/phiX174_NC_001422.1.fa.gz"}})
    reference.snakemake(WINDOWS, configs=[cfg2])
    assert _windows(workdir.root) == _windows(reference.root) and len(_windows(workdir.root)) > 10
    # A new source (other bytes, same sequence) is recompressed again.
    plain.write_bytes(gzip.compress(gzip.decompress(plain.read_bytes()), compresslevel=1))
    jobs = jobs_in_dry_run(workdir.snakemake("-n", WINDOWS, configs=[cfg]).output)
    assert jobs.get("bgzip_fasta") == 1


def test_plain_gzip_fasta_of_sequences_with_a_partial_comma_table(workdir):
    """Mode fasta as users bring it: plain gzip, a labels table with commas named .tsv that
    covers only some records (the others are classified, not trained)."""
    _plain_gzip(ORCHID, workdir.path("orchid.fa.gz"))
    rows = ORCHID_LABELS.read_text().replace("\t", ",").splitlines()
    workdir.path("labels.tsv").write_text("\n".join(rows[:-10]) + "\n")
    cfg = workdir.write_config("orchid.yaml", {"input": {"mode": "fasta", "sequences": "orchid.fa.gz",
                                                         "labels": "labels.tsv"}})
    workdir.snakemake(WINDOWS, "results/regions/labels.parquet", configs=[cfg])
    records = read_records(ORCHID)
    labels = pq.read_table(workdir.path("results/regions/labels.parquet")).to_pandas()
    assert labels["seq_id"].tolist() == list(records)
    assert labels["label"].notna().sum() == len(records) - 10
    assert "10 of 94 FASTA records have no row in labels.tsv" in \
        workdir.path("logs/extract_labels/extract_labels.log").read_text()
    summary = pq.read_table(workdir.path(WINDOWS)).to_pandas()
    assert len(summary) == len(records)


def test_ucsc_header_lines_are_skipped_and_counted(workdir):
    workdir.path("r.bed").write_text(
        "browser position NC_000913.3:1-1000\ntrack name=demo description=\"two regions\"\n#c\n"
        "NC_000913.3\t0\t600\tr1\t0\t+\tx\ttrain\nNC_000913.3\t1000\t1600\tr2\t0\t+\ty\ttrain\n")
    cfg = workdir.write_config("bed.yaml", {"input": {"mode": "bed", "bed": "r.bed"}})
    workdir.snakemake("results/regions/regions.parquet", configs=[cfg])
    log = workdir.path("logs/extract_regions/extract_regions.log").read_text()
    assert "2 sequences from bed input; 3 comment/track/browser line(s) skipped" in log


def test_contigs_a_bed_reader_takes_for_headers_are_named_before_any_job(workdir):
    """Contigs named like header lines are valid input; the DAG says which tracks leave them out."""
    phix = next(iter(read_records(PHIX).values()))
    names = ["track_1", "#2", "chr3", "chr4"]
    write_fasta(workdir.path("seqs.fa"), {name: phix[i * 600 : (i + 1) * 600] for i, name in enumerate(names)})
    workdir.path("labels.tsv").write_text("id\tlabel\n" + "".join(f"{n}\t{'xy'[i % 2]}\n" for i, n in enumerate(names)))
    cfg = workdir.write_config("seqs.yaml", {"input": {"mode": "fasta", "sequences": "seqs.fa", "labels": "labels.tsv"}})
    run = workdir.snakemake("-n", configs=[cfg])
    assert "calls.bed and the bedGraph tracks leave out the rows of contig(s) '#2', 'track_1'" in run.output
    assert "rename those contigs" in run.output


# ------------------------------------------------------------ the cached plan


def test_input_plan_is_saved_and_invalidated_by_a_changed_input(workdir):
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", workdir.path("r.bed"), 2)
    cfg = workdir.write_config("bed.yaml", {"input": {"mode": "bed", "bed": "r.bed"}})
    workdir.snakemake("-n", WINDOWS, configs=[cfg])
    assert not workdir.path("results/.dnalm/plan.npz").exists()  # a dry run saves nothing
    workdir.snakemake(WINDOWS, configs=[cfg])
    assert workdir.path("results/.dnalm/plan.npz").exists()
    # Break the BED while keeping its size and mtime: the DAG is built from the saved
    # plan (as in every cluster job), so the BED is not read.
    bed = workdir.path("r.bed")
    stat = bed.stat()
    bed.write_text(bed.read_text().replace("\t", " ", 1))
    os.utime(bed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in workdir.snakemake("-n", WINDOWS, configs=[cfg]).output
    # A new mtime is a changed input: parsed again, and the error is found.
    os.utime(bed)
    run = workdir.snakemake("-n", WINDOWS, configs=[cfg], check=False)
    assert run.returncode != 0 and "r.bed:1: start/end" in run.output and "Fix:" in run.output


# ---------------------------------------------------------------- the lock


def _popen(wd: Workdir, cfg: Path, target: Path) -> subprocess.Popen:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1", str(target), "--configfile",
           str(wd.path("config/config.yaml")), str(cfg)]
    return subprocess.Popen(cmd, cwd=wd.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_two_runs_on_one_outdir_from_two_working_directories(tmp_path):
    """Run A holds the outdir: run B, started elsewhere with the same absolute outdir, is
    refused before any job and names A; A's logs stay whole; A's lock goes with A."""
    outdir, logdir = tmp_path / "shared/results", tmp_path / "shared/logs"
    runs = []
    for name in ("a", "b"):
        wd = Workdir(tmp_path / name)
        write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("r.bed"), 3)
        runs.append((wd, wd.write_config("run.yaml", {"outdir": str(outdir), "logdir": str(logdir),
                                                      "input": {"mode": "bed", "bed": "r.bed"}})))
    (wd_a, cfg_a), (wd_b, cfg_b) = runs
    lock = outdir / ".dnalm/run.lock"
    a = _popen(wd_a, cfg_a, outdir / "windows/sequences.parquet")
    try:
        deadline = time.monotonic() + 240
        while not lock.exists() and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.exists(), a.communicate()[0][-3000:]
        os.killpg(a.pid, signal.SIGSTOP)  # A (and its job) hold still, whatever the machine's speed
        owner = json.loads(lock.read_text())
        assert owner["pid"] == a.pid and owner["cwd"] == str(wd_a.root)
        logs_before = {p: p.read_bytes() for p in logdir.rglob("*.log")}
        b = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1", "--configfile",
                            str(wd_b.path("config/config.yaml")), str(cfg_b)],
                           cwd=wd_b.root, capture_output=True, text=True, timeout=300)
        assert b.returncode != 0
        out = b.stdout + b.stderr
        assert f"is in use by another dnalm run: pid {a.pid}" in out and str(wd_a.root) in out, out[-3000:]
        assert "Fix: wait until that run ends, or give this run its own outdir" in out
        assert {p: p.read_bytes() for p in logdir.rglob("*.log")} == logs_before
        assert json.loads(lock.read_text())["pid"] == a.pid
        # A dry run neither takes nor heeds the lock.
        dry = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--configfile",
                              str(wd_b.path("config/config.yaml")), str(cfg_b)],
                             cwd=wd_b.root, capture_output=True, text=True, timeout=300)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        os.killpg(a.pid, signal.SIGCONT)
        out_a = a.communicate(timeout=600)[0]
        assert a.returncode == 0 and "dnalm finished" in out_a, out_a[-3000:]
        assert "windows of 12 sequences" in (logdir / "make_windows/make_windows.log").read_text()
        assert "12 sequences from bed input" in (logdir / "extract_regions/extract_regions.log").read_text()
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGCONT)
            os.killpg(a.pid, signal.SIGKILL)
    assert not lock.exists()
    # A lock left by a run that died is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({**owner, "pid": dead.pid, "start_ticks": None}))
    b = wd_b.snakemake(str(outdir / "regions/labels.parquet"), "--forcerun", "extract_labels", configs=[cfg_b])
    assert "taking over the lock of a run that is gone" in b.output and not lock.exists()
