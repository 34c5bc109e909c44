"""Training and classification on real labelled sequences embedded by a tiny local encoder."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers.data import ORCHID, ORCHID_LABELS, read_records, write_fasta
from safetensors.torch import load_file

from dnalm.embedding.shards import embed_shard, read_embeddings
from dnalm.encoders.tiny import build_tiny_encoder
from dnalm.errors import InputError
from dnalm.inputs.regions import regions_to_arrow
from dnalm.inputs.sources import load_regions
from dnalm.inputs.splits import assign_splits
from dnalm.io import read_provenance, write_table_atomic
from dnalm.learning.frozen import train_head
from dnalm.learning.heads import CONFIG_FILE, WEIGHTS_FILE
from dnalm.learning.tasks.classification import classification_metrics
from dnalm.outputs.classify import classify
from dnalm.outputs.tracks import coverage_mean
from dnalm.settings import EncoderSpec, InputSettings, TrainSettings, WindowSpec
from dnalm.windows.shards import SEQUENCES_FILE, plan_shards, write_shards

HIDDEN = 32
SIZE, STRIDE = 256, 128
SETTINGS = TrainSettings(pooling="mean", d_model=16, layers=1, attention_heads=2, epochs=6, patience=3,
                         batch_size=8, seed=0)
# per genus: (train, test) sequences taken from the bundled orchid ITS set
PICK = {"Paphiopedilum": (10, 4), "Phragmipedium": (9, 3), "Cypripedium": (9, 4)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """40 real labelled sequences (+ one all-N record without a label), windowed and embedded once."""
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("train")
    records = read_records(ORCHID)
    table = pd.read_csv(ORCHID_LABELS, sep="\t", dtype=str)
    chosen = []
    for genus, (n_train, n_test) in PICK.items():
        for split, n in (("train", n_train), ("test", n_test)):
            rows = table[(table["label"] == genus) & (table["split"] == split)]
            chosen.append(rows.iloc[:n])
    chosen = pd.concat(chosen)
    fasta_records = {i: records[i] for i in chosen["id"]}
    fasta_records["gap_only"] = "N" * 300
    fasta = write_fasta(tmp / "seqs.fa", fasta_records)
    labels = tmp / "labels.tsv"
    chosen.to_csv(labels, sep="\t", index=False)
    with open(labels, "a") as fh:
        fh.write("gap_only\t\t\n")
    regions = load_regions(InputSettings(mode="fasta", sequences=str(fasta), labels=str(labels)))
    regions_path = tmp / "regions.parquet"
    write_table_atomic(regions_to_arrow(regions), regions_path, {"stage": "regions"})

    encoder_dir = build_tiny_encoder(str(tmp / "encoder"), hidden=HIDDEN, layers=1, heads=2)
    spec = WindowSpec(size=SIZE, stride=STRIDE, per_shard=64)
    n_shards = plan_shards(regions["length"].to_numpy(), spec)
    write_shards(regions, str(fasta), spec, str(tmp / "windows"), n_shards)
    shards = sorted((tmp / "windows").glob("shard_*.parquet"))
    embeddings = []
    for shard in shards:
        out = tmp / "embeddings" / shard.name
        embed_shard(str(shard), str(out), EncoderSpec(model=str(encoder_dir)), device="cpu")
        embeddings.append(str(out))
    return SimpleNamespace(tmp=tmp, regions=regions, regions_path=str(regions_path), fasta=fasta,
                           encoder=encoder_dir, shards=shards, embeddings=embeddings, n_shards=n_shards,
                           sequences_path=str(tmp / "windows" / SEQUENCES_FILE))


@pytest.fixture(scope="module")
def trained(world):
    out = {}
    for kind in ("hierarchical", "mean"):
        folder = world.tmp / "heads" / kind
        out[kind] = (folder, train_head(world.embeddings, world.regions_path, kind, SETTINGS, str(folder)))
    return out


# ---------------------------------------------------------------- embeddings


def test_embedding_shards(world):
    assert world.n_shards >= 2 and len(world.embeddings) == world.n_shards
    for shard, emb in zip(world.shards, world.embeddings):
        schema = pq.read_schema(emb)
        for pooling in ("cls", "mean"):
            assert schema.field(pooling).type == pa.list_(pa.float16(), HIDDEN)
        windows = pq.read_table(shard, columns=["window_id"])["window_id"].to_pylist()
        assert pq.read_table(emb, columns=["window_id"])["window_id"].to_pylist() == windows
        prov = read_provenance(emb)
        assert prov["stage"] == "embeddings" and prov["window_size"] == SIZE and prov["tokenizer"] == "dnabert-6mer"
        assert prov["model_sha256"].startswith("sha256:") and prov["hidden_size"] == HIDDEN
    keys, matrix, _ = read_embeddings(world.embeddings, "cls")
    assert matrix.shape == (keys.num_rows, HIDDEN) and np.isfinite(matrix).all()


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["hierarchical", "mean"])
def test_train_head_writes_weights_config_and_metrics(trained, world, kind):
    folder, metrics = trained[kind]
    assert (folder / WEIGHTS_FILE).exists() and (folder / CONFIG_FILE).exists()
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["kind"] == kind and config["embed_dim"] == HIDDEN and config["pooling"] == "mean"
    assert config["class_names"] == sorted(PICK)
    assert config["encoder"]["window_size"] == SIZE and config["encoder"]["model_sha256"].startswith("sha256:")
    for key in ("accuracy", "macro_f1", "mcc", "auroc"):
        assert key in metrics["test"], key
    assert metrics["test"]["n"] == sum(t for _, t in PICK.values())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["class_names"] == sorted(PICK)
    assert metrics["sequences"]["val"] > 0 and "stratified" in metrics["validation_source"]
    assert metrics["sequences"]["train"] + metrics["sequences"]["val"] == sum(t for t, _ in PICK.values())
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= SETTINGS.epochs
    json.dumps(metrics)  # serialisable as written by write_metrics


def test_training_is_deterministic(world, trained, tmp_path):
    folder, metrics = trained["hierarchical"]
    again = train_head(world.embeddings, world.regions_path, "hierarchical", SETTINGS, str(tmp_path / "again"))
    first, second = load_file(str(folder / WEIGHTS_FILE)), load_file(str(tmp_path / "again" / WEIGHTS_FILE))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert again["history"] == metrics["history"]
    # another seed gives other weights, so the comparison above is meaningful
    train_head(world.embeddings, world.regions_path, "hierarchical",
               TrainSettings(**{**SETTINGS.__dict__, "seed": 1}), str(tmp_path / "seed1"))
    third = load_file(str(tmp_path / "seed1" / WEIGHTS_FILE))
    assert any(not torch.equal(first[n], third[n]) for n in first)


def _nullable(column) -> list:
    return [None if pd.isna(v) else v for v in column]


def _read_regions(world) -> pd.DataFrame:
    """The regions table as train_head and classify see it (read back from Parquet)."""
    return pq.read_table(world.regions_path).to_pandas()


def _regions_variant(world, tmp_path, **columns) -> str:
    frame = world.regions.copy()
    for name, values in columns.items():
        frame[name] = values
    path = tmp_path / "regions_variant.parquet"
    write_table_atomic(regions_to_arrow(frame), path)
    return str(path)


def test_one_class_only_is_an_error(world, tmp_path):
    labels = np.where(world.regions["label"].notna(), "Paphiopedilum", None)
    path = _regions_variant(world, tmp_path, label=labels)
    with pytest.raises(InputError) as err:
        train_head(world.embeddings, path, "mean", SETTINGS, str(tmp_path / "head"))
    assert path in str(err.value) and "Fix:" in str(err.value)
    assert not (tmp_path / "head" / WEIGHTS_FILE).exists()


def test_no_labels_is_an_error(world, tmp_path):
    path = _regions_variant(world, tmp_path, label=[None] * len(world.regions))
    with pytest.raises(InputError) as err:
        train_head(world.embeddings, path, "hierarchical", SETTINGS, str(tmp_path / "head"))
    assert path in str(err.value) and "label" in str(err.value) and "Fix:" in str(err.value)
    assert not (tmp_path / "head").exists() or not any((tmp_path / "head").iterdir())


def test_stratified_validation_cut(world):
    regions = _read_regions(world)
    labelled = regions["label"].notna().to_numpy()
    split = assign_splits(regions, labelled, 0.15, seed=0)[0]
    original = regions["split"].to_numpy()
    assert not np.any(original == "val")
    val = split == "val"
    assert val.any()
    assert np.all(original[val] == "train")  # validation comes out of train only
    assert np.array_equal(split == "test", original == "test")  # test untouched
    assert _nullable(split[~labelled]) == [None]  # the unlabelled record is in no split
    labels = regions["label"].to_numpy()
    for genus, (n_train, _) in PICK.items():
        in_val = int(np.sum(val & (labels == genus)))
        in_train = int(np.sum((split == "train") & (labels == genus)))
        assert in_train >= 1 and in_val >= 1, genus
        assert in_val + in_train == n_train
        assert in_val == max(1, round(n_train * 0.15))
    assert np.array_equal(split, assign_splits(regions, labelled, 0.15, seed=0)[0])


@pytest.mark.parametrize("fraction,n_val", [(0.5, 2 + 0 + 1), (0.9, 3 + 0 + 1)])
def test_stratified_cut_keeps_every_class_in_train(fraction, n_val):
    # a: 4 members, b: 1 member (never cut), c: 2 members (at most 1 cut)
    regions = pa.table({"label": ["a", "a", "a", "a", "b", "c", "c"],
                        "split": pa.array([None] * 7, pa.string())}).to_pandas()
    labelled = np.ones(7, dtype=bool)
    labels = regions["label"].to_numpy()
    for seed in range(5):
        split = assign_splits(regions, labelled, fraction, seed)[0]
        for cls in "abc":
            assert np.any((split == "train") & (labels == cls)), (seed, cls)
        assert split[4] == "train"
        assert np.sum(split == "val") == n_val
        assert set(split) == {"train", "val"}


def test_given_val_split_is_kept():
    regions = pa.table({"label": ["a", "b", "a", "b", None],
                        "split": ["train", "train", "val", "test", None]}).to_pandas()
    labelled = regions["label"].notna().to_numpy()
    split = assign_splits(regions, labelled, 0.5, 0)[0]
    assert _nullable(split) == ["train", "train", "val", "test", None]


def test_assign_splits_accepts_the_frame_load_regions_returns(world):
    """load_regions gives object-dtype columns; assign_splits must not need a Parquet round trip.

    Fails with pandas >= 3 (copy-on-write): `Series.to_numpy(dtype=object)` of an
    object column is a read-only view, and assign_splits assigns into it.
    """
    regions = world.regions.copy()  # straight from load_regions, as a library user would pass it
    before = regions["split"].tolist()
    labelled = regions["label"].notna().to_numpy()
    split = assign_splits(regions, labelled, 0.15, seed=0)[0]
    assert np.array_equal(split, assign_splits(_read_regions(world), labelled, 0.15, seed=0)[0])
    assert regions["split"].tolist() == before  # the input is not modified


def test_classification_metrics_multiclass_by_hand_and_sklearn():
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    proba = np.array([
        [0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.8, 0.1],
        [0.3, 0.4, 0.3], [0.1, 0.1, 0.8], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6],
    ])  # predictions 0 0 1 1 1 2 0 2
    m = classification_metrics(y, proba, ["x", "y", "z"])
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    # per class F1: x: P=2/3 R=2/3; y: P=2/3 R=1; z: P=1 R=2/3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.8) / 3)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, proba.argmax(1)))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_classification_metrics_binary_by_hand():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1), ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered right
    assert m["mcc"] == pytest.approx(0.0)
    assert m["macro_f1"] == pytest.approx(0.5)
    one = classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]), ["neg", "pos"])
    assert one["auroc"] is None and one["accuracy"] == pytest.approx(0.5)
    assert classification_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"]) == {"n": 0}


# ---------------------------------------------------------------- classify


@pytest.mark.parametrize("kind", ["hierarchical", "mean"])
def test_classify_writes_the_contract_tables(world, trained, tmp_path, kind):
    folder, _ = trained[kind]
    tsv, parquet, tracks = tmp_path / "pred.tsv", tmp_path / "pred.parquet", tmp_path / "tracks"
    table = classify(world.embeddings, world.regions_path, world.sequences_path, str(folder), 0.5,
                     str(tsv), str(parquet), str(tracks))
    classes = sorted(PICK)
    expected = ["seq_id", "chrom", "start", "end", "strand", "length", "n_windows", "n_fraction", "pred_label"] + \
        [f"prob_{c}" for c in classes] + ["true_label", "split"]
    from_tsv = pd.read_csv(tsv, sep="\t")
    from_parquet = pq.read_table(parquet).to_pandas()
    assert list(from_tsv.columns) == expected
    assert list(from_parquet.columns) == expected
    assert list(table.columns) == expected
    regions = world.regions
    assert from_parquet["seq_id"].tolist() == regions["seq_id"].tolist()
    assert (from_parquet["length"] == from_parquet["end"] - from_parquet["start"]).all()
    probs = from_parquet[[f"prob_{c}" for c in classes]].to_numpy()
    called = from_parquet["pred_label"].notna().to_numpy()
    gap = (from_parquet["seq_id"] == "gap_only").to_numpy()
    assert np.array_equal(called, ~gap)  # the all-N record gets no call
    assert np.isnan(probs[gap]).all()
    assert np.allclose(probs[called].sum(1), 1.0, atol=1e-5)
    assert (np.asarray(classes)[probs[called].argmax(1)] == from_parquet["pred_label"][called]).all()
    assert np.allclose(from_tsv[[f"prob_{c}" for c in classes]].to_numpy()[called], probs[called], atol=1e-5)
    assert _nullable(from_parquet["true_label"]) == _nullable(regions["label"])
    assert _nullable(from_parquet["split"]) == _nullable(regions["split"])
    assert _nullable(from_tsv["true_label"]) == _nullable(regions["label"])
    summary = pq.read_table(world.sequences_path).to_pandas()
    assert from_parquet["n_windows"].tolist() == summary["n_windows"].tolist()
    assert from_parquet.loc[gap, "n_fraction"].tolist() == [1.0]
    prov = read_provenance(parquet)
    assert prov["stage"] == "classify" and prov["head_kind"] == kind and prov["window_size"] == SIZE
    # tracks: BED of calls, one bedGraph per class without overlaps
    bed = pd.read_csv(tracks / "calls.bed", sep="\t", header=None)
    assert len(bed) == int(called.sum()) and set(bed[3]) <= set(classes)
    for c in classes:
        graph = pd.read_csv(tracks / f"prob_{c}.bedGraph", sep="\t", header=None, skiprows=1)
        for _, sub in graph.groupby(0):
            assert (sub[1].to_numpy()[1:] >= sub[2].to_numpy()[:-1]).all()


def test_classify_rejects_a_head_of_another_window_size(world, trained, tmp_path):
    folder, _ = trained["mean"]
    other = tmp_path / "other_head"
    shutil.copytree(folder, other)
    config = json.loads((other / CONFIG_FILE).read_text())
    config["encoder"]["window_size"] = 512
    (other / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="window_size"):
        classify(world.embeddings, world.regions_path, world.sequences_path, str(other), 0.5,
                 str(tmp_path / "p.tsv"), str(tmp_path / "p.parquet"), None)
    assert not (tmp_path / "p.tsv").exists() and not (tmp_path / "p.parquet").exists()


# ---------------------------------------------------------------- coverage_mean


def _brute_force(starts, ends, values, length):
    total = np.zeros(length)
    count = np.zeros(length)
    for s, e, v in zip(starts, ends, values):
        total[s:e] += v
        count[s:e] += 1
    return total, count


@pytest.mark.parametrize("seed", range(8))
def test_coverage_mean_matches_per_base_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    starts = rng.integers(0, 300, n)
    ends = starts + rng.integers(1, 60, n)
    values = rng.random(n)
    if seed % 2:  # repeated values, so equal neighbours must merge
        values = np.round(values * 2) / 2
    seg = coverage_mean(starts, ends, values)
    length = int(ends.max()) + 5
    total, count = _brute_force(starts, ends, values, length)
    s, e, v = seg["start"].to_numpy(), seg["end"].to_numpy(), seg["value"].to_numpy()
    assert np.all(s < e)
    assert np.all(s[1:] >= e[:-1])  # sorted, no overlaps
    in_segment = np.zeros(length, dtype=bool)
    seg_value = np.full(length, np.nan)
    for a, b, val in zip(s, e, v):
        in_segment[a:b] = True
        seg_value[a:b] = val
    assert np.array_equal(in_segment, count > 0)  # exactly the covered bases, no gaps inside coverage
    covered = count > 0
    assert np.allclose(seg_value[covered], total[covered] / count[covered], atol=1e-6)
    # touching neighbours always differ (equal ones are merged)
    touching = s[1:] == e[:-1]
    assert not np.any(np.isclose(v[1:][touching], v[:-1][touching], atol=0, rtol=0))


def test_the_kmer_and_language_model_regression_is_never_worse_than_kmers_on_validation(world):
    """The k-mer + language-model model keeps the language model's vectors only where validation
    prefers them: on validation it is never below the k-mer regression."""
    from dnalm.learning.baselines import run_baselines, sequence_vectors
    from dnalm.settings import HeadSettings

    shards = [str(p) for p in world.shards]
    settings = HeadSettings(val_fraction=0.3)
    metrics = run_baselines(shards, world.regions_path, None, settings, k=3, embedding_paths=world.embeddings)
    kmer, both = metrics["kmer3_logreg"], metrics["kmer3_lm_logreg"]
    assert both["features"] in ("kmer", "kmer+lm")
    assert both["val"]["accuracy"] >= kmer["val"]["accuracy"]
    if both["features"] == "kmer":  # the same model as the baseline, then
        assert both["test"] == kmer["test"]
    vectors = sequence_vectors(world.embeddings, settings, len(world.regions))
    assert vectors.shape == (len(world.regions), HIDDEN) and not vectors[-1].any()  # the all-N record: none
    assert vectors[:-1].any(axis=1).all()


def test_several_seeds_report_the_spread_and_keep_the_first(world, tmp_path):
    """heads.training.seeds: each seed's head on the same splits; metrics.json has the mean and
    spread of every metric, and the kept head is the first seed's, as with one seed."""
    from dataclasses import replace

    from dnalm.learning.metrics import spread_line

    one = train_head(world.embeddings, world.regions_path, "mean", SETTINGS, str(tmp_path / "one"))
    three = train_head(world.embeddings, world.regions_path, "mean", replace(SETTINGS, seeds=3),
                       str(tmp_path / "three"))
    assert three["test"] == one["test"] and "seeds" not in one
    assert (tmp_path / "one" / "head.safetensors").read_bytes() == (tmp_path / "three" / "head.safetensors").read_bytes()
    spread = three["seeds"]
    assert spread["seeds"] == [0, 1, 2]
    accuracy = spread["test"]["accuracy"]
    assert accuracy["values"][0] == one["test"]["accuracy"] and len(accuracy["values"]) == 3
    assert accuracy["min"] <= accuracy["mean"] <= accuracy["max"] and accuracy["sd"] >= 0
    assert spread_line(spread).startswith("over 3 seeds, test: accuracy ")
