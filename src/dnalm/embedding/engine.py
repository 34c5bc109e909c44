"""The embedding engine: windows -> per-window summary and mean vectors, as fast as
the hardware allows, for any encoder family.

One GPU per job (data parallelism is the SLURM array of shards). In order:
1. Tokenize every window of the shard up front with the family's fast path (and
   each window's reverse complement when `encoder.strands: both`).
2. A window whose content tokens exceed one model pass (byte-pair pieces, N runs
   under non-overlapping k-mers) is cut into near-equal pieces, each its own pass
   with the tokenizer's specials around it: nothing is ever truncated. The number
   of passes is recorded per window.
3. Passes are sorted by token count and packed into batches up to a token budget,
   so similar lengths go together and padding is minimal; a batch of equal lengths
   (the usual case for k-mer windows) runs with no attention mask at all, which
   lets SDPA pick its fastest (flash) kernel in bf16.
4. The next batch is assembled in a background thread (pinned memory on a GPU,
   non-blocking copy) while the current one runs.
5. CUDA out-of-memory halves the batch and the budget (logged) and retries.
6. Per-window sums stay on the device; one copy back at the end.

Vectors: `summary` is the hidden state at the tokenizer's leading special ([CLS])
or, for tokenizers without one, at the last token; `mean` averages the hidden
states of the content tokens (specials and padding excluded). A window cut into
several passes averages its passes' summaries and all its content tokens.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..encoders import Encoder, Ragged
from ..encoders.loading import hidden_of
from ..errors import InputError
from ..windows.bases import reverse_complement


@dataclass
class EngineSettings:
    tokens_per_batch: int = 8192  # padded tokens per model call (CPU: 16 windows of 512)
    max_rows: int = 1024  # passes per model call, whatever their length
    compile: bool = False  # torch.compile the model (GPU; pays a warm-up per new shape)


@dataclass
class WindowVectors:
    summary: np.ndarray  # (n_windows, hidden) float32
    mean: np.ndarray  # (n_windows, hidden) float32
    tokens: np.ndarray  # (n_windows,) content tokens of the window (forward strand)
    passes: np.ndarray  # (n_windows,) model passes the window needed (forward strand)
    oom_retries: int = 0


@dataclass
class _Plan:
    """Every model pass: which view (window or reverse complement) and which slice of its tokens."""

    view: np.ndarray  # (rows,) view index
    lo: np.ndarray  # (rows,) first content token of the piece
    hi: np.ndarray  # (rows,) one past its last
    passes: np.ndarray  # (views,) pieces per view


def plan_passes(lengths: np.ndarray, capacity: int | None) -> _Plan:
    """Cut each view's content tokens into as few near-equal pieces as fit `capacity`."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if capacity is None:
        passes = np.ones(len(lengths), dtype=np.int64)
    else:
        passes = np.maximum(1, -(-lengths // capacity))
    view = np.repeat(np.arange(len(lengths)), passes)
    first = np.repeat(np.cumsum(passes) - passes, passes)
    j = np.arange(len(view)) - first  # piece number within its view
    total, count = lengths[view], passes[view]
    return _Plan(view, j * total // count, (j + 1) * total // count, passes)


def pack_batches(row_tokens: np.ndarray, tokens_per_batch: int, max_rows: int, equal_only: bool) -> list[np.ndarray]:
    """Row indices per batch: sorted by length, each batch's padded size within budget."""
    order = np.argsort(row_tokens, kind="stable")
    batches, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order):
            batches.append(order[start:i])
            break
        longest = row_tokens[order[i]]  # sorted: the newcomer is the longest
        full = (i - start + 1) * longest > tokens_per_batch or i - start >= max_rows
        if full or (equal_only and longest != row_tokens[order[start]]):
            batches.append(order[start:i])
            start = i
    return batches


def differentiable_passes(encoder: Encoder, model, content: Ragged, device):
    """Every view of `content` through `model` in one call, in as many passes a view as
    `encoder.capacity` needs (a model without an attention mask, HyenaDNA-style, must not
    see padding: its passes go in groups of equal length, as in the engine). Yields, per
    group, (plan, rows, batch, hidden): the pass plan, the passes of the group, their
    TokenBatch and the model's states (passes, tokens, hidden), gradients kept. What the
    fine-tuning model and the base-annotation tagger read windows through."""
    import torch

    plan = plan_passes(content.lengths, encoder.capacity)
    groups = [np.arange(len(plan.view))] if encoder.takes_attention_mask else \
        pack_batches(plan.hi - plan.lo, sys.maxsize, sys.maxsize, equal_only=True)
    for rows in groups:
        batch = encoder.tokenizer.assemble(content.slices(plan.view[rows], plan.lo[rows], plan.hi[rows]))
        inputs = {"input_ids": torch.from_numpy(batch.input_ids).to(device)}
        if batch.padded:
            inputs["attention_mask"] = torch.from_numpy(batch.attention_mask).to(device)
        yield plan, rows, batch, hidden_of(model(**inputs))


def pool_hidden(hidden, content_mask, summary_index):
    """Per pass: the summary state and the sum of the content tokens' states, in fp32.

    hidden (passes, tokens, hidden), content_mask (passes, tokens) bool, summary_index (passes,)
    -> summary (passes, hidden), content sum (passes, hidden). Shared by the engine and the
    fine-tuning model, so both pool alike."""
    import torch

    rows = torch.arange(hidden.shape[0], device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):  # fp32 sums, also inside a bf16 autocast
        summary = hidden[rows, summary_index].float()
        weights = content_mask.to(torch.float32).unsqueeze(1)  # (passes, 1, tokens)
        sums = torch.bmm(weights, hidden.float()).squeeze(1)
    return summary, sums


class Embedder:
    """Runs an `Encoder` over many windows with the engine above."""

    def __init__(self, encoder: Encoder, settings: EngineSettings | None = None, log=None):
        self.encoder = encoder
        self.settings = settings or EngineSettings()
        self.budget = self.settings.tokens_per_batch
        self.log = log or sys.stderr  # at call time: the job's log once step() redirected it
        self.oom_retries = 0
        self.model = encoder.model
        if self.settings.compile:
            import torch

            self.model = torch.compile(self.model, dynamic=True)

    def embed(self, windows: list[str], strands: str = "single", progress=None) -> WindowVectors:
        import torch

        n = len(windows)
        views = list(windows) + ([reverse_complement(w) for w in windows] if strands == "both" else [])
        content = self.encoder.tokenizer.content(views)  # ragged content ids of every view
        plan = plan_passes(content.lengths, self.encoder.capacity)
        row_tokens = plan.hi - plan.lo + self.encoder.tokenizer.n_specials
        batches = pack_batches(row_tokens, self.budget, min(self.settings.max_rows,
                                                            self.encoder.passes_per_call or self.settings.max_rows),
                               equal_only=not self.encoder.takes_attention_mask)
        hidden = self.encoder.identity.hidden_size
        device = self.encoder.device
        self.summary_sum = torch.zeros((len(views), hidden), dtype=torch.float32, device=device)
        self.content_sum = torch.zeros((len(views), hidden), dtype=torch.float32, device=device)
        with torch.inference_mode(), ThreadPoolExecutor(max_workers=1) as pool:
            ahead = pool.submit(self._prepare, content, plan, batches[0]) if batches else None
            for b in range(len(batches)):
                prepared = ahead.result()
                if b + 1 < len(batches):  # assemble the next batch while this one runs
                    ahead = pool.submit(self._prepare, content, plan, batches[b + 1])
                self._run(content, plan, batches[b], prepared)
                if progress is not None:
                    progress.update(len(batches[b]) * n / max(len(plan.view), 1))
        lengths = content.lengths.astype(np.float64)
        summary = (self.summary_sum.cpu().numpy() / plan.passes[:, None]).astype(np.float32)
        mean = (self.content_sum.cpu().numpy() / np.maximum(lengths, 1)[:, None]).astype(np.float32)
        if strands == "both":  # average each window with its reverse complement
            summary = (summary[:n] + summary[n:]) / 2
            mean = (mean[:n] + mean[n:]) / 2
        long = int(np.sum(plan.passes[:n] > 1))
        if long:
            print(f"{long} of {n} windows needed more than the model's {self.encoder.capacity} content tokens and "
                  f"were embedded in up to {int(plan.passes.max())} passes each (column `passes`)", file=self.log)
        return WindowVectors(summary, mean, content.lengths[:n].astype(np.int32), plan.passes[:n].astype(np.int32),
                             self.oom_retries)

    def _prepare(self, content: Ragged, plan: _Plan, rows: np.ndarray):
        """numpy batch -> torch tensors (pinned on a GPU); runs in the helper thread."""
        import torch

        pieces = content.slices(plan.view[rows], plan.lo[rows], plan.hi[rows])
        batch = self.encoder.tokenizer.assemble(pieces)
        tensors = {"input_ids": torch.from_numpy(batch.input_ids),
                   "content": torch.from_numpy(batch.content_mask),
                   "summary": torch.from_numpy(batch.summary_index),
                   "view": torch.from_numpy(plan.view[rows])}
        if batch.padded:
            tensors["attention_mask"] = torch.from_numpy(batch.attention_mask)
        if self.encoder.device.startswith("cuda"):
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return tensors

    def _run(self, content: Ragged, plan: _Plan, rows: np.ndarray, prepared: dict) -> None:
        import torch

        try:
            self._forward(prepared)
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise InputError(
                    f"one window alone ({int(plan.hi[rows[0]] - plan.lo[rows[0]])} tokens) does not fit the GPU's "
                    "memory", fix="use smaller windows (windows.size) or a GPU with more memory") from None
            torch.cuda.empty_cache()
            self.budget = max(1, self.budget // 2)
            self.oom_retries += 1
            print(f"CUDA out of memory with {len(rows)} passes in a batch: halving it (token budget now "
                  f"{self.budget})", file=self.log, flush=True)
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                self._run(content, plan, part, self._prepare(content, plan, part))

    def _forward(self, prepared: dict) -> None:

        device = self.encoder.device
        moved = {k: v.to(device, non_blocking=True) for k, v in prepared.items()}
        inputs = {"input_ids": moved["input_ids"]}
        if "attention_mask" in moved:
            inputs["attention_mask"] = moved["attention_mask"]
        out = self.model(**inputs)
        hidden = hidden_of(out)  # (batch, tokens, hidden)
        summary, sums = pool_hidden(hidden, moved["content"], moved["summary"])  # (batch, hidden) each
        self.summary_sum.index_add_(0, moved["view"], summary)
        self.content_sum.index_add_(0, moved["view"], sums)
