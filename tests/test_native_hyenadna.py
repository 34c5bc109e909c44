"""The native HyenaDNA port and the per-base CharacterTokenizer family on tiny random hub-layout
folders (no remote code runs: the folder's three .py files are stand-ins that raise)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dnalm.encoders import native
from dnalm.encoders.base import ModelFolder
from dnalm.encoders.character import Character, character_table
from dnalm.encoders.native.hyenadna import (
    HyenaDna,
    build_tiny_hub_folder,
    fft_causal_conv,
)
from dnalm.errors import InputError

BLOCK = ["mixer.in_proj.weight", "mixer.in_proj.bias", "mixer.out_proj.weight", "mixer.out_proj.bias",
         "mixer.short_filter.weight", "mixer.short_filter.bias", "mixer.filter_fn.bias", "mixer.filter_fn.pos_emb.z",
         "mixer.filter_fn.pos_emb.t", "mixer.filter_fn.implicit_filter.0.weight",
         "mixer.filter_fn.implicit_filter.0.bias", "mixer.filter_fn.implicit_filter.1.freq",
         "mixer.filter_fn.implicit_filter.2.weight", "mixer.filter_fn.implicit_filter.2.bias",
         "mixer.filter_fn.implicit_filter.3.freq", "mixer.filter_fn.implicit_filter.4.weight",
         "mixer.filter_fn.implicit_filter.4.bias", "mixer.filter_fn.implicit_filter.5.freq",
         "mixer.filter_fn.implicit_filter.6.weight", "mixer.filter_fn.modulation.deltas", "norm1.weight",
         "norm1.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "norm2.weight", "norm2.bias"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hyena")
    return {"st": build_tiny_hub_folder(root / "st", positions=256),
            "bin": build_tiny_hub_folder(root / "bin", positions=256, weights="bin")}


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def _batch(lengths=(60, 41, 17)):
    gen = torch.Generator().manual_seed(3)
    ids = torch.full((len(lengths), max(lengths)), 4)  # [PAD], right-padded
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(7, 12, (n,), generator=gen)
        ids[i, n - 1] = 1  # [SEP]
    return ids, list(lengths)


def test_folder_has_the_hub_layout(folders):
    names = sorted(p.name for p in folders["st"].iterdir())
    assert names == ["config.json", "configuration_hyena.py", "model.safetensors", "modeling_hyena.py",
                     "special_tokens_map.json", "tokenization_hyena.py", "tokenizer_config.json"]
    assert all("raise RuntimeError" in (folders["st"] / n).read_text() for n in names if n.endswith(".py"))
    tok = json.loads((folders["st"] / "tokenizer_config.json").read_text())
    assert tok["characters"] == list("ACGTN") and tok["padding_side"] == "left"
    assert tok["auto_map"]["AutoTokenizer"][0] == "tokenization_hyena.CharacterTokenizer"
    assert _config(folders["st"])["model_type"] == "hyenadna" and native.port_for(_config(folders["st"])) is HyenaDna


def test_keys_are_the_published_keys(folders):
    cfg = _config(folders["st"])
    body = (["hyena.backbone.embeddings.word_embeddings.weight"]
            + [f"hyena.backbone.layers.{i}.{k}" for i in range(cfg["n_layer"]) for k in BLOCK]
            + ["hyena.backbone.ln_f.weight", "hyena.backbone.ln_f.bias"])
    assert list(HyenaDna(cfg, masked_lm=True).state_dict()) == body + ["lm_head.weight"]
    assert list(HyenaDna(cfg, masked_lm=False).state_dict()) == body
    f = HyenaDna(cfg).hyena.backbone.layers[0].mixer.filter_fn.implicit_filter
    assert f[1].freq is f[3].freq is f[5].freq  # one Sin module reused, as published
    tied = HyenaDna({**cfg, "tie_word_embeddings": True}, masked_lm=True)
    assert tied.lm_head.weight is tied.hyena.backbone.embeddings.word_embeddings.weight
    assert HyenaDna(cfg).hyena.backbone.embeddings.word_embeddings.num_embeddings == 16  # 12 padded to 8s


def test_causal_lm_head_and_base_agree(folders):
    cfg = _config(folders["st"])
    full = HyenaDna(cfg, masked_lm=True)
    full.load_state_dict(load_file(str(folders["st"] / "model.safetensors")), strict=False)
    base = native.load(folders["st"])
    ids, _ = _batch()
    with torch.no_grad():
        out = full.eval()(ids)
        torch.testing.assert_close(out.last_hidden_state, base(ids).last_hidden_state, rtol=0, atol=0)
    assert out.logits.shape == (*ids.shape, 16)
    with pytest.raises(InputError, match="no masked-LM head"):
        native.load(folders["st"], masked_lm=True)
    with pytest.raises(TypeError, match="no attention mask"):
        base(ids, torch.ones_like(ids))


def test_right_padding_equals_unpadded_and_batch_independent(folders):
    model = native.load(folders["st"])
    ids, lengths = _batch()
    with torch.no_grad():
        padded = model(ids).last_hidden_state
        for i, n in enumerate(lengths):
            torch.testing.assert_close(padded[i, :n], model(ids[i:i + 1, :n]).last_hidden_state[0], atol=1e-5, rtol=0)
        pair = model(ids[[1, 2]]).last_hidden_state
        torch.testing.assert_close(pair[0], padded[1], atol=1e-5, rtol=0)
        left = torch.cat([torch.full((1, 19), 4), ids[1:2, :41]], dim=1)  # the published tokenizer's left padding
        assert not torch.allclose(model(left).last_hidden_state[0, 19:], padded[1, :41], atol=1e-3)


@pytest.mark.parametrize("length", [40, 100, 1000])
def test_fft_convolution_is_exact_causal(length):
    gen = torch.Generator().manual_seed(length)
    u, k = torch.randn(2, 3, length, generator=gen, dtype=torch.float64), torch.randn(3, length, generator=gen,
                                                                                    dtype=torch.float64)
    d = torch.randn(3, generator=gen, dtype=torch.float64)
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]  # t - s
    toeplitz = torch.where(lag >= 0, k[:, lag.clamp(min=0)], 0.0)  # (3, t, s)
    direct = torch.einsum("cts,bcs->bct", toeplitz, u) + u * d[:, None]
    torch.testing.assert_close(fft_causal_conv(u, k, d), direct, rtol=0, atol=1e-4 * length ** 0.5)


def test_hidden_states_end_with_the_final_norm(folders):
    model = native.load(folders["st"])
    ids, _ = _batch()
    with torch.no_grad():
        last, states = model.encode(ids, output_hidden_states=True)
        assert len(states) == _config(folders["st"])["n_layer"] + 2 and states[-1] is last
        model.hyena.backbone.ln_f.weight.mul_(2.0)
        assert not torch.allclose(model.encode(ids), last)


def test_too_long_is_refused(folders):
    with pytest.raises(ValueError, match="max_seq_len"):
        native.load(folders["st"]).encode(torch.full((1, 257), 7))


def test_save_then_load_is_identical(folders, tmp_path):
    model = native.load(folders["st"])
    native.save(model, folders["st"], tmp_path)
    again = native.load(tmp_path)
    ids, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, again(ids).last_hidden_state, rtol=0, atol=0)


def test_bin_loads_as_safetensors(folders):
    ids, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(native.load(folders["st"])(ids).last_hidden_state,
                                   native.load(folders["bin"])(ids).last_hidden_state, rtol=0, atol=0)


def test_missing_layer_weight_is_refused(folders, tmp_path):
    shutil.copytree(folders["st"], tmp_path / "broken")
    path = tmp_path / "broken" / "model.safetensors"
    state = load_file(str(path))
    del state["hyena.backbone.layers.1.mlp.fc2.weight"]
    save_file(state, str(path))
    with pytest.raises(InputError, match="fc2"):
        native.load(tmp_path / "broken")


def test_does_not_match_bert_or_esm(tmp_path):
    from dnalm.encoders import tiny

    for build, name in ((tiny.build_tiny_dnabert, "bert"), (tiny.build_tiny_nucleotide_transformer, "esm")):
        folder = build(tmp_path / name, k=3 if name == "bert" else 6, hidden=16, layers=1, heads=2, positions=64)
        assert not HyenaDna.matches(_config(folder))


def test_unsupported_variants(folders):
    cfg = _config(folders["st"])
    assert HyenaDna.unsupported(cfg) is None
    assert "hyena_order" in HyenaDna.unsupported({**cfg, "hyena_order": 3})
    assert "short_filter_order" in HyenaDna.unsupported({**cfg, "short_filter_order": 5})


def test_bf16_runs(folders):
    model = native.load(folders["st"], dtype=torch.bfloat16)
    ids, _ = _batch()
    with torch.no_grad():
        out = model(ids).last_hidden_state
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# --- the per-base CharacterTokenizer family --------------------------------------------


def _published_ids(sequence: str, characters="ACGTN", upper=False) -> list[int]:
    """tokenization_hyena.CharacterTokenizer's ids, spelled out: 7 + index, else [UNK]=6, then [SEP]=1."""
    vocab = {ch: 7 + i for i, ch in enumerate(characters)}
    return [vocab.get(ch.upper() if upper else ch, 6) for ch in sequence] + [1]


def test_character_family_detects_and_tokenizes(folders):
    folder = ModelFolder.open(str(folders["st"]))
    assert Character.detect(folder)
    family = Character(folder)
    assert family.tokenizer_name == "per-base" and family.window_limits() == (255, 255)
    tok = family.tokenizer()
    windows = ["ACGTNACGT", "acgtNNRYa", "GGGG"]
    batch = tok.encode(windows)
    for i, w in enumerate(windows):
        n = len(w) + 1
        assert batch.input_ids[i, :n].tolist() == _published_ids(w)
        assert (batch.input_ids[i, n:] == 4).all() and batch.summary_index[i] == n - 1  # [SEP] is the summary
    assert tok.mask_id == 3 and tok.pad_id == 4 and tok.vocab_size == 12


def test_character_family_is_not_detected_elsewhere(tmp_path):
    from dnalm.encoders import tiny

    folder = tiny.build_tiny_dnabert(tmp_path / "bert", k=3, hidden=16, layers=1, heads=2, positions=64)
    assert not Character.detect(ModelFolder.open(str(folder)))


def test_caduceus_form_upper_cases(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_caduceus.CaduceusTokenizer", None]},
         "characters": list("ACGTN"), "model_max_length": 131072}))
    folder = ModelFolder.open(str(tmp_path))
    assert Character.detect(folder)
    tok = Character(folder).tokenizer()
    assert tok.encode(["acgtRn"]).input_ids[0].tolist() == _published_ids("acgtRn", upper=True)
    table = character_table(list("ACGTN"), upper_cases=False)
    assert table[ord("a")] == 6 and table[ord("A")] == 7 and np.count_nonzero(table != 6) == 5
