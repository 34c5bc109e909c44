"""dnalm.heads: padding and masking never leak into outputs; save/load; compatibility checks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dnalm.errors import InputError
from dnalm.learning.heads import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    HeadConfig,
    build_head,
    check_compatible,
    load_head,
    save_head,
)

DIM = 16
KINDS = ["hierarchical", "mean"]
ENCODER = {"model": "tiny", "model_sha256": "sha256:abc", "family": "dnabert", "tokenizer": "dnabert-6mer",
           "window_size": 512, "window_stride": 256, "strands": "single"}


def _head(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    config = HeadConfig(kind=kind, class_names=["a", "b", "c"], embed_dim=DIM, pooling="cls", d_model=32,
                        layers=2, attention_heads=2, dropout=0.1, encoder=dict(ENCODER))
    head = build_head(config)
    # non-trivial normalisation statistics, so the buffers matter too
    head.normalise.mean.copy_(torch.randn(DIM) * 0.1)
    head.normalise.std.copy_(torch.rand(DIM) + 0.5)
    return head.eval()


def _seq(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, DIM, generator=g), torch.arange(n, dtype=torch.float32)


def _pad(seqs, fill: float = 0.0, pos_fill: float = 0.0):
    width = max(len(w) for w, _ in seqs)
    windows = torch.full((len(seqs), width, DIM), fill)
    positions = torch.full((len(seqs), width), pos_fill)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, (w, p) in enumerate(seqs):
        windows[i, : len(w)] = w
        positions[i, : len(p)] = p
        mask[i, : len(w)] = True
    return windows, positions, mask


def _run(head, windows, positions, mask, grad=False):
    if grad:
        return head(windows, positions, mask).detach()
    with torch.inference_mode():
        return head(windows, positions, mask)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_padding_never_changes_outputs(kind, grad):
    head = _head(kind)
    short, long1, long2 = _seq(3, 1), _seq(9, 2), _seq(6, 3)
    alone = _run(head, *_pad([short]), grad=grad)
    batched = _run(head, *_pad([long1, short, long2]), grad=grad)
    assert torch.allclose(alone[0], batched[1], atol=1e-5), (alone, batched)
    # garbage in the padded slots (values and positions) changes nothing
    garbage = _run(head, *_pad([long1, short, long2], fill=1e3, pos_fill=77.0), grad=grad)
    assert torch.allclose(batched, garbage, atol=1e-5)
    # the long sequences are unaffected by the short one's padding as well
    assert torch.allclose(_run(head, *_pad([long1]), grad=grad)[0], batched[0], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_out_windows_are_ignored(kind):
    head = _head(kind)
    w, p = _seq(6, 5)
    mask = torch.tensor([[True, False, True, True, False, True]])
    out = _run(head, w[None], p[None], mask)
    w2 = w.clone()
    w2[1] = 1e4
    w2[4] = -3.0
    p2 = p.clone()
    p2[4] = 1000.0
    assert torch.allclose(out, _run(head, w2[None], p2[None], mask), atol=1e-5)
    # same as dropping them while keeping the other windows' positions
    keep = mask[0]
    dropped = _run(head, w[keep][None], p[keep][None], torch.ones(1, int(keep.sum()), dtype=torch.bool))
    assert torch.allclose(out, dropped, atol=1e-5)
    # but unmasking them does change the output (so the mask is what is being tested)
    assert not torch.allclose(out, _run(head, w2[None], p2[None], torch.ones(1, 6, dtype=torch.bool)), atol=1e-3)


def test_hierarchical_head_depends_on_window_order():
    head = _head("hierarchical")
    w, p = _seq(5, 7)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = _run(head, w[None], p[None], mask)
    perm = torch.tensor([3, 0, 4, 1, 2])
    # windows in another order at the same positions: a different sequence
    assert not torch.allclose(out, _run(head, w[perm][None], p[None], mask), atol=1e-4)
    # same windows, other positions
    assert not torch.allclose(out, _run(head, w[None], (p * 3 + 1)[None], mask), atol=1e-4)
    # the same (window, position) pairs listed in another slot order: the same sequence
    assert torch.allclose(out, _run(head, w[perm][None], p[perm][None], mask), atol=1e-5)


def test_mean_head_ignores_window_order_and_positions():
    head = _head("mean")
    w, p = _seq(5, 7)
    mask = torch.ones(1, 5, dtype=torch.bool)
    out = _run(head, w[None], p[None], mask)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(out, _run(head, w[perm][None], p[None], mask), atol=1e-5)
    assert torch.allclose(out, _run(head, w[None], (p * 3 + 1)[None], mask), atol=1e-5)
    # and it is the linear layer applied to the masked mean of the normalised vectors
    expected = head.classifier(((w - head.normalise.mean) / head.normalise.std).mean(0)).detach()
    assert torch.allclose(out[0], expected, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    head = _head(kind, seed=3)
    save_head(head, tmp_path / "h")
    assert (tmp_path / "h" / WEIGHTS_FILE).exists() and (tmp_path / "h" / CONFIG_FILE).exists()
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE])
    config = json.loads((tmp_path / "h" / CONFIG_FILE).read_text())
    assert config["kind"] == kind and config["class_names"] == ["a", "b", "c"] and config["embed_dim"] == DIM
    assert config["pooling"] == "cls" and config["encoder"] == ENCODER
    loaded = load_head(tmp_path / "h")
    assert not loaded.training
    assert type(loaded) is type(head)
    for name, tensor in head.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    batch = _pad([_seq(4, 1), _seq(7, 2)])
    assert torch.equal(_run(head, *batch), _run(loaded, *batch))
    # a fresh head with another seed really differs (the comparison above can fail)
    assert not torch.allclose(_run(_head(kind, seed=4), *batch), _run(loaded, *batch))


def test_load_head_missing_files(tmp_path):
    with pytest.raises(InputError, match=CONFIG_FILE):
        load_head(tmp_path)


def test_unknown_head_kind():
    with pytest.raises(InputError, match="kind"):
        build_head(HeadConfig(kind="lstm", class_names=["a", "b"], embed_dim=4, pooling="cls"))


def test_check_compatible():
    config = _head("mean").config
    check_compatible(config, DIM, dict(ENCODER), "h")  # same: fine
    check_compatible(config, DIM, {"model": "tiny"}, "h")  # unknown keys: fine
    with pytest.raises(InputError) as err:
        check_compatible(config, DIM * 2, dict(ENCODER), "headdir")
    assert "headdir" in str(err.value) and str(DIM) in str(err.value) and "Fix:" in str(err.value)
    for key, value in [("model_sha256", "sha256:other"), ("window_size", 256), ("window_stride", 128),
                       ("tokenizer", "dnabert-5mer"), ("family", "nucleotide_transformer"), ("strands", "both")]:
        with pytest.raises(InputError) as err:
            check_compatible(config, DIM, {**ENCODER, key: value}, "headdir")
        assert key in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_proba_keeps_the_order_of_rows_whatever_the_batching(kind):
    """Sequences are batched sorted by window count: results still come back in row order,
    equal to one sequence at a time, and the attention fast-path setting is left as it was."""
    import numpy as np
    import pyarrow as pa

    from dnalm.learning.heads import predict
    from dnalm.learning.windowsets import WindowSets

    counts = np.array([7, 2, 30, 1, 12, 7, 3])
    seq = np.repeat(np.arange(len(counts)), counts)
    position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    keys = pa.table({"seq_index": seq, "start": position * 256, "tokens": np.full(len(seq), 507),
                     "n_fraction": np.zeros(len(seq), dtype=np.float32)})
    matrix = np.random.default_rng(0).standard_normal((len(seq), DIM)).astype(np.float32)
    data = WindowSets(keys, matrix, {"window_stride": 256}, max_n_fraction=0.5)
    head = _head(kind)
    rows = np.array([4, 0, 2, 6, 1, 3, 5])
    alone = np.concatenate([predict(head, data, np.array([r])) for r in rows])
    fastpath = torch.backends.mha.get_fastpath_enabled()
    assert np.allclose(predict(head, data, rows, budget=40), alone, atol=1e-5)
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def _reversed_by_hand(windows, positions, counts):
    """Each sequence's first `count` windows in the opposite order, positions mirrored."""
    flipped, mirrored = torch.zeros_like(windows), torch.zeros_like(positions)
    for row, n in enumerate(counts):
        flipped[row, :n] = windows[row, :n].flip(0)
        mirrored[row, :n] = positions[row, n - 1] - positions[row, :n].flip(0)
    return flipped, mirrored


def test_reversed_windows_reads_each_sequence_backwards():
    from dnalm.learning.heads import reversed_windows

    torch.manual_seed(0)
    counts = [5, 1, 3]
    windows = torch.randn(3, 5, DIM)
    positions = torch.zeros(3, 5)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for row, n in enumerate(counts):
        positions[row, :n] = torch.tensor([0.0, 0.5, 1.75, 2.0, 3.125][:n])
        mask[row, :n] = True
    windows = windows * mask[..., None]
    mask[0, 4] = False  # an unusable last window still counts as a window of the sequence
    flipped, mirrored, kept = reversed_windows(windows, positions, mask)
    want_w, want_p = _reversed_by_hand(windows, positions, counts)
    assert torch.equal(flipped, want_w) and torch.equal(mirrored, want_p)
    assert kept[0].tolist() == [False, True, True, True, True] and kept[1].tolist() == [True] + [False] * 4


@pytest.mark.parametrize("block", [256, 2])
def test_a_head_reading_both_orders_gives_a_sequence_and_its_reversal_one_result(block):
    """encoder.strands both: a region and its reverse complement give the same windows in
    opposite orders (positions mirrored); the hierarchical head averages both readings, so
    both get one result, also with attention blocks shorter than the sequence."""
    torch.manual_seed(1)
    config = HeadConfig(kind="hierarchical", class_names=["a", "b"], embed_dim=DIM, pooling="mean", d_model=16,
                        layers=1, attention_heads=2, attention_block=block, both_orders=True)
    head = build_head(config).eval()
    counts = [7, 4]
    windows, positions = torch.randn(2, 7, DIM), torch.zeros(2, 7)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    for row, n in enumerate(counts):
        positions[row, :n] = torch.tensor([0.0, 0.9, 1.9, 2.9, 3.9, 4.9, 5.5][:n])
        mask[row, :n] = True
    mask[0, 6] = False
    flipped, mirrored = _reversed_by_hand(windows, positions, counts)
    flipped_mask = mask.clone()
    flipped_mask[0] = torch.tensor([False] + [True] * 6)
    with torch.inference_mode():
        forward, backward = head(windows, positions, mask), head(flipped, mirrored, flipped_mask)
        one_way = build_head(dataclasses.replace(config, both_orders=False))
        one_way.load_state_dict(head.state_dict())
        one_way.eval()
        differs = one_way(windows, positions, mask) - one_way(flipped, mirrored, flipped_mask)
    assert torch.allclose(forward, backward, atol=1e-6)
    assert differs.abs().max() > 1e-4  # one reading alone depends on the order
