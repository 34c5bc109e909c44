"""Base annotation in real runs: the phiX174 genome labelled base by base from its bundled
gene annotation (train, annotate in shards, baseline, gather), the outputs read back by a
GFF parser and pyBigWig, what re-runs, and bad features refused before any job."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pysam
import pyBigWig
import pytest
from helpers.data import DATA
from helpers.workflow import Workdir, jobs_in_dry_run, write_bed_subset

from dnalm.annotation.split import shard_count
from dnalm.inputs.fasta import read_fai

PHIX = "data/phiX174_NC_001422.1.fa.gz"
ANNOTATION = {"features": "data/phiX174_genes.bed", "val_fraction": 0.15, "epochs": 2, "windows_per_epoch": 32,
              "batch_size": 8, "per_shard": 20, "min_length": 30, "baseline": {"bases": 2000, "flank": 24}}
# The whole phiX genome as unlabelled tiles: the run annotates its bases, nothing else.
PHIX_RUN = {"input": {"mode": "tiles", "reference": PHIX, "tiles": {"length": 1000, "step": 1000}},
            "windows": {"size": 128, "stride": 64}, "annotation": ANNOTATION}


@pytest.fixture(scope="module")
def annotated_run(tmp_path_factory):
    wd = Workdir(tmp_path_factory.mktemp("annotation") / "wd")
    config = wd.write_config("annotate.yaml", PHIX_RUN)
    planned = jobs_in_dry_run(wd.snakemake("-n", configs=[config]).stdout)
    run = wd.snakemake(configs=[config])
    return wd, config, planned, run


def test_a_run_without_labels_annotates_only_in_the_planned_shards(annotated_run):
    wd, _, planned, run = annotated_run
    lengths = read_fai(DATA / "phiX174_NC_001422.1.fa.gz")
    assert planned["annotate_shard"] == shard_count(lengths, 128, 64, 20) > 1
    assert planned["train_annotator"] == planned["annotation_baseline"] == planned["gather_annotation"] == 1
    assert not {"embed_shard", "make_windows", "finetune", "train_head", "classify_shards"} & set(planned)
    assert "base annotation:" in run.stdout and "test, model:" in run.stdout


def test_gff3_is_read_back_by_a_gff_parser_and_matches_the_bed(annotated_run):
    wd, *_ = annotated_run
    gff = wd.path("results/annotate/calls.gff3")
    lines = gff.read_text().splitlines()
    assert lines[0] == "##gff-version 3" and lines[1].startswith("##sequence-region NC_001422.1 1 5386")
    with open(gff) as fh:
        parsed = [(r.contig, r.start, r.end, r.feature, r.strand, r.frame, r.to_dict()["Name"])
                  for r in pysam.tabix_iterator(fh, pysam.asGFF3())]
    bed = pd.read_csv(wd.path("results/annotate/calls.bed"), sep="\t", header=None,
                      names=["contig", "start", "end", "name", "score", "strand"])
    assert parsed, "the model called nothing on phiX"
    assert [(c, s, e, n, st) for c, s, e, _, st, _, n in parsed] == \
        list(bed[["contig", "start", "end", "name", "strand"]].itertuples(index=False, name=None))
    assert {p[3] for p in parsed} == {"CDS"} and {p[5] for p in parsed} == {0}
    for name, rows in bed.groupby("name"):
        assert (rows["end"] - rows["start"] >= ANNOTATION["min_length"]).all()
        assert (rows["start"].to_numpy()[1:] >= rows["end"].to_numpy()[:-1]).all()  # sorted, not overlapping
        assert set(rows["strand"]) == {"+" if name == "CDS_plus" else "-"}


def test_bigwig_per_class_covers_the_whole_test_part_without_gaps(annotated_run):
    wd, *_ = annotated_run
    split = pd.read_csv(wd.path("results/annotate/split.tsv"), sep="\t")
    test = split[split["part"] == "test"].iloc[0]
    assert test["end"] == 5386 and test["start"] == int(5386 * 0.75)
    for name in ("CDS_plus", "CDS_minus"):
        bw = pyBigWig.open(str(wd.path(f"results/annotate/tracks/{name}.bw")))
        assert bw.chroms() == {"NC_001422.1": 5386}
        values = np.array(bw.values("NC_001422.1", int(test["start"]), int(test["end"])))
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
        intervals = bw.intervals("NC_001422.1")
        assert intervals[0][0] == 0 and intervals[-1][1] == 5386
        assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:]))  # no gap anywhere
        bw.close()


def test_metrics_score_the_model_and_both_baselines_on_the_test_part(annotated_run):
    wd, *_ = annotated_run
    metrics = json.loads(wd.path("results/annotate/metrics.json").read_text())
    assert set(metrics["test"]) == {"model", "kmer4_logistic", "background"}
    plus = metrics["test"]["model"]["CDS_plus"]
    # phiX genes all lie on +: the test part is mostly CDS_plus, and never CDS_minus.
    assert plus["truth_bases"] > 0 and metrics["test"]["model"]["CDS_minus"]["truth_bases"] == 0
    assert metrics["test"]["background"]["CDS_plus"]["per_base"]["recall"] == 0.0
    for model in ("model", "kmer4_logistic"):
        for name, threshold in metrics["thresholds"][model].items():
            assert 0.05 <= threshold <= 0.95
    table = pd.read_csv(wd.path("results/annotate/metrics.tsv"), sep="\t")
    assert {"base", "feature_exact", "feature_overlap"} <= set(table["level"])
    assert wd.path("results/annotate/browser.png").stat().st_size > 10_000


def test_nothing_reruns_and_min_length_reruns_only_the_gather(annotated_run):
    wd, config, *_ = annotated_run
    assert "Nothing to be done" in wd.snakemake("-n", configs=[config]).output
    longer = wd.write_config("longer.yaml", {**PHIX_RUN, "annotation": {**ANNOTATION, "min_length": 90}})
    assert jobs_in_dry_run(wd.snakemake("-n", configs=[longer]).stdout) == {"gather_annotation": 1, "all": 1}


def test_bad_gff3_is_refused_before_any_job_with_its_line(workdir):
    gff = workdir.path("bad.gff3")
    gff.write_text("##gff-version 3\nNC_001422.1\tref\tgene\t100\t400\t.\t+\t.\tID=g1\n"
                   "NC_001422.1\tref\tCDS\t500\t300\t.\t+\t0\tID=c1\n")
    config = workdir.write_config("bad.yaml", {**PHIX_RUN, "annotation": {**ANNOTATION, "features": "bad.gff3"}})
    run = workdir.snakemake("-n", configs=[config], check=False)
    assert run.returncode != 0
    assert "bad.gff3:3" in run.output and "Fix:" in run.output
    assert not workdir.path("results").exists()


def test_gzipped_gff3_on_another_contig_name_is_refused_with_the_rename(workdir):
    with gzip.open(workdir.path("renamed.gff3.gz"), "wt") as fh:
        fh.write("##gff-version 3\nchr1\tref\tCDS\t100\t400\t.\t+\t0\tID=c1\n")
    config = workdir.write_config("renamed.yaml",
                                  {**PHIX_RUN, "annotation": {**ANNOTATION, "features": "renamed.gff3.gz"}})
    run = workdir.snakemake("-n", configs=[config], check=False)
    assert run.returncode != 0 and "renamed.gff3.gz:2" in run.output and "NC_001422.1" in run.output


def test_a_labelled_run_also_annotates_unless_alone(workdir):
    write_bed_subset(DATA / "ecoli_k12_regions.bed", workdir.path("regions.bed"), 4)
    features = "data/ecoli_k12_mg1655_NC_000913.3.features.bed.gz"
    both = workdir.write_config("both.yaml", {"input": {"bed": "regions.bed"}, "annotation": {"features": features}})
    planned = jobs_in_dry_run(workdir.snakemake("-n", configs=[both]).stdout)
    assert planned["train_annotator"] == 1 and planned["embed_shard"] >= 1 and planned["classify_shards"] >= 1
    alone = workdir.write_config("alone.yaml", {"input": {"bed": "regions.bed"},
                                                "annotation": {"features": features, "alone": True}})
    planned = jobs_in_dry_run(workdir.snakemake("-n", configs=[alone]).stdout)
    assert planned["train_annotator"] == 1 and "embed_shard" not in planned and "classify_shards" not in planned


def test_the_report_shows_the_browser_figure(annotated_run, tmp_path):
    wd, config, *_ = annotated_run
    path = tmp_path / "report.html"
    run = wd.snakemake("--report", str(path), configs=[config])
    assert "Report created" in run.output
    page = path.read_text()
    assert "browser.png" in page and "per-base k-mer" in page  # the figure and its caption
