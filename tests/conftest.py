"""Shared fixtures: scratch working directories for real snakemake runs, one labelled run
reused by several tests, and a small random model of each family. Helpers live in
tests/helpers/ (imported as `helpers.*`), not here."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.models import TINY_SHAPE
from helpers.workflow import REPO, Workdir, write_bed_subset


@pytest.fixture
def workdir(tmp_path) -> Workdir:
    return Workdir(tmp_path / "wd")


@pytest.fixture(scope="session")
def trained_bed_run(tmp_path_factory):
    """One real BED-mode run (E. coli coding/intergenic, 72 regions), shared by several tests."""
    wd = Workdir(tmp_path_factory.mktemp("bedrun") / "wd")
    write_bed_subset(REPO / "data" / "ecoli_k12_regions.bed", wd.path("regions.bed"), 18)
    cfg = wd.write_config("bed.yaml", {"input": {"mode": "bed", "bed": "regions.bed"}})
    run = wd.snakemake(configs=[cfg])
    return wd, cfg, run


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One small random model of each family, saved with save_pretrained as a hub checkpoint
    would be: DNABERT-6 (BERT), NT-style (ESM + EsmTokenizer), byte-pair (BERT + a BPE
    tokenizer trained on the bundled lambda genome), per-base (BERT, no [CLS])."""
    from dnalm.encoders.tiny import build_tiny_encoder

    root = tmp_path_factory.mktemp("models")
    lambda_fa = REPO / "data" / "lambda_phage_NC_001416.1.fa.gz"
    return {family: build_tiny_encoder(root / family, family, train_fasta=str(lambda_fa), **TINY_SHAPE)
            for family in ("dnabert", "nucleotide_transformer", "bpe", "per_base")}
