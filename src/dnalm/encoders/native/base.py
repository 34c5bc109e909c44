"""What every native port shares: the output record and the module contract.

A port is a plain `torch.nn.Module` (no transformers `PreTrainedModel`, so nothing
breaks when transformers moves) built from the hub's config.json as a dict, whose
`state_dict()` keys are exactly the published checkpoint's keys:

- `Port(config, masked_lm=True)`: the whole published checkpoint (encoder + its LM
  head), key for key, e.g. DNABERT-2's `bert.encoder.layer.0.attention.self.Wqkv.weight`
  and `cls.predictions.decoder.weight`;
- `Port(config, masked_lm=False)`: the same keys without the LM head (the head's
  prefixes are `lm_head_prefixes`), so a base checkpoint and a masked-LM checkpoint
  both load.

Tensors the published model shares (tied decoder and embeddings, one module reused)
are shared here too, by the same assignment; `native.save` writes each storage once
and `native.load` accepts a missing alias of a loaded tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class NativeOutput:
    """What a port's forward returns; `hidden_states` is only filled on request."""

    last_hidden_state: torch.Tensor  # (batch, tokens, hidden)
    logits: torch.Tensor | None = None  # (batch, tokens, vocab), masked_lm ports only
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + every layer's output

    def __getitem__(self, i: int) -> torch.Tensor:  # tuple-style access, as transformers outputs allow
        return (self.last_hidden_state, self.logits)[i]


class NativeModel(nn.Module):
    """Base class of every port. A subclass sets `port` (its name in `forms.FORMS`, which
    recognises its config.json without torch) and the state-dict prefixes, and implements
    `__init__(config, masked_lm)`, `hidden_size`, `encode` and (masked-LM ports) `lm_logits`."""

    port: ClassVar[str]  # its Form's name, e.g. "dnabert2"
    lm_head_prefixes: ClassVar[tuple[str, ...]] = ()  # state-dict prefixes of the LM head
    optional_prefixes: ClassVar[tuple[str, ...]] = ()  # entries a checkpoint may lack (unused pooler, buffers)
    derived_suffixes: ClassVar[tuple[str, ...]] = ()  # buffers computed from config.json, loaded or not
    # Linear layers (by a part of their name) that encoder.precision int8 leaves in float.
    int8_keeps_float: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict, masked_lm: bool = False):
        super().__init__()
        self.config = dict(config)
        self.masked_lm = masked_lm
        self.gradient_checkpointing = False

    # --- what forms.py knows of the port (one place, read without torch at DAG time) --
    @classmethod
    def form(cls):
        from .forms import FORMS

        return next(f for f in FORMS if f.name == cls.port)

    @classmethod
    def matches(cls, config: dict) -> bool:
        return cls.form().matches(config)

    @classmethod
    def unsupported(cls, config: dict) -> str | None:
        """Why this port cannot run a matching config (a variant it does not implement), or None."""
        return cls.form().unsupported(config)

    @property
    def published_as(self) -> str:
        return self.form().published_as

    @property
    def takes_attention_mask(self) -> bool:
        return self.form().takes_attention_mask

    # --- running -------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False):
        """(batch, tokens) ids [+ (batch, tokens) 1/0 mask] -> (batch, tokens, hidden) last hidden
        states, or (last, all hidden states) when output_hidden_states."""
        raise NotImplementedError

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., vocab): the masked-LM head on any selection of states."""
        raise NotImplementedError(f"{self.port} has no masked-LM head")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> NativeOutput:
        if attention_mask is not None and not self.takes_attention_mask:
            raise TypeError(f"{self.port} takes no attention mask: batch windows of equal length")
        out = self.encode(input_ids, attention_mask, output_hidden_states)
        last, states = out if output_hidden_states else (out, None)
        logits = self.lm_logits(last) if self.masked_lm else None
        return NativeOutput(last, logits, states)

    # --- training hooks ------------------------------------------------------------
    supports_gradient_checkpointing: ClassVar[bool] = True

    def gradient_checkpointing_enable(self, **_) -> None:
        """Layers recompute their activations in the backward pass (torch.utils.checkpoint)."""
        self.gradient_checkpointing = True

    def run_layer(self, layer: nn.Module, *args):
        """Call one layer, checkpointed while training with gradient checkpointing on."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)
