"""What a torch job computes on: its device, its threads and its arithmetic."""

from __future__ import annotations

import contextlib
import os

from .threads import limit_threads


def pick_device(requested: str = "auto") -> str:
    """cuda when torch sees a GPU, else the CPU (a SLURM fake GPU, or none, runs on the CPU)."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def limit_torch_threads(threads: int) -> str:
    """The same for torch's intra- and inter-op pools; returns a line for the job log."""
    import torch

    threads = max(1, int(threads))
    limit_threads(threads)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable only before torch's first parallel work
        torch.set_num_interop_threads(threads)
    return (f"threads: {threads} (torch {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}, "
            f"tokenizers {os.environ['RAYON_NUM_THREADS']})")


def autocast(precision: str, device: str):
    """bf16 autocast for training (`precision` bf16, or auto on a GPU); weights stay fp32."""
    import torch

    use_bf16 = precision == "bf16" or (precision == "auto" and device.startswith("cuda"))
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=use_bf16)
