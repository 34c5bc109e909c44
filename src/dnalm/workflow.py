"""Glue between Snakemake scripts and the package: the job log, the job's threads,
and user errors reported as one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path

from .errors import InputError

# Thread pools a job can start: OpenMP/BLAS (torch, numpy), and the Rust pool of
# Hugging Face tokenizers. Set before the library starts its pool.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int, torch: bool = False) -> str:
    """Keep a job to its rule's `threads`: torch otherwise takes every core of a shared
    node, whatever SLURM granted. Returns a line for the job log."""
    threads = max(1, int(threads))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    from threadpoolctl import threadpool_limits  # numpy's BLAS, already started by the imports

    threadpool_limits(threads)
    if not torch:
        return f"threads: {threads}"
    import torch as _torch

    _torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before torch's first parallel work
        _torch.set_num_interop_threads(threads)
    return (f"threads: {threads} (torch {_torch.get_num_threads()}, interop {_torch.get_num_interop_threads()}, "
            f"tokenizers {os.environ['RAYON_NUM_THREADS']})")


@contextlib.contextmanager
def step(snakemake, torch: bool = False):
    """Run a rule's body with stdout/stderr in its log, within the rule's threads; a user
    error becomes one clear line. `torch=True` for jobs that run torch.

    An InputError is written to the log and to the terminal without a
    traceback, and the job exits 1 (Snakemake then removes its outputs).
    """
    threads_line = limit_threads(getattr(snakemake, "threads", 1), torch)
    log_path = Path(snakemake.log[0]) if snakemake.log else None
    terminal = sys.stderr
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        sys.stdout = sys.stderr = log
        print(threads_line)
        try:
            yield
        except InputError as err:
            message = f"Error in rule {snakemake.rule}: {err}"
            print(message, file=log)
            print(message, file=terminal)
            sys.exit(1)
        except Exception:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, terminal
