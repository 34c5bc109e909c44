"""Native implementations ("ports") of hub architectures that ship their own code.

DNABERT-2, Nucleotide Transformer v2, GENA-LM and HyenaDNA are published with their
own modeling code (config.json `auto_map`), written for transformers 4 and broken
under transformers 5 in ways that crash or, worse, load silently wrong
(MODELS_AS_PUBLISHED.md). Here each is a plain torch module (`base.NativeModel`)
that reads the hub checkpoint's own weight names, so:

- no remote code runs at all, with or without `trust_remote_code`;
- attention is torch's SDPA (flash / memory-efficient kernels where the device has
  them), never a Triton kernel that assumes a GPU;
- the folder a fine-tuning or pretraining job writes keeps the hub's layout (its
  config.json, weight names and shipped code), so the next rule loads it natively and
  a user's `from_pretrained(..., trust_remote_code=True)` loads it with the published code.

Each port was checked numerically against the published code (the README's table of
the published models gives the figures). A folder is served by a port when `port_for(config)` finds one;
everything else loads through transformers' Auto classes (`encoders.loading`).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ...errors import InputError
from .forms import FORMS, Form, form_for

__all__ = ["FORMS", "Form", "check_supported", "form_for", "load", "port_for", "save", "state_dict_files"]


def port_for(config: dict):
    """The port class (a `base.NativeModel`, imports torch) for this config.json, or None."""
    form = form_for(config)
    return None if form is None else importlib.import_module(f"{__name__}.{form.module}").MODEL


def check_supported(form: Form, config: dict, where: Path) -> None:
    """Refuse a config of a port's family that uses a variant the port does not implement."""
    reason = form.unsupported(config)
    if reason:
        raise InputError(f"this {form.published_as} variant cannot run here: {reason}", path=where,
                         fix=f"use a {form.published_as} checkpoint of the standard form")


def state_dict_files(folder: Path) -> list[Path]:
    """The weight files of a folder, safetensors first (one file, or the shards of an index)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.exists():
            return [folder / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    raise InputError("holds no weights (model.safetensors or pytorch_model.bin)", path=folder,
                     fix="download the model's weight files into the folder")


def _read_weights(files: list[Path]) -> dict:
    import torch
    from safetensors.torch import load_file

    state = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                state.update(load_file(str(path)))
            else:  # a pickle, read by torch's restricted unpickler: tensors only, no code runs
                state.update(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:
            raise InputError(f"the weights do not load ({type(err).__name__}: {err})", path=path,
                             fix="the file is damaged or not a checkpoint: download it again") from None
    return state


def load(folder, *, masked_lm: bool = False, dtype=None):
    """The folder's model built by its port, with every weight from the checkpoint.

    Refused: a weight the checkpoint lacks (other than an unused pooler, the LM head of a
    base load, or an alias of a tied tensor that was loaded), or a shape that differs."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    form = form_for(config)
    if form is None:
        raise InputError("no native implementation matches this config.json", path=folder / "config.json",
                         fix="load it through transformers instead")
    check_supported(form, config, folder / "config.json")
    port = port_for(config)
    if masked_lm and not form.has_lm_head:
        raise InputError(f"{form.published_as} has no masked-LM head, so it cannot be pretrained as a masked LM",
                         path=folder, fix="turn pretraining off (pretrain.activate: false) for this model")
    state = _read_weights(state_dict_files(folder))
    model = port(config, masked_lm=masked_lm)
    expected = model.state_dict()
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if mismatched:
        raise InputError(f"{len(mismatched)} weight(s) have another shape than config.json says (e.g. "
                         f"{', '.join(mismatched[:2])})", path=folder,
                         fix="the weights and config.json come from different models: download both again")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    loaded = {expected[k].data_ptr() for k in expected if k in state}
    optional = port.optional_prefixes + (() if masked_lm else port.lm_head_prefixes)
    missing = [k for k in expected if k not in state and not k.startswith(optional)
               and not k.endswith(port.derived_suffixes)
               and expected[k].data_ptr() not in loaded]  # an alias of a loaded tensor is loaded
    if missing:
        raise InputError(
            f"{len(missing)} weight(s) of {form.published_as} are not in the checkpoint and would be random "
            f"(e.g. {', '.join(missing[:3])})", path=folder,
            fix="the folder holds another architecture's weights, or an incomplete download: download the "
                "weight files again")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def save(model, source: Path, out_dir: Path) -> None:
    """Write a port's weights as a hub-layout folder into `out_dir` (which exists):
    model.safetensors under every published name, and the source folder's config.json.

    A tensor the model shares under two names (a decoder tied to the embeddings, one
    module reused) is written under both, as a copy: safetensors refuses shared storage,
    and the published code needs every name (transformers 4 unties, for example, a BERT
    decoder bias left out of the file and would leave it zero)."""
    import shutil

    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        tensors[name] = tensor.clone().contiguous() if key in seen else tensor.contiguous()
        seen.add(key)
    save_file(tensors, str(Path(out_dir) / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(Path(source) / "config.json", Path(out_dir) / "config.json")
