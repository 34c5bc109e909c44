"""Every job keeps to its rule's threads: torch, BLAS and tokenizer pools are limited
before any compute, so a `threads: 1` job starts no second compute thread."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, sys
threads = int(sys.argv[1])
from dnalm.compute import limit_torch_threads
import numpy as np
import torch
started = len(os.listdir("/proc/self/task"))  # threads before any compute
if threads:
    print(limit_torch_threads(threads))
a = torch.randn(1024, 1024)
for _ in range(10):
    a @ a
torch.nn.functional.softmax(torch.randn(64, 256, 256), -1).sum()
b = np.random.rand(600, 600)
b @ b
print("threads", started, len(os.listdir("/proc/self/task")), torch.get_num_threads())
"""


def probe(threads: int) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True, check=True)
    started, after, torch_threads = map(int, out.stdout.split("threads")[-1].split())
    return started, after, torch_threads


def test_one_thread_job_starts_no_compute_threads():
    started, after, torch_threads = probe(1)
    assert torch_threads == 1
    assert after == started, "torch or BLAS started a worker thread in a threads: 1 job"


def test_limit_is_what_keeps_it_so():
    """Without the limit torch takes every core (this shows the test above can fail)."""
    import os

    started, after, torch_threads = probe(0)
    if (os.cpu_count() or 1) > 1:
        assert torch_threads > 1 and after > started
