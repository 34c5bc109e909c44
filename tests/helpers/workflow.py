"""Real snakemake runs in a scratch working directory laid out like a clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Small, fast settings every workflow test starts from: a 1-layer tiny encoder, short
# training, and heads on frozen embeddings only (the fine-tuning tests turn fine-tuning
# back on), on real data bundled in data/.
FAST = {
    "windows": {"per_shard": 64},
    "encoder": {"tiny": {"hidden": 32, "layers": 1, "attention_heads": 2}},
    "heads": {"hierarchical": {"d_model": 32, "layers": 1, "attention_heads": 2},
              "training": {"epochs": 15, "patience": 5}},
    "finetune": {"activate": False},
}


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Workdir:
    """A working directory laid out like a clone (config/, data/) for `snakemake -d`."""

    def __init__(self, root: Path):
        self.root = root
        (root / "config").mkdir(parents=True)
        shutil.copy(REPO / "config" / "config.yaml", root / "config" / "config.yaml")
        os.symlink(REPO / "data", root / "data")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write_config(self, name: str, overlay: dict) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(deep_merge(FAST, overlay), sort_keys=False))
        return path

    def snakemake(self, *args: str, configs: list[Path] = (), check: bool = True, timeout: int = 600) -> Run:
        # Options that take several values (--configfile, --forcerun) come last,
        # each closed by the next option, so targets in `args` stay targets.
        cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(self.root), "--cores", "2", *args]
        if configs:
            cmd += ["--configfile", str(self.root / "config" / "config.yaml"), *map(str, configs)]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake failed ({proc.returncode}):\n{run.output[-6000:]}")
        return run


def write_bed_subset(src: Path, dst: Path, per_class_split: int) -> None:
    """The first `per_class_split` regions of each (label, split) pair of a labelled BED."""
    seen: dict[tuple[str, str], int] = {}
    lines = []
    for line in src.read_text().splitlines():
        cols = line.split("\t")
        key = (cols[6], cols[7])
        if seen.get(key, 0) < per_class_split:
            seen[key] = seen.get(key, 0) + 1
            lines.append(line)
    dst.write_text("\n".join(lines) + "\n")


def jobs_in_dry_run(output: str) -> dict[str, int]:
    """Job counts per rule from the 'Job stats' table of `snakemake -n`."""
    counts = {}
    table = output.split("Job stats:", 1)
    if len(table) < 2:
        return counts
    for line in table[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts
