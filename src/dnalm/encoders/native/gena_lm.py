"""GENA-LM (AIRI-Institute/gena-lm-bert-*): a pre-LayerNorm BERT over a 32k byte-pair vocabulary.

The hub repos ship their own modeling_bert.py (the GitHub repo AIRI-Institute/GENA_LM,
src/gena_lm/modeling_bert.py) and map `AutoModel` to its `BertForMaskedLM`. Under
transformers 5 that code no longer imports, `AutoModelForMaskedLM` silently builds the
stock post-LN BERT with 8 LayerNorms random, and the non-persistent `token_type_ids`
buffer is left uninitialised. This port runs the dense BERTs natively:

- embeddings: word + token type 0 (every token, as the published model does when given
  no token_type_ids) + absolute position, then LayerNorm (kept in the pre-LN form);
- each layer: x + attn(pre_attention_ln(x)), then x + ffn(post_attention_ln(x)); the
  per-sublayer LayerNorms of stock BERT do not exist;
- `last_layer_norm` (default: `pre_layer_norm`) adds `encoder.last_layer_ln` after the
  last layer: gena-lm-bert-base-t2t(-multi) write `false`, gena-lm-bert-large-t2t and
  -lastln-t2t leave it at the default (true).

Token layout: [CLS]=1 ... [SEP]=2, [PAD]=3 (config `pad_token_id`), [UNK]=0, [MASK]=4,
"-" = 5 (a run of 10+ N). The summary token is [CLS] at position 0. The positions limit
is config.json `max_position_embeddings` (512 on the hub, specials included).

Refused (`unsupported`): the DeepSpeed sparse-attention BERTs (gena-lm-bigbird-base-sparse*,
`sparse_config_cls` / `sparse_attention`, with rotary positions) and post-LN configs,
which no published GENA-LM BERT uses. gena-lm-bigbird-base-t2t is transformers' own
BigBird (model_type big_bird) and does not reach this port.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from . import forms
from .base import NativeModel
from .hub_layout import write_stand_ins

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "-"]  # the hub tokenizer's ids 0..5


_get = forms.gena_setting


def last_layer_norm(config: dict) -> bool:
    """modeling_bert.py: getattr(config, 'last_layer_norm', pre_layer_norm)."""
    return bool(config.get("last_layer_norm", _get(config, "pre_layer_norm")))


class _Dense(nn.Module):
    """A holder that gives one Linear the published name `<part>.dense`."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class _Attention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _Dense(hidden, hidden)


class _Layer(nn.Module):
    """One pre-LN block: x + attn(LN(x)), then x + ffn(LN(x)), dropout where the published code has it."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = _get(config, "hidden_size"), _get(config, "layer_norm_eps")
        self.heads = _get(config, "num_attention_heads")
        self.attention_dropout = _get(config, "attention_probs_dropout_prob")
        self.pre_attention_ln = nn.LayerNorm(hidden, eps=eps)
        self.post_attention_ln = nn.LayerNorm(hidden, eps=eps)
        self.attention = _Attention(hidden)
        self.intermediate = _Dense(hidden, _get(config, "intermediate_size"))
        self.output = _Dense(_get(config, "intermediate_size"), hidden)
        self.dropout = nn.Dropout(_get(config, "hidden_dropout_prob"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, hidden = x.shape  # (batch, tokens, hidden)
        h = self.pre_attention_ln(x)
        attn = self.attention.self
        q, k, v = (proj(h).view(b, t, self.heads, hidden // self.heads).transpose(1, 2)
                   for proj in (attn.query, attn.key, attn.value))  # (batch, heads, tokens, head_dim)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(b, t, hidden)  # (batch, tokens, hidden)
        x = x + self.dropout(self.attention.output.dense(ctx))
        ff = F.gelu(self.intermediate.dense(self.post_attention_ln(x)))  # (batch, tokens, intermediate)
        return x + self.dropout(self.output.dense(ff))


class _Embeddings(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        hidden, positions = _get(config, "hidden_size"), _get(config, "max_position_embeddings")
        self.word_embeddings = nn.Embedding(_get(config, "vocab_size"), hidden,
                                            padding_idx=_get(config, "pad_token_id"))
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(_get(config, "type_vocab_size"), hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=_get(config, "layer_norm_eps"))
        self.dropout = nn.Dropout(_get(config, "hidden_dropout_prob"))
        # A persistent buffer in the published code, so published checkpoints may carry it.
        self.register_buffer("position_ids", torch.arange(positions).expand((1, -1)), persistent=True)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]  # (batch, tokens, hidden)
        x = x + self.position_embeddings(self.position_ids[:, :t])
        return self.dropout(self.LayerNorm(x))


class _Encoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(_get(config, "num_hidden_layers")))
        if last_layer_norm(config):
            self.last_layer_ln = nn.LayerNorm(_get(config, "hidden_size"), eps=_get(config, "layer_norm_eps"))


class _Bert(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)


class _Transform(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class _Predictions(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        hidden, vocab = _get(config, "hidden_size"), _get(config, "vocab_size")
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.transform = _Transform(hidden, _get(config, "layer_norm_eps"))
        self.decoder = nn.Linear(hidden, vocab, bias=False)
        self.decoder.bias = self.bias  # one tensor under both names, as published


class _MlmHead(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.predictions = _Predictions(config)


class GenaLm(NativeModel):
    """The dense pre-LN GENA-LM BERT, keys `bert.*` (+ `cls.predictions.*` with the MLM head)."""

    port: ClassVar[str] = "gena_lm"
    lm_head_prefixes: ClassVar[tuple[str, ...]] = ("cls.",)
    optional_prefixes: ClassVar[tuple[str, ...]] = ("bert.embeddings.position_ids",)  # an arange, not a weight

    def __init__(self, config: dict, masked_lm: bool = False):
        super().__init__(config, masked_lm)
        if _get(config, "hidden_size") % _get(config, "num_attention_heads"):
            raise ValueError("num_attention_heads does not divide hidden_size")
        self.bert = _Bert(config)
        if masked_lm:
            self.cls = _MlmHead(config)
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied, as published

    @property
    def hidden_size(self) -> int:
        return _get(self.config, "hidden_size")

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               output_hidden_states: bool = False):
        limit = _get(self.config, "max_position_embeddings")
        if input_ids.shape[1] > limit:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed GENA-LM's max_position_embeddings ({limit})")
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, tokens): keys a query may attend
        x = self.bert.embeddings(input_ids)  # (batch, tokens, hidden)
        states = [x]
        for layer in self.bert.encoder.layer:
            x = self.run_layer(layer, x, mask)
            states.append(x)
        if hasattr(self.bert.encoder, "last_layer_ln"):
            x = self.bert.encoder.last_layer_ln(x)
            states[-1] = x  # the published hidden_states end with the normed output too
        return (x, tuple(states)) if output_hidden_states else x

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        p = self.cls.predictions
        h = p.transform.LayerNorm(F.gelu(p.transform.dense(hidden)))  # (..., hidden)
        return p.decoder(h)  # (..., vocab)


MODEL = GenaLm


# --- a tiny hub-layout folder for tests -----------------------------------------------


def _hub_config(vocab: int, hidden: int, layers: int, heads: int, positions: int, last_ln: bool) -> dict:
    """config.json as the hub writes it: gena-lm-bert-base-t2t's form (last_layer_norm: false, eps 1e-12),
    or with last_ln gena-lm-bert-large-t2t's (key left at its default, eps 1e-5)."""
    config = {
        "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
        "auto_map": {"AutoModel": "modeling_bert.BertForMaskedLM"}, "gradient_checkpointing": False,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": 4 * hidden, "last_layer_norm": False, "layer_norm_eps": 1e-12,
        "max_position_embeddings": positions, "model_type": "bert", "num_attention_heads": heads,
        "num_hidden_layers": layers, "pad_token_id": 3, "position_embedding_type": "absolute",
        "pre_layer_norm": True, "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": True,
        "vocab_size": vocab,
    }
    if last_ln:
        del config["last_layer_norm"]
        config["layer_norm_eps"] = 1e-5
    return config


def _train_tokenizer(train_fasta: Path, vocab_size: int, max_bases: int = 200_000):
    """A small BPE in the hub tokenizer.json's form: ids 0..5 = SPECIALS, N{10,} -> "-", [CLS] $A [SEP]."""
    import pysam
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    def chunks():
        seen = 0
        with pysam.FastxFile(str(train_fasta)) as records:
            for record in records:
                seq = record.sequence.upper()
                for lo in range(0, len(seq), 1000):
                    yield seq[lo: lo + 1000]
                    seen += 1000
                    if seen >= max_bases:
                        return

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex("N{10,}"), "-")])
    tok.pre_tokenizer = pre_tokenizers.Split("-", behavior="isolated")
    tok.decoder = decoders.BPEDecoder(suffix=" ")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=list("ACGTN"),
                                  show_progress=False)
    tok.train_from_iterator(chunks(), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    return tok


def _init_random(model: GenaLm, seed: int) -> None:
    """Non-trivial random weights (normal 0.02, LayerNorm weight around 1) so layers differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "_ln." in name:
                base = 1.0 if name.endswith("weight") else 0.0
                param.copy_(base + 0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(0.02 * torch.randn(param.shape, generator=gen))


def build_tiny_hub_folder(out_dir, *, hidden: int = 32, layers: int = 2, heads: int = 4, positions: int = 128,
                          seed: int = 0, weights: str = "safetensors", last_layer_norm: bool = False,
                          vocab_size: int = 256, train_fasta=None) -> Path:
    """A random GENA-LM in the hub's file layout: config.json, pytorch_model.bin or model.safetensors
    (every published name; the .bin keeps the tied aliases shared, as torch.save does), tokenizer.json,
    special_tokens_map.json, tokenizer_config.json, and a modeling_bert.py stand-in that raises."""
    from safetensors.torch import save_file

    from ...io import atomic_dir

    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights must be 'safetensors' or 'bin', not {weights!r}")
    train_fasta = Path(train_fasta or Path(__file__).resolve().parents[4] / "data" / "lambda_phage_NC_001416.1.fa.gz")
    tok = _train_tokenizer(train_fasta, vocab_size)
    config = _hub_config(tok.get_vocab_size(), hidden, layers, heads, positions, last_layer_norm)
    model = GenaLm(config, masked_lm=True)
    _init_random(model, seed)
    state = model.state_dict()
    with atomic_dir(out_dir) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if weights == "bin":
            torch.save(state, tmp / "pytorch_model.bin")
        else:  # safetensors cannot share storage: aliases as copies, so every published name is there
            # (transformers 4 unties `cls.predictions.decoder.bias` from `cls.predictions.bias` when
            # loading, and the published head adds the former: without it its logits lose the bias)
            save_file({name: tensor.clone().contiguous() for name, tensor in state.items()},
                      str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "special_tokens_map.json").write_text(json.dumps(
            {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}))
        (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
        write_stand_ins(tmp, ["modeling_bert.py"])
    return Path(out_dir)
