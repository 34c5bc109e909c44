"""The heads: the models that read a sequence's window vectors and give its outputs (class
logits; standardised values or label logits for the other tasks, `learning.tasks`).

Both heads take the same batch:
    windows   (batch, max_windows, embed_dim)  float, padded
    positions (batch, max_windows)             float, window start / stride
    mask      (batch, max_windows)             bool, True = a real window
so a padded slot never reaches an output (tests/test_heads.py checks it).

- MeanPoolHead: the baseline, masked mean of the normalised vectors + linear
  (no dropout: heads.hierarchical.* does not apply to it).
- HierarchicalHead: a transformer encoder over the window sequence with a key
  padding mask and sinusoidal window-position encoding, masked mean, linear.
  Attention runs within blocks of `attention_block` consecutive windows (full
  attention for any sequence up to that length), so its memory grows with the
  number of windows, not its square: a 5-Mbp contig (20,000 windows) fits; in
  training, a sequence longer than a batch budget runs its blocks in checkpointed
  chunks, so the saved activations stay those of one batch. With `both_orders`
  (`encoder.strands: both`) it reads each sequence in both window orders and averages
  the two (`reversed_windows`), so a region and its reverse complement, which give the
  same windows in opposite orders, get the same result.

Weights are saved as safetensors with a JSON config beside them.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..identity import EmbeddingSpace
from ..io import atomic_path, write_json_atomic
from ..settings import check_hierarchical_shape

HEAD_KINDS = ("hierarchical", "mean")
# Windows per batch (padded) that heads are fed in (`windowsets.budget_batches`): 8,192 x
# 128-dim float32 vectors are 4 MB per activation.
WINDOW_BUDGET = 8192
WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"


@dataclass
class HeadConfig:
    kind: str  # hierarchical | mean
    class_names: list[str]  # the outputs: classes (targets or labels for the other tasks)
    embed_dim: int
    pooling: str  # which window vector: cls | mean
    d_model: int = 128
    layers: int = 2
    attention_heads: int = 4
    dropout: float = 0.1
    attention_block: int = 256  # windows per attention block (65 kb at stride 256)
    # What the head was trained on: applying it to other embeddings is an error.
    encoder: dict = field(default_factory=dict)
    # Read every sequence in both window orders and average (order-aware heads, strands both).
    both_orders: bool = False
    # What the head learns (`learning.tasks`: name and state, e.g. the targets' scale); empty:
    # classification, as every head of an earlier version.
    task: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of x (batch, windows, dim) where mask (batch, windows) is True."""
    weights = mask.unsqueeze(-1).to(x.dtype)  # (batch, windows, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sine/cosine encoding of (fractional) positions: (...,) -> (..., dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / max(half, 1))
    angles = positions.unsqueeze(-1) * freq  # (..., half)
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    return nn.functional.pad(enc, (0, dim - 2 * half))


class _Normalise(nn.Module):
    """Standardise window vectors with statistics of the training windows (saved with the head)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MeanPoolHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.normalise = _Normalise(config.embed_dim)
        self.classifier = nn.Linear(config.embed_dim, config.n_classes)

    def forward(self, windows, positions, mask):
        pooled = masked_mean(self.normalise(windows), mask)  # (batch, embed_dim)
        return self.classifier(pooled)  # (batch, classes)


class HierarchicalHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.normalise = _Normalise(config.embed_dim)
        self.project = nn.Linear(config.embed_dim, config.d_model)
        layer = nn.TransformerEncoderLayer(
            d_model=config.d_model, nhead=config.attention_heads, dim_feedforward=2 * config.d_model,
            dropout=config.dropout, batch_first=True, norm_first=True,
        )
        # No nested-tensor fast path: outputs must not depend on how a batch is padded.
        self.encoder = nn.TransformerEncoder(layer, num_layers=config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.classifier = nn.Linear(config.d_model, config.n_classes)

    def forward(self, windows, positions, mask):
        logits = self._read(windows, positions, mask)  # (batch, classes)
        if self.config.both_orders:
            logits = (logits + self._read(*reversed_windows(windows, positions, mask))) / 2
        return logits

    def _read(self, windows, positions, mask):
        x = self.project(self.normalise(windows))  # (batch, windows, d_model)
        x = x + sinusoidal(positions, self.config.d_model)
        x = self._attend(x, mask)  # (batch, windows, d_model)
        pooled = self.norm(masked_mean(x, mask))  # (batch, d_model)
        return self.classifier(pooled)  # (batch, classes)

    def _attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer within blocks of consecutive windows; blocks with no readable
        window are skipped (their slots are masked out of the mean anyway)."""
        batch, width, dim = x.shape
        block = max(1, self.config.attention_block)
        if width <= block:
            return self.encoder(x, src_key_padding_mask=~mask)
        n_blocks = -(-width // block)
        pad = n_blocks * block - width
        blocks = nn.functional.pad(x, (0, 0, 0, pad)).reshape(batch * n_blocks, block, dim)
        keep = nn.functional.pad(mask, (0, pad)).reshape(batch * n_blocks, block)  # (batch * n_blocks, block)
        live = keep.any(1)
        out = torch.zeros_like(blocks)
        out[live] = self._encode_blocks(blocks[live], keep[live])
        return out.reshape(batch, n_blocks * block, dim)[:, :width]

    def _encode_blocks(self, blocks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The encoder over independent blocks (n, block, dim). When training on more windows
        than one batch budget (a sequence longer than WINDOW_BUDGET goes alone), blocks run in
        checkpointed chunks: backward recomputes one chunk at a time, so the saved activations
        (attention weights and dropout masks, ~55 kB a window) stay those of one chunk, not of
        the whole contig. The dropout masks are replayed exactly (checkpoint keeps the RNG state)."""
        per_chunk = max(1, WINDOW_BUDGET // blocks.shape[1])
        if not (torch.is_grad_enabled() and self.training) or len(blocks) <= per_chunk:
            return self.encoder(blocks, src_key_padding_mask=~keep)
        return torch.cat([
            checkpoint(self.encoder, blocks[i : i + per_chunk], src_key_padding_mask=~keep[i : i + per_chunk],
                       use_reentrant=False)
            for i in range(0, len(blocks), per_chunk)
        ])


def reversed_windows(windows, positions, mask):
    """The batch with every sequence's windows in the opposite order, as the other strand
    reads them: slot j holds the window from slot n-1-j (n: the sequence's windows) and
    its position mirrored within the sequence (last position - position), so a sequence's
    reversal equals its reverse complement's windows wherever those are the same windows
    (encoder.strands: both). A row's windows are its slots up to the last with a position
    above 0: windows start at strictly increasing positions, and padded slots hold 0."""
    batch, width = mask.shape
    count = 1 + (positions[:, 1:] > 0).sum(1)  # (batch,)
    source = count[:, None] - 1 - torch.arange(width, device=mask.device)[None, :]  # (batch, width)
    real = source >= 0
    source = source.clamp(min=0)
    last = positions.max(1).values  # (batch,): the last window's position
    flipped = torch.gather(windows, 1, source[..., None].expand(-1, -1, windows.shape[-1])) * real[..., None]
    mirrored = (last[:, None] - torch.gather(positions, 1, source)) * real
    return flipped, mirrored, torch.gather(mask, 1, source) & real


def build_head(config: HeadConfig) -> nn.Module:
    if config.kind == "hierarchical":
        check_hierarchical_shape(config.d_model, config.attention_heads)
        return HierarchicalHead(config)
    if config.kind == "mean":
        return MeanPoolHead(config)
    raise InputError(f"unknown head kind {config.kind!r}", fix=f"use one of {', '.join(HEAD_KINDS)}")


def save_head(head: nn.Module, folder: str | Path) -> None:
    folder = Path(folder)
    state = {name: t.detach().cpu().contiguous() for name, t in head.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        # One metadata key only: safetensors writes several in a random order, and the
        # file must be byte-identical for identical weights (reruns, comparisons).
        save_file(state, str(tmp), metadata={"format": "pt"})
    config = asdict(head.config)
    for key in ("both_orders", "task"):  # written only where set: a classification head's head.json is as it was
        if not config[key]:
            del config[key]
    write_json_atomic(folder / CONFIG_FILE, config)


def load_head(folder: str | Path) -> nn.Module:
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).exists():
            raise InputError(f"trained head is missing {name}", path=folder,
                             fix="point classify.pretrained_head at a folder written by the train_head rule")
    config = HeadConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    head = build_head(config)
    head.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return head.eval()


def check_compatible(config: HeadConfig, embed_dim: int, encoder: dict, where: object) -> None:
    """A head applies only to vectors of the embedding space it was trained on (family,
    tokenizer, model hash, hidden size, windows, strands)."""
    if embed_dim != config.embed_dim:
        raise InputError(
            f"the head was trained on {config.embed_dim}-dim embeddings but these are {embed_dim}-dim "
            f"(encoder {encoder.get('model')!r})", path=where,
            fix="use a head trained with this encoder, or set encoder.model to the one the head was trained on "
                f"({config.encoder.get('model')!r})")
    trained_on = EmbeddingSpace.from_dict(config.encoder)
    for key, trained, now in trained_on.differences(EmbeddingSpace.from_dict(encoder))[:1]:
        raise InputError(
            f"the head was trained with {key}={trained!r} but these embeddings have {key}={now!r} "
            f"(trained on encoder {config.encoder.get('model')!r})", path=where,
            fix="use the encoder and window settings the head was trained with, or retrain the head")


@contextlib.contextmanager
def _attention_by_sdpa():
    """Inference through SDPA rather than the native multi-head-attention fast path, which on
    the CPU materialises every attention matrix and runs a slow masked softmax: SDPA is about
    2x faster for sequences of hundreds of windows (benchmarks/bench.py, classification row)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def predict(head: nn.Module, data, rows: np.ndarray, budget: int | None = None) -> np.ndarray:
    """What the head predicts (len(rows), outputs) for sequences of a `windowsets.WindowSets`:
    class probabilities, or the values or label probabilities of its task
    (`learning.tasks`); rows must have usable windows.

    Sequences go through the head sorted by window count, in batches of at most `budget`
    windows, so a batch pads little (outputs do not depend on padding); the result is in
    the order of `rows`.
    """
    from .tasks import task_of_config

    task = task_of_config(head.config.task)
    head.eval()
    rows = np.asarray(rows)
    order = np.argsort(data.counts[rows], kind="stable")
    out = np.zeros((len(rows), head.config.n_classes), dtype=np.float32)
    done = 0
    with torch.inference_mode(), _attention_by_sdpa():
        for batch in data.batches(rows[order], budget or WINDOW_BUDGET):
            out[order[done : done + len(batch)]] = task.outputs(head(*data.batch(batch))).numpy()
            done += len(batch)
    return out
