"""dnalm.annotation.calls and .metrics: probabilities to called runs, GFF3 and BED6
written and read back (pysam and read_features), per-base scores against sklearn and
per-feature scores against a brute-force reference."""

from __future__ import annotations

import json
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pysam
import pytest
from helpers.workflow import REPO
from sklearn.metrics import matthews_corrcoef, precision_recall_fscore_support

from dnalm.annotation.calls import call_runs, runs, write_bed, write_gff3
from dnalm.annotation.features import annotation_classes, class_masks, read_features
from dnalm.annotation.metrics import per_base, per_feature

ECOLI_FEATURES = REPO / "data" / "ecoli_k12_mg1655_NC_000913.3.features.bed.gz"
ECOLI = "NC_000913.3"
ECOLI_LENGTHS = {ECOLI: 4_641_652}


def _runs_slowly(mask) -> list[tuple[int, int]]:
    found, start = [], None
    for i, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            found.append((start, i))
            start = None
    return found


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("mask, expected", [
    ([], []),
    ([False] * 5, []),
    ([True] * 5, [(0, 5)]),
    ([True], [(0, 1)]),
    ([True, True, False, False, True, False, True, True], [(0, 2), (4, 5), (6, 8)]),  # runs at both ends
    ([False, True, False], [(1, 2)]),
])
def test_runs_edge_cases(mask, expected):
    starts, ends = runs(np.array(mask, dtype=bool))
    assert list(zip(starts.tolist(), ends.tolist())) == expected


def test_runs_match_a_loop_on_random_masks():
    rng = np.random.default_rng(0)
    for density in (0.05, 0.5, 0.95):
        mask = rng.random(2000) < density
        starts, ends = runs(mask)
        assert list(zip(starts.tolist(), ends.tolist())) == _runs_slowly(mask)


def test_call_runs_threshold_min_length_and_score():
    prob = np.array([0.9, 0.5, 0.2, 0.6, 0.7, 0.8, 0.1, 0.55, 0.49, 1.0], dtype=np.float32)
    calls = call_runs(prob, threshold=0.5, min_length=1)  # 0.5 itself is called, 0.49 is not
    assert calls[["start", "end"]].values.tolist() == [[0, 2], [3, 6], [7, 8], [9, 10]]
    assert calls["score"].tolist() == [0.7, 0.7, 0.55, 1.0]
    assert calls.dtypes.to_dict() == {"start": np.int64, "end": np.int64, "score": np.float64}
    long = call_runs(prob, threshold=0.5, min_length=2)
    assert long[["start", "end"]].values.tolist() == [[0, 2], [3, 6]]
    assert call_runs(prob, threshold=0.95, min_length=1)[["start", "end"]].values.tolist() == [[9, 10]]
    assert call_runs(np.array([1 / 3] * 3), 0.3, 1)["score"].tolist() == [0.3333]  # 4 decimals
    assert call_runs(prob, threshold=1.01, min_length=1).empty


# ----------------------------------------------------------------------------- GFF3, BED


def _ecoli_cds_calls() -> pd.DataFrame:
    """The E. coli CDS as calls: the runs of its + and - CDS masks (overlapping genes merge)."""
    cds = read_features(str(ECOLI_FEATURES), ECOLI_LENGTHS, types={"CDS"})
    classes = annotation_classes(["CDS"], stranded=True)
    masks = class_masks(cds, classes, ECOLI, 0, ECOLI_LENGTHS[ECOLI])
    rng = np.random.default_rng(1)
    parts = []
    for cls, mask in zip(classes, masks):
        starts, ends = runs(mask)
        parts.append(pd.DataFrame({"contig": ECOLI, "start": starts, "end": ends, "type": cls.type,
                                   "strand": cls.strand, "score": rng.random(len(starts)).round(4),
                                   "class": cls.name}))
    return pd.concat(parts, ignore_index=True)  # all + calls, then all -: the writer sorts


def test_gff3_read_back_by_pysam_and_read_features(tmp_path):
    calls = _ecoli_cds_calls()
    path = tmp_path / "calls.gff3"
    write_gff3(path, calls, header_lines=["# model: tiny", "threshold 0.5"], contig_lengths=ECOLI_LENGTHS)
    lines = path.read_text().splitlines()
    assert lines[:4] == ["##gff-version 3", f"##sequence-region {ECOLI} 1 4641652", "# model: tiny",
                         "# threshold 0.5"]
    assert [p.name for p in tmp_path.iterdir()] == ["calls.gff3"]  # no temporary file left

    expected = calls.sort_values(["start", "end", "class"], ignore_index=True)
    with open(path) as fh:
        records = list(pysam.tabix_iterator(fh, parser=pysam.asGFF3()))
    assert len(records) == len(calls)
    parsed = pd.DataFrame({"contig": [r.contig for r in records], "start": [r.start for r in records],
                           "end": [r.end for r in records], "type": [r.feature for r in records],
                           "strand": [r.strand for r in records], "score": [float(r.score) for r in records],
                           "class": [r.to_dict()["Name"] for r in records]})
    pd.testing.assert_frame_equal(parsed, expected, check_dtype=False)
    assert {r.source for r in records} == {"dnalm"} and {r.frame for r in records} == {0}
    ids = [r.to_dict()["ID"] for r in records]
    assert len(set(ids)) == len(ids)
    first_plus = expected.index[expected["class"] == "CDS_plus"][0]
    assert ids[first_plus] == "CDS_plus_1"

    for cls, part in parsed.groupby("class"):  # sorted and non-overlapping per class
        assert (part["start"].to_numpy()[1:] >= part["end"].to_numpy()[:-1]).all()
    again = read_features(str(path), ECOLI_LENGTHS)
    pd.testing.assert_frame_equal(again[["contig", "start", "end", "type", "strand"]],
                                  expected[["contig", "start", "end", "type", "strand"]], check_dtype=False)


def test_gff3_escapes_names(tmp_path):
    calls = pd.DataFrame({"contig": ["chr 1"], "start": [0], "end": [9], "type": ["odd%type"], "strand": ["."],
                          "score": [0.5], "class": ["a;b=c,d&e%"]})
    path = tmp_path / "odd.gff3"
    write_gff3(path, calls, source="my source", contig_lengths={"chr 1": 100, "chr2": 50})
    text = path.read_text()
    assert "##sequence-region chr%201 1 100\n##sequence-region chr2 1 50\n" in text
    assert text.splitlines()[-1] == ("chr%201\tmy source\todd%25type\t1\t9\t0.5\t.\t.\t"
                                     "ID=a%3Bb%3Dc%2Cd%26e%25_1;Name=a%3Bb%3Dc%2Cd%26e%25")
    with open(path) as fh:
        (record,) = pysam.tabix_iterator(fh, parser=pysam.asGFF3())
    assert unquote(record.to_dict()["Name"]) == "a;b=c,d&e%"
    again = read_features(str(path), {"chr 1": 100})
    assert again[["contig", "start", "end", "type", "strand"]].values.tolist() == [["chr 1", 0, 9, "odd%type", "."]]


def test_gff3_phase_only_for_cds(tmp_path):
    calls = pd.DataFrame({"contig": ["c", "c"], "start": [10, 0], "end": [20, 5], "type": ["tRNA", "CDS"],
                          "strand": ["-", "+"], "score": [0.25, 1.0], "class": ["tRNA_minus", "CDS_plus"]})
    path = tmp_path / "p.gff3"
    write_gff3(path, calls)
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    assert [(r[2], r[3], r[4], r[7]) for r in rows] == [("CDS", "1", "5", "0"), ("tRNA", "11", "20", ".")]
    assert not any(line.startswith("##sequence-region") for line in path.read_text().splitlines())
    with pytest.raises(ValueError, match="without a length: c"):
        write_gff3(path, calls, contig_lengths={"d": 100})


def test_bed6_read_back(tmp_path):
    calls = _ecoli_cds_calls()
    calls.loc[0, "score"], calls.loc[1, "score"] = 0.0004, 0.9996  # rounds to 0 and 1000
    path = tmp_path / "calls.bed"
    write_bed(path, calls)
    bed = pd.read_csv(path, sep="\t", header=None, names=["contig", "start", "end", "name", "score", "strand"])
    expected = calls.sort_values(["start", "end", "class"], ignore_index=True)
    assert len(bed) == len(calls) and bed["start"].is_monotonic_increasing
    assert (bed["start"] == expected["start"]).all() and (bed["end"] == expected["end"]).all()
    assert (bed["name"] == expected["class"]).all() and (bed["strand"] == expected["strand"]).all()
    assert bed["score"].dtype == np.int64 and bed["score"].between(0, 1000).all()
    assert (bed["score"] == [round(s * 1000) for s in expected["score"]]).all()
    assert {0, 1000} <= set(bed["score"])


# ----------------------------------------------------------------------------- per base


@pytest.mark.parametrize("density", [0.02, 0.3, 0.7])
def test_per_base_equals_sklearn(density):
    rng = np.random.default_rng(int(density * 100))
    truth = rng.random(5000) < density
    called = truth ^ (rng.random(5000) < 0.2)  # 20% of bases flipped
    scores = per_base(truth, called)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, called, average="binary")
    assert scores["precision"] == pytest.approx(precision, abs=1e-12)
    assert scores["recall"] == pytest.approx(recall, abs=1e-12)
    assert scores["f1"] == pytest.approx(f1, abs=1e-12)
    assert scores["mcc"] == pytest.approx(matthews_corrcoef(truth, called), abs=1e-12)
    assert scores["tp"] + scores["fp"] + scores["fn"] + scores["tn"] == 5000
    assert scores["tp"] == int(np.sum(truth & called)) and scores["tn"] == int(np.sum(~truth & ~called))
    json.dumps(scores)
    assert all(type(v) in (int, float) for v in scores.values())


def test_per_base_undefined_is_none():
    nothing = np.zeros(10, dtype=bool)
    scores = per_base(nothing, nothing)
    assert scores == {"tp": 0, "fp": 0, "fn": 0, "tn": 10, "precision": None, "recall": None, "f1": None,
                      "mcc": None}
    one = nothing.copy()
    one[3] = True
    missed = per_base(one, nothing)
    assert missed["precision"] is None and missed["recall"] == 0.0 and missed["f1"] == 0.0
    assert missed["mcc"] is None
    json.dumps(missed)
    with pytest.raises(ValueError):
        per_base(one, one[:5])


def test_per_base_large_counts_do_not_overflow():
    truth = np.zeros(6_000_000, dtype=bool)
    truth[:3_000_000] = True
    called = truth.copy()
    called[2_900_000:3_100_000] = ~called[2_900_000:3_100_000]
    scores = per_base(truth, called)  # tp = tn = 2.9e6, fp = fn = 1e5: products past int64
    assert scores["mcc"] == pytest.approx((2.9**2 - 0.1**2) / 3**2, abs=1e-12)


# ----------------------------------------------------------------------------- per feature


def _per_feature_slowly(truth, calls) -> dict:
    """The definition, pair by pair."""
    result = {}
    for criterion in ("exact", "overlap"):
        truth_hit, call_hit = set(), set()
        for i, (ts, te) in enumerate(zip(*truth)):
            for j, (cs, ce) in enumerate(zip(*calls)):
                shared = min(te, ce) - max(ts, cs)
                if criterion == "exact":
                    hit = (ts, te) == (cs, ce)
                else:
                    hit = shared >= 0.5 * (te - ts) and shared >= 0.5 * (ce - cs)
                if hit:
                    truth_hit.add(i)
                    call_hit.add(j)
        n_truth, n_calls = len(truth[0]), len(calls[0])
        result[criterion] = {"truth": n_truth, "calls": n_calls, "truth_matched": len(truth_hit),
                             "calls_matched": len(call_hit),
                             "sensitivity": len(truth_hit) / n_truth if n_truth else None,
                             "precision": len(call_hit) / n_calls if n_calls else None}
    return result


def _pairs(intervals):
    return (np.array([s for s, _ in intervals], dtype=np.int64), np.array([e for _, e in intervals], dtype=np.int64))


@pytest.mark.parametrize("truth, calls, exact, overlap", [
    ([(100, 200)], [(100, 200)], (1, 1), (1, 1)),  # exact match
    ([(100, 200)], [(100, 201)], (0, 0), (1, 1)),  # end shifted by one
    ([(100, 200)], [(151, 300)], (0, 0), (0, 0)),  # shares 49 of the truth's 100: just below half
    ([(100, 200)], [(150, 250)], (0, 0), (1, 1)),  # shares exactly half of both
    ([(100, 200)], [(150, 251)], (0, 0), (0, 0)),  # half of the truth but just below half of the call
    ([(100, 200)], [(0, 1000)], (0, 0), (0, 0)),  # a call much longer than the truth
    ([(0, 50), (50, 100)], [(0, 100)], (0, 0), (2, 1)),  # one call covering two truths: half of each
    ([(0, 40), (40, 100)], [(0, 100)], (0, 0), (1, 1)),  # ... only the one holding half the call
    ([(0, 10)], [], (0, 0), (0, 0)),
])
def test_per_feature_hand_made(truth, calls, exact, overlap):
    scores = per_feature(_pairs(truth), _pairs(calls))
    assert (scores["exact"]["truth_matched"], scores["exact"]["calls_matched"]) == exact
    assert (scores["overlap"]["truth_matched"], scores["overlap"]["calls_matched"]) == overlap
    assert scores == _per_feature_slowly(_pairs(truth), _pairs(calls))
    json.dumps(scores)


def test_per_feature_sensitivity_and_precision():
    scores = per_feature(_pairs([(0, 10), (20, 30), (40, 50)]), _pairs([(0, 10), (21, 30), (60, 70), (80, 90)]))
    assert scores["exact"]["sensitivity"] == pytest.approx(1 / 3) and scores["exact"]["precision"] == 0.25
    assert scores["overlap"]["sensitivity"] == pytest.approx(2 / 3) and scores["overlap"]["precision"] == 0.5
    assert per_feature(_pairs([]), _pairs([(0, 5)]))["overlap"]["sensitivity"] is None


@pytest.mark.parametrize("seed", range(4))
def test_per_feature_equals_brute_force_on_random_intervals(seed):
    rng = np.random.default_rng(seed)

    def intervals(n, overlapping):
        lengths = rng.integers(1, 60, n)
        if overlapping:  # truth features overlap each other, as genes do
            starts = np.sort(rng.integers(0, 3000, n))
        else:  # calls from runs do not
            starts = np.cumsum(lengths + rng.integers(0, 30, n)) - lengths
        return starts, starts + lengths

    truth = intervals(150, overlapping=True)
    calls = intervals(120, overlapping=seed % 2 == 0)
    keep = rng.random(150) < 0.3  # some calls exactly on truth features
    calls = (np.concatenate([calls[0], truth[0][keep]]), np.concatenate([calls[1], truth[1][keep]]))
    order = rng.permutation(len(calls[0]))  # unsorted input
    calls = (calls[0][order], calls[1][order])
    assert per_feature(truth, calls) == _per_feature_slowly(truth, calls)


def test_per_feature_refuses_empty_intervals():
    with pytest.raises(ValueError, match="end > start"):
        per_feature(_pairs([(5, 5)]), _pairs([(0, 5)]))
