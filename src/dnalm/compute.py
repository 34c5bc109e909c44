"""What a torch job computes on: its device, its threads and its arithmetic."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from .errors import InputError
from .threads import limit_threads

# CPU instructions for int8 dot products, which dynamic int8 linear layers run on.
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def pick_device(requested: str = "auto") -> str:
    """cuda when torch sees a GPU, else the CPU (a SLURM fake GPU, or none, runs on the CPU)."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@functools.cache
def cpu_int8_dot() -> str:
    """The CPU's int8 dot-product instructions (VNNI, AMX), "" where it has none (Linux flags)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return "+".join(f for f in INT8_DOT_FLAGS if f in flags)
    return ""


def encoder_arithmetic(precision: str, device: str) -> str:
    """What an embedding job's encoder computes in: fp32, bf16, fp16 or int8 (its linear layers
    quantized, CPU only). `auto`: bf16 on a GPU, fp32 on a CPU. (int8 is 2.2-3.2x fp32 on CPUs
    with int8 dot-product instructions and agrees closely, docs/benchmark.md, but the fine-tuned
    head's metrics are computed by the fine-tuning job in fp32: with int8 embeddings they would
    no longer be those of the run's own predictions, so auto does not choose it.)"""
    gpu = device.startswith("cuda")
    if precision == "auto":
        return "bf16" if gpu else "fp32"
    if precision == "int8" and gpu:
        raise InputError(
            "encoder.precision is int8, which runs on CPUs only (dynamic int8 quantization of the linear "
            "layers has no CUDA kernels in torch), but this job sees a GPU",
            fix="use auto (bf16 on a GPU) where the embedding jobs get GPUs, or hide the GPU from the job "
                "(CUDA_VISIBLE_DEVICES=) to embed in int8 on its CPU")
    return precision


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
