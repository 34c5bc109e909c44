"""Nucleotide Transformer v2 (InstaDeepAI/nucleotide-transformer-v2-{50m,100m,250m,500m}-multi-species).

The hub ships its own fork of transformers' ESM (modeling_esm.py + esm_config.py): the
ESM-2 layout (pre-LayerNorm layers, a final `emb_layer_norm_after`, rotary position
embeddings on the attention queries and keys) with a bias-free gated feed-forward block
(SwiGLU: one projection to 2 x intermediate_size, silu(first half) * second half) where
stock ESM has GELU with biases. Its config.json `auto_map` names AutoConfig and
AutoModelForMaskedLM but no AutoModel: the published embedding is the masked LM's last
hidden state. Weight names are the published EsmForMaskedLM's: `esm.*` and `lm_head.*`.

What the published model holds but never uses on the embedding path is kept under its
name so that checkpoints round-trip: the learned absolute position table
(`esm.embeddings.position_embeddings`, created by ESM whatever the position type), the
contact-prediction head (`esm.contact_head`) and each layer's rotary `inv_freq` buffer.

Token layout (stock EsmTokenizer, vocab.txt): <unk> <pad> <mask> <cls> <eos> <bos>, the
4096 6-mers in ATCG product order, then A T C G N; the tokenizer prepends <cls> and adds
no <eos>. Right padding with <pad> (id 1); rotary positions count from 0 at <cls>.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import forms
from .base import NativeModel
from .hub_layout import randomise, write_stand_ins

# ESM's token-dropout constant: the share of tokens masked in training (15% x 80% <mask>).
MASK_RATIO_TRAIN = 0.15 * 0.8

HUB_CODE = ("esm_config.py", "modeling_esm.py")
AUTO_MAP = {
    "AutoConfig": "esm_config.EsmConfig",
    "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_esm.EsmForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_esm.EsmForTokenClassification",
}


_settings = forms.nt_v2_settings

def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact (erf) GELU of ESM's LM head."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """ESM's rotary embedding over a head's full width, positions 0..tokens-1.

    `inv_freq` is kept as the published (persistent) buffer, but the tables are computed
    from the head width in fp32, so a bf16 model does not round positions to bf16."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("inv_freq", self._inv_freq(torch.device("cpu")))

    def _inv_freq(self, device) -> torch.Tensor:
        return 1.0 / (10000 ** (torch.arange(0, self.dim, 2, dtype=torch.int64, device=device).float() / self.dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # q, k: (batch, heads, tokens, head_dim)
        t = torch.arange(k.shape[-2], device=k.device, dtype=torch.float32)
        freqs = torch.outer(t, self._inv_freq(k.device))
        emb = torch.cat((freqs, freqs), dim=-1)  # (tokens, head_dim)
        cos, sin = emb.cos(), emb.sin()

        def rotate(x):
            x32 = x.float()
            return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)

        return rotate(q), rotate(k)


class EsmSelfAttention(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        hidden = s["hidden_size"]
        self.heads = s["num_attention_heads"]
        self.head_dim = hidden // self.heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.rotary_embeddings = RotaryEmbedding(self.head_dim)
        self.dropout = s["attention_probs_dropout_prob"]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, hidden = x.shape

        def heads(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (batch, heads, tokens, head_dim)

        # ESM scales the query before the rotation; the rotation is linear, so SDPA's own
        # 1/sqrt(head_dim) scaling of q.k is the same product.
        q, k = self.rotary_embeddings(heads(self.query(x)), heads(self.key(x)))
        out = F.scaled_dot_product_attention(q, k, heads(self.value(x)), attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, hidden)  # (batch, tokens, hidden)


class EsmSelfOutput(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.dense = nn.Linear(s["hidden_size"], s["hidden_size"])
        self.dropout = nn.Dropout(s["hidden_dropout_prob"])


class EsmAttention(nn.Module):
    """Pre-LayerNorm self-attention with its residual."""

    def __init__(self, s: dict):
        super().__init__()
        self.self = EsmSelfAttention(s)
        self.output = EsmSelfOutput(s)
        self.LayerNorm = nn.LayerNorm(s["hidden_size"], eps=s["layer_norm_eps"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.self(self.LayerNorm(x), mask)
        return x + self.output.dropout(self.output.dense(attended))


class EsmIntermediate(nn.Module):
    """The gated half of the hub's FFN: one projection to 2 x intermediate, silu(a) * b."""

    def __init__(self, s: dict):
        super().__init__()
        self.dense = nn.Linear(s["hidden_size"], 2 * s["intermediate_size"], bias=s["add_bias_fnn"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dense(x).chunk(2, dim=-1)  # (batch, tokens, intermediate) each
        return F.silu(a) * b


class EsmOutput(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.dense = nn.Linear(s["intermediate_size"], s["hidden_size"], bias=s["add_bias_fnn"])
        self.dropout = nn.Dropout(s["hidden_dropout_prob"])


class EsmLayer(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.attention = EsmAttention(s)
        self.intermediate = EsmIntermediate(s)
        self.output = EsmOutput(s)
        self.LayerNorm = nn.LayerNorm(s["hidden_size"], eps=s["layer_norm_eps"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return x + self.output.dropout(self.output.dense(self.intermediate(self.LayerNorm(x))))


class EsmEmbeddings(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        hidden, pad = s["hidden_size"], s["pad_token_id"]
        self.word_embeddings = nn.Embedding(s["vocab_size"], hidden, padding_idx=pad)
        self.layer_norm = nn.LayerNorm(hidden, eps=s["layer_norm_eps"]) if s["emb_layer_norm_before"] else None
        # Created by the published ESM whatever the position type; rotary models never read it.
        self.position_embeddings = nn.Embedding(s["max_position_embeddings"], hidden, padding_idx=pad)
        self.token_dropout = bool(s["token_dropout"])
        self.mask_token_id = s["mask_token_id"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # (batch, tokens, hidden)
        if self.token_dropout:
            # ESM's mask-dropout: <mask> embeddings are zeroed and the rest rescaled from the
            # training mask ratio to the ratio observed in this window.
            masked = input_ids == self.mask_token_id
            x = x.masked_fill(masked.unsqueeze(-1), 0.0)
            observed = masked.sum(-1).float() / attention_mask.sum(-1)
            x = (x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]).to(x.dtype)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return (x * attention_mask.unsqueeze(-1)).to(x.dtype)  # padding rows are zero


class EsmEncoder(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.layer = nn.ModuleList(EsmLayer(s) for _ in range(s["num_hidden_layers"]))
        self.emb_layer_norm_after = nn.LayerNorm(s["hidden_size"], eps=s["layer_norm_eps"])


class EsmContactPredictionHead(nn.Module):
    """Kept for its published weights only (contacts come from attention maps, unused here)."""

    def __init__(self, in_features: int):
        super().__init__()
        self.regression = nn.Linear(in_features, 1, bias=True)


class EsmModel(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.embeddings = EsmEmbeddings(s)
        self.encoder = EsmEncoder(s)
        self.contact_head = EsmContactPredictionHead(s["num_hidden_layers"] * s["num_attention_heads"])


class EsmLMHead(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        hidden = s["hidden_size"]
        self.dense = nn.Linear(hidden, hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=s["layer_norm_eps"])
        self.decoder = nn.Linear(hidden, s["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(s["vocab_size"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(gelu(self.dense(x)))) + self.bias  # (..., vocab)


class NucleotideTransformerV2(NativeModel):
    port = "nt_v2"
    lm_head_prefixes = ("lm_head.",)
    # Weights the published model holds but the embedding path never reads.
    optional_prefixes = ("esm.contact_head.", "esm.embeddings.position_embeddings.")
    # Each layer's rotary inv_freq: the tables are computed from config.json, so a checkpoint may lack it.
    derived_suffixes = (".inv_freq",)

    def __init__(self, config: dict, masked_lm: bool = False):
        super().__init__(config, masked_lm)
        s = _settings(config)
        self._hidden = s["hidden_size"]
        self.esm = EsmModel(s)
        if masked_lm:
            self.lm_head = EsmLMHead(s)
            if s["tie_word_embeddings"]:  # v2 configs say false; PretrainedConfig's default ties
                self.lm_head.decoder.weight = self.esm.embeddings.word_embeddings.weight

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def encode(self, input_ids, attention_mask=None, output_hidden_states=False):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.esm.embeddings(input_ids, attention_mask)  # (batch, tokens, hidden)
        keep = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, tokens): keys a token may attend to
        mask = None if bool(keep.all()) else keep
        states = []
        for layer in self.esm.encoder.layer:
            states.append(x)
            x = self.run_layer(layer, x, mask)
        x = self.esm.encoder.emb_layer_norm_after(x)
        # As published: embeddings, each layer's output but the last, then the normed last one.
        return (x, tuple(states) + (x,)) if output_hidden_states else x

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)


MODEL = NucleotideTransformerV2


def hub_config(*, vocab_size: int, hidden: int, layers: int, heads: int, positions: int) -> dict:
    """A config.json in the v2 hub form (nucleotide-transformer-v2-50m-multi-species's keys), small sizes.
    `positions` tokens fit a window; max_position_embeddings is 2 more, as the hub's 2050 for 2048."""
    return {
        "add_bias_fnn": False,
        "architectures": ["EsmForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": dict(AUTO_MAP),
        "emb_layer_norm_before": False,
        "esmfold_config": None,
        "hidden_dropout_prob": 0.0,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": 4 * hidden,
        "is_folding_model": False,
        "layer_norm_eps": 1e-12,
        "mask_token_id": 2,
        "max_position_embeddings": positions + 2,
        "model_type": "esm",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "tie_word_embeddings": False,
        "token_dropout": False,
        "torch_dtype": "float32",
        "transformers_version": "4.32.0.dev0",
        "use_cache": False,
        "vocab_list": None,
        "vocab_size": vocab_size,
    }


def build_tiny_hub_folder(out_dir, *, hidden: int = 32, layers: int = 2, heads: int = 4, positions: int = 512,
                          seed: int = 0, weights: str = "safetensors") -> Path:
    """A tiny random NT v2 in the hub repo's layout: config.json, weights under the published
    names (model.safetensors, or pytorch_model.bin), the EsmTokenizer files (vocab.txt,
    tokenizer_config.json, special_tokens_map.json; <cls> prepended, no <eos>), and a
    stand-in for each code file the hub ships, which raises if anything executes it."""
    from safetensors.torch import save_file

    from ...io import atomic_dir
    from ..nucleotide_transformer import nt_vocab

    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights must be 'safetensors' or 'bin', not {weights!r}")
    vocab = nt_vocab(6)
    config = hub_config(vocab_size=len(vocab), hidden=hidden, layers=layers, heads=heads, positions=positions)
    model = NucleotideTransformerV2(config, masked_lm=True)
    randomise(model, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    specials = {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "cls_token": "<cls>",
                "eos_token": None}
    with atomic_dir(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "EsmTokenizer", "model_max_length": positions, **specials}, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(
            {k: v for k, v in specials.items() if v is not None}, indent=2) + "\n")
        write_stand_ins(tmp, HUB_CODE)
        if weights == "bin":
            torch.save(state, tmp / "pytorch_model.bin")
        else:
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return Path(out_dir)
