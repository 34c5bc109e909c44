"""The token-classification model: an encoder, a linear head on its token states, and
the map from tokens to bases, for every encoder family.

    windows (strings) --tokenizer--> content tokens, each with its bases (`spans`)
        --encoder, one or more passes per window--> token states (tokens, hidden)
        --head--> token logits (tokens, classes)
        --bases--> base logits (bases, classes): the mean of the logits of the tokens
                   that cover the base

So a per-base model labels each base from its own token, an overlapping k-mer model from
the k tokens that hold the base, a non-overlapping k-mer or byte-pair model from the one
token the base is in. A base no token covers (a window shorter than k) gets logits 0:
every class equally likely.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ..embedding.engine import differentiable_passes
from ..encoders import Encoder
from ..encoders.base import ranges
from ..errors import InputError
from ..io import write_json_atomic
from ..learning.checkpoint import save_tensors
from ..windows.bases import reverse_complement

HEAD_WEIGHTS, HEAD_CONFIG = "head.safetensors", "head.json"


class TokenHead(nn.Module):
    """Token states (tokens, hidden) -> class logits (tokens, classes)."""

    def __init__(self, hidden: int, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, n_classes)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.norm(states.float())))


class BaseTagger(nn.Module):
    """`swap` (both strands read, `encoder.strands: both`): each class's index on the other
    strand (CDS_plus <-> CDS_minus; background and unstranded classes stay). A window's base
    logits are then the mean of its own and those of its reverse complement, read back base
    for base with the strands' classes swapped: the same bases on either strand get the
    same labels, mirrored."""

    def __init__(self, encoder: Encoder, head: TokenHead, frozen: bool, swap: list[int] | None = None):
        super().__init__()
        self.encoder = encoder  # the loaded Encoder (tokenizer, capacity)
        self.model = encoder.model
        self.head = head
        self.frozen = frozen
        self.swap = None if swap is None else torch.as_tensor(swap, dtype=torch.long)
        if frozen:
            for p in self.model.parameters():
                p.requires_grad_(False)

    def token_states(self, windows: list[str]) -> torch.Tensor:
        """(content tokens of all windows, hidden), in `tokenizer.content(windows)` order: a
        window longer than one pass is read in pieces, as the embedding engine reads it."""
        content = self.encoder.tokenizer.content(windows)
        device = next(self.head.parameters()).device
        states, where = [], []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            for plan, rows, batch, hidden in differentiable_passes(self.encoder, self.model, content, device):
                states.append(hidden[torch.from_numpy(batch.content_mask).to(device)])  # row-major: passes in order
                where.append(ranges(content.offsets[plan.view[rows]] + plan.lo[rows], plan.hi[rows] - plan.lo[rows]))
        found = torch.cat(states)
        out = torch.zeros(int(content.offsets[-1]), found.shape[1], device=device, dtype=found.dtype)
        return out.index_copy(0, torch.from_numpy(np.concatenate(where)).to(device), found)

    def forward(self, windows: list[str]) -> torch.Tensor:
        """Base logits (sum of the windows' lengths, classes), window after window."""
        logits = self.read(windows)
        if self.swap is None:
            return logits
        lengths = np.fromiter(map(len, windows), np.int64, len(windows))
        back = self.read([reverse_complement(w) for w in windows])[torch.from_numpy(mirror_index(lengths))]
        return (logits + back[:, self.swap.to(back.device)]) / 2

    def read(self, windows: list[str]) -> torch.Tensor:
        """Base logits of the windows as they are read (one strand)."""
        spans = self.encoder.tokenizer.spans(windows)
        logits = self.head(self.token_states(windows))  # (tokens, classes)
        tokens, bases = base_pairs(spans, np.fromiter(map(len, windows), np.int64, len(windows)))
        device = logits.device
        total = int(sum(map(len, windows)))
        bases_t = torch.from_numpy(bases).to(device)
        summed = torch.zeros(total, logits.shape[1], device=device, dtype=logits.dtype)
        summed = summed.index_add(0, bases_t, logits[torch.from_numpy(tokens).to(device)])
        cover = torch.bincount(bases_t, minlength=total).clamp(min=1)
        return summed / cover[:, None]


def mirror_index(lengths: np.ndarray) -> np.ndarray:
    """For bases of windows laid end to end, the index of the same base in their reverse
    complements laid end to end: base j of a window of n bases is base n - 1 - j there."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    window = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(int(offsets[-1])) - offsets[window]
    return offsets[window] + lengths[window] - 1 - position


def strand_swap(classes) -> list[int]:
    """Per label (0 background, i + 1 class i), the label of the same feature on the other
    strand (an `AnnotationClass` list)."""
    where = {(c.type, c.strand): i + 1 for i, c in enumerate(classes)}
    other = {"+": "-", "-": "+", None: None}
    return [0] + [where.get((c.type, other[c.strand]), i + 1) for i, c in enumerate(classes)]


def base_pairs(spans, window_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token, base) pairs: every base of every window with each token that covers it, as
    flat indices (token: into the content tokens; base: into the windows' bases laid end to
    end)."""
    counts = spans.ends - spans.starts
    window_of = np.repeat(np.arange(len(spans.offsets) - 1), np.diff(spans.offsets))
    base_offsets = np.concatenate([[0], np.cumsum(window_lengths)])
    bases = ranges(base_offsets[window_of] + spans.starts, counts)
    return np.repeat(np.arange(len(counts)), counts), bases


# ------------------------------------------------------------------ saved form

def save_tagger_head(head: TokenHead, folder: str | Path, config: dict) -> None:
    """The head (safetensors) and what it reads and predicts (JSON): classes, window, encoder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(dict(head.state_dict()), folder / HEAD_WEIGHTS)
    write_json_atomic(folder / HEAD_CONFIG, config)


def load_tagger_head(folder: str | Path) -> tuple[TokenHead, dict]:
    folder = Path(folder)
    for name in (HEAD_CONFIG, HEAD_WEIGHTS):
        if not (folder / name).exists():
            raise InputError(f"the annotation model is missing {name}", path=folder,
                             fix="run the workflow again: rule train_annotator writes it")
    config = json.loads((folder / HEAD_CONFIG).read_text())
    head = TokenHead(int(config["hidden_size"]), len(config["classes"]) + 1)
    head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
    return head.eval(), config


def centre_weights(length: int) -> np.ndarray:
    """How much a window's prediction of each of its bases counts where windows overlap:
    rising from the window's ends to its middle (a base near an end sees context on one side
    only), never 0, so the first and last bases of a contig, which one window holds, get
    that window's prediction."""
    position = np.arange(length, dtype=np.float32)
    return np.minimum(position + 1, length - position)
