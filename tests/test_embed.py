"""The embedding job's numeric paths on the CPU: fp32 and bf16 (the GPU's default)
through the same code, and the device choice."""

from __future__ import annotations

import numpy as np
import pysam
import pytest

from dnalm.embed import embed_windows, pick_device
from dnalm.encoder import EncoderSpec, build_tiny_encoder, load_encoder

from conftest import REPO


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_encoder(str(tmp_path_factory.mktemp("enc") / "tiny"), hidden=32, layers=1, heads=2)


def windows(n: int = 24) -> list[str]:
    fasta = pysam.FastaFile(str(REPO / "data" / "phiX174_NC_001422.1.fa.gz"))
    seq = fasta.fetch("NC_001422.1")
    return [seq[i : i + 512] for i in range(0, 200 * n, 200)][:n]


def test_bf16_matches_fp32_closely_and_is_recorded(model_dir):
    wins = windows()
    out = {}
    for precision in ("fp32", "bf16"):
        model, k, meta = load_encoder(EncoderSpec(str(model_dir), precision=precision), 512, "cpu")
        assert meta["precision"] == {"fp32": "float32", "bf16": "bfloat16"}[precision]
        out[precision] = embed_windows(model, wins, k, 8, "cpu")
    for fp32, bf16 in zip(out["fp32"], out["bf16"]):
        assert fp32.shape == bf16.shape == (len(wins), 32) and np.isfinite(bf16).all()
        assert np.abs(fp32 - bf16).max() / np.abs(fp32).max() < 0.05
        assert not np.array_equal(fp32, bf16)  # bf16 really ran


def test_auto_precision_is_fp32_on_cpu_and_device_falls_back(model_dir):
    assert pick_device("auto") in ("cpu", "cuda")
    _, _, meta = load_encoder(EncoderSpec(str(model_dir)), 512, "cpu")
    assert meta["precision"] == "float32"
