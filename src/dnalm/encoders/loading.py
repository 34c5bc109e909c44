"""Loading a model folder into torch, offline, with the checks that keep a wrong
load from passing silently.

Two paths, chosen from config.json alone (`native_form`, also at DAG time):
- a published architecture this project implements (`native`: DNABERT-2, NT v2,
  GENA-LM, HyenaDNA) is built by its port from the hub's own weights; no code from
  the folder runs, whether or not `trust_remote_code` is set;
- anything else goes through transformers' Auto classes (stock classes, or the
  folder's own code when the user allows it).
"""

from __future__ import annotations

import inspect
import os
import re

from ..errors import InputError
from .base import ModelFolder

REMOTE_CODE_MODELS = "Caduceus"  # the published families that still need their own code (the rest are native)
# Weights a base encoder may lack without being wrong: BERT's pooler (unused here).
_OPTIONAL = ("pooler.",)
# Masked-LM heads a base checkpoint (e.g. one saved by fine-tuning) does not carry.
_MLM_HEADS = ("cls.predictions", "lm_head", "cls.", "mlm_head")

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def native_form(folder: ModelFolder):
    """The native port that serves this folder (a `native.Form`), or None."""
    from .native import check_supported, form_for

    form = form_for(folder.config)
    if form is not None:
        check_supported(form, folder.config, folder.path / "config.json")
    return form


def describe_load(folder: ModelFolder, trust_remote_code: bool) -> str:
    """One line for the job's log: which implementation runs this model."""
    form = native_form(folder)
    if form is not None:
        ran = " (trust_remote_code is set, but no code from the folder runs)" if trust_remote_code else ""
        return f"model: native {form.name} implementation of {form.published_as}{ran}"
    if folder.remote_code and trust_remote_code:
        return "model: the folder's own code (trust_remote_code)"
    return "model: transformers' built-in classes"


# transformers 4 APIs that transformers 5 removed (checked against 5.24: `init_weights`,
# `prune_linear_layer` and `apply_chunking_to_forward` are still there), and that published
# model code still uses: such code fails at import or first call, so it is refused before any job.
_REMOVED_APIS = ("find_pruneable_heads_and_indices", "get_extended_attention_mask", "get_head_mask")


def removed_apis(folder: ModelFolder) -> list[tuple[str, str]]:
    """(file, API) for each removed transformers API the folder's shipped code uses and does
    not define itself."""
    found = []
    for path in sorted(folder.path.glob("*.py")):
        text = path.read_text(errors="replace")
        found += [(path.name, api) for api in _REMOVED_APIS
                  if re.search(rf"\b{api}\b", text) and not re.search(rf"\bdef {api}\b", text)]
    return found


def check_caduceus(folder: ModelFolder) -> None:
    """Caduceus runs only on CUDA with mamba_ssm (its selective scan is a CUDA extension and its
    RMSNorm a Triton kernel): refuse it where that is not installed, naming what to install."""
    import importlib.util

    if folder.model_type != "caduceus":
        return
    missing = [m for m in ("mamba_ssm", "triton") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"Caduceus needs {' and '.join(missing)} (a CUDA build: its selective scan is a CUDA extension and its "
            "RMSNorm a Triton kernel), which this environment does not have, so it cannot run here (on a CPU it "
            "cannot run at all)", path=folder.path,
            fix="run on a GPU node whose environment has them: `pip install mamba-ssm causal-conv1d` where nvcc and "
                "CUDA are installed (they build from source), then set encoder.trust_remote_code: true")


def check_remote_code(folder: ModelFolder, trust_remote_code: bool) -> None:
    """Refuse a folder that ships its own code unless the user asked to run it, or a
    native port serves it; refuse code that needs what this environment lacks."""
    code = folder.remote_code
    if not code or native_form(folder) is not None:
        return
    check_caduceus(folder)
    if not trust_remote_code:
        shipped = "; ".join(f"{k} -> {v}" for k, v in sorted(code.items()))
        raise InputError(
            f"the model folder ships its own Python code ({shipped}), which runs only with trust_remote_code; "
            f"loading it with transformers' built-in classes would give wrong or newly initialised weights",
            path=folder.path,
            fix=f"read the code in that folder, then set encoder.trust_remote_code: true (models that need it: "
                f"{REMOTE_CODE_MODELS})")
    removed = removed_apis(folder)
    if removed:
        from importlib.metadata import version

        uses = "; ".join(f"{name} uses {api}" for name, api in removed[:4])
        raise InputError(
            f"the model's own code needs transformers 4 APIs that transformers {version('transformers')} (this "
            f"environment) no longer has: {uses}", path=folder.path,
            fix="ask the model's authors for code that runs on transformers 5, or open an issue for a native "
                "implementation of this architecture in dnalm")


def torch_dtype(arithmetic: str):
    """The dtype a model is loaded in to compute in `arithmetic` (`compute.encoder_arithmetic`;
    int8: loaded in fp32, then `quantize_int8`)."""
    import torch

    if arithmetic == "int8":
        return torch.float32
    if arithmetic not in DTYPES:
        raise InputError(f"encoder.precision is {arithmetic!r}", fix="use auto, fp32, bf16, fp16 or int8")
    return getattr(torch, DTYPES[arithmetic])


def load_model(folder: ModelFolder, *, trust_remote_code: bool, dtype, masked_lm: bool = False):
    """The folder's model (base encoder, or with its masked-LM head), refusing a load
    that would leave encoder weights newly initialised (e.g. a stock BERT built from a
    checkpoint of another architecture)."""
    if native_form(folder) is not None:
        from . import native

        return native.load(folder.path, masked_lm=masked_lm, dtype=dtype)
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


def quantize_int8(model):
    """The model's linear layers quantized to int8, dynamically (weights int8 per tensor,
    activations quantized per call): torch's own `quantize_dynamic`, in place. Inference only;
    on CPUs with VNNI the matrix products run on int8 instructions. A native port may keep
    some in float (`int8_keeps_float`, e.g. HyenaDNA's filter MLP)."""
    import warnings

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    keep = getattr(model, "int8_keeps_float", ())
    chosen = {name: default_dynamic_qconfig for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and not any(part in name for part in keep)}
    with warnings.catch_warnings():  # torch 2.13 marks the quantized tensor API deprecated (its removal is
        warnings.simplefilter("ignore")  # for a later torch; requirements pin 2.13)
        return quantize_dynamic(model, chosen, dtype=torch.qint8, inplace=True)


def takes_attention_mask(model) -> bool:
    """HyenaDNA-style models have no attention mask: their batches must not be padded."""
    declared = getattr(model, "takes_attention_mask", None)  # native ports say so
    if isinstance(declared, bool):
        return declared
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
        if getattr(model, "port", None):  # a native port: the hub's layout, names and config
            from . import native

            native.save(model, source.path, tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        for path in source.tokenizer_files() + sorted(source.path.glob("*.py")):
            shutil.copy(path, tmp / path.name)
        (tmp / marker).write_text(json.dumps(about, indent=2, sort_keys=True) + "\n")


def hidden_of(out):
    """(batch, tokens, hidden) last hidden states of any model's output: a native port's or
    a base model's `last_hidden_state`, a masked-LM output's `hidden_states[-1]` (run with
    output_hidden_states), or a plain tuple's first element."""
    last = getattr(out, "last_hidden_state", None)
    if last is not None:
        return last
    states = getattr(out, "hidden_states", None)
    if states:
        return states[-1]
    return out[0]
