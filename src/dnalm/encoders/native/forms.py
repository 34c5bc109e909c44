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
    return config.get("model_type") == "bert" and "bert_layers" in _auto_map_modules(config)


def _nt_v2(config: dict) -> bool:
    return config.get("model_type") == "esm" and "modeling_esm" in _auto_map_modules(config)


def _gena_lm(config: dict) -> bool:
    return config.get("model_type") == "bert" and "modeling_bert" in _auto_map_modules(config)


def _gena_lm_unsupported(config: dict) -> str | None:
    if config.get("sparse_config") or config.get("attention_type") not in (None, "dense", "original_full"):
        return "sparse (BigBird / DeepSpeed) attention is not implemented; the dense GENA-LM BERTs are"
    if not config.get("pre_layer_norm", False):
        return "this port implements the pre-LayerNorm GENA-LM BERTs (pre_layer_norm: true)"
    return None


def _hyenadna(config: dict) -> bool:
    return config.get("model_type") == "hyenadna"


FORMS: tuple[Form, ...] = (
    Form("dnabert2", "dnabert2", "DNABERT-2 (zhihan1996/DNABERT-2-117M)", _dnabert2),
    Form("nt_v2", "nt_v2", "Nucleotide Transformer v2 (InstaDeepAI/nucleotide-transformer-v2-*)", _nt_v2),
    Form("gena_lm", "gena_lm", "GENA-LM (AIRI-Institute/gena-lm-bert-*)", _gena_lm, _gena_lm_unsupported),
    Form("hyenadna", "hyenadna", "HyenaDNA (LongSafari/hyenadna-*-hf)", _hyenadna, has_lm_head=False,
         takes_attention_mask=False),
)


def form_for(config: dict) -> Form | None:
    """The port whose published config form this is, or None (then transformers loads it)."""
    for form in FORMS:
        if form.matches(config):
            return form
    return None
