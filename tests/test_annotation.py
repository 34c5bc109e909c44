"""dnalm.annotation end to end on small inputs: the genome split (no training or
validation window reads a base of another part), the map from token logits back to bases
for every family (checked against a plain loop over tokens), the combination of
overlapping inference windows across shards (against a constant model and a loop), a
killed training resumed to the uninterrupted result, the k-mer baseline's counts (against
brute force), and the centre weights."""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
from helpers.data import PHIX, read_records, write_fasta
from helpers.workflow import REPO
from safetensors.torch import load_file

from dnalm.annotation.baseline import kmer_ids, window_counts
from dnalm.annotation.gather import combine_shards
from dnalm.annotation.infer import annotate_shard
from dnalm.annotation.split import part_windows, shard_count, split_genome
from dnalm.annotation.tagger import BaseTagger, TokenHead, centre_weights, load_tagger_head, save_tagger_head
from dnalm.annotation.train import AnnotatorTraining
from dnalm.encoders import Encoder
from dnalm.errors import InputError
from dnalm.inputs.fasta import read_fai
from dnalm.settings import AnnotationSettings, EncoderSpec, FinetuneSettings

PHIX_GENES = REPO / "data" / "phiX174_genes.bed"
FAMILIES = ("dnabert", "nucleotide_transformer", "bpe", "per_base")
CLASSES = ["CDS_plus", "CDS_minus"]  # annotation_classes(["CDS"], stranded=True)
# phiX (5,386 bp): train [0, 3433), val [3433, 4039), test [4039, 5386) with these fractions
SETTINGS = replace(AnnotationSettings(), test_fraction=0.25, val_fraction=0.15, epochs=1, patience=1,
                   windows_per_epoch=4, batch_size=2, seed=0)
TUNING = FinetuneSettings(seed=0, gradient_checkpointing=False, precision="fp32", warmup_fraction=0.1)
WINDOW = 128


def _phix_truth(length: int) -> np.ndarray:
    """Per base: 0 background, 1 CDS on +, 2 CDS on -, read from the BED with a loop (the
    earlier class wins where they overlap: CDS_plus before CDS_minus)."""
    bed = pd.read_csv(PHIX_GENES, sep="\t", header=None)
    labels = np.zeros(length, np.int64)
    for strand, label in (("-", 2), ("+", 1)):  # + written last: it wins
        for _, row in bed[(bed[6] == "CDS") & (bed[5] == strand)].iterrows():
            labels[int(row[1]) : int(row[2])] = label
    return labels


# ----------------------------------------------------------------------------- 1. the split


@pytest.fixture(scope="module")
def three_contigs(tmp_path_factory):
    """A 3-contig FASTA (indexed with pysam.faidx) and its lengths."""
    rng = np.random.default_rng(7)
    lengths = {"chrA": 1500, "chrB": 937, "chrC": 611}
    path = write_fasta(tmp_path_factory.mktemp("split") / "three.fa",
                       {c: "".join(rng.choice(list("ACGT"), n)) for c, n in lengths.items()})
    pysam.faidx(str(path))
    assert read_fai(str(path)) == lengths
    return path, lengths


def _check_parts(stretches, lengths, parts_per_contig=None):
    """Parts are disjoint and cover each contig exactly, each part once at most per contig."""
    for contig, length in lengths.items():
        mine = sorted((s for s in stretches if s.contig == contig), key=lambda s: s.start)
        covered = np.zeros(length, np.int64)
        for s in mine:
            assert 0 <= s.start < s.end <= length
            covered[s.start : s.end] += 1
        assert (covered == 1).all(), contig
        assert len({s.part for s in mine}) == len(mine)
        if parts_per_contig is not None:
            assert [s.part for s in mine] == parts_per_contig[contig]


def _check_windows(windows, stretches, part, size, stride):
    """Every window lies whole inside a stretch of `part` and overlaps no base of another
    part; every stretch of `part` is read up to less than one stride from its end."""
    assert windows
    by_contig = {}
    for s in stretches:
        by_contig.setdefault(s.contig, []).append(s)
    for contig, start in windows:
        inside = [s for s in by_contig[contig] if s.part == part and s.start <= start and start + size <= s.end]
        assert len(inside) == 1, (contig, start)
        for s in by_contig[contig]:
            if s.part != part:
                assert start + size <= s.start or start >= s.end, (contig, start, s)
    for s in stretches:
        if s.part == part and s.end - s.start >= size:
            starts = sorted(start for c, start in windows if c == s.contig and s.start <= start < s.end)
            assert starts[0] == s.start and s.end - (starts[-1] + size) < stride
            assert all(b - a == stride for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("size, stride", [(64, 16), (100, 37)])
def test_position_split_windows_never_leak(three_contigs, size, stride):
    _, lengths = three_contigs
    settings = replace(SETTINGS, test_fraction=0.3, val_fraction=0.2)
    stretches = split_genome(lengths, settings, size)
    _check_parts(stretches, lengths, {c: ["train", "val", "test"] for c in lengths})
    for s in stretches:  # the test part is the last 30 % of each contig
        if s.part == "test":
            assert s.start == int(lengths[s.contig] * 0.7) and s.end == lengths[s.contig]
    for part in ("train", "val"):
        _check_windows(part_windows(stretches, part, size, stride), stretches, part, size, stride)


def test_contig_split_windows_never_leak(three_contigs):
    _, lengths = three_contigs
    settings = replace(SETTINGS, test_contigs=("chrB",), val_fraction=0.2)
    stretches = split_genome(lengths, settings, 64)
    _check_parts(stretches, lengths, {"chrA": ["train", "val"], "chrB": ["test"], "chrC": ["train", "val"]})
    for part in ("train", "val"):
        windows = part_windows(stretches, part, 64, 24)
        _check_windows(windows, stretches, part, 64, 24)
        assert all(contig != "chrB" for contig, _ in windows)


@pytest.mark.parametrize("lengths, settings, size, refused", [
    ({"a": 240}, replace(SETTINGS, test_fraction=0.25, val_fraction=0.5), 64, "test"),  # test part: 60 bp
    ({"a": 400}, replace(SETTINGS, test_fraction=0.25, val_fraction=0.15), 64, "val"),  # val part: 45 bp
    ({"a": 2000, "b": 500}, replace(SETTINGS, test_contigs=("a", "b")), 64, "train"),  # nothing left to train on
    ({"a": 2000, "b": 50}, replace(SETTINGS, test_contigs=("b",)), 64, "test"),  # the test contig: 50 bp
])
def test_split_refuses_a_part_too_short_for_a_window(lengths, settings, size, refused):
    with pytest.raises(InputError, match=f"the {refused} part of the genome has no stretch of a whole {size} bp"):
        split_genome(lengths, settings, size)


def test_split_refuses_an_unknown_test_contig(three_contigs):
    _, lengths = three_contigs
    with pytest.raises(InputError, match="chrZ"):
        split_genome(lengths, replace(SETTINGS, test_contigs=("chrA", "chrZ")), 64)


def test_annotator_training_reads_no_test_base_and_the_right_labels(tiny_models, tmp_path):
    """On phiX with the tiny DNABERT: the windows training reads (recorded while it runs)
    lie whole in the training part, validation windows in the validation part; the labels
    read for a window are the BED's class at those bases and its text the reference's."""
    training = AnnotatorTraining(str(PHIX), str(PHIX_GENES), SETTINGS, TUNING,
                                 EncoderSpec(model=str(tiny_models["dnabert"])), WINDOW, 32,
                                 str(tmp_path / "checkpoint"), device="cpu", log=io.StringIO())
    (contig,) = training.genome.lengths
    length = training.genome.lengths[contig]
    test_cut = int(length * 0.75)
    val_cut = int(test_cut * 0.85)
    assert {(s.part, s.start, s.end) for s in training.stretches} == {
        ("train", 0, val_cut), ("val", val_cut, test_cut), ("test", test_cut, length)}
    assert training.train_windows and training.val_windows
    assert all(start + WINDOW <= val_cut for _, start in training.train_windows)
    assert all(val_cut <= start and start + WINDOW <= test_cut for _, start in training.val_windows)

    read = {"train": [], "val": []}
    batch = training._batch

    def recording(picks):
        read["train" if training.tagger.training else "val"].extend(picks)
        return batch(picks)

    training._batch = recording
    training.run()
    assert len(read["train"]) == SETTINGS.windows_per_epoch and read["val"]
    assert all(start + WINDOW <= val_cut for _, start in read["train"])  # no val or test base
    assert all(val_cut <= start and start + WINDOW <= test_cut for _, start in read["val"])

    truth = _phix_truth(length)
    assert (truth == 1).sum() > 0  # the BED has CDS on +; phiX has none on -
    (sequence,) = read_records(PHIX).values()
    picks = read["train"][:2] + read["val"][:1] + [(contig, test_cut - WINDOW)]
    windows, y = batch(picks)
    expected = np.concatenate([truth[start : start + WINDOW] for _, start in picks])
    np.testing.assert_array_equal(y.cpu().numpy(), expected)
    assert windows == [sequence[start : start + WINDOW].upper() for _, start in picks]
    assert len(set(expected.tolist())) > 1  # the windows picked are not all one class


# ----------------------------------------------------------------------------- 2. tokens -> bases


def _kmer_size(folder) -> int:
    return max(len(line.strip()) for line in (folder / "vocab.txt").read_text().splitlines()
               if line.strip() and not line.startswith("["))


def _nt_spans(window: str, k: int) -> list[tuple[int, int]]:
    """Non-overlapping k-mer tokens: each run of A/C/G/T cut into k-mers from its start,
    the bases left over one token each; any other letter one token each."""
    spans, i = [], 0
    window = window.upper()
    while i < len(window):
        if window[i] not in "ACGT":
            spans.append((i, i + 1))
            i += 1
            continue
        j = i
        while j < len(window) and window[j] in "ACGT":
            j += 1
        q = (j - i) // k
        spans += [(i + t * k, i + t * k + k) for t in range(q)] + [(b, b + 1) for b in range(i + q * k, j)]
        i = j
    return spans


def _spans_of(family: str, folder, tokenizer, windows: list[str]) -> list[list[tuple[int, int]]]:
    """Per window, the (start, end) of each of its content tokens."""
    if family == "dnabert":
        k = _kmer_size(folder)
        return [[(i, i + k) for i in range(len(w) - k + 1)] for w in windows]
    if family == "per_base":
        return [[(i, i + 1) for i in range(len(w))] for w in windows]
    if family == "nucleotide_transformer":
        return [_nt_spans(w, tokenizer.k) for w in windows]
    spans = tokenizer.spans(windows)  # byte-pair: the tokenizer's own offsets
    out = []
    for i, w in enumerate(windows):
        lo, hi = spans.offsets[i], spans.offsets[i + 1]
        row = list(zip(spans.starts[lo:hi].tolist(), spans.ends[lo:hi].tolist()))
        covered = np.zeros(len(w), np.int64)
        for a, b in row:
            covered[a:b] += 1
        assert (covered == 1).all()  # byte-pair pieces tile the window
        out.append(row)
    return out


def _random_windows(seed: int) -> list[str]:
    """A 64-bp and a 100-bp window, a 100-bp one with a 9-bp N run, and one shorter than a 6-mer."""
    rng = np.random.default_rng(seed)
    windows = ["".join(rng.choice(list("ACGT"), n)) for n in (64, 100, 100, 5)]
    windows[2] = windows[2][:40] + "N" * 9 + windows[2][49:]
    return windows


@pytest.mark.parametrize("family", FAMILIES)
def test_base_logits_are_the_mean_of_the_covering_tokens(tiny_models, family):
    torch.manual_seed(3)
    encoder = Encoder.load(EncoderSpec(model=str(tiny_models[family]), precision="fp32"), 100, 100, "cpu",
                           hash_weights=False)
    head = TokenHead(encoder.identity.hidden_size, 3)
    with torch.no_grad():
        head.linear.bias.normal_()
    tagger = BaseTagger(encoder, head, frozen=True).eval()
    windows = _random_windows(11)
    with torch.no_grad():
        got = tagger(windows).numpy()
        token_logits = head(tagger.token_states(windows)).numpy()
        # the token states of the batch are each window's own, in order
        alone = torch.cat([tagger.token_states([w]) for w in windows]).numpy()
    np.testing.assert_allclose(head(torch.from_numpy(alone)).detach().numpy(), token_logits, rtol=1e-4, atol=1e-4)
    spans = _spans_of(family, tiny_models[family], encoder.tokenizer, windows)
    assert len(token_logits) == sum(map(len, spans))
    assert got.shape == (sum(map(len, windows)), 3)
    expected, token = [], 0
    for window, row in zip(windows, spans):
        for b in range(len(window)):
            covering = [token + t for t, (lo, hi) in enumerate(row) if lo <= b < hi]
            expected.append(token_logits[covering].mean(axis=0) if covering else np.zeros(3, np.float32))
        token += len(row)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-6)
    if family == "dnabert":  # no 6-mer in a 5-bp window: every class equally likely
        assert (got[-5:] == 0).all()


# ----------------------------------------------------------------------------- 3. shards combined


def _save_head(head: TokenHead, folder, hidden: int) -> None:
    save_tagger_head(head, folder, {"classes": CLASSES, "types": [["CDS", "+"], ["CDS", "-"]], "hidden_size": hidden,
                                    "encoder": "frozen", "window_size": WINDOW})


def _annotate(fasta, lengths, per_shard, size, stride, spec, model_dir, out) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shard_count(lengths, size, stride, per_shard)):
        paths.append(str(out / f"shard{shard}.npz"))
        annotate_shard(str(fasta), shard, per_shard, size, stride, spec, str(model_dir), paths[-1],
                       tokens_per_batch=4 * size, device="cpu", log=io.StringIO())
    return paths


def test_a_constant_model_gives_a_constant_track(tiny_models, tmp_path):
    spec = EncoderSpec(model=str(tiny_models["dnabert"]))
    head = TokenHead(32, 3)
    bias = torch.tensor([0.3, -1.2, 1.7])
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(bias)
    _save_head(head, tmp_path / "model", 32)
    lengths = read_fai(str(PHIX))
    shards = _annotate(PHIX, lengths, 15, WINDOW, 48, spec, tmp_path / "model", tmp_path / "shards")
    assert len(shards) >= 5
    proba = combine_shards(shards, lengths)  # refuses a base no shard covers
    (track,) = proba.values()
    assert track.shape == (5386, 3)
    np.testing.assert_allclose(track, np.broadcast_to(torch.softmax(bias, 0).numpy(), track.shape), rtol=1e-5)


@pytest.fixture(scope="module")
def small_genome(tmp_path_factory):
    """Contigs of 1,000 bp (an N run), 300 bp and 50 bp (shorter than a window) from phiX."""
    (phix,) = read_records(PHIX).values()
    records = {"one": phix[:480] + "N" * 20 + phix[500:1000], "two": phix[2000:2300], "three": phix[3000:3050]}
    path = write_fasta(tmp_path_factory.mktemp("genome") / "small.fa", records)
    pysam.faidx(str(path))
    return path, records


def test_shards_combine_to_the_weighted_mean_of_the_windows(tiny_models, small_genome, tmp_path):
    fasta, records = small_genome
    lengths = read_fai(str(fasta))
    spec = EncoderSpec(model=str(tiny_models["dnabert"]))
    torch.manual_seed(5)
    head = TokenHead(32, 3)
    with torch.no_grad():
        head.linear.weight.normal_(std=0.5)
        head.linear.bias.normal_()
    _save_head(head, tmp_path / "model", 32)
    size, stride = WINDOW, 48
    many = combine_shards(_annotate(fasta, lengths, 2, size, stride, spec, tmp_path / "model", tmp_path / "a"),
                          lengths)
    one = combine_shards(_annotate(fasta, lengths, 1000, size, stride, spec, tmp_path / "model", tmp_path / "b"),
                         lengths)

    # Independently: each window alone through the tagger, weighted min(p + 1, L - p), a loop.
    loaded, _ = load_tagger_head(tmp_path / "model")
    tagger = BaseTagger(Encoder.load(spec, size, stride, "cpu", hash_weights=False), loaded, frozen=True).eval()
    expected = {}
    for contig, sequence in records.items():
        n = len(sequence)
        starts = list(range(0, n - size + 1, stride)) if n > size else [0]
        if n > size and starts[-1] + size < n:
            starts.append(n - size)
        sums, weights = np.zeros((n, 3)), np.zeros(n)
        for start in starts:
            window = sequence[start : start + size]
            with torch.no_grad():
                p = torch.softmax(tagger([window]), dim=1).numpy()
            L = len(window)
            for i in range(L):
                w = min(i + 1, L - i)
                sums[start + i] += w * p[i]
                weights[start + i] += w
        assert (weights > 0).all()
        expected[contig] = sums / weights[:, None]
    assert set(many) == set(one) == set(records)
    for contig in records:
        np.testing.assert_allclose(many[contig], one[contig], rtol=1e-5)
        np.testing.assert_allclose(many[contig], expected[contig], rtol=1e-5)
        assert many[contig].std(axis=0).max() > 1e-3  # the windows' predictions differ: the test can tell


# ----------------------------------------------------------------------------- 4. resume


def test_killed_annotator_training_resumes_to_the_uninterrupted_result(tiny_models, tmp_path):
    settings = replace(SETTINGS, epochs=3, patience=3)
    spec = EncoderSpec(model=str(tiny_models["dnabert"]))

    def training(folder, log):
        return AnnotatorTraining(str(PHIX), str(PHIX_GENES), settings, TUNING, spec, WINDOW, 32,
                                 str(tmp_path / folder / "checkpoint"), device="cpu", log=log)

    with open(tmp_path / "whole.log", "w") as fh:
        whole = training("whole", fh)
        whole_state = whole.run()
        whole.save(str(tmp_path / "whole" / "head"), str(tmp_path / "whole" / "encoder"))

    class Stop(Exception):
        pass

    with open(tmp_path / "killed.log", "w") as fh:
        first = training("killed", fh)
        saves = first.checkpoint.save

        def save_then_die(*args, **kwargs):
            saves(*args, **kwargs)
            raise Stop  # as if killed right after the first epoch's checkpoint

        first.checkpoint.save = save_then_die
        with pytest.raises(Stop):
            first.run()
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
    with open(tmp_path / "resume.log", "w") as fh:
        again = training("killed", fh)
        resumed_state = again.run()
        again.save(str(tmp_path / "killed" / "head"), str(tmp_path / "killed" / "encoder"))
    assert "resuming from the checkpoint after epoch 1" in (tmp_path / "resume.log").read_text()

    def losses(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert len(whole_state["history"]) == 3
    assert losses(resumed_state["history"]) == losses(whole_state["history"])
    saved = [json.loads((tmp_path / run / "head" / "head.json").read_text()) for run in ("whole", "killed")]
    assert losses(saved[0]["history"]) == losses(saved[1]["history"])
    assert saved[0]["best_epoch"] == saved[1]["best_epoch"]
    for name in ("head/head.safetensors", "encoder/model.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "killed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert len({h["train_loss"] for h in whole_state["history"]}) == 3  # it trained: each epoch differs


# ----------------------------------------------------------------------------- 5. baseline counts


def _brute_counts(sequence: str, k: int, flank: int, p: int) -> np.ndarray:
    index = {"".join(kmer): i for i, kmer in enumerate(itertools.product("ACGT", repeat=k))}
    counts = np.zeros(4**k, np.float32)
    for s in range(max(0, p - flank), min(p + flank - k + 1, len(sequence) - k) + 1):
        kmer = sequence[s : s + k]
        if kmer in index:  # a k-mer holding N is not counted
            counts[index[kmer]] += 1
    return counts


@pytest.mark.parametrize("k, flank", [
    (1, 0), (2, 3), (3, 10), (4, 48), (4, 2),
    (6, 1),  # a count window shorter than a k-mer: nothing counted
])
def test_window_counts_match_brute_force(k, flank):
    rng = np.random.default_rng(k * 100 + flank)
    letters = rng.choice(list("ACGT"), 400)
    letters[50:58] = "N"
    letters[rng.choice(400, 6, replace=False)] = "N"
    sequence = "".join(letters)
    ids = kmer_ids(sequence, k)
    index = {"".join(kmer): i for i, kmer in enumerate(itertools.product("ACGT", repeat=k))}
    assert ids.tolist() == [index.get(sequence[s : s + k], 4**k) for s in range(len(sequence) - k + 1)]
    positions = np.unique(np.r_[0, 1, 399, 398, 53, rng.integers(0, 400, 40)])
    counts = window_counts(ids, k, flank, positions)
    assert counts.shape == (len(positions), 4**k)
    expected = np.array([_brute_counts(sequence, k, flank, int(p)) for p in positions])
    np.testing.assert_array_equal(counts, expected)
    for p in (0, 399, 200):  # one position alone: the same counts as among the others
        np.testing.assert_array_equal(window_counts(ids, k, flank, np.array([p]))[0],
                                      _brute_counts(sequence, k, flank, p))


# ----------------------------------------------------------------------------- 6. centre weights


@pytest.mark.parametrize("length", [1, 2, 3, 64, 65, 128, 1000])
def test_centre_weights_are_positive_symmetric_and_peak_in_the_middle(length):
    w = centre_weights(length)
    assert w.shape == (length,)
    assert (w > 0).all()
    np.testing.assert_array_equal(w, w[::-1])
    middle = (length - 1) // 2
    assert w[middle] == w.max() and w[length // 2] == w.max()
    assert (np.diff(w[: middle + 1]) > 0).all()  # rising strictly from the end to the middle
    if length > 2:
        assert w[0] < w.max()


# ---------------------------------------------------- the published models through annotation


@pytest.mark.parametrize("port", ["dnabert2", "nt_v2", "gena_lm", "hyenadna"])
def test_published_model_folders_train_and_annotate(port, tmp_path):
    """Each hub family that ships its own code, in its hub repo's layout (the .py files are
    stand-ins that raise if executed), trains an annotator (LoRA for one, every weight for
    the others), writes a fine-tuned encoder that loads again, and annotates phiX: every
    base gets probabilities that sum to 1."""
    from dnalm.annotation.train import train_annotator
    from dnalm.encoders.native import dnabert2, gena_lm, hyenadna, nt_v2

    module = {"dnabert2": dnabert2, "nt_v2": nt_v2, "gena_lm": gena_lm, "hyenadna": hyenadna}[port]
    folder = module.build_tiny_hub_folder(tmp_path / "hub", positions=1024 if port == "hyenadna" else 512)
    spec = EncoderSpec(model=str(folder), trust_remote_code=port == "gena_lm", precision="fp32")
    settings = replace(SETTINGS, features=str(PHIX_GENES))
    tuning = replace(TUNING, lora_r=4 if port == "hyenadna" else 0)
    train_annotator(str(PHIX), str(PHIX_GENES), settings, tuning, spec, WINDOW, 64, str(tmp_path / "ckpt"),
                    str(tmp_path / "model"), str(tmp_path / "model" / "encoder"))
    tuned = replace(spec, model=str(tmp_path / "model" / "encoder"))
    if port == "hyenadna":  # the adapters were merged: a plain checkpoint of the hub layout
        assert not any("lora" in key for key in load_file(str(tmp_path / "model" / "encoder" / "model.safetensors")))
    lengths = read_fai(PHIX)
    out = tmp_path / "shard.npz"
    annotate_shard(str(PHIX), 0, 1000, WINDOW, 64, tuned, str(tmp_path / "model"), str(out))
    proba = combine_shards([str(out)], lengths)["NC_001422.1"]
    assert proba.shape == (5386, 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


# ------------------------------------------------------------------ the plan's cache


def test_the_checked_plan_is_read_back_until_the_features_change(tmp_path, monkeypatch):
    """A cluster job builds the DAG again: the features are read once, then the saved plan
    serves, until the file (or the settings) change."""
    import dnalm.annotation.stage as stage
    from dnalm.settings import from_config

    features = tmp_path / "genes.bed"
    features.write_text(PHIX_GENES.read_text())
    settings = from_config({"windows": {"size": 128, "stride": 64},
                            "annotation": {"features": str(features), "val_fraction": 0.15}})
    first = stage.plan_annotation(settings, str(PHIX), 32, str(tmp_path / "out"))
    stage.save_annotation_plan(first, str(tmp_path / "out"))
    assert first.features_per_class == {"CDS_plus": 14, "CDS_minus": 0} and first.shards == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the features were read again")

    monkeypatch.setattr(stage, "read_features", no_reading)
    assert stage.plan_annotation(settings, str(PHIX), 32, str(tmp_path / "out")) == first
    features.write_text(PHIX_GENES.read_text().replace("\t+\t", "\t-\t", 1))  # a changed file is read again
    with pytest.raises(AssertionError, match="read again"):
        stage.plan_annotation(settings, str(PHIX), 32, str(tmp_path / "out"))
    monkeypatch.undo()
    again = stage.plan_annotation(settings, str(PHIX), 32, str(tmp_path / "out"))
    assert again.features_per_class == {"CDS_plus": 13, "CDS_minus": 1} and again.key != first.key


# ------------------------------------------------------- the gather, one contig at a time


def test_scores_summed_over_contigs_equal_the_genome_in_one_piece():
    """The gather adds counts contig by contig: per-base and per-feature scores equal those
    of the stretches laid end to end (a background base between them), the threshold is the
    grid's best F1, and the AUPRC from histograms equals scikit-learn's on binned scores."""
    from sklearn.metrics import average_precision_score

    from dnalm.annotation.calls import runs
    from dnalm.annotation.gather import AUPRC_BINS, THRESHOLDS, Tally
    from dnalm.annotation.metrics import per_base, per_feature

    rng = np.random.default_rng(3)
    pieces = []
    for length in (5000, 1200, 3000):
        truth = np.repeat(rng.random(length // 100) < 0.4, 100)
        proba = np.clip(truth * 0.5 + rng.random(length) * 0.6, 0, 1).astype(np.float32)
        proba = np.floor(proba * AUPRC_BINS) / AUPRC_BINS + 0.5 / AUPRC_BINS  # one score per bin: no ties split
        pieces.append((truth, proba, proba >= 0.55))
    tally = Tally()
    for truth, proba, called in pieces:
        tally.add_validation(truth, proba)
        tally.add_test(truth, called, proba)
    joined = [np.concatenate([np.r_[piece[j], np.zeros(1, piece[j].dtype)] for piece in pieces]) for j in range(3)]
    truth, proba, called = joined
    separators = np.zeros(len(truth), bool)
    separators[np.cumsum([len(p[0]) + 1 for p in pieces]) - 1] = True
    scores = tally.scores(with_auprc=True)
    whole = per_base(truth[~separators], called[~separators])
    assert {k: scores["per_base"][k] for k in whole} == whole
    assert scores["per_feature"] == per_feature(runs(truth), runs(called))
    f1 = [per_base(truth[~separators], proba[~separators] >= t)["f1"] for t in THRESHOLDS]
    assert tally.threshold() == float(THRESHOLDS[int(np.argmax(f1))])
    assert scores["per_base"]["auprc"] == pytest.approx(
        average_precision_score(truth[~separators], proba[~separators]), abs=1e-12)


def test_array_files_are_written_whole_or_not_at_all(tmp_path):
    from dnalm.annotation.shards import ArrayWriter

    with ArrayWriter(str(tmp_path / "a.npz")) as out:
        out.add("names", np.array(["x", "yy"], dtype=str))
        out.add("values", np.arange(12, dtype=np.float16).reshape(3, 4))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as data:
        assert data["names"].tolist() == ["x", "yy"] and data["values"].dtype == np.float16
        np.testing.assert_array_equal(data["values"], np.arange(12).reshape(3, 4))
    with pytest.raises(RuntimeError):
        with ArrayWriter(str(tmp_path / "b.npz")) as out:
            out.add("values", np.arange(3))
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # nothing half-written left


# ------------------------------------------------------------------ both strands read


def test_strand_swap_pairs_each_stranded_class_with_its_other_strand():
    from dnalm.annotation.features import annotation_classes
    from dnalm.annotation.tagger import strand_swap

    assert strand_swap(annotation_classes(["CDS", "tRNA"], True)) == [0, 2, 1, 4, 3]
    assert strand_swap(annotation_classes(["CDS", "tRNA"], False)) == [0, 1, 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_both_strands_label_a_reverse_complement_the_same_mirrored(tiny_models, family):
    """With both strands read, a window's reverse complement gets its base logits in reverse
    order with CDS_plus and CDS_minus swapped, for every family."""
    from dnalm.windows.bases import reverse_complement

    torch.manual_seed(0)
    encoder = Encoder.load(EncoderSpec(model=str(tiny_models[family])), 100, 50)
    tagger = BaseTagger(encoder, TokenHead(encoder.identity.hidden_size, 3), frozen=True, swap=[0, 2, 1]).eval()
    windows = _random_windows(5)[:3]
    with torch.no_grad():
        forward = tagger(windows).numpy()
        backward = tagger([reverse_complement(w) for w in windows]).numpy()
    at = 0
    for window in windows:
        n = len(window)
        np.testing.assert_allclose(backward[at : at + n], forward[at : at + n][::-1][:, [0, 2, 1]], atol=1e-5)
        at += n


def test_both_strands_annotate_a_reverse_complemented_genome_mirrored(tiny_models, tmp_path):
    """A whole genome and its reverse complement, read in mirror-image windows and shards:
    each base's probabilities are the same, mirrored, with the strands' classes swapped."""
    from helpers.data import revcomp

    spec = EncoderSpec(model=str(tiny_models["dnabert"]), strands="both")
    torch.manual_seed(1)
    save_tagger_head(TokenHead(32, 3), tmp_path / "model",
                     {"classes": CLASSES, "hidden_size": 32, "encoder": "frozen", "window_size": WINDOW,
                      "strands": "both", "swap": [0, 2, 1]})
    genome = read_records(PHIX)["NC_001422.1"][:1500]
    results = []
    for name, sequence in (("forward", genome), ("reverse", revcomp(genome))):
        fasta = write_fasta(tmp_path / f"{name}.fa", {"chr": sequence})
        pysam.faidx(str(fasta))
        lengths = read_fai(str(fasta))
        paths = []
        for shard in range(shard_count(lengths, 128, 48, 7, mirrored=True)):
            paths.append(str(tmp_path / f"{name}{shard}.npz"))
            annotate_shard(str(fasta), shard, 7, 128, 48, spec, str(tmp_path / "model"), paths[-1], device="cpu",
                           log=io.StringIO())
        results.append(combine_shards(paths, lengths)["chr"])
    forward, reverse = results
    np.testing.assert_allclose(reverse, forward[::-1][:, [0, 2, 1]], atol=1e-5)


def test_training_with_both_strands_keeps_the_swap_for_inference(tiny_models, tmp_path):
    from dnalm.annotation.train import train_annotator

    spec = EncoderSpec(model=str(tiny_models["dnabert"]), strands="both")
    settings = replace(SETTINGS, features=str(PHIX_GENES))
    train_annotator(str(PHIX), str(PHIX_GENES), settings, TUNING, spec, WINDOW, 64, str(tmp_path / "ckpt"),
                    str(tmp_path / "model"), None)
    _, config = load_tagger_head(tmp_path / "model")
    assert config["strands"] == "both" and config["swap"] == [0, 2, 1]
    out = tmp_path / "shard.npz"
    annotate_shard(str(PHIX), 0, 1000, WINDOW, 64, spec, str(tmp_path / "model"), str(out), log=io.StringIO())
    with np.load(out) as data:  # mirror-image windows: the contig read from both ends alike
        assert (int(data["starts"][0]), int(data["ends"][0])) == (0, 5386)
    proba = combine_shards([str(out)], read_fai(PHIX))["NC_001422.1"]
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_a_frozen_encoder_trains_the_head_alone(tiny_models, tmp_path):
    from dnalm.annotation.train import AnnotatorTraining

    spec = EncoderSpec(model=str(tiny_models["dnabert"]))
    settings = replace(SETTINGS, features=str(PHIX_GENES), encoder="frozen", epochs=2, windows_per_epoch=8)
    training = AnnotatorTraining(str(PHIX), str(PHIX_GENES), settings, TUNING, spec, WINDOW, 64,
                                 str(tmp_path / "ckpt"), log=io.StringIO())
    before = {k: v.clone() for k, v in training.tagger.model.state_dict().items()}
    head_before = training.tagger.head.linear.weight.detach().clone()
    training.run()
    after = training.tagger.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head_before, training.tagger.head.linear.weight)
    assert not any(p.requires_grad for p in training.tagger.model.parameters())


def test_a_model_that_learnt_nothing_is_named_in_the_warnings():
    from dnalm.annotation.gather import learning_warnings
    from dnalm.annotation.metrics import base_scores

    chance = {"per_base": {**base_scores(40, 60, 0, 0), "auprc": 0.41}}  # calls every base, ranks at random
    learnt = {"per_base": {**base_scores(35, 5, 5, 55), "auprc": 0.93}}
    everywhere = {"per_base": {**base_scores(40, 60, 0, 0), "auprc": 0.9}}
    warnings = learning_warnings({"CDS_plus": chance, "CDS_minus": learnt, "tRNA_plus": everywhere})
    assert len(warnings) == 2
    assert warnings[0].startswith("CDS_plus: AUPRC 0.410") and "0.400" in warnings[0]
    assert warnings[1] == "tRNA_plus: the calls cover 100.0% of the test part"
