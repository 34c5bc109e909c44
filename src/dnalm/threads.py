"""Every job keeps to its rule's `threads`.

torch (and numpy's BLAS, and the Rust pool of Hugging Face tokenizers) otherwise
start one thread per core of the node, whatever SLURM granted the job: on a shared
node that is oversubscription, and on a loaded machine a two-thread torch job runs
several times slower than a one-thread one.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> str:
    """Thread pools not started yet (variables) and numpy's BLAS (started by the imports)."""
    threads = max(1, int(threads))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    return f"threads: {threads}"
