"""The embedding engine on the CPU, for every family: vectors equal a direct model call,
whatever the batching; over-long windows in several passes; reverse-complement
averaging; fp32/bf16 through the same code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pysam
import pytest
import torch
from helpers.models import TINY_SHAPE
from helpers.workflow import REPO

from dnalm.compute import pick_device
from dnalm.embedding.engine import Embedder, EngineSettings, pack_batches, plan_passes
from dnalm.encoders import Encoder
from dnalm.encoders.tiny import build_tiny_encoder
from dnalm.settings import EncoderSpec
from dnalm.windows.bases import reverse_complement

FAMILIES = ["dnabert", "nucleotide_transformer", "bpe", "per_base"]


@pytest.fixture(scope="module")
def phix() -> str:
    return pysam.FastaFile(str(REPO / "data" / "phiX174_NC_001422.1.fa.gz")).fetch("NC_001422.1")


def windows(phix: str, n: int = 24) -> list[str]:
    return [phix[i : i + 512] for i in range(0, 200 * n, 200)][:n]


def mixed(phix: str) -> list[str]:
    """Windows of several lengths, one with an N run and soft-masked bases, as make_windows writes them."""
    gap = phix[1000:1200] + "N" * 60 + phix[1260:1512]
    return [phix[:512], phix[600:900], gap.upper(), phix[3000:3040], phix[4000:4512], phix[10:15], phix[2000:2512]]


def direct(encoder: Encoder, seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Summary and content-mean vectors, one window at a time, straight from the model."""
    summary, mean = [], []
    for seq in seqs:
        batch = encoder.tokenizer.encode([seq])
        with torch.inference_mode():
            hidden = encoder.model(input_ids=torch.from_numpy(batch.input_ids)).last_hidden_state[0].float().numpy()
        summary.append(hidden[batch.summary_index[0]])
        content = batch.content_mask[0]
        mean.append(hidden[content].mean(0) if content.any() else np.zeros(hidden.shape[1], np.float32))
    return np.array(summary), np.array(mean)


@pytest.mark.parametrize("precision", ["auto", "int8"])
@pytest.mark.parametrize("family", FAMILIES)
def test_vectors_equal_a_direct_model_call_whatever_the_batching(tiny_models, phix, family, precision):
    """Also in int8, whose activations are scaled per model call: one pass a call."""
    encoder = Encoder.load(EncoderSpec(str(tiny_models[family]), precision=precision), 512, 256)
    seqs = mixed(phix)
    want_summary, want_mean = direct(encoder, seqs)
    for budget in (600, 8192):  # a pass or two per batch, then everything padded into one batch
        got = Embedder(encoder, EngineSettings(tokens_per_batch=budget)).embed(seqs)
        assert np.allclose(got.summary, want_summary, atol=2e-5), (family, budget)
        assert np.allclose(got.mean, want_mean, atol=2e-5), (family, budget)
        assert got.tokens.tolist() == [int(encoder.tokenizer.encode([s]).content_mask.sum()) for s in seqs]
        assert set(got.passes.tolist()) == {1}


def test_window_without_sequence_tokens_has_zero_tokens(tiny_models):
    encoder = Encoder.load(EncoderSpec(str(tiny_models["dnabert"])), 512, 256)
    got = Embedder(encoder).embed(["ACGTA", "ACGTAC"])  # shorter than k=6, then exactly one 6-mer
    assert got.tokens.tolist() == [0, 1]
    assert not got.mean[0].any() and got.mean[1].any()


@pytest.mark.parametrize("family", FAMILIES)
def test_reverse_complement_averaging_is_strand_independent(tiny_models, phix, family):
    encoder = Encoder.load(EncoderSpec(str(tiny_models[family]), strands="both"), 512, 256)
    seqs = mixed(phix)
    forward = Embedder(encoder).embed(seqs, "both")
    reverse = Embedder(encoder).embed([reverse_complement(s) for s in seqs], "both")
    # What the workflow stores (float16) is identical; in float32 only summation order can differ.
    for a, b in ((forward.summary, reverse.summary), (forward.mean, reverse.mean)):
        assert np.array_equal(a.astype(np.float16), b.astype(np.float16)) or np.allclose(a, b, atol=1e-6)
    single = Embedder(encoder).embed(seqs, "single")
    assert not np.allclose(single.mean, forward.mean, atol=1e-3)  # the reverse strand really ran
    rc_only = Embedder(encoder).embed([reverse_complement(s) for s in seqs], "single")
    assert np.allclose(forward.mean, (single.mean + rc_only.mean) / 2, atol=1e-5)


def test_windows_over_the_models_positions_are_embedded_in_pieces(tmp_path, phix):
    """An NT-style model with 64 positions: a 300-bp window of pure sequence is 50 tokens (one
    pass), one with an N run is more than 62 (several passes), and nothing is truncated."""
    model = build_tiny_encoder(tmp_path / "nt64", "nucleotide_transformer", positions=64, **TINY_SHAPE)
    encoder = Encoder.load(EncoderSpec(str(model), precision="fp32"), 300, 150)  # the reference is one fp32 call
    assert encoder.capacity == 62
    clean = phix[:300]
    gappy = phix[300:420] + "N" * 100 + phix[520:600]  # 120 bp -> 20 tokens, 100 N, 80 bp -> 13 + 2
    got = Embedder(encoder, EngineSettings(tokens_per_batch=128)).embed([clean, gappy])
    assert got.tokens.tolist() == [50, 135] and got.passes.tolist() == [1, 3]
    # By hand: the 135 tokens in three equal pieces, each with <cls> and <eos>.
    ids = encoder.tokenizer.content([gappy]).ids
    pieces = [ids[0:45], ids[45:90], ids[90:135]]
    batch = encoder.tokenizer.assemble(pieces)
    with torch.inference_mode():
        hidden = encoder.model(input_ids=torch.from_numpy(batch.input_ids),
                               attention_mask=torch.from_numpy(batch.attention_mask)).last_hidden_state.numpy()
    summary = hidden[:, 0].mean(0)
    mean = sum(hidden[i][batch.content_mask[i]].sum(0) for i in range(3)) / 135
    assert np.allclose(got.summary[1], summary, atol=2e-5) and np.allclose(got.mean[1], mean, atol=2e-5)


def test_plan_passes_covers_every_token_once():
    lengths = np.array([0, 5, 62, 63, 134, 500])
    plan = plan_passes(lengths, 62)
    assert plan.passes.tolist() == [1, 1, 1, 2, 3, 9]
    for view, length in enumerate(lengths):
        rows = plan.view == view
        covered = np.concatenate([np.arange(lo, hi) for lo, hi in zip(plan.lo[rows], plan.hi[rows])])
        assert covered.tolist() == list(range(length))
        assert (plan.hi[rows] - plan.lo[rows]).max() <= 62
    assert plan_passes(lengths, None).passes.tolist() == [1] * 6


def test_batches_keep_to_the_token_budget_and_group_lengths():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 600, size=500)
    batches = pack_batches(tokens, 4096, 64, equal_only=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * tokens[batch].max() <= 4096
        assert len(batch) <= 64
    padded = sum(len(b) * tokens[b].max() for b in batches)
    assert padded < 1.1 * tokens.sum()  # sorted by length: little padding
    for batch in pack_batches(tokens, 4096, 64, equal_only=True):
        assert len(set(tokens[batch].tolist())) == 1


def test_model_without_attention_mask_gets_unpadded_batches(tiny_models, phix):
    """HyenaDNA-style models take no attention mask: the engine must never pad for them."""
    encoder = Encoder.load(EncoderSpec(str(tiny_models["per_base"])), 512, 256)
    calls = []

    class NoMask(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids):
            calls.append(input_ids.shape)
            return self.inner(input_ids=input_ids)

    unmasked = dataclasses.replace(encoder, model=NoMask(encoder.model), takes_attention_mask=False)
    seqs = mixed(phix)
    got = Embedder(unmasked, EngineSettings(tokens_per_batch=100_000)).embed(seqs)
    assert len(calls) == len({len(s) for s in seqs})  # one batch per distinct length
    want = Embedder(encoder).embed(seqs)
    assert np.allclose(got.mean, want.mean, atol=2e-5)


def test_bf16_matches_fp32_closely_and_is_recorded(tiny_models, phix):
    out = {}
    for precision in ("fp32", "bf16"):
        encoder = Encoder.load(EncoderSpec(str(tiny_models["dnabert"]), precision=precision), 512, 256)
        assert encoder.space.precision == {"fp32": "float32", "bf16": "bfloat16"}[precision]
        out[precision] = Embedder(encoder).embed(windows(phix))
    for name in ("summary", "mean"):
        fp32, bf16 = getattr(out["fp32"], name), getattr(out["bf16"], name)
        assert fp32.shape == bf16.shape == (24, 32) and np.isfinite(bf16).all()
        assert np.abs(fp32 - bf16).max() / np.abs(fp32).max() < 0.05
        assert not np.array_equal(fp32, bf16)  # bf16 really ran


def int8_against_fp32(folder, phix):
    """encoder.precision int8: every linear layer of the encoder runs on int8 weights; the
    vectors stay close to fp32's (cosine), and provenance says int8."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    out = {}
    for precision in ("fp32", "int8"):
        encoder = Encoder.load(EncoderSpec(str(folder), precision=precision), 512, 256)
        out[precision] = Embedder(encoder).embed(windows(phix))
        # int8 scales a call's activations together: one pass a call, so a window's vector is its own
        assert encoder.passes_per_call == (1 if precision == "int8" else None)
    keep = getattr(encoder.model, "int8_keeps_float", ())
    linear = [m for name, m in encoder.model.named_modules()
              if isinstance(m, (torch.nn.Linear, DynamicLinear)) and not any(part in name for part in keep)]
    assert linear and all(isinstance(m, DynamicLinear) for m in linear)
    assert encoder.space.precision == "int8"
    for name in ("summary", "mean"):
        a, b = getattr(out["fp32"], name), getattr(out["int8"], name)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.99 and not np.array_equal(a, b), (name, cosine.min())


@pytest.mark.parametrize("family", ["dnabert", "nucleotide_transformer", "bpe", "per_base"])
def test_int8_quantizes_every_family_and_stays_close_to_fp32(tiny_models, phix, family):
    int8_against_fp32(tiny_models[family], phix)


def test_int8_on_a_gpu_is_refused_with_the_reason():
    from dnalm.compute import encoder_arithmetic
    from dnalm.encoders.loading import torch_dtype
    from dnalm.errors import InputError

    assert encoder_arithmetic("int8", "cpu") == "int8" and torch_dtype("int8") == torch.float32  # then quantized
    with pytest.raises(InputError, match="int8, which runs on CPUs only.*sees a GPU"):
        encoder_arithmetic("int8", "cuda")


def test_auto_precision_is_fp32_on_cpu_and_device_falls_back(tiny_models):
    from dnalm.compute import encoder_arithmetic

    assert pick_device("auto") in ("cpu", "cuda")
    assert encoder_arithmetic("auto", "cuda") == "bf16"
    encoder = Encoder.load(EncoderSpec(str(tiny_models["dnabert"])), 512, 256, "cpu")
    assert encoder.space.precision == "float32"


@pytest.fixture(scope="module")
def hub_layout_models(tmp_path_factory) -> dict:
    """One tiny folder in each native port's hub layout (stand-ins raise if their code runs)."""
    from dnalm.encoders.native import dnabert2, gena_lm, hyenadna, nt_v2

    root = tmp_path_factory.mktemp("hub_layout")
    return {name: module.build_tiny_hub_folder(root / name, positions=1024 if name == "hyenadna" else 512)
            for name, module in (("dnabert2", dnabert2), ("nt_v2", nt_v2), ("gena_lm", gena_lm),
                                 ("hyenadna", hyenadna))}


@pytest.mark.parametrize("port", ["dnabert2", "nt_v2", "gena_lm", "hyenadna"])
def test_int8_quantizes_every_native_port_and_stays_close_to_fp32(hub_layout_models, phix, port):
    int8_against_fp32(hub_layout_models[port], phix)


@pytest.mark.parametrize("port", ["dnabert2", "nt_v2", "gena_lm", "hyenadna"])
def test_native_ports_give_a_window_the_same_vector_whatever_its_batch(hub_layout_models, phix, port):
    """Padded batches (masked attention) and, for HyenaDNA, which takes no mask and pads on
    the left as published, groups of equal length: a window's vector is the one it gets alone."""
    encoder = Encoder.load(EncoderSpec(str(hub_layout_models[port])), 512, 256)
    assert encoder.takes_attention_mask == (port != "hyenadna")
    seqs = mixed(phix)
    want_summary, want_mean = direct(encoder, seqs)
    for budget in (600, 8192):
        got = Embedder(encoder, EngineSettings(tokens_per_batch=budget)).embed(seqs)
        assert np.allclose(got.summary, want_summary, atol=2e-5), (port, budget)
        assert np.allclose(got.mean, want_mean, atol=2e-5), (port, budget)
