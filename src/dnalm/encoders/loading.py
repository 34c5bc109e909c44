"""Loading a model folder into torch through transformers' Auto classes, offline,
with the checks that keep a wrong load from passing silently."""

from __future__ import annotations

import inspect
import os

from ..errors import InputError
from .base import ModelFolder

REMOTE_CODE_MODELS = "DNABERT-2, Nucleotide Transformer v2, GENA-LM, HyenaDNA, Caduceus"
# Weights a base encoder may lack without being wrong: BERT's pooler (unused here).
_OPTIONAL = ("pooler.",)
# Masked-LM heads a base checkpoint (e.g. one saved by fine-tuning) does not carry.
_MLM_HEADS = ("cls.predictions", "lm_head", "cls.", "mlm_head")

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def check_remote_code(folder: ModelFolder, trust_remote_code: bool) -> None:
    """Refuse a folder that ships its own code unless the user asked to run it."""
    code = folder.remote_code
    if code and not trust_remote_code:
        shipped = "; ".join(f"{k} -> {v}" for k, v in sorted(code.items()))
        raise InputError(
            f"the model folder ships its own Python code ({shipped}), which runs only with trust_remote_code; "
            f"loading it with transformers' built-in classes would give wrong or newly initialised weights",
            path=folder.path,
            fix=f"read the code in that folder, then set encoder.trust_remote_code: true (models that need it: "
                f"{REMOTE_CODE_MODELS})")


def torch_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if precision not in DTYPES:
        raise InputError(f"encoder.precision is {precision!r}", fix="use auto, fp32, bf16 or fp16")
    return getattr(torch, DTYPES[precision])


def load_model(folder: ModelFolder, *, trust_remote_code: bool, dtype, masked_lm: bool = False):
    """The folder's model (base encoder, or with its masked-LM head), refusing a load
    that would leave encoder weights newly initialised (e.g. DNABERT-2 without its code)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers import AutoModel, AutoModelForMaskedLM

    check_remote_code(folder, trust_remote_code)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    auto = AutoModelForMaskedLM if masked_lm else AutoModel
    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True)
    try:
        try:
            model, info = auto.from_pretrained(folder.path, attn_implementation="sdpa", **kwargs)
        except (ValueError, TypeError) as err:
            if "sdpa" not in str(err).lower() and "attn" not in str(err).lower():
                raise
            model, info = auto.from_pretrained(folder.path, **kwargs)  # no SDPA for this architecture
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"transformers cannot load this model ({type(err).__name__}: {err})", path=folder.path,
                         fix="check the folder holds config.json and weights written by save_pretrained; a model "
                             f"with its own code ({REMOTE_CODE_MODELS}) needs encoder.trust_remote_code: true")
    optional = _OPTIONAL + (_MLM_HEADS if masked_lm else ())
    missing = [k for k in info.get("missing_keys", []) if not any(k.startswith(p) or f".{p}" in k for p in optional)]
    if missing:
        raise InputError(
            f"{len(missing)} weight(s) of {type(model).__name__} are not in the checkpoint and would be newly "
            f"initialised (e.g. {', '.join(missing[:3])}): the embeddings would be random", path=folder.path,
            fix=f"if the model ships its own code ({REMOTE_CODE_MODELS}) set encoder.trust_remote_code: true; "
                "otherwise this folder is not a checkpoint of the architecture in its config.json")
    return model


def takes_attention_mask(model) -> bool:
    """HyenaDNA-style models have no attention mask: their batches must not be padded."""
    try:
        return "attention_mask" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return True


def save_model_folder(model, source: ModelFolder, out_dir, marker: str, about: dict) -> None:
    """A trained encoder as a model folder like any checkpoint, written atomically:
    `save_pretrained` (safetensors), the source folder's tokenizer files and shipped code,
    and `marker` (a JSON file saying what made it)."""
    import json
    import shutil

    from ..io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for path in source.tokenizer_files() + sorted(source.path.glob("*.py")):
            shutil.copy(path, tmp / path.name)
        (tmp / marker).write_text(json.dumps(about, indent=2, sort_keys=True) + "\n")
