"""Learning users can trust: validation that holds groups out (whole groups, contigs or
genome blocks), the leak check between splits, an epoch choice a one-class model cannot
win, and the run's line on which model to use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.data import PHIX, read_records, write_fasta

from dnalm.inputs.sources import load_regions
from dnalm.inputs.splits import assign_splits, label_sequences, validation_units
from dnalm.learning.metrics import choice_line, leak_line
from dnalm.learning.tasks import Classification
from dnalm.learning.toolkit import better
from dnalm.settings import HeadSettings, InputSettings


def regions_of(groups, labels, chrom="c1", start=None, split=None) -> pd.DataFrame:
    n = len(labels)
    start = np.arange(n) * 1_000 if start is None else np.asarray(start)
    return pd.DataFrame({"seq_id": [f"r{i}" for i in range(n)], "chrom": chrom, "start": start,
                         "end": start + 500, "label": labels, "split": split or [None] * n, "group": groups})


def test_validation_holds_whole_groups_out_and_balances_classes():
    rng = np.random.default_rng(0)
    groups = [f"g{i // 5}" for i in range(200)]  # 40 groups of 5
    labels = [("a", "b")[int(rng.random() < (0.8 if int(g[1:]) % 2 else 0.2))] for g in groups]
    regions = regions_of(groups, labels)
    for seed in range(5):
        split, source = assign_splits(regions, np.ones(200, bool), 0.2, seed, "group")
        frame = pd.DataFrame({"group": groups, "split": split, "label": labels})
        assert (frame.groupby("group")["split"].nunique() == 1).all()  # no group in two splits
        for cls in ("a", "b"):
            share = ((frame["split"] == "val") & (frame["label"] == cls)).sum() / (frame["label"] == cls).sum()
            assert 0.1 <= share <= 0.3, (seed, cls, share)
        assert source == f"20% of train in whole groups of the group column (seed {seed})"
    assert np.array_equal(assign_splits(regions, np.ones(200, bool), 0.2, 3, "group")[0],
                          assign_splits(regions, np.ones(200, bool), 0.2, 3, "group")[0])


def test_position_blocks_and_contigs_are_held_out_whole():
    labels = ["a", "b"] * 100
    start = np.arange(200) * 2_500  # 40 regions a 100-kb block
    regions = regions_of([None] * 200, labels, chrom=["c1"] * 100 + ["c2"] * 100, start=start)
    split, _ = assign_splits(regions, np.ones(200, bool), 0.15, 0, "position", 100_000)
    blocks = regions["chrom"] + ":" + (regions["start"] // 100_000).astype(str)
    assert (pd.DataFrame({"b": blocks, "s": split}).groupby("b")["s"].nunique() == 1).all()
    assert (split == "val").any()
    by_contig, _ = assign_splits(regions, np.ones(200, bool), 0.4, 0, "contig")
    assert set(by_contig[:100]) | set(by_contig[100:]) == {"train", "val"} and len(set(by_contig[:100])) == 1


def test_auto_picks_groups_then_genome_blocks_then_single_sequences():
    genome = regions_of([None] * 4, ["a", "b"] * 2)
    assert validation_units(genome, "auto", 100_000)[0] == "position"
    assert validation_units(regions_of(["x", "x", "y", None], ["a", "b"] * 2), "auto", 100_000)[0] == "group"
    records = genome.assign(chrom=genome["seq_id"], start=0)  # a FASTA of sequences
    assert validation_units(records, "auto", 100_000)[0] == "random"


def test_a_given_val_split_is_kept_whatever_the_units():
    regions = regions_of(["g1", "g1", "g2", "g2"], ["a", "b", "a", "b"], split=["train", "val", "train", "test"])
    split, source = assign_splits(regions, np.ones(4, bool), 0.5, 0, "group")
    assert split.tolist() == ["train", "val", "train", "test"] and source == "split column"


def test_a_group_in_train_and_test_is_noted():
    regions = regions_of(["g1", "g1", "g2", "g2", "g3", "g3"], ["a", "b"] * 3,
                         split=["train", "test", "train", "train", "test", "test"])
    sets = label_sequences(regions, np.ones(6, bool), HeadSettings(val_fraction=0.0, val_by="group"), "x")
    assert any("1 group(s) of the group column have sequences in train and in val or test (e.g. 'g1')" in note
               for note in sets.notes)


def test_group_columns_are_read_from_the_bed_and_the_labels_table(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("NC_001422.1\t0\t500\tr1\t0\t+\tx\ttrain\tstrainA\nNC_001422.1\t600\t900\tr2\t0\t+\ty\n")
    regions = load_regions(InputSettings(mode="bed", reference=str(PHIX), bed=str(bed)))
    assert regions["group"].tolist() == ["strainA", None]
    records = {f"s{i}": "ACGT" * 100 for i in range(3)}
    fasta = write_fasta(tmp_path / "s.fa", records)
    (tmp_path / "l.tsv").write_text("id\tlabel\tgroup\ns0\tx\tG1\ns1\ty\t.\ns2\tx\tG2\n")
    regions = load_regions(InputSettings(mode="fasta", sequences=str(fasta), labels=str(tmp_path / "l.tsv")))
    assert regions["group"].tolist() == ["G1", None, "G2"]


def test_the_leak_check_counts_windows_shared_with_train_on_either_strand(tmp_path):
    from dnalm.inputs.splits import LabelledSplits
    from dnalm.learning.baselines import shared_windows
    from dnalm.settings import WindowSpec
    from dnalm.windows.bases import reverse_complement
    from dnalm.windows.shards import write_shards

    seq = next(iter(read_records(PHIX).values()))[:1000]
    # a copy in val; in test its reverse complement (windows 0, 256, 488 of it are the training
    # windows 488 and 0 read backwards, and one that is not) and an unrelated sequence
    records = {"train": seq, "same": seq, "rc": reverse_complement(seq),
               "other": next(iter(read_records(PHIX).values()))[2000:3000]}
    fasta = write_fasta(tmp_path / "s.fa", records)
    regions = load_regions(InputSettings(mode="fasta", sequences=str(fasta)))
    write_shards(regions, str(fasta), WindowSpec(size=512, stride=256, per_shard=100), str(tmp_path / "w"), 1)
    sets = LabelledSplits(["a"], np.zeros(4, np.int64), np.array(["train", "val", "test", "test"], object), "x")
    leak = shared_windows([str(tmp_path / "w" / "shard_00000.parquet")], sets, 0.5)
    assert leak == {"val": {"windows": 3, "shared_with_train": 3}, "test": {"windows": 6, "shared_with_train": 2}}
    assert leak_line(leak) == ("leak check: windows with the bases of a training window (either strand): "
                               "val 3 of 3, test 2 of 6")


def test_a_one_class_model_is_never_kept_over_one_that_separates():
    y = np.array([0] * 10 + [1] * 10)
    weights = np.ones(2, np.float32)
    constant = np.tile([0.52, 0.48], (20, 1))  # one class for everything, at a low loss
    separating = np.where(y[:, None] == np.array([[0, 1]]), 0.51, 0.49)  # barely right...
    separating[[0, 10]] = [[0.1, 0.9], [0.9, 0.1]]  # ...but for two confident errors: a higher loss
    measured_c, score_c = Classification().validation(constant, y, weights, "mcc")
    measured_s, score_s = Classification().validation(separating, y, weights, "mcc")
    assert measured_c["mcc"] == 0 and measured_s["mcc"] >= 0.8 and measured_c["loss"] < measured_s["loss"]
    assert better(score_s, score_c) and not better(score_c, score_s)
    _, by_loss_c = Classification().validation(constant, y, weights, "loss")
    _, by_loss_s = Classification().validation(separating, y, weights, "loss")
    assert better(by_loss_c, by_loss_s)  # by loss alone the constant model would win
    assert Classification().warnings({"val": constant, "test": separating}, {"val": y, "test": y}, ["a", "b"]) == [
        "the kept model predicts 'a' for every one of the 20 val sequences, which hold 2 classes: it separates "
        "nothing there"]


def test_the_run_says_which_model_validation_picks():
    def metrics(val_mcc, test_mcc):
        return {"val": {"n": 10, "mcc": val_mcc, "accuracy": 0.5}, "test": {"n": 10, "mcc": test_mcc}}

    line = choice_line({"mean": metrics(0.6, 0.5), "hierarchical": metrics(0.7, 0.4)},
                       {"kmer6_logreg": metrics(0.65, 0.6), "gc_logreg": metrics(0.2, 0.1)})
    assert line == ("model choice (validation MCC 0.700): hierarchical head; on validation it beats the 6-mer "
                    "frequencies baseline by MCC +0.050 (test MCC 0.400)")


@pytest.mark.parametrize("by", ["group", "contig", "position", "random"])
def test_every_class_keeps_a_training_sequence(by):
    regions = regions_of(["g1", "g1", "g2", "g3", "g3"], ["a", "a", "b", "b", "a"], start=[0, 1, 2, 3, 4])
    for seed in range(6):
        split, _ = assign_splits(regions, np.ones(5, bool), 0.9, seed, by, 1)
        labels = regions["label"].to_numpy()
        assert all(((split == "train") & (labels == c)).any() for c in "ab"), (by, seed, split)


def test_the_bundled_strains_give_every_species_validation_strains_of_its_own():
    """bacteria_genus: validation takes whole source strains, every species among them (even
    where one strain is more than its share), and leaves every species training strains."""
    from helpers.data import DATA

    regions = load_regions(InputSettings(mode="fasta", sequences=str(DATA / "bacteria_genus.fa.gz"),
                                         labels=str(DATA / "bacteria_genus_labels.tsv")))
    split, source = assign_splits(regions, np.ones(len(regions), bool), 0.15, 0, "auto")
    frame = pd.DataFrame({"group": regions["group"], "label": regions["label"], "split": split})
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    val = frame[frame["split"] == "val"]
    assert set(val["label"]) == set(frame["label"]) and source.endswith("whole groups of the group column (seed 0)")
    train = frame[frame["split"] == "train"]
    assert set(train["label"]) == set(frame["label"])
