"""Real snakemake runs on small real data: outputs, modes, reruns, bad input."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.workflow import REPO, jobs_in_dry_run

pytestmark = pytest.mark.workflow

CONTRACT = ["seq_id", "chrom", "start", "end", "strand", "length", "n_windows", "n_fraction", "pred_label"]


def test_bed_run_writes_contract_tables_and_metrics(trained_bed_run):
    wd, _, run = trained_bed_run
    out = wd.path("results")
    regions = [l for l in wd.path("regions.bed").read_text().splitlines() if l]
    for head in ("hierarchical", "mean"):
        table = pd.read_csv(out / f"classify/{head}/predictions.tsv", sep="\t")
        assert list(table.columns) == CONTRACT + ["prob_coding", "prob_intergenic", "true_label", "split"]
        assert len(table) == len(regions)
        assert table["seq_id"].tolist() == [l.split("\t")[3] for l in regions]
        assert (table["n_windows"] == 3).all()  # 1000 bp, 512/256 -> 0, 256, 488
        assert table[["prob_coding", "prob_intergenic"]].sum(axis=1).round(5).eq(1).all()
        parquet = pq.read_table(out / f"classify/{head}/predictions.parquet").to_pandas()
        assert parquet["seq_id"].tolist() == table["seq_id"].tolist()
        metrics = json.loads((out / f"heads/{head}/metrics.json").read_text())
        assert metrics["test"]["n"] == 36
        for key in ("accuracy", "macro_f1", "mcc", "auroc"):
            assert metrics["test"][key] is not None
        assert (out / f"classify/{head}/tracks/calls.bed").exists()
        assert (out / f"classify/{head}/tracks/prob_coding.bedGraph").exists()
    # 72 regions x 3 windows = 216 windows in shards of 64 -> 4 shards, each embedded once
    assert sorted(p.name for p in (out / "embeddings").iterdir()) == [f"shard_0000{i}.parquet" for i in range(4)]
    assert "dnalm finished" in run.output and "predictions.tsv" in run.output


def test_dry_run_shows_every_job(workdir):
    run = workdir.snakemake("-n")
    jobs = jobs_in_dry_run(run.output)
    # 1852 regions x 3 windows, 2000 per shard -> 3 embedding jobs, known before anything runs
    # The demo fine-tunes the encoder first, then embeds with it: three heads are classified.
    assert jobs == {"all": 1, "build_tiny_encoder": 1, "extract_regions": 1, "extract_labels": 1, "make_windows": 1,
                    "finetune": 1, "embed_shard": 3, "train_head": 2, "classify_shards": 1, "gather_predictions": 3,
                    "report_metrics": 1, "report_run": 1, "baselines": 1}


def test_head_setting_reruns_training_only(trained_bed_run):
    wd, _, _ = trained_bed_run
    changed = wd.write_config("bed_head.yaml", {"input": {"mode": "bed", "bed": "regions.bed"},
                                                "heads": {"hierarchical": {"dropout": 0.2}}})
    run = wd.snakemake("-n", configs=[wd.path("bed.yaml"), changed])
    jobs = jobs_in_dry_run(run.output)
    # One classification job serves both heads, so both are gathered again (the mean head's
    # tables come out byte-identical); only the changed head is retrained.
    assert jobs == {"all": 1, "train_head": 1, "classify_shards": 1, "gather_predictions": 2, "report_metrics": 1,
                    "report_run": 1}, run.output
    assert re.search(r"reason: .*[Pp]arams", run.output)


def test_unchanged_rerun_does_nothing(trained_bed_run):
    wd, cfg, _ = trained_bed_run
    run = wd.snakemake("-n", configs=[cfg])
    assert "Nothing to be done" in run.output


def test_annotation_mode_on_whole_genome_tiles(trained_bed_run, workdir):
    """A head trained on E. coli regions annotates phiX174 tiles: tables and gap-free tracks."""
    trained, _, _ = trained_bed_run
    cfg = workdir.write_config("tiles.yaml", {
        "input": {"mode": "tiles", "reference": "data/phiX174_NC_001422.1.fa.gz",
                  "tiles": {"length": 1000, "step": 400}},
        "encoder": {"source": "pretrained", "model": str(trained.path("results/encoder/tiny"))},
        "classify": {"pretrained_head": str(trained.path("results/heads/hierarchical"))},
    })
    workdir.snakemake(configs=[cfg])
    table = pd.read_csv(workdir.path("results/classify/pretrained/predictions.tsv"), sep="\t")
    assert "true_label" not in table.columns
    assert table["start"].iloc[0] == 0 and table["end"].iloc[-1] == 5386  # right-anchored last tile
    graph = pd.read_csv(workdir.path("results/classify/pretrained/tracks/prob_coding.bedGraph"), sep="\t",
                        skiprows=1, header=None, names=["chrom", "start", "end", "value"])
    assert graph["start"].iloc[0] == 0 and graph["end"].iloc[-1] == 5386
    assert (graph["start"].iloc[1:].to_numpy() == graph["end"].iloc[:-1].to_numpy()).all()  # no gap, no overlap
    assert not workdir.path("results/heads").exists()


def test_fasta_mode_with_labels_table(workdir):
    """Another labelled set by configuration alone: orchid ITS genera (imbalanced, one singleton class)."""
    cfg = workdir.write_config("orchid.yaml", {"input": {"mode": "fasta", "sequences": "data/orchid_its.fa.gz",
                                                         "labels": "data/orchid_its_labels.tsv"},
                                               "heads": {"train": ["mean"]}, "classify": {"tracks": False}})
    workdir.snakemake(configs=[cfg])
    table = pd.read_csv(workdir.path("results/classify/mean/predictions.tsv"), sep="\t")
    labels = pd.read_csv(REPO / "data" / "orchid_its_labels.tsv", sep="\t")
    assert len(table) == len(labels) == 94
    assert set(table["true_label"]) == set(labels["label"])
    metrics = json.loads(workdir.path("results/heads/mean/metrics.json").read_text())
    assert metrics["sequences"]["test"] > 0 and metrics["sequences"]["val"] > 0


def test_contig_missing_fails_before_any_job(workdir):
    workdir.path("bad.bed").write_text("chr1\t100\t700\tr1\t0\t+\tcoding\ttrain\n")
    cfg = workdir.write_config("bad.yaml", {"input": {"mode": "bed", "bed": "bad.bed"}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0
    assert "bad.bed:1" in run.output and "'chr1'" in run.output and "NC_000913.3" in run.output
    assert not workdir.path("results").exists()


def test_missing_model_directory_is_a_clear_error(workdir):
    cfg = workdir.write_config("nomodel.yaml", {"encoder": {"source": "pretrained", "model": "models/nowhere"}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0
    assert "models/nowhere: model directory does not exist" in run.output


def test_window_larger_than_model_positions(trained_bed_run, workdir):
    """A 600 bp window needs 597 positions; the model has 512: the run stops before any job."""
    trained, _, _ = trained_bed_run
    workdir.path("one.bed").write_text("NC_000913.3\t1000\t3000\tr1\t0\t+\n")
    cfg = workdir.write_config("big.yaml", {
        "input": {"mode": "bed", "bed": "one.bed"}, "windows": {"size": 600, "stride": 300},
        "encoder": {"source": "pretrained", "model": str(trained.path("results/encoder/tiny"))},
        "classify": {"pretrained_head": str(trained.path("results/heads/mean"))}})
    run = workdir.snakemake(configs=[cfg], check=False)
    assert run.returncode != 0
    assert "takes at most 512 positions" in run.output and "windows.size to at most 515" in run.output
    assert not workdir.path("results").exists()
    # The tiny encoder is checked the same way before it is even built.
    tiny = workdir.write_config("big_tiny.yaml", {"input": {"mode": "bed", "bed": "one.bed"},
                                                  "windows": {"size": 600, "stride": 300}})
    run = workdir.snakemake("-n", configs=[tiny], check=False)
    assert run.returncode != 0 and "windows.size to at most 515" in run.output


def test_iupac_letter_fails_with_policy_and_leaves_no_shards(workdir):
    seq = "ACGT" * 300
    fasta = workdir.path("iupac.fa")
    fasta.write_text(">s1\n" + seq + "\n>s2\n" + seq[:500] + "R" + seq[501:] + "\n")
    labels = workdir.path("labels.tsv")
    labels.write_text("id\tlabel\tsplit\ns1\ta\ttrain\ns2\tb\ttrain\n")
    cfg = workdir.write_config("iupac.yaml", {"input": {"mode": "fasta", "sequences": str(fasta),
                                                        "labels": str(labels)}})
    run = workdir.snakemake(configs=[cfg], check=False)
    assert run.returncode != 0
    assert "IUPAC ambiguity code 'R' at offset 500" in run.output and "windows.iupac: as_n" in run.output
    assert not list(workdir.path("results").glob("windows/*.parquet"))


def test_training_with_one_class_is_an_error(workdir):
    fasta = workdir.path("one.fa")
    fasta.write_text(">a\n" + "ACGTTGCA" * 80 + "\n>b\n" + "TTGACCGA" * 80 + "\n")
    labels = workdir.path("labels.tsv")
    labels.write_text("id\tlabel\tsplit\na\tx\ttrain\nb\tx\ttest\n")
    cfg = workdir.write_config("one.yaml", {"input": {"mode": "fasta", "sequences": str(fasta),
                                                      "labels": str(labels)}})
    run = workdir.snakemake(configs=[cfg], check=False)
    assert run.returncode != 0
    assert "holds 1 class(es) (x)" in run.output
    assert not list(workdir.path("results").glob("heads/*/head.safetensors"))


def test_sequences_shorter_than_a_window(workdir):
    """The DNABERT 101-bp sample: every sequence gives one short window, end to end."""
    import pandas as pd

    labels = pd.read_csv(REPO / "data" / "dnabert_101bp_labels.tsv", sep="\t", dtype=str)
    labels = labels.iloc[:300].copy()
    labels["split"] = ["train"] * 200 + ["test"] * 100
    fasta_ids = set(labels["id"])
    # The FASTA holds 1,000 records; keep the 300 labelled ones in a FASTA of our own.
    import pysam

    with pysam.FastxFile(str(REPO / "data" / "dnabert_101bp.fa.gz")) as fin, \
            open(workdir.path("short.fa"), "w") as fout:
        for record in fin:
            if record.name in fasta_ids:
                fout.write(f">{record.name}\n{record.sequence}\n")
    labels.to_csv(workdir.path("short_labels.tsv"), sep="\t", index=False)
    cfg = workdir.write_config("short.yaml", {
        "input": {"mode": "fasta", "sequences": "short.fa", "labels": "short_labels.tsv"},
        "heads": {"train": ["hierarchical"]}, "classify": {"tracks": False}})
    workdir.snakemake(configs=[cfg])
    table = pd.read_csv(workdir.path("results/classify/hierarchical/predictions.tsv"), sep="\t")
    assert len(table) == 300 and (table["n_windows"] == 1).all() and (table["length"] == 101).all()
    assert table["pred_label"].notna().all()
    windows = pq.read_table(workdir.path("results/windows/shard_00000.parquet")).to_pandas()
    assert set(windows["status"]) == {"short"} and (windows["length"] == 101).all()


def test_pretrained_head_inside_the_runs_own_heads_is_refused(trained_bed_run):
    wd, _, _ = trained_bed_run
    cfg = wd.write_config("self.yaml", {"input": {"mode": "bed", "bed": "regions.bed"},
                                        "classify": {"pretrained_head": "results/heads/mean"}})
    run = wd.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0 and "lies inside this run's own heads folder" in run.output
    assert wd.path("results/heads/mean/head.safetensors").exists()


def test_untrainable_labels_and_head_shapes_stop_before_any_job(workdir):
    """What used to fail in train_head, after every (GPU) embedding job, is refused when the DAG is built."""
    one_class = "".join(f"NC_000913.3\t{s}\t{s + 1000}\tr{s}\t0\t+\tcoding\t{'train' if s < 8000 else 'test'}\n"
                        for s in range(0, 10000, 1000))
    workdir.path("one.bed").write_text(one_class)
    cfg = workdir.write_config("one.yaml", {"input": {"mode": "bed", "bed": "one.bed"}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0 and "training split holds 1 class(es) (coding)" in run.output
    assert "one.bed" in run.output and "Fix:" in run.output
    shape = workdir.write_config("shape.yaml", {"heads": {"hierarchical": {"d_model": 30, "attention_heads": 4}}})
    run = workdir.snakemake("-n", configs=[shape], check=False)
    assert run.returncode != 0 and "attention_heads (4) does not divide heads.hierarchical.d_model (30)" in run.output
    assert not workdir.path("results").exists()


def test_a_class_only_in_test_is_noted_in_the_metrics(workdir):
    lines = []
    for i, s in enumerate(range(0, 30000, 1000)):
        label, split = ("coding", "train") if i % 2 else ("intergenic", "train")
        if i >= 24:
            label, split = ("rRNA", "test") if i >= 28 else (label, "test")
        lines.append(f"NC_000913.3\t{s}\t{s + 1000}\tr{s}\t0\t+\t{label}\t{split}\n")
    workdir.path("three.bed").write_text("".join(lines))
    cfg = workdir.write_config("three.yaml", {"input": {"mode": "bed", "bed": "three.bed"},
                                              "heads": {"train": ["mean"]}})
    run = workdir.snakemake(configs=[cfg])
    assert "class(es) rRNA occur only in val/test" in run.output  # said when the DAG is built
    metrics = json.loads(workdir.path("results/heads/mean/metrics.json").read_text())
    assert any("rRNA" in note for note in metrics["notes"]) and metrics["test"]["n"] == 4


@pytest.mark.parametrize("overlay, key", [
    ({"windows": {"size": 400, "stride": 200}}, "window_size=512"),  # another window size
    ({"encoder": {"tiny": {"kmer": 5}}}, "tokenizer='dnabert-6mer'"),  # another k
    ({"encoder": {"strands": "both"}}, "strands='single'"),
])
def test_pretrained_head_of_other_embeddings_is_refused_before_any_job(trained_bed_run, workdir, overlay, key):
    trained, _, _ = trained_bed_run
    workdir.path("one.bed").write_text("NC_000913.3\t1000\t3000\tr1\t0\t+\n")
    cfg = workdir.write_config("other.yaml", {
        "input": {"mode": "bed", "bed": "one.bed"}, **overlay,
        "classify": {"pretrained_head": str(trained.path("results/heads/mean"))}})
    run = workdir.snakemake("-n", configs=[cfg], check=False)
    assert run.returncode != 0 and key in run.output and "head.json" in run.output and "Fix:" in run.output
    assert not workdir.path("results").exists()


def classify_mem_mb(output: str) -> int:
    """mem_mb of the classify_shards job in a dry run's job listing."""
    job = output.split("rule classify_shards:", 1)[1].split("\n\n", 1)[0]
    return int(re.search(r"mem_mb=(\d+)", job).group(1))


def test_classification_memory_counts_the_finetuned_hierarchical_head(workdir):
    """The attention term of a classification job's memory is there when the only hierarchical
    head is the fine-tuned model's (no frozen hierarchical head in heads.train)."""
    mems = {}
    for head in ("hierarchical", "mean"):
        overlay = workdir.write_config(f"ft_{head}.yaml", {"heads": {"train": ["mean"]},
                                                            "finetune": {"activate": True, "head": head}})
        mems[head] = classify_mem_mb(workdir.snakemake("-n", configs=[overlay]).output)
    from dnalm.outputs.classify import shard_memory_mb

    # Demo regions: 3 windows each; the hierarchical shape of FAST (2 attention heads).
    assert mems == {"hierarchical": shard_memory_mb(3, 2), "mean": shard_memory_mb(3, 0)}
    assert mems["hierarchical"] > mems["mean"]


def test_int8_embedding_jobs_ask_for_no_gpu(workdir):
    """encoder.precision int8 is CPU arithmetic: its embedding jobs ask gpu=0 (a GPU job asks 1)."""
    import re

    asked = {}
    for precision in ("auto", "int8"):
        cfg = workdir.write_config(f"{precision}.yaml", {"encoder": {"precision": precision}})
        run = workdir.snakemake("-n", configs=[cfg])
        jobs = run.output.split("rule embed_shard:")[1:]
        asked[precision] = {re.search(r"\bgpu=(\d+)", job).group(1) for job in jobs}
    assert asked == {"auto": {"1"}, "int8": {"0"}}
