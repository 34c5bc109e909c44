"""DNABERT-2 (zhihan1996/DNABERT-2-117M): a MosaicBERT, run natively.

The published model (hub `bert_layers.py`, MosaicML's BERT) differs from a stock BERT in:

- no position embeddings: every attention score gets an ALiBi bias, -slope(head) * |i - j|,
  built for any length (the published code grows its table past `alibi_starting_size`
  with the same formula, so there is no positions limit in the model itself);
- a gated-linear-unit feed-forward block (`mlp.gated_layers`, no bias, then `mlp.wo`) with
  its own post-LayerNorm (`mlp.layernorm`), exact GELU whatever `hidden_act` says;
- one fused query/key/value projection (`attention.self.Wqkv`);
- post-LayerNorm residual blocks, as BERT; token type 0 always (the published forward
  passes zeros), so its embedding row is added to every token.

The published code removes padding before every layer (and takes a Triton kernel when
`triton` imports); here padded keys are masked out of SDPA instead, which gives the same
states on real tokens. Padded positions come back as zeros, as the published model returns.

The checkpoint is a `BertForMaskedLM`: `bert.*` and `cls.predictions.*`, with the decoder
tied to the word embeddings and no pooler. Its config class is a bare `PretrainedConfig`
subclass: only `alibi_starting_size` (512) and `attention_probs_dropout_prob` (0.0) have
defaults; the sizes must be in config.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .base import NativeModel
from .hub_layout import randomise, write_stand_ins

# What the published config class defaults (hub configuration_bert.BertConfig).
DEFAULTS = {"alibi_starting_size": 512, "attention_probs_dropout_prob": 0.0}
# The hub tokenizer.json's specials, in id order.
SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
# The files the hub repo ships besides weights (its code files get stand-ins in test folders).
HUB_CODE = ("bert_layers.py", "bert_padding.py", "configuration_bert.py", "flash_attn_triton.py")


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's per-head slopes: a geometric series 2^(-8/n) ... for n a power of two; for
    other n, the series of the nearest lower power of two, then every other slope of the
    next power's series (Press et al.; the published code's rule)."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_2(heads)
    lower = 2 ** math.floor(math.log2(heads))
    return power_of_2(lower) + alibi_slopes(2 * lower)[0::2][: heads - lower]


def _cfg(config: dict, key: str):
    return config.get(key, DEFAULTS.get(key)) if key in DEFAULTS else config[key]


class Dnabert2Embeddings(nn.Module):
    """Word + token-type embeddings (no positions: ALiBi), LayerNorm, dropout."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Token type 0 everywhere, as the published BertModel passes zeros.
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]  # (batch, tokens, hidden)
        return self.dropout(self.LayerNorm(x))


class Dnabert2SelfAttention(nn.Module):
    """Fused Wqkv projection and SDPA with the ALiBi + padding bias as its mask."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.dropout_p = _cfg(config, "attention_probs_dropout_prob")
        self.Wqkv = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        qkv = self.Wqkv(x).view(b, t, 3, self.heads, h // self.heads)  # (batch, tokens, 3, heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.dropout_p if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, t, h)  # (batch, tokens, hidden)


class Dnabert2SelfOutput(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Dnabert2Attention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.self = Dnabert2SelfAttention(config)
        self.output = Dnabert2SelfOutput(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Dnabert2GluMlp(nn.Module):
    """GELU(x W_g) * (x W_v), then wo, residual, post-LayerNorm: one (hidden, 2 * intermediate)
    matrix holds W_g (first half of its outputs) and W_v (second half)."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, inner = config["hidden_size"], config["intermediate_size"]
        self.inner = inner
        self.gated_layers = nn.Linear(hidden, 2 * inner, bias=False)
        self.wo = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.layernorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated, values = self.gated_layers(x).split(self.inner, dim=-1)  # each (batch, tokens, intermediate)
        y = self.wo(self.dropout(F.gelu(gated) * values))  # (batch, tokens, hidden)
        return self.layernorm(y + x)


class Dnabert2Layer(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.attention = Dnabert2Attention(config)
        self.mlp = Dnabert2GluMlp(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(x, bias))


class Dnabert2Encoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.layer = nn.ModuleList(Dnabert2Layer(config) for _ in range(config["num_hidden_layers"]))


class Dnabert2Body(nn.Module):
    """The `bert.` part of the checkpoint (no pooler: the published MaskedLM has none)."""

    def __init__(self, config: dict):
        super().__init__()
        self.embeddings = Dnabert2Embeddings(config)
        self.encoder = Dnabert2Encoder(config)


class Dnabert2HeadTransform(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=1e-12)  # fixed in the published code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class Dnabert2Predictions(nn.Module):
    def __init__(self, config: dict, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = Dnabert2HeadTransform(config)
        self.decoder = nn.Linear(config["hidden_size"], config["vocab_size"])
        self.decoder.weight = word_embeddings.weight  # tied, as published

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class Dnabert2MlmHead(nn.Module):
    """The `cls.` part of the checkpoint."""

    def __init__(self, config: dict, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = Dnabert2Predictions(config, word_embeddings)


class Dnabert2(NativeModel):
    """DNABERT-2 under the published checkpoint's names: `bert.*` [+ `cls.predictions.*`]."""

    port = "dnabert2"
    lm_head_prefixes = ("cls.",)
    optional_prefixes = ()

    def __init__(self, config: dict, masked_lm: bool = False):
        super().__init__(config, masked_lm)
        self.bert = Dnabert2Body(config)
        if masked_lm:
            self.cls = Dnabert2MlmHead(config, self.bert.embeddings.word_embeddings)
        self.slopes = alibi_slopes(config["num_attention_heads"])

    @property
    def hidden_size(self) -> int:
        return self.config["hidden_size"]

    def attention_bias(self, tokens: int, key_mask: torch.Tensor | None, dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
        """(batch or 1, heads, tokens, tokens) additive mask: ALiBi's -slope * |i - j| (built in
        fp32, as published), and the dtype's minimum where the key is padding."""
        pos = torch.arange(tokens, device=device)
        distance = (pos[None, :] - pos[:, None]).abs().float()  # (tokens, tokens)
        slopes = torch.tensor(self.slopes, dtype=torch.float32, device=device)
        bias = (-slopes[:, None, None] * distance)[None].to(dtype)  # (1, heads, tokens, tokens)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], torch.finfo(dtype).min)  # (batch, heads, ...)
        return bias

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False):
        x = self.bert.embeddings(input_ids)  # (batch, tokens, hidden)
        keep = None if attention_mask is None else attention_mask.bool()  # (batch, tokens)
        bias = self.attention_bias(input_ids.shape[1], keep, x.dtype, x.device)
        states = [x]
        for layer in self.bert.encoder.layer:
            x = self.run_layer(layer, x, bias)
            states.append(x)
        if keep is not None:  # the published model returns zeros at padding
            states = [s * keep[..., None].to(s.dtype) for s in states]
        return (states[-1], tuple(states)) if output_hidden_states else states[-1]

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(hidden)  # (..., vocab)


MODEL = Dnabert2


def hub_config(*, vocab_size: int, hidden: int, layers: int, heads: int, positions: int) -> dict:
    """config.json as the hub publishes it (its current revision), with the given sizes."""
    return {
        "_name_or_path": "zhihan1996/DNABERT-2-117M",
        "alibi_starting_size": positions,
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_bert.BertConfig",
            "AutoModel": "bert_layers.BertModel",
            "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
            "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
        },
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": 4 * hidden,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": positions,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.28.0",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def _train_tokenizer(vocab_size: int, train_fasta: Path):
    """A byte-pair tokenizer.json of the hub's form (specials 0-4, A C G T, merges; whitespace
    pre-tokenizer; [CLS] $A [SEP]), trained small on a real genome."""
    import gzip

    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    opener = gzip.open if str(train_fasta).endswith(".gz") else open
    with opener(train_fasta, "rt") as handle:
        genome = "".join(line.strip() for line in handle if not line.startswith(">")).upper()
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), initial_alphabet=list("ACGT"),
                                  limit_alphabet=4, show_progress=False)
    tok.train_from_iterator((genome[i : i + 1000] for i in range(0, len(genome), 1000)), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", SPECIALS.index("[CLS]")), ("[SEP]", SPECIALS.index("[SEP]"))])
    return tok


def build_tiny_hub_folder(out_dir, *, hidden: int = 32, layers: int = 2, heads: int = 4, positions: int = 128,
                          seed: int = 0, weights: str = "safetensors", vocab_size: int = 64,
                          train_fasta=None) -> Path:
    """A tiny random DNABERT-2 in the hub repo's layout: config.json, weights under the hub's
    names (model.safetensors, or pytorch_model.bin as the hub ships), tokenizer.json +
    tokenizer_config.json, generation_config.json, and a stand-in for every code file the hub
    ships, which raises if anything ever executes it."""
    from safetensors.torch import save_file

    from ...io import atomic_dir

    if train_fasta is None:  # the repository's bundled phage genome
        train_fasta = Path(__file__).resolve().parents[4] / "data" / "lambda_phage_NC_001416.1.fa.gz"
    tokenizer = _train_tokenizer(vocab_size, Path(train_fasta))
    config = hub_config(vocab_size=tokenizer.get_vocab_size(), hidden=hidden, layers=layers, heads=heads,
                        positions=positions)
    model = Dnabert2(config, masked_lm=True)
    randomise(model, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    with atomic_dir(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"_from_model_config": True, "pad_token_id": 0, "transformers_version": "4.28.0"}, indent=2) + "\n")
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "cls_token": "[CLS]",
             "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]"}))
        write_stand_ins(tmp, HUB_CODE)
        if weights == "bin":  # the hub's own form: a torch pickle with the tied decoder saved under both names
            torch.save(state, tmp / "pytorch_model.bin")
        elif weights == "safetensors":  # one name per storage, as safetensors requires
            del state["cls.predictions.decoder.weight"]
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            raise ValueError(f"weights must be 'safetensors' or 'bin', not {weights!r}")
    return Path(out_dir)
