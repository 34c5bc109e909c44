"""The native DNABERT-2 port on tiny random hub-layout folders (no remote code runs: the
folder's bert_layers.py and siblings are stand-ins that raise)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dnalm.encoders import native
from dnalm.encoders.native.dnabert2 import Dnabert2, alibi_slopes, build_tiny_hub_folder
from dnalm.errors import InputError

# The published BertForMaskedLM's state_dict (hub bert_layers.py @ d064dec), one layer shown.
EMBEDDINGS = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
              "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
LAYER = ["attention.self.Wqkv.weight", "attention.self.Wqkv.bias", "attention.output.dense.weight",
         "attention.output.dense.bias", "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
         "mlp.gated_layers.weight", "mlp.wo.weight", "mlp.wo.bias", "mlp.layernorm.weight", "mlp.layernorm.bias"]
HEAD = ["cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"]
CODE = ["bert_layers.py", "bert_padding.py", "configuration_bert.py", "flash_attn_triton.py"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnabert2")
    return {"st": build_tiny_hub_folder(root / "st"), "bin": build_tiny_hub_folder(root / "bin", weights="bin")}


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def _batch(vocab: int, lengths=(90, 41, 17)):
    gen = torch.Generator().manual_seed(3)
    ids = torch.full((len(lengths), max(lengths)), 3)  # [PAD]
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=gen)
        ids[i, 0], ids[i, n - 1] = 1, 2  # [CLS] ... [SEP]
        mask[i, :n] = 1
    return ids, mask


def test_folder_has_the_hub_layout(folders):
    names = sorted(p.name for p in folders["st"].iterdir())
    assert names == sorted(CODE + ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                                   "tokenizer_config.json"])
    assert "pytorch_model.bin" in {p.name for p in folders["bin"].iterdir()}
    for name in CODE:
        assert "raise RuntimeError" in (folders["st"] / name).read_text()
    cfg = _config(folders["st"])
    assert "model_type" not in cfg and "architectures" not in cfg  # the hub's revision since 2024-02-22
    assert cfg["auto_map"]["AutoModel"] == "bert_layers.BertModel" and cfg["alibi_starting_size"] == 128
    tok = json.loads((folders["st"] / "tokenizer.json").read_text())
    assert {t["content"]: t["id"] for t in tok["added_tokens"]} == {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3,
                                                                    "[MASK]": 4}
    assert tok["model"]["type"] == "BPE" and list(tok["model"]["vocab"])[5:9] == ["A", "C", "G", "T"]


def test_both_published_config_revisions_are_served(folders):
    current = _config(folders["st"])
    earlier = {**current, "model_type": "bert", "architectures": ["BertForMaskedLM"]}  # the hub before 2024-02-22
    for cfg in (current, earlier):
        assert Dnabert2.matches(cfg) and Dnabert2.unsupported(cfg) is None
        assert native.port_for(cfg) is Dnabert2


def test_keys_are_the_published_keys(folders):
    cfg = _config(folders["st"])
    layers = [f"bert.encoder.layer.{i}.{k}" for i in range(cfg["num_hidden_layers"]) for k in LAYER]
    assert list(Dnabert2(cfg, masked_lm=True).state_dict()) == EMBEDDINGS + layers + HEAD
    assert list(Dnabert2(cfg, masked_lm=False).state_dict()) == EMBEDDINGS + layers
    m = Dnabert2(cfg, masked_lm=True)
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight


def test_masked_lm_and_base_agree(folders):
    cfg = _config(folders["st"])
    ids, mask = _batch(cfg["vocab_size"])
    mlm, base = native.load(folders["st"], masked_lm=True), native.load(folders["st"], masked_lm=False)
    assert isinstance(mlm, Dnabert2) and not hasattr(base, "cls")
    with torch.no_grad():
        out = mlm(ids, mask)
        torch.testing.assert_close(out.last_hidden_state, base(ids, mask).last_hidden_state, rtol=0, atol=0)
    assert out.logits.shape == (*ids.shape, cfg["vocab_size"])


def test_padding_equals_unpadded_and_batch_independent(folders):
    model = native.load(folders["st"], masked_lm=True)
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        padded = model(ids, mask)
        for i, n in enumerate(mask.sum(1).tolist()):
            alone = model(ids[i:i + 1, :n])
            torch.testing.assert_close(padded.last_hidden_state[i, :n], alone.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(padded.logits[i, :n], alone.logits[0], atol=1e-5, rtol=0)
            assert not padded.last_hidden_state[i, n:].any()  # zeros at padding, as the published model returns
        pair = model(ids[[1, 2]], mask[[1, 2]]).last_hidden_state  # another batch around the same windows
        torch.testing.assert_close(pair[0], padded.last_hidden_state[1], atol=1e-5, rtol=0)


def test_alibi_slopes_and_bias_past_the_starting_size(folders):
    assert alibi_slopes(8) == [2.0 ** -i for i in range(1, 9)]
    # 12 heads: the 8-head series, then every other slope of the 16-head series (2^-0.5, 2^-1.5, ...)
    assert alibi_slopes(12) == pytest.approx([2.0 ** -i for i in range(1, 9)] + [2.0 ** -(i + 0.5) for i in range(4)],
                                             rel=1e-12)
    model = native.load(folders["st"])
    tokens = 2 * _config(folders["st"])["alibi_starting_size"] + 3  # the published code extends its table alike
    bias = model.attention_bias(tokens, None, torch.float32, torch.device("cpu"))
    pos = torch.arange(tokens).float()
    for h, slope in enumerate(alibi_slopes(4)):
        torch.testing.assert_close(bias[0, h], -slope * (pos[None, :] - pos[:, None]).abs())
    ids = torch.randint(5, 60, (1, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(model(ids).last_hidden_state).all()


def test_attention_sees_position(folders):
    """ALiBi is the only position signal: moving one token changes the others' states."""
    model = native.load(folders["st"])
    ids, _ = _batch(_config(folders["st"])["vocab_size"], lengths=(30,))
    moved = ids.clone()
    moved[0, [5, 20]] = ids[0, [20, 5]]
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(moved).last_hidden_state
    assert not torch.allclose(a[0, 10], b[0, 10], atol=1e-4)


def test_token_type_zero_for_every_token(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        before = model(ids, mask).last_hidden_state
        model.bert.embeddings.token_type_embeddings.weight[1].add_(1.0)
        torch.testing.assert_close(model(ids, mask).last_hidden_state, before, rtol=0, atol=0)
        model.bert.embeddings.token_type_embeddings.weight[0].add_(1.0)
        assert not torch.allclose(model(ids, mask).last_hidden_state, before)


def test_hidden_states_are_embeddings_and_every_layer(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        last, states = model.encode(ids, mask, output_hidden_states=True)
        assert len(states) == 1 + _config(folders["st"])["num_hidden_layers"] and states[-1] is last
        assert not torch.allclose(states[1], states[2])


def test_save_then_load_is_identical(folders, tmp_path):
    model = native.load(folders["st"], masked_lm=True)
    native.save(model, folders["st"], tmp_path)
    again = native.load(tmp_path, masked_lm=True)
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        a, b = model(ids, mask), again(ids, mask)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)


def test_bin_loads_as_safetensors(folders):
    st, pt = native.load(folders["st"], masked_lm=True), native.load(folders["bin"], masked_lm=True)
    assert "cls.predictions.decoder.weight" in torch.load(folders["bin"] / "pytorch_model.bin", weights_only=True)
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(st(ids, mask).logits, pt(ids, mask).logits, rtol=0, atol=0)


def test_missing_layer_weight_is_refused(folders, tmp_path):
    shutil.copytree(folders["st"], tmp_path / "broken")
    path = tmp_path / "broken" / "model.safetensors"
    state = load_file(str(path))
    del state["bert.encoder.layer.1.mlp.gated_layers.weight"]
    save_file(state, str(path))
    with pytest.raises(InputError, match="gated_layers"):
        native.load(tmp_path / "broken")


def test_head_is_needed_only_for_masked_lm(folders, tmp_path):
    shutil.copytree(folders["st"], tmp_path / "f")
    path = tmp_path / "f" / "model.safetensors"
    state = load_file(str(path))
    assert "cls.predictions.decoder.weight" not in state  # the tied alias is written once
    del state["cls.predictions.transform.dense.weight"]
    save_file(state, str(path))
    native.load(tmp_path / "f", masked_lm=False)
    with pytest.raises(InputError, match="transform.dense"):
        native.load(tmp_path / "f", masked_lm=True)


def test_matches_no_other_family(tmp_path):
    from pathlib import Path

    from dnalm.encoders import tiny

    fasta = Path(__file__).resolve().parents[1] / "data" / "lambda_phage_NC_001416.1.fa.gz"
    for folder in (tiny.build_tiny_dnabert(tmp_path / "dnabert", hidden=32, layers=1, heads=2, k=3),
                   tiny.build_tiny_nucleotide_transformer(tmp_path / "nt", hidden=32, layers=1, heads=2, k=3),
                   tiny.build_tiny_bpe(tmp_path / "bpe", train_fasta=str(fasta), hidden=32, layers=1, heads=2,
                                               vocab_size=64, max_bases=20_000)):
        assert not Dnabert2.matches(_config(folder)), folder
    gena = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "pre_layer_norm": True,
            "auto_map": {"AutoModel": "modeling_bert.BertForMaskedLM"}}
    assert not Dnabert2.matches(gena)


@pytest.mark.parametrize("change, reason", [
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"num_attention_heads": 5}, "multiple"),
])
def test_unsupported_variants_are_refused(folders, change, reason):
    cfg = _config(folders["st"])
    assert reason in Dnabert2.unsupported({**cfg, **change})
    del cfg["hidden_size"]  # read without a default by the published code
    assert "hidden_size" in Dnabert2.unsupported(cfg)


def test_bf16_runs_close_to_fp32(folders):
    fp32, bf16 = native.load(folders["st"]), native.load(folders["st"], dtype=torch.bfloat16)
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        a, b = fp32(ids, mask).last_hidden_state, bf16(ids, mask).last_hidden_state
    assert b.dtype == torch.bfloat16
    real = mask.bool()
    assert (a[real] - b.float()[real]).abs().max() < 0.1 and not math.isnan(b.float().sum().item())


def test_gradient_checkpointing_gives_the_same_gradients(folders):
    cfg = {**_config(folders["st"]), "hidden_dropout_prob": 0.0}
    ids, mask = _batch(cfg["vocab_size"])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = Dnabert2(cfg, masked_lm=True).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(ids, mask).logits.square().mean().backward()
        grads.append(model.bert.encoder.layer[0].attention.self.Wqkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
