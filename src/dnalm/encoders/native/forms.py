"""How each native port recognises its published config.json, without torch.

The DAG is built (on a login node, and again in every job) before any model is
loaded, so which port serves a folder, and whether it can, is decided here from
config.json alone; the port modules themselves import torch and load only in jobs.

A published config is recognised by what its publisher wrote, never by sizes:
`model_type`, and the modules its `auto_map` names (each hub repo ships code files
of its own names: bert_layers.py, modeling_esm.py, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _auto_map_modules(config: dict) -> set[str]:
    """The Python modules named by config.json's auto_map ("bert_layers.BertModel" -> bert_layers)."""
    names = set()
    for value in (config.get("auto_map") or {}).values():
        for ref in [value] if isinstance(value, str) else value or []:
            if ref:
                names.add(ref.split("--")[-1].rsplit(".", 1)[0])
    return names


def _never(config: dict) -> str | None:
    return None


@dataclass(frozen=True)
class Form:
    name: str  # the port's name, as logs and provenance record it
    module: str  # its module in dnalm.encoders.native
    published_as: str  # what users know it by
    matches: Callable[[dict], bool]
    unsupported: Callable[[dict], str | None] = _never  # a variant the port does not implement
    has_lm_head: bool = True  # the published checkpoint carries a masked-LM head (pretraining)
    takes_attention_mask: bool = True


def _dnabert2(config: dict) -> bool:
    """Its auto_map names `bert_layers`. The hub's current config.json has no `model_type` at
    all (removed 2024-02-22); earlier revisions say "bert"."""
    return config.get("model_type") in (None, "", "bert") and "bert_layers" in _auto_map_modules(config)


# Read without a default by DNABERT-2's published code: it fails without them, so does the port.
DNABERT2_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "hidden_act", "hidden_dropout_prob", "layer_norm_eps", "type_vocab_size")


def _dnabert2_unsupported(config: dict) -> str | None:
    missing = [k for k in DNABERT2_REQUIRED if k not in config]
    if missing:
        return f"config.json lacks {', '.join(missing)}, which the published code reads without a default"
    if config["hidden_act"] != "gelu":
        return f"hidden_act {config['hidden_act']!r}: only 'gelu', as published, is implemented"
    if config["hidden_size"] % config["num_attention_heads"]:
        return "hidden_size is not a multiple of num_attention_heads"
    return None


def _nt_v2(config: dict) -> bool:
    """The hub's own ESM fork: model_type esm and an auto_map into modeling_esm.py (a stock
    ESM config, NT v1's included, has no auto_map and loads through transformers)."""
    return config.get("model_type") == "esm" and "modeling_esm" in _auto_map_modules(config)


# esm_config.EsmConfig's defaults (transformers' EsmConfig plus the hub's add_bias_fnn);
# hub configs omit keys at these values. tie_word_embeddings is PretrainedConfig's.
NT_V2_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 1026,
    "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "emb_layer_norm_before": None,
    "token_dropout": False, "is_folding_model": False, "add_bias_fnn": True, "tie_word_embeddings": True,
    "vocab_size": None, "pad_token_id": None, "mask_token_id": None, "is_decoder": False,
    "add_cross_attention": False,
}


def nt_v2_settings(config: dict) -> dict:
    return {key: config.get(key, default) for key, default in NT_V2_DEFAULTS.items()}


def _nt_v2_unsupported(config: dict) -> str | None:
    s = nt_v2_settings(config)
    if s["position_embedding_type"] != "rotary":
        return (f"position_embedding_type {s['position_embedding_type']!r}: only the rotary form of the "
                "v2 checkpoints is implemented")
    if s["is_folding_model"]:
        return "ESMFold (is_folding_model) is not implemented"
    if s["is_decoder"] or s["add_cross_attention"]:
        return "the decoder / cross-attention form of ESM is not implemented"
    for key in ("vocab_size", "pad_token_id"):
        if s[key] is None:
            return f"config.json lacks {key}, which the published code needs"
    if s["token_dropout"] and s["mask_token_id"] is None:
        return "token_dropout is on but config.json lacks mask_token_id"
    if s["hidden_size"] % s["num_attention_heads"] or (s["hidden_size"] // s["num_attention_heads"]) % 2:
        return "the attention head width (hidden_size / num_attention_heads) must be a whole, even number"
    return None


def _gena_lm(config: dict) -> bool:
    return config.get("model_type") == "bert" and "modeling_bert" in _auto_map_modules(config)


# transformers 4's BertConfig defaults, and the GENA code's own: hub configs omit keys at these.
GENA_DEFAULTS = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "pre_layer_norm": False,  # modeling_bert.py: getattr(config, 'pre_layer_norm', False)
    "tie_word_embeddings": True, "is_decoder": False,
}


def gena_setting(config: dict, key: str):
    return config.get(key, GENA_DEFAULTS[key])


def _gena_lm_unsupported(config: dict) -> str | None:
    get = lambda key: gena_setting(config, key)  # noqa: E731
    if config.get("sparse_config_cls") or "sparse_attention" in config:
        return ("sparse attention (DeepSpeed BigBird sparse ops, `sparse_config_cls` / `sparse_attention`, "
                "as in gena-lm-bigbird-base-sparse*) is not implemented; the dense GENA-LM BERTs are")
    if get("position_embedding_type") != "absolute":
        return (f"position_embedding_type {get('position_embedding_type')!r} is not implemented; "
                "the published dense GENA-LM BERTs use absolute positions")
    if not get("pre_layer_norm"):
        return "post-LayerNorm (pre_layer_norm: false) is not a published GENA-LM BERT form; pre_layer_norm: true is"
    if get("hidden_act") != "gelu":
        return f"hidden_act {get('hidden_act')!r} is not implemented; the published GENA-LM BERTs use gelu"
    if get("is_decoder") or config.get("add_cross_attention"):
        return "the decoder form (is_decoder / add_cross_attention) is not implemented; GENA-LM is an encoder"
    if not get("tie_word_embeddings"):
        return "an untied decoder (tie_word_embeddings: false) is not a published GENA-LM form"
    return None


def _hyenadna(config: dict) -> bool:
    return config.get("model_type") == "hyenadna"


# configuration_hyena.HyenaConfig's defaults (a hub config.json omits keys at their defaults).
HYENA_DEFAULTS = {
    "vocab_size": 12, "d_model": 256, "d_inner": None, "use_bias": True, "train_freq": True, "max_seq_len": 1024,
    "emb_dim": 3, "n_layer": 12, "num_inner_mlps": 2, "hyena_order": 2, "short_filter_order": 3,
    "filter_order": 64, "activation_freq": 1, "embed_dropout": 0.1, "hyena_dropout": 0.0,
    "hyena_filter_dropout": 0.0, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
    "pad_vocab_size_multiple": 8, "tie_word_embeddings": True,  # transformers 4 PretrainedConfig's default
}


def hyena_setting(config: dict, key: str):
    value = config.get(key, HYENA_DEFAULTS[key])
    if key == "d_inner" and value is None:
        return 4 * hyena_setting(config, "d_model")
    return value


def _hyenadna_unsupported(config: dict) -> str | None:
    """A HyenaDNA config variant the published code does not run either (or runs differently)."""
    if hyena_setting(config, "hyena_order") != 2:
        return "only hyena_order 2 is implemented (the published filter builds order 2 only)"
    if hyena_setting(config, "short_filter_order") != 3:
        return "only short_filter_order 3 is implemented (the published conv padding is causal only for 3)"
    if not hyena_setting(config, "train_freq"):
        return "train_freq false (a fixed Sin frequency outside the state dict) is not implemented"
    emb = hyena_setting(config, "emb_dim")
    if emb < 3 or emb % 2 == 0:
        return "emb_dim must be odd and at least 3 (time, cosine and sine bands)"
    return None


FORMS: tuple[Form, ...] = (
    Form("dnabert2", "dnabert2", "DNABERT-2 (zhihan1996/DNABERT-2-117M)", _dnabert2, _dnabert2_unsupported),
    Form("nt_v2", "nt_v2", "Nucleotide Transformer v2 (InstaDeepAI/nucleotide-transformer-v2-*)", _nt_v2,
         _nt_v2_unsupported),
    Form("gena_lm", "gena_lm", "GENA-LM (AIRI-Institute/gena-lm-bert-*)", _gena_lm, _gena_lm_unsupported),
    Form("hyenadna", "hyenadna", "HyenaDNA (LongSafari/hyenadna-*-hf)", _hyenadna, _hyenadna_unsupported,
         has_lm_head=False,  # its head predicts the next base, not masked ones
         takes_attention_mask=False),
)


def form_for(config: dict) -> Form | None:
    """The port whose published config form this is, or None (then transformers loads it)."""
    for form in FORMS:
        if form.matches(config):
            return form
    return None
