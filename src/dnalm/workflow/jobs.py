"""Glue between Snakemake and the package inside jobs: the job log, the job's threads,
user errors reported as one clear message instead of a traceback, the package a job
imports checked to be the workflow's own, the encoder a job loads, and the lock that
keeps two runs out of one results folder."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import traceback
from pathlib import Path

from ..errors import InputError
from ..settings import EncoderSpec
from ..threads import limit_threads

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the dnalm package this process imported


def check_package_origin(workflow_dir: str | os.PathLike) -> None:
    """The package a job (or the DAG) imports must be the one in the workflow's own checkout
    (`src/dnalm`): another installed copy would run other code than the rules were written
    for, silently. A conda env shared between checkouts (one --conda-prefix) is the usual
    way to get there."""
    expected = Path(workflow_dir).resolve() / "src" / "dnalm"
    if PACKAGE_ROOT != expected:
        raise InputError(
            f"this process imports dnalm from {PACKAGE_ROOT}, not from the workflow's own checkout ({expected})",
            fix=f"install the checkout you run into this environment: pip install --no-deps -e "
                f"{Path(workflow_dir).resolve()} (for conda envs shared between checkouts, give each checkout its "
                "own --conda-prefix)")


def encoder_spec(snakemake) -> EncoderSpec:
    """The `EncoderSpec` a job loads: a hub id arrives as the param `hub_id`; a local model as
    its files (input `encoder`), the tiny one as its folder."""
    local = Path(snakemake.input.encoder[0]) if snakemake.input.encoder else None
    model = snakemake.params.hub_id or str(local if local.is_dir() else local.parent)
    return EncoderSpec(**{**snakemake.params.spec, "model": model})


@contextlib.contextmanager
def step(snakemake):
    """Run a rule's body with stdout/stderr in its log, within the rule's threads (jobs that
    run torch also call `compute.limit_torch_threads`); a user error becomes one clear line.

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
            check_package_origin(Path(snakemake.scriptdir).parent)
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


# ------------------------------------------------------------------ run lock
#
# Snakemake locks its working directory (.snakemake/), not the results: two runs
# started from different directories with one absolute outdir would write the same
# files and truncate each other's logs. The Snakefile takes this lock when a run
# starts (onstart, after the DAG is built and before any job) and gives it back when
# the run ends (onsuccess, onerror). Dry runs run no hooks, so they neither take nor
# heed it. A lock left by a process that is gone (killed, crashed) is taken over; on
# another host that cannot be told, so the message says how to remove it.


def lock_path(outdir: str | os.PathLike) -> Path:
    return Path(outdir) / ".dnalm" / "run.lock"


def _start_ticks(pid: int) -> str | None:
    """When a process started (Linux /proc), to tell a live run from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(),
            "start_ticks": _start_ticks(os.getpid()), "command": " ".join(sys.argv),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}


def _alive(owner: dict) -> bool:
    """Whether the run that wrote a lock still runs (assumed so on another host)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = _start_ticks(int(owner["pid"]))
    return owner.get("start_ticks") is None or ticks is None or ticks == owner["start_ticks"]


def take_run_lock(outdir: str | os.PathLike) -> Path:
    """Lock `outdir` for this process, or raise an InputError naming the run that holds it."""
    lock = lock_path(outdir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = _me()
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                owner = None  # being written this instant, or damaged: look again
            if owner is not None:
                if owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
                    return lock
                if _alive(owner):
                    raise InputError(
                        f"is in use by another dnalm run: pid {owner.get('pid')} on {owner.get('host')}, started "
                        f"{owner.get('started')} in the working directory {owner.get('cwd')} "
                        f"(command: {owner.get('command')}). Two runs writing one results folder overwrite "
                        "each other's results and logs",
                        path=outdir,
                        fix="wait until that run ends, or give this run its own outdir and logdir; if that run "
                            f"is no longer alive (e.g. it was killed on another machine), delete {lock}")
                print(f"dnalm: taking over the lock of a run that is gone (pid {owner.get('pid')}, "
                      f"working directory {owner.get('cwd')}): {lock}", file=sys.stderr)
                lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return lock
    raise InputError("could not take the run lock", path=lock, fix=f"delete {lock} if no run is using {outdir}")


def release_run_lock(outdir: str | os.PathLike) -> None:
    """Give the lock back, if this process holds it."""
    lock = lock_path(outdir)
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def check_run_folder(value: str, key: str) -> str:
    """outdir/logdir without a trailing slash; empty or the filesystem root is refused."""
    if not str(value).strip() or Path(str(value)).resolve() == Path("/"):
        raise InputError(
            f"{key} is {value!r}: every {'result' if key == 'outdir' else 'log'} path is '<{key}>/...', so "
            "they would all be written at the root of the filesystem",
            fix=f"set {key} to a folder of its own, e.g. {key}: {'results' if key == 'outdir' else 'logs'}")
    if Path(str(value)) == Path("."):
        # Results in the working directory itself mix with Snakemake's own files (.snakemake/,
        # config/, the Snakefile's folder) and Snakemake warns about every path ('./...').
        raise InputError(
            f"{key} is {value!r}, the working directory itself: results would mix with config/, data/ and "
            ".snakemake/", fix=f"set {key} to a folder of its own, e.g. {key}: {'results' if key == 'outdir' else 'logs'}")
    return str(value).rstrip("/")
