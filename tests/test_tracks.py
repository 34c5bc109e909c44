"""Tracks: bigWig beside every bedGraph with the same intervals and values, file names
unique whatever the labels, label text that cannot break a file, and the lambda
whole-genome tiling example covering its genome with no gap."""

from __future__ import annotations

import csv
import shlex

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyBigWig
import pytest
from helpers.workflow import REPO

from dnalm.errors import InputError
from dnalm.inputs.fasta import read_fai
from dnalm.inputs.labels import check_label_text
from dnalm.io import write_table_atomic
from dnalm.outputs.classify import gather, write_tables
from dnalm.outputs.tracks import INDEX_FILE, track_line_text, track_names, write_tracks

SIZES = {"chrA": 1_000, "chrB": 600, "chrEmpty": 300}  # reference order; chrEmpty has no call


def read_bedgraph(path) -> tuple[str, pd.DataFrame]:
    with open(path) as fh:
        track = fh.readline().rstrip("\n")
    graph = pd.read_csv(path, sep="\t", skiprows=1, header=None, names=["chrom", "start", "end", "value"],
                        quoting=csv.QUOTE_NONE, dtype={"chrom": str})
    return track, graph


def bigwig_intervals(path) -> tuple[dict, pd.DataFrame]:
    bw = pyBigWig.open(str(path))
    try:
        chroms = bw.chroms()
        rows = [(chrom, s, e, v) for chrom in chroms for s, e, v in (bw.intervals(chrom) or ())]
    finally:
        bw.close()
    return chroms, pd.DataFrame(rows, columns=["chrom", "start", "end", "value"])


def assert_bigwig_matches_bedgraph(bigwig, bedgraph, sizes):
    chroms, intervals = bigwig_intervals(bigwig)
    _, graph = read_bedgraph(bedgraph)
    assert chroms == sizes
    assert intervals[["chrom", "start", "end"]].values.tolist() == graph[["chrom", "start", "end"]].values.tolist()
    np.testing.assert_allclose(intervals["value"], graph["value"], rtol=1e-6, atol=1e-7)  # float32 in bigWig
    for _, sub in graph.groupby("chrom", sort=False):
        assert (sub["start"].to_numpy() < sub["end"].to_numpy()).all()
        assert (sub["start"].to_numpy()[1:] >= sub["end"].to_numpy()[:-1]).all()  # sorted, no overlap


def calls_table(labels: list[str], classes: list[str]) -> pd.DataFrame:
    """Overlapping calls on two contigs given out of reference order (chrB first)."""
    rng = np.random.default_rng(0)
    n = len(labels)
    chrom = ["chrB"] * (n // 2) + ["chrA"] * (n - n // 2)
    start = rng.integers(0, 400, n)
    proba = rng.dirichlet(np.ones(len(classes)), n)
    table = pd.DataFrame({"seq_id": [f"s{i}" for i in range(n)], "chrom": chrom, "start": start,
                          "end": start + rng.integers(50, 200, n), "strand": "+", "pred_label": labels})
    for i, name in enumerate(classes):
        table[f"prob_{name}"] = proba[:, i]
    table.loc[0, "pred_label"] = None  # no call: left out of every track
    table.loc[0, [f"prob_{c}" for c in classes]] = np.nan
    return table


# ------------------------------------------------------------ label text


@pytest.mark.parametrize("label", ["a\tb", "a\nb", "a\rb", "nul\x00", "esc\x1b[0m", "del\x7f", "nel\x85",
                                   "line\u2028sep"])
def test_labels_with_control_characters_are_refused(label):
    with pytest.raises(InputError) as err:
        check_label_text(["fine", label, None, float("nan")], "labels.tsv")
    message = str(err.value)
    assert message.startswith("labels.tsv: ") and repr(label) in message and "Fix:" in message


def test_printable_labels_pass_and_several_bad_ones_are_counted():
    check_label_text(["a/b", "a_b", 'say "hi"', "x y", "Cyprípedium", "α-helix", None], "x")
    with pytest.raises(InputError, match=r"'a\\tb'.*\(2 labels hold such characters\)"):
        check_label_text(["a\tb", "c\nd", "a\tb"], "x")


def test_track_names_unique_whatever_the_labels():
    names = track_names(["a/b", "a_b", "A_B", "plain", "x.y", "ünï", "q" * 300])
    stems = list(names.values())
    assert len({s.casefold() for s in stems}) == len(stems)  # unique, even on a case-insensitive disk
    assert names["plain"] == "prob_plain" and names["x.y"] == "prob_x.y"  # no suffix without a clash
    assert names["a/b"].startswith("prob_a_b-") and names["a_b"].startswith("prob_a_b-")
    assert names["a/b"] != names["a_b"]
    assert names["ünï"] == "prob__n_" and len(names["q" * 300]) == len("prob_") + 100
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for s in stems)
    # a class's name does not depend on which other classes exist unless they clash
    assert track_names(["a/b", "a_b"]) == {"a/b": names["a/b"], "a_b": names["a_b"]}
    assert track_names(["a/b", "zzz"]) == {"a/b": "prob_a_b", "zzz": "prob_zzz"}


def test_track_line_quotes_survive_a_quoted_parse():
    value = shlex.split(f'name="P({track_line_text(chr(34) + "odd" + chr(34) + " label")})"')[0]
    assert value == "name=P('odd' label)"


def test_awkward_labels_write_one_track_per_class_and_intact_text(tmp_path):
    classes = sorted(["a/b", "a_b", 'say "hi"', "x y"])
    labels = [classes[i % len(classes)] for i in range(24)]
    table = calls_table(labels, classes)
    write_tracks(table, classes, str(tmp_path / "tracks"), SIZES)
    stems = track_names(classes)
    files = sorted(p.name for p in (tmp_path / "tracks").iterdir())
    assert len(files) == 2 + 2 * len(classes)  # calls.bed, tracks.tsv, a bedGraph and a bigWig per class
    index = pd.read_csv(tmp_path / "tracks" / INDEX_FILE, sep="\t")
    assert index["class"].tolist() == classes
    assert index["bedgraph"].tolist() == [f"{stems[c]}.bedGraph" for c in classes]
    for name, bedgraph, bigwig in index.itertuples(index=False):
        track, _ = read_bedgraph(tmp_path / "tracks" / bedgraph)
        fields = dict(part.split("=", 1) for part in shlex.split(track)[1:])
        assert fields["type"] == "bedGraph" and fields["name"] == f"P({track_line_text(name)})"
        assert_bigwig_matches_bedgraph(tmp_path / "tracks" / bigwig, tmp_path / "tracks" / bedgraph, SIZES)
    lines = (tmp_path / "tracks" / "calls.bed").read_text().splitlines()
    assert len(lines) == len(table) - 1
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 6 for r in rows)
    called = table[table["pred_label"].notna()]
    assert sorted(r[3] for r in rows) == sorted(called["pred_label"])  # labels verbatim, never quoted
    order = [(list(SIZES).index(r[0]), int(r[1])) for r in rows]
    assert order == sorted(order)  # reference contig order, then start


def test_tables_keep_awkward_labels(tmp_path):
    classes = ['say "hi"', "x y"]
    table = calls_table([classes[i % 2] for i in range(6)], classes)
    table["true_label"] = table["pred_label"]
    write_tables(table, str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"), {"stage": "test"})
    back = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert back.columns.tolist() == table.columns.tolist()
    assert back["pred_label"].tolist()[1:] == table["pred_label"].tolist()[1:]
    assert pq.read_table(tmp_path / "p.parquet").column("true_label").to_pylist()[1:] == \
        table["true_label"].tolist()[1:]


def test_tracks_are_deterministic_and_skip_nothing(tmp_path):
    classes = ["x", "y"]
    table = calls_table(["x", "y"] * 10, classes)
    for run in ("one", "two"):
        write_tracks(table, classes, str(tmp_path / run), SIZES)
    for name in ("calls.bed", "prob_x.bedGraph", "prob_x.bw", "prob_y.bw", INDEX_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    # per base, the bedGraph is the mean over the called sequences covering it
    _, graph = read_bedgraph(tmp_path / "one" / "prob_x.bedGraph")
    called = table[table["pred_label"].notna()]
    for chrom, size in SIZES.items():
        total, count = np.zeros(size), np.zeros(size)
        for row in called[called["chrom"] == chrom].itertuples():
            total[row.start : row.end] += row.prob_x
            count[row.start : row.end] += 1
        drawn = np.full(size, np.nan)
        for row in graph[graph["chrom"] == chrom].itertuples():
            drawn[row.start : row.end] = row.value
        assert np.array_equal(~np.isnan(drawn), count > 0)
        np.testing.assert_allclose(drawn[count > 0], total[count > 0] / count[count > 0], atol=1e-6)


def test_contigs_a_bed_reader_takes_for_headers_stay_out_of_the_text_tracks(tmp_path):
    """Contigs named '#...', 'track...' or 'browser...' (valid FASTA names): their BED and bedGraph
    lines would be dropped by bedtools as headers, so those rows are not written there; the
    bigWig keeps their values."""
    classes = ["x", "y"]
    table = calls_table(["x", "y"] * 10, classes)
    renamed = {"chrA": "track_1", "chrB": "#b"}
    table["chrom"] = table["chrom"].map(renamed)
    sizes = {"track_1": 1_000, "#b": 600, "browser9": 300}
    table.loc[table.index[-3:], "chrom"], table.loc[table.index[-3:], "end"] = "chrC", 290
    table.loc[table.index[-3:], "start"] = 10
    sizes["chrC"] = 300
    write_tracks(table, classes, str(tmp_path), sizes)
    for name in ("calls.bed", "prob_x.bedGraph"):
        lines = (tmp_path / name).read_text().splitlines()
        data = lines[1:] if name.endswith("bedGraph") else lines
        assert data and all(line.startswith("chrC\t") for line in data), name  # no line a reader drops
    chroms, intervals = bigwig_intervals(tmp_path / "prob_x.bw")
    assert chroms == sizes and {"track_1", "#b", "chrC"} == set(intervals["chrom"])


def test_no_calls_still_writes_valid_tracks(tmp_path):
    table = calls_table(["x"] * 3, ["x", "y"])
    table["pred_label"] = None
    write_tracks(table, ["x", "y"], str(tmp_path), SIZES)
    chroms, intervals = bigwig_intervals(tmp_path / "prob_y.bw")
    assert chroms == SIZES and intervals.empty
    assert (tmp_path / "calls.bed").read_text() == ""


def test_gather_refuses_control_characters_and_writes_nothing(tmp_path):
    """A labels file that slipped past extraction (or a head with such a class) is refused."""
    regions = pa.table({"seq_id": ["s0", "s1"], "chrom": ["chrA", "chrA"], "start": pa.array([0, 100], pa.int64()),
                        "end": pa.array([100, 300], pa.int64()), "strand": ["+", "+"],
                        "length": pa.array([100, 200], pa.int64())})
    write_table_atomic(regions, tmp_path / "regions.parquet")
    write_table_atomic(pa.table({"seq_id": ["s0", "s1"], "label": ["x", "bad\tlabel"], "split": ["train", "test"]}),
                       tmp_path / "labels.parquet")
    pq.write_table(pa.table({"seq_index": pa.array([0, 1], pa.int64()), "n_windows": pa.array([1, 1], pa.int32()),
                             "n_fraction": pa.array([0.0, 0.0], pa.float32())}), tmp_path / "sequences.parquet")
    partial = pa.table({"seq_index": pa.array([0, 1], pa.int64()), "prob_x": [0.6, 0.3], "prob_y": [0.4, 0.7]})
    write_table_atomic(partial, tmp_path / "shard.parquet", {"class_names": ["x", "y"], "head": "h", "head_kind": "mean",
                                                             "pooling": "mean", "max_n_fraction": 0.5})
    with pytest.raises(InputError, match=r"'bad\\tlabel'"):
        gather([str(tmp_path / "shard.parquet")], str(tmp_path / "regions.parquet"), str(tmp_path / "sequences.parquet"),
               str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"), str(tmp_path / "tracks"),
               labels_path=str(tmp_path / "labels.parquet"))
    assert not any(tmp_path.glob("p.*")) and not (tmp_path / "tracks").exists()


# ------------------------------------------------- the lambda example, end to end


@pytest.mark.workflow
def test_lambda_tiles_example_bigwigs_cover_the_genome(trained_bed_run, workdir):
    """config/examples/lambda_tiles.yaml as shipped, with the encoder and head of a small labelled run."""
    trained, _, _ = trained_bed_run
    overlay = workdir.write_config("use_trained.yaml", {
        "windows": {"per_shard": 150},
        "encoder": {"model": str(trained.path("results/encoder/tiny"))},
        "classify": {"pretrained_head": str(trained.path("results/heads/hierarchical"))}})
    workdir.snakemake(configs=[REPO / "config" / "examples" / "lambda_tiles.yaml", overlay])
    out = workdir.path("results/lambda_tiles/classify/pretrained")
    sizes = read_fai(REPO / "data" / "lambda_phage_NC_001416.1.fa.gz")
    assert sizes == {"NC_001416.1": 48_502}
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(table) == 97 and table["pred_label"].notna().all()
    assert len(list(workdir.path("results/lambda_tiles/embeddings").glob("*.parquet"))) == 2  # 291 windows
    index = pd.read_csv(out / "tracks" / INDEX_FILE, sep="\t")
    assert index["class"].tolist() == ["coding", "intergenic"]
    per_base = []
    for _, bedgraph, bigwig in index.itertuples(index=False):
        assert_bigwig_matches_bedgraph(out / "tracks" / bigwig, out / "tracks" / bedgraph, sizes)
        _, intervals = bigwig_intervals(out / "tracks" / bigwig)
        starts, ends = intervals["start"].to_numpy(), intervals["end"].to_numpy()
        assert starts[0] == 0 and ends[-1] == 48_502 and (starts[1:] == ends[:-1]).all()  # no gap, no overlap
        bw = pyBigWig.open(str(out / "tracks" / bigwig))
        per_base.append(np.array(bw.values("NC_001416.1", 0, 48_502)))
        bw.close()
    np.testing.assert_allclose(per_base[0] + per_base[1], 1.0, atol=1e-5)  # two classes' means add up per base
