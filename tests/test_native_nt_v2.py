"""The native Nucleotide Transformer v2 port on tiny random hub-layout folders (no remote
code runs: the folder's modeling_esm.py and esm_config.py are stand-ins that raise)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dnalm.encoders import native
from dnalm.encoders.native.nt_v2 import NucleotideTransformerV2, build_tiny_hub_folder
from dnalm.errors import InputError

# The published EsmForMaskedLM's state_dict (hub modeling_esm.py), one layer shown.
EMBEDDINGS = ["esm.embeddings.word_embeddings.weight", "esm.embeddings.position_embeddings.weight"]
LAYER = ["attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
         "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
         "attention.self.rotary_embeddings.inv_freq", "attention.output.dense.weight",
         "attention.output.dense.bias", "attention.LayerNorm.weight", "attention.LayerNorm.bias",
         "intermediate.dense.weight", "output.dense.weight", "LayerNorm.weight", "LayerNorm.bias"]
FINAL = ["esm.encoder.emb_layer_norm_after.weight", "esm.encoder.emb_layer_norm_after.bias",
         "esm.contact_head.regression.weight", "esm.contact_head.regression.bias"]
HEAD = ["lm_head.bias", "lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight",
        "lm_head.layer_norm.bias", "lm_head.decoder.weight"]
CODE = ["esm_config.py", "modeling_esm.py"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("nt_v2")
    return {"st": build_tiny_hub_folder(root / "st", positions=128),
            "bin": build_tiny_hub_folder(root / "bin", positions=128, weights="bin")}


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def _batch(vocab: int, lengths=(90, 41, 17)):
    gen = torch.Generator().manual_seed(3)
    ids = torch.full((len(lengths), max(lengths)), 1)  # <pad>
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(6, vocab, (n,), generator=gen)
        ids[i, 0] = 3  # <cls>; no <eos>, as the hub tokenizer writes
        mask[i, :n] = 1
    return ids, mask


def test_folder_has_the_hub_layout(folders):
    names = sorted(p.name for p in folders["st"].iterdir())
    assert names == sorted(CODE + ["config.json", "model.safetensors", "special_tokens_map.json",
                                   "tokenizer_config.json", "vocab.txt"])
    assert "pytorch_model.bin" in {p.name for p in folders["bin"].iterdir()}
    for name in CODE:
        assert "raise RuntimeError" in (folders["st"] / name).read_text()
    cfg = _config(folders["st"])
    assert cfg["model_type"] == "esm" and cfg["position_embedding_type"] == "rotary"
    assert "AutoModel" not in cfg["auto_map"]
    assert cfg["auto_map"]["AutoModelForMaskedLM"] == "modeling_esm.EsmForMaskedLM"
    assert cfg["add_bias_fnn"] is False and cfg["tie_word_embeddings"] is False
    assert cfg["max_position_embeddings"] == 130
    vocab = (folders["st"] / "vocab.txt").read_text().splitlines()
    assert vocab[:6] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"] and vocab[6] == "AAAAAA"
    assert vocab[-5:] == list("ATCGN") and len(vocab) == cfg["vocab_size"] == 4107


def test_keys_are_the_published_ones(folders):
    cfg = _config(folders["st"])
    layers = [f"esm.encoder.layer.{i}.{k}" for i in range(cfg["num_hidden_layers"]) for k in LAYER]
    published = set(EMBEDDINGS + layers + FINAL + HEAD)
    assert set(NucleotideTransformerV2(cfg, masked_lm=True).state_dict()) == published
    assert set(NucleotideTransformerV2(cfg, masked_lm=False).state_dict()) == published - set(HEAD)
    assert set(load_file(str(folders["st"] / "model.safetensors"))) == published


def test_the_tokenizer_adds_cls_only(folders):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folders["st"]))
    assert type(tok).__name__ == "EsmTokenizer"
    assert tok("ACGTACGGATTTN")["input_ids"] == [3, 728, 3867, 4106]  # <cls>, two 6-mers, N


def test_masked_lm_and_base_agree_and_logits_come_from_the_head(folders):
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    mlm = native.load(folders["st"], masked_lm=True)
    base = native.load(folders["st"], masked_lm=False)
    with torch.no_grad():
        a, b = mlm(ids, mask), base(ids, mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and b.logits is None
    assert a.logits.shape == (*ids.shape, 4107)
    assert mlm.lm_head.decoder.weight is not mlm.esm.embeddings.word_embeddings.weight  # v2: untied


def test_hidden_states_follow_the_published_layout(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(4107)
    with torch.no_grad():
        last, states = model.encode(ids, mask, output_hidden_states=True)
    assert len(states) == _config(folders["st"])["num_hidden_layers"] + 1
    assert torch.equal(states[-1], last)  # hidden_states[-1] is the published embedding
    assert not torch.allclose(states[0], states[1])


def test_padding_does_not_change_real_tokens(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(4107)
    with torch.no_grad():
        padded = model(ids, mask).last_hidden_state
        for i in range(len(ids)):
            n = int(mask[i].sum())
            alone = model(ids[i:i + 1, :n]).last_hidden_state[0]
            torch.testing.assert_close(padded[i, :n], alone, atol=1e-5, rtol=1e-5)


def test_a_window_does_not_depend_on_its_batch(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(4107)
    with torch.no_grad():
        full = model(ids, mask).last_hidden_state
        other = model(ids[[1, 0]], mask[[1, 0]]).last_hidden_state
    n = int(mask[1].sum())
    torch.testing.assert_close(full[1, :n], other[0, :n], atol=1e-5, rtol=1e-5)


def test_rotary_positions_matter(folders):
    """The same tokens in another order give other states beyond a permutation."""
    model = native.load(folders["st"])
    ids = _batch(4107, lengths=(40,))[0]
    flipped = torch.cat([ids[:, :1], ids[:, 1:].flip(1)], dim=1)
    with torch.no_grad():
        a = model(ids).last_hidden_state[0, 1:]
        b = model(flipped).last_hidden_state[0, 1:].flip(0)
    assert (a - b).abs().max() > 1e-3


def test_save_then_load_gives_identical_outputs(folders, tmp_path):
    model = native.load(folders["st"], masked_lm=True)
    out = tmp_path / "saved"
    out.mkdir()
    native.save(model, folders["st"], out)
    again = native.load(out, masked_lm=True)
    ids, mask = _batch(4107)
    with torch.no_grad():
        a, b = model(ids, mask), again(ids, mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.logits, b.logits)
    assert set(load_file(str(out / "model.safetensors"))) == set(load_file(str(folders["st"] / "model.safetensors")))


def test_bin_weights_load_as_safetensors(folders):
    ids, mask = _batch(4107)
    with torch.no_grad():
        a = native.load(folders["st"], masked_lm=True)(ids, mask)
        b = native.load(folders["bin"], masked_lm=True)(ids, mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.logits, b.logits)


def test_a_missing_layer_weight_is_refused(folders, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folders["st"], broken)
    state = load_file(str(broken / "model.safetensors"))
    del state["esm.encoder.layer.1.intermediate.dense.weight"]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(InputError, match="not in the checkpoint"):
        native.load(broken)


def test_a_base_checkpoint_loads_without_the_head_or_the_unused_tables(folders, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(folders["st"], base)
    state = {k: v for k, v in load_file(str(base / "model.safetensors")).items()
             if not k.startswith(("lm_head.", "esm.contact_head.", "esm.embeddings.position_embeddings."))}
    save_file(state, str(base / "model.safetensors"))
    ids, mask = _batch(4107)
    with torch.no_grad():
        a = native.load(base)(ids, mask).last_hidden_state
        b = native.load(folders["st"])(ids, mask).last_hidden_state
    assert torch.equal(a, b)
    with pytest.raises(InputError):
        native.load(base, masked_lm=True)


def test_stock_bert_and_esm_configs_do_not_match(tmp_path):
    from dnalm.encoders import tiny

    small = dict(hidden=16, layers=1, heads=2, positions=32)
    for folder in (tiny.build_tiny_dnabert(tmp_path / "bert", k=3, **small),
                   tiny.build_tiny_nucleotide_transformer(tmp_path / "esm", k=3, **small)):
        cfg = _config(folder)
        assert not NucleotideTransformerV2.matches(cfg) and native.port_for(cfg) is None
    assert NucleotideTransformerV2.matches(_config(build_tiny_hub_folder(tmp_path / "v2", positions=32)))


def test_unsupported_variants_are_named(folders):
    cfg = _config(folders["st"])
    assert NucleotideTransformerV2.unsupported(cfg) is None
    assert "rotary" in NucleotideTransformerV2.unsupported({**cfg, "position_embedding_type": "absolute"})
    no_type = {k: v for k, v in cfg.items() if k != "position_embedding_type"}  # EsmConfig's default: absolute
    assert "absolute" in NucleotideTransformerV2.unsupported(no_type)
    assert "ESMFold" in NucleotideTransformerV2.unsupported({**cfg, "is_folding_model": True})


def test_tie_word_embeddings_ties_the_decoder(folders):
    cfg = {k: v for k, v in _config(folders["st"]).items() if k != "tie_word_embeddings"}  # default: tied
    model = NucleotideTransformerV2(cfg, masked_lm=True)
    assert model.lm_head.decoder.weight is model.esm.embeddings.word_embeddings.weight


def test_token_dropout_rescales_like_esm(folders):
    cfg = _config(folders["st"])
    ids, mask = _batch(4107, lengths=(20,))
    ids[0, 5:7] = 2  # <mask>
    model = NucleotideTransformerV2({**cfg, "token_dropout": True}).eval()
    emb = model.esm.embeddings
    with torch.no_grad():
        x = emb(ids, mask)
        plain = emb.word_embeddings(ids)
    assert torch.all(x[0, 5:7] == 0)
    torch.testing.assert_close(x[0, 0], plain[0, 0] * (1 - 0.12) / (1 - 2 / 20))


def test_bf16_runs_and_stays_close(folders):
    ids, mask = _batch(4107)
    with torch.no_grad():
        ref = native.load(folders["st"])(ids, mask).last_hidden_state
        half = native.load(folders["st"], dtype=torch.bfloat16)(ids, mask).last_hidden_state
    assert half.dtype == torch.bfloat16
    real = mask.bool()
    assert (half.float() - ref)[real].abs().max() < 0.1


def test_a_checkpoint_without_the_rotary_buffers_loads_the_same(folders, tmp_path):
    """inv_freq is computed from config.json: a checkpoint that does not store it is complete."""
    folder = tmp_path / "no_inv_freq"
    shutil.copytree(folders["st"], folder)
    weights = load_file(folder / "model.safetensors")
    dropped = [k for k in weights if k.endswith(".inv_freq")]
    assert dropped
    save_file({k: v for k, v in weights.items() if k not in dropped}, folder / "model.safetensors")
    ids, mask = _batch(_config(folder)["vocab_size"])
    with torch.no_grad():
        want = native.load(folders["st"])(ids, mask).last_hidden_state
        got = native.load(folder)(ids, mask).last_hidden_state
    assert torch.equal(want, got)
