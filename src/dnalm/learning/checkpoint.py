"""Checkpoints of a training job, so a killed job (time limit, preemption, scancel)
resumes from its last finished epoch instead of starting over.

A checkpoint folder holds, each written atomically:
- `model.safetensors`: every trainable module's weights (one flat state dict);
- `optimizer.safetensors` + `optimizer.json`: the optimiser's tensors and its
  hyper-parameters, flattened so no pickle is ever loaded;
- `state.json`: epoch, scheduler, history, best epoch, the random generators'
  states, and a fingerprint of what the training depends on (settings, inputs):
  a checkpoint of other settings is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_path, write_json_atomic

MODEL, BEST, OPTIMIZER, OPTIMIZER_META, STATE = (
    "model.safetensors", "best.safetensors", "optimizer.safetensors", "optimizer.json", "state.json")


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        # contiguous CPU copies; tied weights share storage, which safetensors refuses: clone them.
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": "pt"})


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value
            else:
                scalars[f"{param_id}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def fingerprint(settings: list, inputs: list[str]) -> str:
    """What a training depends on: its settings (JSON values) and the size and mtime of its inputs."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in inputs:
        stat = Path(path).stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def rng_state(rng: np.random.Generator) -> dict:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generators
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(rng: np.random.Generator, saved: dict) -> None:
    rng.bit_generator.state = saved["numpy"]
    torch.set_rng_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in saved["cuda"]])


class Checkpoint:
    def __init__(self, folder: str | Path, fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def load_state(self) -> dict | None:
        """The saved state when it belongs to this training (same fingerprint), else None."""
        path = self.folder / STATE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        if state.get("fingerprint") != self.fingerprint:
            return None
        return state

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, best: bool) -> None:
        """Weights and optimiser first, the state (which marks the checkpoint complete) last."""
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = model.state_dict()
        save_tensors(weights, self.folder / MODEL)
        if best:
            save_tensors(weights, self.folder / BEST)
        tensors, meta = _flatten_optimizer(optimizer)
        save_tensors(tensors, self.folder / OPTIMIZER)
        write_json_atomic(self.folder / OPTIMIZER_META, meta)
        write_json_atomic(self.folder / STATE, {**state, "fingerprint": self.fingerprint})

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
               rng: np.random.Generator) -> dict | None:
        """Back to the end of the last finished epoch (weights, optimiser, scheduler, random
        generators) and its state; None when no checkpoint of this training exists."""
        state = self.load_state()
        if state:
            model.load_state_dict(load_file(str(self.folder / MODEL)))
            meta = json.loads((self.folder / OPTIMIZER_META).read_text())
            optimizer.load_state_dict(_unflatten_optimizer(load_file(str(self.folder / OPTIMIZER)), meta))
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(rng, state["rng"])
        return state

    def load_best(self, model: torch.nn.Module) -> None:
        model.load_state_dict(load_file(str(self.folder / BEST)))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
