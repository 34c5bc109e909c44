"""One sequence classifier for both learning paths: an encoder and a head.

The head reads a sequence's window vectors (`heads`). On the frozen path the vectors
come precomputed from the embedding shards; on the fine-tuning path this module
computes them with the encoder, differentiably, exactly as the embedding engine
does (same tokens, same pieces for over-long windows, same pooling, same strands),
so a fine-tuned encoder embeds the workflow's windows as it was trained to.

    windows (strings) --encoder--> window vectors (n_windows, hidden)
        --scatter--> (batch, max_windows, hidden) + positions + mask --head--> logits
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..embedding.engine import differentiable_passes, pool_hidden
from ..encoders import Encoder
from ..windows.bases import reverse_complement


class SequenceClassifier(nn.Module):
    def __init__(self, encoder: Encoder, head: nn.Module, pooling: str, strands: str):
        super().__init__()
        self.encoder = encoder  # the loaded Encoder (tokenizer, capacity); its model is trained
        self.model = encoder.model
        self.head = head
        self.pooling, self.strands = pooling, strands

    def window_vectors(self, windows: list[str]) -> torch.Tensor:
        """(n_windows, hidden) vectors of these windows, with gradients through the encoder."""
        n = len(windows)
        views = list(windows) + ([reverse_complement(w) for w in windows] if self.strands == "both" else [])
        content = self.encoder.tokenizer.content(views)
        device = next(self.model.parameters()).device
        views_of, pooled = [], []
        for plan, rows, batch, hidden in differentiable_passes(self.encoder, self.model, content, device):
            summary, sums = pool_hidden(hidden, torch.from_numpy(batch.content_mask).to(device),
                                        torch.from_numpy(batch.summary_index).to(device))  # (passes, hidden) each
            pooled.append(summary if self.pooling == "cls" else sums)
            views_of.append(torch.from_numpy(plan.view[rows]).to(device))
        pooled_all = torch.cat(pooled)
        # A view's vector: its pieces' summaries averaged, or its content tokens' states averaged.
        per_view = plan.passes if self.pooling == "cls" else np.maximum(content.lengths, 1)
        divisor = torch.from_numpy(per_view).to(device, pooled_all.dtype)
        vectors = torch.zeros(len(views), pooled_all.shape[1], device=device, dtype=pooled_all.dtype)
        vectors = vectors.index_add(0, torch.cat(views_of), pooled_all) / divisor[:, None]
        if self.strands == "both":
            vectors = (vectors[:n] + vectors[n:]) / 2
        return vectors  # (n_windows, hidden)

    def forward(self, windows: list[str], sequence: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        """Logits (n_sequences, classes) of sequences given by their windows: window i belongs
        to sequence[i] (0..n_sequences-1, in order) at position positions[i] (start / stride)."""
        vectors = self.window_vectors(windows)
        counts = np.bincount(sequence)
        width = int(counts.max())
        slot = np.arange(len(sequence)) - np.repeat(np.cumsum(counts) - counts, counts)
        device = vectors.device
        padded = torch.zeros(len(counts), width, vectors.shape[1], device=device, dtype=vectors.dtype)
        padded[sequence, slot] = vectors  # (batch, max_windows, hidden)
        pos = torch.zeros(len(counts), width, device=device)
        pos[sequence, slot] = torch.from_numpy(positions.astype(np.float32)).to(device)
        mask = torch.zeros(len(counts), width, dtype=torch.bool, device=device)
        mask[sequence, slot] = True
        return self.head(padded.float(), pos, mask)
