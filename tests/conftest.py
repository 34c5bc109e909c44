"""Shared fixtures: a scratch working directory for real snakemake runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def workdir(tmp_path) -> Workdir:
    return Workdir(tmp_path / "wd")


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


@pytest.fixture(scope="session")
def trained_bed_run(tmp_path_factory):
    """One real BED-mode run (E. coli coding/intergenic, 72 regions), shared by several tests."""
    wd = Workdir(tmp_path_factory.mktemp("bedrun") / "wd")
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 18)
    cfg = wd.write_config("bed.yaml", {"input": {"mode": "bed", "bed": "regions.bed"}})
    run = wd.snakemake(configs=[cfg])
    return wd, cfg, run


TINY_SHAPE = {"hidden": 32, "layers": 1, "heads": 2}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One small random model of each family, saved with save_pretrained as a hub checkpoint
    would be: DNABERT-6 (BERT), NT-style (ESM + EsmTokenizer), byte-pair (BERT + a BPE
    tokenizer trained on the bundled lambda genome), per-base (BERT, no [CLS])."""
    from dnalm.encoders import build_tiny_encoder

    root = tmp_path_factory.mktemp("models")
    lambda_fa = REPO / "data" / "lambda_phage_NC_001416.1.fa.gz"
    return {family: build_tiny_encoder(root / family, family, train_fasta=str(lambda_fa), **TINY_SHAPE)
            for family in ("dnabert", "nucleotide_transformer", "bpe", "per_base")}
