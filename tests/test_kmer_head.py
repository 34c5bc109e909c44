"""The k-mer baseline as a head (learning.kmer_head): the weights exported from scikit-learn
predict what scikit-learn predicts, for every task, through a safetensors file and back;
and classify annotates with it from bases alone (outputs.classify)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.data import ORCHID, read_records

from dnalm.errors import InputError
from dnalm.learning.baselines import kmer_frequencies
from dnalm.learning.kmer_head import KmerHead, is_kmer_head
from dnalm.learning.tasks import task_for

K = 3


@pytest.fixture(scope="module")
def features():
    """k-mer frequencies of real ITS sequences, and a split of them."""
    records = list(read_records(ORCHID).items())
    x = np.stack([kmer_frequencies(seq.encode(), K) for _, seq in records])
    rng = np.random.default_rng(0)
    n = len(records)
    split = rng.permutation(np.repeat(["train", "val", "test"], [n - 2 * (n // 4), n // 4, n // 4]))
    return x, *(np.flatnonzero(split == name) for name in ("train", "val", "test"))


def _gc(x: np.ndarray) -> np.ndarray:
    """GC fraction from 3-mer frequencies (what the targets below are made of)."""
    codes = np.array([[(i // 4**p) % 4 for p in range(K)] for i in range(4**K)])
    return x @ np.isin(codes, [1, 2]).mean(1)


def _exported(task_name, x, y, train, val, test, names, tmp_path):
    task = task_for(task_name)
    metrics, fitted = task.fit_linear({"kmer": x}, y, train, val, test, names)
    state = {"thresholds": metrics["thresholds"]} if "thresholds" in metrics else {}
    from dnalm.learning.kmer_head import from_pipeline

    from_pipeline(fitted, f"kmer{K}{task.baseline_suffix}", K, names, {"name": task_name, **state}).save(tmp_path)
    return fitted, KmerHead.load(tmp_path)


def test_binary_classification_matches_sklearn(features, tmp_path):
    x, train, val, test = features
    gc = _gc(x)
    y = (gc > np.median(gc)).astype(int)
    fitted, head = _exported("classification", x, y, train, val, test, ["low", "high"], tmp_path)
    assert head.coef.shape == (2, 4**K) and is_kmer_head({"features": head.features})
    np.testing.assert_allclose(head.predict(x[test]), fitted.predict_proba(x[test]), rtol=1e-5, atol=1e-6)  # scikit-learn computes in the features float32


def test_three_classes_match_sklearn(features, tmp_path):
    x, train, val, test = features
    y = np.digitize(_gc(x), np.quantile(_gc(x), [1 / 3, 2 / 3]))
    fitted, head = _exported("classification", x, y, train, val, test, ["a", "b", "c"], tmp_path)
    np.testing.assert_allclose(head.predict(x[test]), fitted.predict_proba(x[test]), rtol=1e-5, atol=1e-6)  # scikit-learn computes in the features float32


def test_regression_of_two_targets_matches_sklearn(features, tmp_path):
    x, train, val, test = features
    y = np.column_stack([_gc(x), x[:, 0] * 10])
    fitted, head = _exported("regression", x, y, train, val, test, ["gc", "aaa"], tmp_path)
    np.testing.assert_allclose(head.predict(x[test]), fitted.predict(x[test]), rtol=1e-5, atol=1e-6)  # scikit-learn computes in the features float32
    assert head.task == {"name": "regression"}


def test_multilabel_matches_sklearn_with_a_label_never_seen(features, tmp_path):
    x, train, val, test = features
    gc = _gc(x)
    y = np.column_stack([gc > np.median(gc), x[:, 0] > np.median(x[:, 0]), np.zeros(len(x))]).astype(np.float32)
    with pytest.warns(UserWarning):  # scikit-learn: label 3 has no positive in training
        fitted, head = _exported("multilabel", x, y, train, val, test, ["gc", "aaa", "never"], tmp_path)
    np.testing.assert_allclose(head.predict(x[test]), fitted.predict_proba(x[test]), rtol=1e-5, atol=1e-6)  # scikit-learn computes in the features float32
    assert len(head.task["thresholds"]) == 3


def test_a_changed_weights_file_is_refused(features, tmp_path):
    from safetensors.numpy import save_file

    x, train, val, test = features
    y = (_gc(x) > np.median(_gc(x))).astype(int)
    _exported("classification", x, y, train, val, test, ["low", "high"], tmp_path)
    save_file({"mean": np.zeros(3), "scale": np.ones(3), "coef": np.zeros((2, 3)), "intercept": np.zeros(2)},
              str(tmp_path / "head.safetensors"))
    with pytest.raises(InputError, match="mean has shape"):
        KmerHead.load(tmp_path)


# ------------------------------------------------------------------ workflow


def test_kmer_baseline_classifies_in_a_labelled_run_and_annotates_alone(tmp_path):
    """classify.kmer_baseline: the k-mer model saved by the baselines rule classifies every
    sequence beside the heads, its test accuracy that of baselines/metrics.json; then an
    annotation run with that folder reads bases only (no encoder, no embeddings) and calls
    the same."""
    import json

    import pandas as pd
    from helpers.data import DATA
    from helpers.workflow import Workdir, jobs_in_dry_run, write_bed_subset

    wd = Workdir(tmp_path / "wd")
    write_bed_subset(DATA / "ecoli_k12_regions.bed", wd.path("regions.bed"), 12)
    labelled = wd.write_config("labelled.yaml", {"input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]},
                                                 "classify": {"kmer_baseline": True}})
    wd.snakemake(configs=[labelled])
    results = wd.path("results")
    table = pd.read_csv(results / "classify" / "kmer6" / "predictions.tsv", sep="\t")
    test = table[table["split"] == "test"]
    accuracy = float((test["pred_label"] == test["true_label"]).mean())
    baselines = json.loads((results / "baselines" / "metrics.json").read_text())
    assert accuracy == pytest.approx(baselines["kmer6_logreg"]["test"]["accuracy"], abs=1e-9)
    assert (results / "classify" / "kmer6" / "tracks" / "calls.bed").stat().st_size > 0
    assert (results / "classify" / "mean" / "predictions.tsv").exists()

    annotate = wd.write_config("annotate.yaml", {
        "outdir": "annotated", "logdir": "annotated_logs", "input": {"bed": "regions.bed"},
        "encoder": {"source": "pretrained", "model": "no/such-model"},  # never loaded: the head reads bases
        "classify": {"pretrained_head": "results/baselines/kmer6"}})
    planned = jobs_in_dry_run(wd.snakemake("-n", configs=[annotate]).stdout)
    assert planned.get("classify_kmer_shards") and not {"embed_shard", "build_tiny_encoder"} & set(planned)
    wd.snakemake(configs=[annotate])
    annotated = pd.read_csv(wd.path("annotated/classify/pretrained/predictions.tsv"), sep="\t")
    assert not wd.path("annotated/embeddings").exists()
    pd.testing.assert_series_equal(annotated["pred_label"], table["pred_label"])
    np.testing.assert_allclose(annotated.filter(like="prob_").to_numpy(), table.filter(like="prob_").to_numpy())
