"""Learning from labels and genomes: end-to-end fine-tuning and masked-LM pretraining
for DNABERT-k and other families, their checkpoints, and the k-mer/GC baselines."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pysam
import pytest
import torch
from helpers.data import ORCHID, ORCHID_LABELS, PHIX, read_records, write_fasta
from helpers.workflow import REPO
from safetensors.torch import load_file

from dnalm.embedding.engine import Embedder
from dnalm.encoders import Encoder, ModelFolder, family_for
from dnalm.errors import InputError
from dnalm.inputs.regions import read_regions, regions_to_arrow
from dnalm.inputs.sources import load_regions
from dnalm.inputs.splits import label_sequences
from dnalm.io import write_table_atomic
from dnalm.learning.baselines import gc_content, kmer_frequencies, run_baselines
from dnalm.learning.tasks.classification import C_GRID
from dnalm.learning.finetune import Finetuner
from dnalm.learning.heads import check_compatible, load_head, predict
from dnalm.learning.pretrain import Pretrainer, mask_pieces
from dnalm.learning.windowsets import WindowSets
from dnalm.settings import (
    EncoderSpec,
    FinetuneSettings,
    HeadSettings,
    InputSettings,
    PretrainSettings,
    WindowSpec,
)
from dnalm.windows.shards import plan_shards, write_shards

SIZE, STRIDE = 256, 128
FAST = FinetuneSettings(head="hierarchical", d_model=16, layers=1, attention_heads=2, epochs=2, patience=2,
                        max_windows=2, sequences_per_step=6, gradient_checkpointing=True, seed=0)
# per genus: (train, test) sequences of the bundled orchid ITS set
PICK = {"Paphiopedilum": (12, 4), "Phragmipedium": (9, 3), "Cypripedium": (9, 4)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Real labelled sequences cut into windows, as the workflow leaves them for fine-tuning."""
    tmp = tmp_path_factory.mktemp("labelled")
    records = read_records(ORCHID)
    table = pd.read_csv(ORCHID_LABELS, sep="\t", dtype=str)
    chosen = pd.concat([table[(table["label"] == g) & (table["split"] == s)].iloc[:n]
                        for g, (tr, te) in PICK.items() for s, n in (("train", tr), ("test", te))])
    fasta = write_fasta(tmp / "seqs.fa", {i: records[i] for i in chosen["id"]})
    chosen.to_csv(tmp / "labels.tsv", sep="\t", index=False)
    regions = load_regions(InputSettings(mode="fasta", sequences=str(fasta), labels=str(tmp / "labels.tsv")))
    write_table_atomic(regions_to_arrow(regions), tmp / "regions.parquet", {"stage": "regions"})
    spec = WindowSpec(size=SIZE, stride=STRIDE, per_shard=40)
    write_shards(regions, str(fasta), spec, str(tmp / "windows"), plan_shards(regions["length"].to_numpy(), spec))
    return SimpleNamespace(tmp=tmp, regions=str(tmp / "regions.parquet"),
                           shards=[str(p) for p in sorted((tmp / "windows").glob("shard_*.parquet"))])


def finetune(labelled, model, settings, folder, strands="single"):
    tuner = Finetuner(labelled.shards, labelled.regions, None, EncoderSpec(str(model), strands=strands), settings,
                      str(folder / "checkpoint"))
    tuner.run()
    metrics = tuner.save(str(folder / "encoder"), str(folder / "head"))
    return tuner, metrics


@pytest.mark.parametrize("family", ["dnabert", "nucleotide_transformer"])
def test_finetuning_writes_an_encoder_and_head_the_workflow_can_use(tiny_models, labelled, tmp_path, family):
    tuner, metrics = finetune(labelled, tiny_models[family], FAST, tmp_path)
    assert metrics["test"]["n"] == sum(t for _, t in PICK.values()) and metrics["epochs_run"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["class_names"] == sorted(PICK)
    assert not (tmp_path / "checkpoint").exists()  # removed once the outputs are written
    # The encoder changed and is a model folder of the same family (tokenizer files copied).
    folder = ModelFolder.open(str(tmp_path / "encoder"))
    assert family_for(folder).name == family_for(ModelFolder.open(str(tiny_models[family]))).name
    before = load_file(str(tiny_models[family] / "model.safetensors"))  # a masked LM: bert.* / esm.* keys
    after = load_file(str(tmp_path / "encoder" / "model.safetensors"))  # the base encoder
    pairs = [(before[b], after[a]) for a in after for b in before if b.split(".", 1)[-1] == a]
    assert len(pairs) >= len(after) - 2 and any(not torch.equal(x, y) for x, y in pairs)
    # Embedding the test windows with it, as embed_shard will, and applying the head (the
    # workflow's path) gives the fine-tuning job's own test predictions.
    head = load_head(tmp_path / "head")
    encoder = Encoder.load(EncoderSpec(str(tmp_path / "encoder")), SIZE, STRIDE)
    check_compatible(head.config, encoder.identity.hidden_size, encoder.space.as_dict(), "head")
    assert head.config.encoder["model_sha256"] == encoder.identity.model_sha256
    test_rows = tuner.sets.rows("test")
    picks = np.concatenate([tuner.windows.usable_of(s) for s in test_rows])
    vectors = Embedder(encoder).embed([tuner.windows.sequences[i] for i in picks])
    keys = pa.table({"seq_index": tuner.windows.seq_index[picks], "start": tuner.windows.start[picks],
                     "n_fraction": np.zeros(len(picks), np.float32), "tokens": vectors.tokens})
    data = WindowSets(keys, vectors.mean, {"window_stride": STRIDE}, 1.0)
    proba = predict(head, data, np.searchsorted(data.seq_index, test_rows))
    accuracy = float((proba.argmax(1) == tuner.sets.y[test_rows]).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)


def test_finetuning_from_three_seeds_keeps_the_first_and_reports_the_spread(tiny_models, labelled, tmp_path):
    """finetune.seeds: 3 fine-tunings on the same splits; the encoder and head written are
    those of a single fine-tuning from the first seed (byte for byte), and metrics.json gives
    each seed's test accuracy, the first's that of the kept model."""
    from dnalm.learning.finetune import finetune as finetune_seeds

    spec = EncoderSpec(str(tiny_models["dnabert"]))
    runs = {}
    for name, settings in (("one", FAST), ("three", replace(FAST, seeds=3))):
        folder = tmp_path / name
        runs[name] = finetune_seeds(labelled.shards, labelled.regions, None, spec, settings,
                                    str(folder / "checkpoint"), str(folder / "encoder"), str(folder / "head"))
        assert not (folder / "checkpoint").exists()
    one, three = runs["one"], runs["three"]
    assert "seeds" not in one and three["seeds"]["seeds"] == [0, 1, 2]
    accuracy = three["seeds"]["test"]["accuracy"]
    assert len(accuracy["values"]) == 3 and accuracy["values"][0] == pytest.approx(three["test"]["accuracy"])
    assert three["test"] == one["test"]
    for name in ("encoder/model.safetensors", "head/head.safetensors"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()
    assert accuracy["min"] <= accuracy["mean"] <= accuracy["max"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_finetuning_never_pads_for_a_model_without_an_attention_mask(tiny_models, pooling):
    """A model that takes no attention mask (HyenaDNA-style) gets its windows in groups of
    equal length, never padded, and the vectors are those of one masked, padded pass."""
    from torch import nn

    from dnalm.learning.model import SequenceClassifier

    phix = next(iter(read_records(PHIX).values()))
    windows = [phix[:40], phix[100:130], phix[200:240], phix[300:330].lower()]  # 40 and 30 bp
    encoder = Encoder.load(EncoderSpec(str(tiny_models["per_base"])), SIZE, STRIDE)
    with torch.no_grad():
        padded = SequenceClassifier(encoder, nn.Identity(), pooling, "both").window_vectors(windows)
        forward, shapes = encoder.model.forward, []

        def without_mask(input_ids, **kwargs):
            assert "attention_mask" not in kwargs, "a padded batch reached a model without an attention mask"
            shapes.append(tuple(input_ids.shape))
            return forward(input_ids=input_ids)

        encoder.model.forward = without_mask
        encoder.takes_attention_mask = False
        grouped = SequenceClassifier(encoder, nn.Identity(), pooling, "both").window_vectors(windows)
    assert sorted(shapes) == [(4, 31), (4, 41)]  # 30 and 40 bases (both strands) + [SEP]
    assert torch.allclose(padded, grouped, atol=1e-5)


def test_finetuning_with_lora_and_both_strands(tiny_models, labelled, tmp_path):
    settings = replace(FAST, head="mean", epochs=1, lora_r=4, lora_alpha=8)
    tuner, metrics = finetune(labelled, tiny_models["bpe"], settings, tmp_path, strands="both")
    saved = load_file(str(tmp_path / "encoder" / "model.safetensors"))
    assert not any("lora" in k for k in saved)  # adapters merged into a plain checkpoint
    assert json.loads((tmp_path / "head" / "head.json").read_text())["encoder"]["strands"] == "both"
    Encoder.load(EncoderSpec(str(tmp_path / "encoder"), strands="both"), SIZE, STRIDE)


def test_killed_finetuning_resumes_to_the_uninterrupted_result(tiny_models, labelled, tmp_path):
    """A checkpoint after every epoch; a job stopped after epoch 1 resumes there and ends
    exactly where an uninterrupted job ends."""
    settings = replace(FAST, epochs=3, patience=3)
    _, whole = finetune(labelled, tiny_models["dnabert"], settings, tmp_path / "whole")

    class Stop(Exception):
        pass

    first = Finetuner(labelled.shards, labelled.regions, None, EncoderSpec(str(tiny_models["dnabert"])), settings,
                      str(tmp_path / "killed" / "checkpoint"))
    saves = first.checkpoint.save

    def save_then_die(*args, **kwargs):
        saves(*args, **kwargs)
        raise Stop  # as if killed right after the first epoch's checkpoint

    first.checkpoint.save = save_then_die
    with pytest.raises(Stop):
        first.run()
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
    log = tmp_path / "resume.log"
    with open(log, "w") as fh:
        again = Finetuner(labelled.shards, labelled.regions, None, EncoderSpec(str(tiny_models["dnabert"])),
                          settings, str(tmp_path / "killed" / "checkpoint"), log=fh)
        again.run()
        resumed = again.save(str(tmp_path / "killed" / "encoder"), str(tmp_path / "killed" / "head"))
    assert "resuming from the checkpoint after epoch 1" in log.read_text()

    def losses(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert losses(resumed["history"]) == losses(whole["history"])
    for name in ("head/head.safetensors", "encoder/model.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "killed" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_models, labelled, tmp_path):
    settings = replace(FAST, epochs=1)
    tuner = Finetuner(labelled.shards, labelled.regions, None, EncoderSpec(str(tiny_models["dnabert"])), settings,
                      str(tmp_path / "checkpoint"))
    tuner.run()  # leaves its checkpoint (save() would remove it)
    other = Finetuner(labelled.shards, labelled.regions, None, EncoderSpec(str(tiny_models["dnabert"])),
                      replace(settings, head_learning_rate=0.01), str(tmp_path / "checkpoint"))
    assert other.checkpoint.load_state() is None
    assert tuner.checkpoint.load_state()["epoch"] == 1


# ------------------------------------------------------------------ pretraining


def test_span_masking_hides_whole_kmer_runs_and_follows_80_10_10(tiny_models):
    tokenizer = family_for(ModelFolder.open(str(tiny_models["dnabert"]))).tokenizer()
    assert tokenizer.overlap == 5  # 6-mers share 5 bases with each neighbour
    (phix,) = read_records(PHIX).values()
    content = tokenizer.content([phix[i : i + 512] for i in range(0, 4096, 512)])
    pool = np.unique(content.ids)
    rng = np.random.default_rng(0)
    totals = {"masked": 0, "mask": 0, "kept": 0}
    for _ in range(20):
        original, inputs, _, labels = mask_pieces(content, tokenizer, rng, 0.15, pool)
        chosen = labels != -100
        assert np.array_equal(labels[chosen], original[chosen])
        for row in chosen:  # every run of masked positions is at least k long
            edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
            assert ((edges[1::2] - edges[::2]) >= 6).all()
        assert not chosen[:, 0].any()  # [CLS] is never a target
        totals["masked"] += int(chosen.sum())
        totals["mask"] += int((inputs[chosen] == tokenizer.mask_id).sum())
        totals["kept"] += int((inputs[chosen] == original[chosen]).sum())
    share = totals["masked"] / (20 * content.lengths.sum())
    assert 0.10 < share < 0.16
    assert totals["mask"] / totals["masked"] == pytest.approx(0.8, abs=0.03)
    assert totals["kept"] / totals["masked"] == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize("family", ["dnabert", "per_base"])
def test_pretraining_writes_a_model_folder_and_scores_heldout_windows(tiny_models, tmp_path, family):
    settings = PretrainSettings(epochs=1, windows_per_epoch=24, batch_size=8, heldout_fraction=0.1,
                                learning_rate=1e-3)
    lambda_fa = str(REPO / "data" / "lambda_phage_NC_001416.1.fa.gz")
    trainer = Pretrainer(EncoderSpec(str(tiny_models[family])), [lambda_fa], 256, settings,
                         str(tmp_path / "checkpoint"))
    trainer.run()
    metrics = trainer.save(str(tmp_path / "pretrained"))
    heldout = metrics["heldout"]
    # 48,502 bp in 190 windows of 256 bp (the last one right-anchored), every 10th held out
    assert heldout["windows"] == 19 and heldout["masked_tokens"] > 0
    assert 0 <= heldout["accuracy"] <= 1 and 0 <= heldout["baseline_accuracy"] < 1
    # the baseline guesses the most frequent token of the training windows
    ids = trainer.encoder.tokenizer.content(trainer.windows.fetch(np.flatnonzero(~trainer.windows.heldout)[:2000],
                                                                  settings.max_n_fraction)).ids
    assert trainer.most_frequent == np.bincount(ids).argmax()
    assert metrics["masking"]["span_tokens"] == (6 if family == "dnabert" else 1)
    assert not (tmp_path / "checkpoint").exists()
    # loads as a base encoder (for embeddings and fine-tuning) and as a masked LM (to continue)
    Encoder.load(EncoderSpec(str(tmp_path / "pretrained")), 256, 128)
    Encoder.load(EncoderSpec(str(tmp_path / "pretrained")), 256, 128, masked_lm=True)
    assert family_for(ModelFolder.open(str(tmp_path / "pretrained"))).name == \
        family_for(ModelFolder.open(str(tiny_models[family]))).name


# -------------------------------------------------------------------- baselines


def test_kmer_frequencies_and_gc_by_hand():
    freq = kmer_frequencies(b"ACGTNACG", 2)
    # 2-mers without N: AC CG GT AC CG -> AC 2/5, CG 2/5, GT 1/5
    index = {"AC": 0 * 4 + 1, "CG": 1 * 4 + 2, "GT": 2 * 4 + 3}
    assert freq[index["AC"]] == pytest.approx(0.4) and freq[index["CG"]] == pytest.approx(0.4)
    assert freq[index["GT"]] == pytest.approx(0.2) and freq.sum() == pytest.approx(1.0)
    assert gc_content(b"GGCCAATTNN") == pytest.approx(0.5)


def test_baselines_use_the_heads_splits(labelled):
    metrics = run_baselines(labelled.shards, labelled.regions, None, HeadSettings(val_fraction=0.15, seed=0), k=4)
    assert metrics["class_names"] == sorted(PICK)
    assert metrics["sequences"]["test"] == sum(t for _, t in PICK.values())
    for key in ("kmer4_logreg", "gc_logreg"):
        assert metrics[key]["test"]["n"] == metrics["sequences"]["test"]
        assert metrics[key]["val"]["n"] == metrics["sequences"]["val"] > 0
        assert metrics[key]["C"] in C_GRID
    # the same split a head or a fine-tuning uses (every sequence here has usable windows)
    regions = read_regions(labelled.regions)
    assert label_sequences(regions, np.ones(len(regions), bool), HeadSettings(), "x").counts() == metrics["sequences"]


def test_pretraining_with_nothing_held_out_writes_null_not_zero(tiny_models, tmp_path):
    settings = PretrainSettings(epochs=1, windows_per_epoch=8, batch_size=8, heldout_fraction=0.0)
    lambda_fa = str(REPO / "data" / "lambda_phage_NC_001416.1.fa.gz")
    trainer = Pretrainer(EncoderSpec(str(tiny_models["dnabert"])), [lambda_fa], 256, settings,
                         str(tmp_path / "checkpoint"))
    trainer.run()
    heldout = trainer.save(str(tmp_path / "pretrained"))["heldout"]
    assert heldout["windows"] == 0 and heldout["masked_tokens"] == 0
    assert heldout["accuracy"] is None and heldout["loss"] is None and "not measured" in heldout["note"]


def test_pretraining_on_an_all_n_genome_is_one_clear_error(tiny_models, tmp_path):
    fasta = write_fasta(tmp_path / "masked.fa", {"chr1": "N" * 3000})
    pysam.faidx(str(fasta))
    with pytest.raises(InputError, match="nothing to pretrain on"):
        Pretrainer(EncoderSpec(str(tiny_models["dnabert"])), [str(fasta)], 256, PretrainSettings(),
                   str(tmp_path / "checkpoint"))
