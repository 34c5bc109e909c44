"""A sequence of any length trains and classifies within a job's memory: attention of
the hierarchical head runs within blocks of windows, and batches are sized by windows.

The issue this guards against: a 1-Mbp region (3,906 windows) crashed train_head
asking for 2.7 GB for one attention matrix; a 5-Mbp contig is 20,000 windows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from dnalm.learning.heads import HeadConfig, build_head
from dnalm.learning.windowsets import budget_batches


def _head(block: int):
    torch.manual_seed(0)
    config = HeadConfig(kind="hierarchical", class_names=["a", "b"], embed_dim=8, pooling="mean", d_model=16,
                        layers=1, attention_heads=2, dropout=0.0, attention_block=block)
    return build_head(config).eval()


def test_sequences_up_to_a_block_get_full_attention():
    """For a sequence no longer than a block, blocks change nothing."""
    windows, positions = torch.randn(2, 40, 8), torch.arange(40.0).expand(2, 40)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    small, large = _head(40), _head(4096)
    large.load_state_dict(small.state_dict())
    with torch.inference_mode():
        assert torch.allclose(small(windows, positions, mask), large(windows, positions, mask), atol=1e-6)


def test_blocks_do_not_see_each_other_and_unreadable_blocks_are_skipped():
    head = _head(8)
    windows, positions = torch.randn(1, 24, 8), torch.arange(24.0)[None]
    mask = torch.ones(1, 24, dtype=torch.bool)
    mask[0, 16:] = False  # the third block has no readable window (e.g. an assembly gap)
    x = head.project(head.normalise(windows))
    with torch.inference_mode():
        out = head._attend(x, mask)
        changed = windows.clone()
        changed[0, 8:16] += 5.0  # the second block only
        out2 = head._attend(head.project(head.normalise(changed)), mask)
    assert torch.equal(out[0, :8], out2[0, :8]) and not torch.equal(out[0, 8:16], out2[0, 8:16])
    assert torch.isfinite(out).all() and not out[0, 16:].any()
    assert torch.isfinite(head(windows, positions, mask)).all()


def test_window_budget_batches():
    counts = np.array([3, 3, 20000, 3, 5, 4000, 3])
    batches = budget_batches(counts, np.arange(7), budget=8192)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3, 4], [5, 6]]
    for b in batches:
        assert len(b) == 1 or len(b) * counts[b].max() <= 8192


PROBE = """
import resource, sys, torch
from dnalm.learning.heads import build_head, HeadConfig
torch.set_num_threads(1)
torch.manual_seed(0)
block = int(sys.argv[1])
head = build_head(HeadConfig(kind="hierarchical", class_names=["a", "b"], embed_dim=128, pooling="mean",
                             d_model=128, layers=2, attention_heads=4, dropout=0.1, attention_block=block))
windows = torch.randn(1, 20000, 128)  # one 5-Mbp contig at stride 256
positions = torch.arange(20000.0)[None]
mask = torch.ones(1, 20000, dtype=torch.bool)
loss = torch.nn.functional.cross_entropy(head(windows, positions, mask), torch.tensor([1]))
loss.backward()
print("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_20000_window_sequence_trains_in_bounded_memory():
    """Forward and backward through the real head: under 1.5 GB with blocks, where full
    attention needs 4 heads x 20,000^2 floats (6.4 GB) for the attention weights alone."""
    out = subprocess.run([sys.executable, "-c", PROBE, "256"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split("peak_mb")[1])
    assert peak < 1500, f"peak RSS {peak} MB"


def test_checkpointed_chunks_train_to_the_same_gradients(monkeypatch):
    """Training on more windows than a batch budget runs blocks in checkpointed chunks;
    the loss and every gradient are those of one pass over all blocks."""
    import dnalm.learning.heads

    windows, positions = torch.randn(1, 40, 8), torch.arange(40.0)[None]
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, 35:] = False

    def loss_and_grads(budget: int):
        monkeypatch.setattr(dnalm.learning.heads, "WINDOW_BUDGET", budget)
        head = _head(8).train()
        loss = torch.nn.functional.cross_entropy(head(windows, positions, mask), torch.tensor([1]))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in head.named_parameters()}

    whole_loss, whole = loss_and_grads(8192)  # 5 blocks in one pass
    chunked_loss, chunked = loss_and_grads(16)  # 2 blocks a chunk: 3 checkpointed chunks
    assert torch.allclose(whole_loss, chunked_loss, atol=1e-6)
    for name, grad in whole.items():
        assert torch.allclose(grad, chunked[name], atol=1e-6), name
