"""Glue between Snakemake scripts and the package: the job log, the job's threads,
and user errors reported as one clear message instead of a traceback."""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

from .errors import InputError
from .threads import limit_threads

@contextlib.contextmanager
def step(snakemake):
    """Run a rule's body with stdout/stderr in its log, within the rule's threads (jobs that
    run torch also call `threads.limit_torch_threads`); a user error becomes one clear line.

    An InputError is written to the log and to the terminal without a
    traceback, and the job exits 1 (Snakemake then removes its outputs).
    """
    threads_line = limit_threads(getattr(snakemake, "threads", 1))
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
