"""Regression and multi-label targets (heads.task): how labels are read and refused, the
tasks' losses, outputs and metrics against hand computations, heads and baselines trained
on real sequences whose targets are known, and whole workflow runs of both recipes' data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.data import DATA, ORCHID, read_records, write_fasta
from helpers.workflow import Workdir

from dnalm.embedding.shards import embed_shard
from dnalm.encoders.tiny import build_tiny_encoder
from dnalm.errors import InputError
from dnalm.inputs.regions import regions_to_arrow
from dnalm.inputs.sources import load_regions
from dnalm.inputs.splits import label_sequences
from dnalm.inputs.targets import LabelSets, Values, target_kind
from dnalm.io import read_parquet, write_table_atomic
from dnalm.learning.baselines import gc_content, run_baselines
from dnalm.learning.frozen import train_head
from dnalm.learning.heads import load_head
from dnalm.learning.tasks import Multilabel, Regression, task_of_config
from dnalm.learning.tasks.multilabel import best_thresholds, multilabel_metrics
from dnalm.learning.tasks.regression import regression_metrics
from dnalm.outputs.classify import classify
from dnalm.settings import EncoderSpec, HeadSettings, InputSettings, TrainSettings, WindowSpec
from dnalm.windows.shards import SEQUENCES_FILE, plan_shards, write_shards

TILES = DATA / "ecoli_k12_tiles_annotated.bed"


# ------------------------------------------------------------ reading labels


def test_values_are_numbers_one_count_per_sequence_named_by_targets():
    kind = Values(("a", "b"))
    assert kind.parse("0.5;2", "f") == (0.5, 2.0)
    assert kind.names(np.array(["1;2", "3;4.5"], dtype=object), "f") == ["a", "b"]
    y = kind.encode(np.array(["1;2", None, "3;4.5"], dtype=object), ["a", "b"])
    assert y.shape == (3, 2) and np.isnan(y[1]).all() and y[2].tolist() == [3.0, 4.5]
    assert Values().names(np.array(["1", "2"], dtype=object), "f") == ["value"]
    assert Values().names(np.array(["1;2", "2;3"], dtype=object), "f") == ["value_1", "value_2"]
    with pytest.raises(InputError, match="'coding' is not a number") as err:
        kind.parse("coding", "labels.tsv")
    assert "heads.task to classification" in str(err.value) and "labels.tsv" in str(err.value)
    with pytest.raises(InputError, match="not a finite number"):
        kind.parse("inf;1", "f")
    with pytest.raises(InputError, match=r"different numbers of targets \(1, 2\)"):
        Values().check(["1", "1;2"], [], "f")
    with pytest.raises(InputError, match="names 2 target"):
        kind.check(["1", "2"], [], "f")
    with pytest.raises(InputError, match="1 distinct value"):
        Values().check(["0.5"], ["0.7"], "f")


def test_label_sets_are_separated_by_semicolons_with_a_dash_for_none():
    kind = LabelSets()
    assert kind.parse("CDS; tRNA") == {"CDS", "tRNA"} and kind.parse("-") == frozenset()
    assert kind.names(np.array(["CDS;tRNA", "-", "rRNA"], dtype=object), "f") == ["CDS", "rRNA", "tRNA"]
    y = kind.encode(np.array(["tRNA", None, "-", "CDS;novel"], dtype=object), ["CDS", "tRNA"])
    assert y[0].tolist() == [0, 1] and np.isnan(y[1]).all() and y[2].tolist() == [0, 0] and y[3].tolist() == [1, 0]
    with pytest.raises(InputError, match="every training sequence carries the same labels"):
        kind.check(["CDS", "CDS"], [], "f")
    assert kind.check(["CDS", "-"], ["novel;CDS"], "f") == [
        "label(s) novel occur only in val/test: no head can predict them, and they are left out of the metrics"]


def test_the_task_settings_agree_before_any_job():
    assert HeadSettings(task="regression").select_by == "r2"
    assert HeadSettings(task="multilabel").select_by == "auprc"
    assert HeadSettings().select_by == "mcc" and HeadSettings(task="regression", select_by="loss").select_by == "loss"
    with pytest.raises(InputError, match="does not measure a regression head"):
        HeadSettings(task="regression", select_by="mcc").check()
    with pytest.raises(InputError, match="heads.targets names values"):
        HeadSettings(targets=("x",)).check()
    # A classification run's params are those of versions without tasks: nothing re-runs.
    assert not {"task", "targets", "regression_loss"} & set(HeadSettings().learner_params())
    assert HeadSettings(task="regression").learner_params()["task"] == "regression"


def test_validation_takes_low_and_high_values_alike():
    regions = pd.DataFrame({"seq_id": [f"s{i}" for i in range(40)], "chrom": [f"s{i}" for i in range(40)],
                            "start": 0, "end": 100, "length": 100, "strand": "+", "split": None, "group": None,
                            "label": [f"{i / 10:.1f}" for i in range(40)]})
    sets = label_sequences(regions, np.ones(40, bool), HeadSettings(task="regression", val_fraction=0.2), "x")
    val = sets.y[sets.rows("val"), 0]
    assert len(val) == 8 and np.histogram(val, bins=[0, 1, 2, 3, 4])[0].tolist() == [2, 2, 2, 2]
    assert sets.names == ["value"] and sets.task == "regression"


# ------------------------------------------------------------ the tasks by hand


def test_regression_learns_standardised_targets_and_predicts_in_the_users_units():
    task = Regression(HeadSettings(task="regression"))
    y = np.array([[10.0, 0.0], [20.0, 1.0], [30.0, 2.0]], np.float32)
    task.fit_state(y)
    assert np.allclose(task.state["mean"], [20, 1]) and np.allclose(task.state["std"], [np.std([10, 20, 30]),
                                                                                           np.std([0, 1, 2])])
    standardised = (torch.from_numpy(y) - torch.tensor(task.state["mean"])) / torch.tensor(task.state["std"])
    assert np.allclose(task.outputs(standardised).numpy(), y, atol=1e-5)
    assert float(task.loss(standardised, torch.from_numpy(y), torch.ones(2), 3.0)) < 1e-10
    # MSE of a prediction one sd off in one target of one row: 1 / 2 targets / 3 rows.
    off = standardised.clone()
    off[0, 0] += 1
    assert float(task.loss(off, torch.from_numpy(y), torch.ones(2), 3.0)) == pytest.approx(1 / 6)
    huber = Regression(HeadSettings(task="regression", regression_loss="huber"), task.state)
    off[0, 0] += 2  # three sd off: huber is linear there (3 - 0.5), mse quadratic (9 / 2)
    assert float(huber.loss(off, torch.from_numpy(y), torch.ones(2), 1.0)) == pytest.approx(2.5 / 2)
    assert float(task.loss(off, torch.from_numpy(y), torch.ones(2), 1.0)) == pytest.approx(9 / 2)


def test_regression_metrics_and_the_constant_predictor_warning():
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    perfect = regression_metrics(truth, truth, ["x"])
    assert perfect["r2"] == pytest.approx(1) and perfect["pearson"] == pytest.approx(1) and perfect["mae"] == 0
    shifted = regression_metrics(truth, truth + 1, ["x"])
    assert shifted["mae"] == pytest.approx(1) and shifted["rmse"] == pytest.approx(1)
    assert shifted["r2"] == pytest.approx(1 - 4 / 5) and shifted["spearman"] == pytest.approx(1)
    constant = np.full_like(truth, 2.5)
    scored = regression_metrics(truth, constant, ["x"])
    assert scored["r2"] == pytest.approx(0) and scored["pearson"] is None
    task = Regression()
    assert task.warnings({"test": constant}, {"test": truth}, ["x"]) == [
        "the kept model predicts nearly the same x (2.5) for every one of the 4 test sequences, whose values vary "
        "(sd 1.118): it separates nothing there"]
    task.state = {"mean": [2.5], "std": [1.0]}
    _, constant_score = task.validation(constant, truth, np.ones(1), "r2")
    _, good_score = task.validation(truth + 0.1, truth, np.ones(1), "r2")
    assert good_score > constant_score


def test_multilabel_weights_thresholds_and_metrics_by_hand():
    task = Multilabel()
    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    assert task.weights(y, 2, True).tolist() == [3.0, 3.0] and task.weights(y, 2, False).tolist() == [1, 1]
    proba = np.array([[0.9, 0.2], [0.4, 0.1], [0.3, 0.35], [0.2, 0.3]])
    # Label 0: only row 0 positive, best F1 at its own probability; label 1: row 2 (0.35).
    assert best_thresholds(y, proba) == [0.9, 0.35]
    m = multilabel_metrics(y, proba, ["a", "b"], [0.9, 0.35])
    assert m["per_label"]["a"] == {"positives": 1, "auroc": 1.0, "auprc": 1.0, "threshold": 0.9, "f1": 1.0}
    assert m["micro_f1"] == 1.0 and m["exact_match"] == 1.0 and m["macro_auroc"] == 1.0
    half = multilabel_metrics(y, proba, ["a", "b"], [0.5, 0.5])  # b missed at 0.5
    assert half["per_label"]["b"]["f1"] == 0 and half["macro_f1"] == 0.5 and half["exact_match"] == 0.75
    task.state = {"thresholds": [0.9, 0.35]}
    columns = task.columns(np.vstack([proba, np.full(2, np.nan)]), ["a", "b"])
    assert columns["pred_labels"].tolist() == ["a", "-", "b", "-", None]
    assert task.warnings({"val": np.tile([0.95, 0.1], (4, 1))}, {"val": y}, ["a", "b"]) == [
        "the kept model calls the same labels (a) for every one of the 4 val sequences, whose labels differ: it "
        "separates nothing there"]


# ------------------------------------------------------------ real sequences


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """60 real orchid ITS sequences, embedded once by a tiny encoder; their targets are
    facts of their bases: GC content and length (regression), GC-rich / long (labels)."""
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("targets")
    records = dict(list(read_records(ORCHID).items())[:60])
    fasta = write_fasta(tmp / "seqs.fa", records)
    gc = {name: gc_content(seq.encode()) for name, seq in records.items()}
    length = {name: len(seq) for name, seq in records.items()}
    gc_median, length_median = np.median(list(gc.values())), np.median(list(length.values()))
    split = {name: "test" if i % 4 == 3 else "train" for i, name in enumerate(records)}
    tables = {}
    for task, label in (("regression", lambda n: f"{gc[n]:.4f};{length[n] / 1000:.4f}"),
                        ("multilabel", lambda n: ";".join([x for x, on in (("gc_rich", gc[n] > gc_median),
                                                                          ("long", length[n] > length_median))
                                                           if on]) or "-")):
        path = tmp / f"{task}.tsv"
        pd.DataFrame({"id": list(records), "label": [label(n) for n in records],
                      "split": [split[n] for n in records]}).to_csv(path, sep="\t", index=False)
        tables[task] = str(path)
    regions_paths = {}
    for task, table in tables.items():  # one regions table per task: the same sequences, other labels
        regions = load_regions(InputSettings(mode="fasta", sequences=str(fasta), labels=table))
        regions_paths[task] = str(tmp / f"regions_{task}.parquet")
        write_table_atomic(regions_to_arrow(regions), regions_paths[task], {"stage": "regions"})
    encoder = build_tiny_encoder(str(tmp / "encoder"), hidden=32, layers=1, heads=2)
    spec = WindowSpec(size=256, stride=128, per_shard=64)
    write_shards(regions, str(fasta), spec, str(tmp / "windows"), plan_shards(regions["length"].to_numpy(), spec))
    shards = sorted(str(p) for p in (tmp / "windows").glob("shard_*.parquet"))
    embeddings = []
    for shard in shards:
        out = str(tmp / "embeddings" / shard.rsplit("/", 1)[1])
        embed_shard(shard, out, EncoderSpec(model=str(encoder)), device="cpu")
        embeddings.append(out)
    return SimpleNamespace(tmp=tmp, fasta=str(fasta), regions=regions_paths, labels=tables, gc=gc,
                           shards=shards, embeddings=embeddings, sequences=str(tmp / "windows" / SEQUENCES_FILE))


def test_a_regression_head_learns_gc_and_predicts_in_its_units(world):
    settings = TrainSettings(task="regression", targets=("gc", "kb"), pooling="mean", epochs=40, patience=40,
                             batch_size=8, learning_rate=0.01, seed=0)
    folder = world.tmp / "heads" / "mean_regression"
    metrics = train_head(world.embeddings, world.regions["regression"], "mean", settings, str(folder))
    assert metrics["task"]["name"] == "regression" and metrics["targets"] == ["gc", "kb"]
    assert metrics["test"]["n"] == 15 and set(metrics["test"]["per_target"]) == {"gc", "kb"}
    assert metrics["test"]["per_target"]["gc"]["pearson"] > 0.5  # a fact of the bases, in the vectors
    assert "val_r2" in metrics["history"][0] and metrics["selected_by"] == "r2"
    head = load_head(folder)
    assert task_of_config(head.config.task).name == "regression"
    assert np.allclose(head.config.task["mean"][0], np.mean([world.gc[n] for n in list(world.gc)
                                                             if n in _train_ids(world)]), atol=1e-4)
    table = classify(world.embeddings, world.regions["regression"], world.sequences, str(folder), 0.5,
                     str(world.tmp / "reg.tsv"), str(world.tmp / "reg.parquet"), None)
    assert [c for c in table.columns if c.startswith(("pred", "prob"))] == ["pred_gc", "pred_kb"]
    # Predictions are GC fractions, not standardised values.
    assert table["pred_gc"].between(0.2, 0.8).all() and abs(table["pred_gc"].mean() - 0.5) < 0.2

    baselines = run_baselines(world.shards, world.regions["regression"], None, settings, k=3,
                              embedding_paths=world.embeddings)
    assert baselines["task"] == "regression" and {"kmer3_ridge", "gc_ridge", "kmer3_lm_ridge"} <= set(baselines)
    # A linear model of GC content predicts GC content exactly.
    assert baselines["gc_ridge"]["test"]["per_target"]["gc"]["r2"] > 0.999


def test_three_seeds_give_the_spread_of_the_tasks_metrics(world):
    for task, key in (("regression", "r2"), ("multilabel", "macro_auprc")):
        settings = TrainSettings(task=task, pooling="mean", epochs=4, min_epochs=1, batch_size=8, seeds=3, seed=5)
        metrics = train_head(world.embeddings, world.regions[task], "mean", settings,
                             str(world.tmp / "heads" / f"seeds_{task}"))
        spread = metrics["seeds"]
        assert spread["seeds"] == [5, 6, 7] and len(spread["test"][key]["values"]) == 3
        assert spread["test"][key]["values"][0] == pytest.approx(metrics["test"][key])  # the first seed is kept
        assert spread["test"][key]["min"] <= spread["test"][key]["mean"] <= spread["test"][key]["max"]


def _train_ids(world) -> set[str]:
    table = pd.read_csv(world.labels["regression"], sep="\t")
    return set(table.loc[table["split"] == "train", "id"])


def test_a_multilabel_head_calls_label_sets_at_thresholds_from_validation(world):
    settings = TrainSettings(task="multilabel", pooling="mean", epochs=40, patience=40, batch_size=8,
                             learning_rate=0.01, seed=0)
    folder = world.tmp / "heads" / "mean_multilabel"
    metrics = train_head(world.embeddings, world.regions["multilabel"], "mean", settings, str(folder))
    assert metrics["labels"] == ["gc_rich", "long"] and metrics["selected_by"] == "auprc"
    assert metrics["test"]["per_label"]["gc_rich"]["auroc"] > 0.7
    thresholds = load_head(folder).config.task["thresholds"]
    assert len(thresholds) == 2 and [m["threshold"] for m in metrics["test"]["per_label"].values()] == thresholds
    table = classify(world.embeddings, world.regions["multilabel"], world.sequences, str(folder), 0.5,
                     str(world.tmp / "ml.tsv"), str(world.tmp / "ml.parquet"), str(world.tmp / "ml_tracks"))
    calls = table["pred_labels"].map(LabelSets.parse)
    assert (calls == [frozenset(n for n, p, t in zip(["gc_rich", "long"], row, thresholds) if p >= t)
                      for row in table[["prob_gc_rich", "prob_long"]].to_numpy()]).all()
    index = pd.read_csv(world.tmp / "ml_tracks" / "tracks.tsv", sep="\t")
    assert index["label"].tolist() == ["gc_rich", "long"]
    baselines = run_baselines(world.shards, world.regions["multilabel"], None, settings, k=3)
    assert baselines["gc_logreg"]["test"]["per_label"]["gc_rich"]["auroc"] > 0.95


def test_classification_labels_read_as_regression_are_refused_with_the_fix(world):
    with pytest.raises(InputError, match="not a number") as err:
        label_sequences(read_parquet(world.regions["regression"]).to_pandas().assign(label="coding"), np.ones(60, bool),
                        HeadSettings(task="regression"), "labels.tsv")
    assert "classification" in str(err.value)
    assert target_kind("classification").names(np.array(["a", "b"], dtype=object), "x") == ["a", "b"]


# ------------------------------------------------------------ the workflow


def _tiles_subset(dst, per_split: int) -> None:
    lines = TILES.read_text().splitlines()
    train = [line for line in lines if line.split("\t")[7] == "train"][:per_split * 3]
    test = [line for line in lines if line.split("\t")[7] == "test"][:per_split]
    dst.write_text("\n".join(train + test) + "\n")


@pytest.mark.workflow
@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_a_recipe_runs_through_every_rule(tmp_path, task):
    wd = Workdir(tmp_path / "wd")
    _tiles_subset(wd.path("tiles.bed"), 30)
    overlay = {"input": {"bed": "tiles.bed", "bed_columns": {"label": 7 if task == "regression" else 9, "split": 8,
                                                             "group": 10}},
               "heads": {"task": task, "training": {"val_block": 20000}},
               "finetune": {"activate": True, "epochs": 1, "max_windows": 1, "gradient_checkpointing": False}}
    if task == "regression":
        overlay["heads"]["targets"] = ["coding_fraction", "forward_coding_fraction"]
    run = wd.snakemake(configs=[wd.write_config("task.yaml", overlay)])
    results = wd.path("results")
    for head in ("hierarchical", "mean", "finetuned"):
        metrics = json.loads((results / "heads" / head / "metrics.json").read_text())
        assert metrics["task"]["name"] == task and metrics["test"]["n"] == 30
        table = pd.read_csv(results / "classify" / head / "predictions.tsv", sep="\t")
        tracks = sorted(p.name for p in (results / "classify" / head / "tracks").iterdir())
        if task == "regression":
            assert {"pred_coding_fraction", "pred_forward_coding_fraction"} <= set(table.columns)
            assert "calls.bed" not in tracks and "pred_coding_fraction.bw" in tracks
        else:
            assert "pred_labels" in table and "prob_CDS" in table and "calls.bed" in tracks
    baselines = json.loads((results / "baselines" / "metrics.json").read_text())
    suffix = "_ridge" if task == "regression" else "_logreg"
    assert {f"kmer6{suffix}", f"gc{suffix}", f"kmer6_lm{suffix}", "leak"} <= set(baselines)
    figure = "scatter.png" if task == "regression" else "roc_pr.png"
    assert (results / "report" / figure).stat().st_size > 0
    assert not (results / "report" / "confusion.png").exists()
    said = "R² " if task == "regression" else "macro AUPRC "
    assert said in run.stdout and "model choice (validation " in run.stdout
    report = pd.read_csv(results / "report" / "metrics.tsv", sep="\t")
    assert ("r2" if task == "regression" else "macro_auprc") in report.columns


@pytest.mark.workflow
def test_labels_the_task_cannot_read_are_refused_before_any_job(tmp_path):
    wd = Workdir(tmp_path / "wd")
    _tiles_subset(wd.path("tiles.bed"), 5)
    config = wd.write_config("task.yaml", {"input": {"bed": "tiles.bed", "bed_columns": {"label": 9, "split": 8,
                                                                                         "group": 10}},
                                           "heads": {"task": "regression"}})
    run = wd.snakemake("-n", configs=[config], check=False)
    assert run.returncode != 0 and "tiles.bed: the label 'CDS' is not a number" in run.output
    assert "set heads.task to classification" in run.output and not wd.path("results").exists()
    config = wd.write_config("select.yaml", {"input": {"bed": "tiles.bed", "bed_columns": {"label": 7, "split": 8,
                                                                                           "group": 10}},
                                             "heads": {"task": "regression", "training": {"select_by": "mcc"}}})
    run = wd.snakemake("-n", configs=[config], check=False)
    assert run.returncode != 0 and "select_by is 'mcc', which does not measure a regression head" in run.output
