"""HyenaDNA (LongSafari/hyenadna-*-seqlen-hf): a causal long-convolution model, one token per base.

The hub repos ship configuration_hyena.py, modeling_hyena.py and tokenization_hyena.py
(checked against the copy in github shubhamtkr/checkpoint-62500 @ 18ec6529). This port
runs the same computation under the checkpoint's own names (`hyena.backbone.*`):

- embeddings: vocab_size rounded up to pad_vocab_size_multiple rows (12 -> 16);
- each block (pre-LN, residual stream kept in fp32 as published):
  x + mixer(norm1(x)), then that + mlp(norm2(that)) (GELU, tanh approximation);
- mixer (Hyena operator, order 2): in_proj to 3 x d_model, a causal depthwise conv of
  width 3, then v * x1 convolved with an implicit long filter, times x0, out_proj;
- implicit filter: positional features z (time + cos/sin bands) through an MLP whose Sin
  activation is ONE module reused (`implicit_filter.{1,3,5}.freq` share storage), times an
  exponential decay window; the convolution is an FFT of size 2L (linear, not circular:
  exact causal convolution for any length up to max_seq_len), in fp32;
- a final LayerNorm `ln_f`.

No attention mask: the model is causal, so the states of a right-padded window's real
tokens do not depend on the padding after them (the published tokenizer pads on the
LEFT, which does change them). Token layout (tokenization_hyena): [CLS]=0 [SEP]=1 [BOS]=2
[MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6, then A C G T N = 7..11; a sequence is its bases
then [SEP] (no [CLS]): the summary token is the last one, [SEP]. The positions limit is
config.json `max_seq_len` (1026 for the 1k model, the -hf models' l_max = seqlen + 2).

The checkpoint is a HyenaDNAForCausalLM: `lm_head.weight` (next-token, not masked-LM;
tied to the embeddings only when config `tie_word_embeddings` is true, the hub writes
false) is built with masked_lm=True and ignored by a base load.

Refused (`forms`): hyena_order other than 2 (the published filter code only
builds order 2), short_filter_order other than 3 (its conv padding is fixed at 2, causal
only for width 3), train_freq false, and an even or < 3 emb_dim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from . import forms
from .base import NativeModel
from .hub_layout import write_stand_ins

SHIPPED_CODE = ("configuration_hyena.py", "modeling_hyena.py", "tokenization_hyena.py")

setting = forms.hyena_setting


def padded_vocab(config: dict) -> int:
    vocab, multiple = setting(config, "vocab_size"), setting(config, "pad_vocab_size_multiple")
    return vocab + (-vocab) % multiple


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(batch, channels, L) input, (channels, L) filter, (channels,) skip -> (batch, channels, L):
    y[t] = sum_{s<=t} k[t-s] u[s] + d u[t]. Zero-padding to 2L makes the FFT's circular
    convolution the linear one, so no output wraps around; computed in fp32."""
    length = u.shape[-1]
    n = 2 * length
    k_f = torch.fft.rfft(k.float(), n=n) / n
    u_f = torch.fft.rfft(u.float(), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :length]
    return (y + u * d.unsqueeze(-1)).to(u.dtype)


class _Sin(nn.Module):
    """sin(freq * x) with a trained per-channel frequency; one instance serves the whole MLP."""

    def __init__(self, config: dict):
        super().__init__()
        order = setting(config, "filter_order")
        self.freq = nn.Parameter(setting(config, "activation_freq") * torch.ones(1, order))

    def forward(self, x):
        return torch.sin(self.freq * x)


class _PositionalEmbedding(nn.Module):
    """z = [t, cos(-f w), sin(-f w)] for every position: the filter MLP's input (persistent
    buffers in the published model, so the checkpoint carries them)."""

    def __init__(self, config: dict):
        super().__init__()
        length, bands = setting(config, "max_seq_len"), (setting(config, "emb_dim") - 1) // 2
        t = torch.linspace(0, 1, length)[None, :, None]  # (1, L, 1)
        w = 2 * math.pi * torch.linspace(0, length - 1, length)[None, :, None] / length  # (1, L, 1)
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]  # (1, 1, bands)
        self.register_buffer("z", torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1))  # (1, L, emb)
        self.register_buffer("t", t)


class _ExponentialModulation(nn.Module):
    """The decay window each filter channel is multiplied by (fast to slow decay across channels)."""

    def __init__(self, d_model: int, fast: float = 0.3, slow: float = 1.5, target: float = 1e-2,
                 shift: float = 0.05):
        super().__init__()
        self.shift = shift
        deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, d_model)[None, None]
        self.register_buffer("deltas", deltas)  # (1, 1, d_model)

    def forward(self, t, x):
        return x * (torch.exp(-t * self.deltas.abs()) + self.shift)


class _Filter(nn.Module):
    """The implicit long filter: an MLP of the positional features, modulated; `bias` is the skip D."""

    def __init__(self, config: dict):
        super().__init__()
        d_model, order = setting(config, "d_model"), setting(config, "filter_order")
        self.bias = nn.Parameter(torch.randn(d_model * (setting(config, "hyena_order") - 1)))
        act = _Sin(config)
        self.pos_emb = _PositionalEmbedding(config)
        layers = [nn.Linear(setting(config, "emb_dim"), order), act]
        for _ in range(setting(config, "num_inner_mlps")):
            layers += [nn.Linear(order, order), act]  # the same Sin module, as published
        layers.append(nn.Linear(order, d_model, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = _ExponentialModulation(d_model)

    def kernel(self, length: int) -> torch.Tensor:
        """(length, d_model) filter taps, in the weights' dtype (as published)."""
        z, t = self.pos_emb.z[:, :length], self.pos_emb.t[:, :length]
        h = self.implicit_filter(z.to(self.implicit_filter[0].weight.dtype))  # (1, length, d_model)
        return self.modulation(t, h)[0]


class _Operator(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        d = self.d_model = setting(config, "d_model")
        inner = 3 * d  # d_model * (order + 1), order 2
        self.in_proj = nn.Linear(d, inner)
        self.out_proj = nn.Linear(d, d)
        self.short_filter = nn.Conv1d(inner, inner, 3, padding=2, groups=inner)
        self.filter_fn = _Filter(config)
        self.dropout = nn.Dropout(setting(config, "hyena_dropout"))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[1]
        z = self.in_proj(u).transpose(1, 2)  # (batch, 3 d_model, L)
        z = self.short_filter(z)[..., :length]  # causal: position t sees t-2 .. t
        x0, x1, v = z.split(self.d_model, dim=1)  # (batch, d_model, L) each
        k = self.filter_fn.kernel(length).transpose(0, 1)  # (d_model, L)
        v = fft_causal_conv(self.dropout(v * x1), k, self.filter_fn.bias)
        return self.out_proj((v * x0).transpose(1, 2))  # (batch, L, d_model)


class _Mlp(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.fc1 = nn.Linear(setting(config, "d_model"), setting(config, "d_inner"))
        self.fc2 = nn.Linear(setting(config, "d_inner"), setting(config, "d_model"))

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class _Block(nn.Module):
    """Pre-LN block; the published code carries the residual in fp32 whatever the weights' dtype.
    (Its LayerNorms use torch's default eps 1e-5, not layer_norm_epsilon.)"""

    def __init__(self, config: dict):
        super().__init__()
        d = setting(config, "d_model")
        self.mixer = _Operator(config)
        self.norm1 = nn.LayerNorm(d)
        self.mlp = _Mlp(config)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x.float()  # (batch, L, d_model) fp32
        residual = self.mixer(self.norm1(residual.to(self.norm1.weight.dtype))) + residual
        return self.mlp(self.norm2(residual.to(self.norm2.weight.dtype))) + residual.float()


class _Embeddings(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.word_embeddings = nn.Embedding(padded_vocab(config), setting(config, "d_model"))


class _Backbone(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.layers = nn.ModuleList(_Block(config) for _ in range(setting(config, "n_layer")))
        self.ln_f = nn.LayerNorm(setting(config, "d_model"), eps=setting(config, "layer_norm_epsilon"))


class _Model(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.backbone = _Backbone(config)


class HyenaDna(NativeModel):
    """HyenaDNA, keys `hyena.backbone.*` (+ `lm_head.weight`, the causal LM head, with masked_lm)."""

    port: ClassVar[str] = "hyenadna"
    lm_head_prefixes: ClassVar[tuple[str, ...]] = ("lm_head.",)
    optional_prefixes: ClassVar[tuple[str, ...]] = ()
    # The filter MLP turns positions into the long convolution's taps, which every base of a
    # window is mixed by: kept in float under int8, as it runs once per length, not per token.
    int8_keeps_float: ClassVar[tuple[str, ...]] = ("implicit_filter",)

    def __init__(self, config: dict, masked_lm: bool = False):
        super().__init__(config, masked_lm)
        reason = self.unsupported(config)
        if reason:
            raise ValueError(reason)
        self.hyena = _Model(config)
        if masked_lm:
            self.lm_head = nn.Linear(setting(config, "d_model"), padded_vocab(config), bias=False)
            if setting(config, "tie_word_embeddings"):
                self.lm_head.weight = self.hyena.backbone.embeddings.word_embeddings.weight

    @property
    def hidden_size(self) -> int:
        return setting(self.config, "d_model")

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False):
        """Right-padded windows need no mask (causal): `attention_mask` is not read."""
        limit = setting(self.config, "max_seq_len")
        if input_ids.shape[1] > limit:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed HyenaDNA's max_seq_len ({limit})")
        backbone = self.hyena.backbone
        x = backbone.embeddings.word_embeddings(input_ids)  # (batch, tokens, d_model)
        states = [x]
        for layer in backbone.layers:
            x = self.run_layer(layer, x)  # fp32 residual stream
            states.append(x)
        x = backbone.ln_f(x.to(backbone.ln_f.weight.dtype))
        states.append(x)  # the published hidden_states end with the normed output
        return (x, tuple(states)) if output_hidden_states else x

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits over the padded vocabulary (fp32, as published)."""
        return self.lm_head(hidden).float()


MODEL = HyenaDna


# --- a tiny hub-layout folder for tests -----------------------------------------------


def hub_config(hidden: int, layers: int, positions: int) -> dict:
    """config.json in the -hf repos' form (HyenaConfig.from_original_config, then to_json)."""
    return {
        "activation_freq": 10, "architectures": ["HyenaDNAForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_hyena.HyenaConfig", "AutoModel": "modeling_hyena.HyenaDNAModel",
                     "AutoModelForCausalLM": "modeling_hyena.HyenaDNAForCausalLM",
                     "AutoModelForSequenceClassification": "modeling_hyena.HyenaDNAForSequenceClassification"},
        "d_inner": 4 * hidden, "d_model": hidden, "emb_dim": 5, "embed_dropout": 0.1, "filter_order": 64,
        "hyena_dropout": 0.0, "hyena_filter_dropout": 0.0, "hyena_order": 2, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "max_seq_len": positions, "model_type": "hyenadna", "n_layer": layers,
        "num_inner_mlps": 2, "pad_vocab_size_multiple": 8, "short_filter_order": 3, "tie_word_embeddings": False,
        "torch_dtype": "float32", "train_freq": True, "transformers_version": "4.35.0.dev0", "use_bias": True,
        "vocab_size": 12,
    }


def _init_random(model: HyenaDna, seed: int) -> None:
    """Non-trivial random weights (normal 0.02, LayerNorm weight around 1, Sin freq around the
    published 10) so layers differ; buffers (z, t, deltas) keep their computed values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "ln_f" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                param.copy_(base + 0.1 * torch.randn(param.shape, generator=gen))
            elif name.endswith("freq"):
                param.copy_(10.0 + torch.randn(param.shape, generator=gen))
            elif "implicit_filter" in name or "short_filter" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(0.02 * torch.randn(param.shape, generator=gen))


def build_tiny_hub_folder(out_dir, *, hidden: int = 32, layers: int = 2, heads: int = 4, positions: int = 1026,
                          seed: int = 0, weights: str = "safetensors") -> Path:
    """A random HyenaDNA in the hub's file layout: config.json, model.safetensors (one name per shared
    storage, as transformers 4 saved it: the Sin freq under `implicit_filter.1.freq` only) or
    pytorch_model.bin (every name), the CharacterTokenizer's tokenizer_config.json and
    special_tokens_map.json, and stand-ins for the three shipped .py files. `heads` is unused
    (HyenaDNA has no attention), kept for the common signature."""
    from safetensors.torch import save_file

    from ...io import atomic_dir
    from ..character import hub_tokenizer_files

    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights must be 'safetensors' or 'bin', not {weights!r}")
    config = hub_config(hidden, layers, positions)
    model = HyenaDna(config, masked_lm=True)
    _init_random(model, seed)
    state = model.state_dict()
    with atomic_dir(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if weights == "bin":
            torch.save(state, tmp / "pytorch_model.bin")
        else:
            seen, tensors = set(), {}
            for name, tensor in state.items():
                if tensor.data_ptr() not in seen:
                    seen.add(tensor.data_ptr())
                    tensors[name] = tensor.contiguous()
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name, text in hub_tokenizer_files(positions).items():
            (tmp / name).write_text(text)
        write_stand_ins(tmp, SHIPPED_CODE)
    return Path(out_dir)
