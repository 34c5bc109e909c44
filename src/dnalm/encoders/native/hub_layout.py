"""What the ports' `build_tiny_hub_folder` builders share: tiny random-weight folders in a
hub repo's own layout, for tests and for trying a family without its weights.

The hub ships Python files beside the weights (bert_layers.py, modeling_esm.py, ...);
such a folder holds a stand-in of each name that raises when executed, so a run that
finishes proves no code from the folder ran.
"""

from __future__ import annotations

from pathlib import Path

import torch

STAND_IN = 'raise RuntimeError("dnalm test folder: the model\'s own code was executed")\n'


def write_stand_ins(folder: Path, names) -> None:
    for name in names:
        (Path(folder) / name).write_text(STAND_IN)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights N(0, 0.02); LayerNorm weights 1 + noise and biases small noise, so that tests
    can tell layers (and a missing LayerNorm) apart."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name.lower() or "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.02 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.02)
