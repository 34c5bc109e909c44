"""The native GENA-LM port on tiny random hub-layout folders (no remote code runs: the
folder's modeling_bert.py is a stand-in that raises)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dnalm.encoders import native
from dnalm.encoders.native.gena_lm import GenaLm, build_tiny_hub_folder
from dnalm.errors import InputError

# The published BertForMaskedLM's state_dict (modeling_bert.py, GENA_LM @ 8c441a46), one layer shown.
LAYER = ["pre_attention_ln.weight", "pre_attention_ln.bias", "post_attention_ln.weight", "post_attention_ln.bias",
         "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
         "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
         "attention.output.dense.weight", "attention.output.dense.bias", "intermediate.dense.weight",
         "intermediate.dense.bias", "output.dense.weight", "output.dense.bias"]
EMBEDDINGS = ["bert.embeddings.position_ids", "bert.embeddings.word_embeddings.weight",
              "bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
              "bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
HEAD = ["cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gena")
    return {"st": build_tiny_hub_folder(root / "st"), "bin": build_tiny_hub_folder(root / "bin", weights="bin"),
            "lastln": build_tiny_hub_folder(root / "lastln", last_layer_norm=True), "root": root}


def _batch(vocab: int, lengths=(60, 41, 17)):
    gen = torch.Generator().manual_seed(3)
    ids = torch.full((len(lengths), max(lengths)), 3)  # [PAD]
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(6, vocab, (n,), generator=gen)
        ids[i, 0], ids[i, n - 1] = 1, 2  # [CLS] ... [SEP]
        mask[i, :n] = 1
    return ids, mask


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def test_folder_has_the_hub_layout(folders):
    names = sorted(p.name for p in folders["st"].iterdir())
    assert names == ["config.json", "model.safetensors", "modeling_bert.py", "special_tokens_map.json",
                     "tokenizer.json", "tokenizer_config.json"]
    assert "raise RuntimeError" in (folders["st"] / "modeling_bert.py").read_text()
    cfg = _config(folders["st"])
    assert cfg["auto_map"] == {"AutoModel": "modeling_bert.BertForMaskedLM"} and cfg["pre_layer_norm"] is True
    assert cfg["last_layer_norm"] is False and "last_layer_norm" not in _config(folders["lastln"])
    added = {t["content"]: t["id"] for t in json.loads((folders["st"] / "tokenizer.json").read_text())["added_tokens"]}
    assert added == {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "[MASK]": 4, "-": 5}


@pytest.mark.parametrize("kind", ["st", "lastln"])
def test_keys_are_the_published_keys(folders, kind):
    cfg = _config(folders[kind])
    layers = [f"bert.encoder.layer.{i}.{k}" for i in range(cfg["num_hidden_layers"]) for k in LAYER]
    last = ["bert.encoder.last_layer_ln.weight", "bert.encoder.last_layer_ln.bias"] if kind == "lastln" else []
    assert list(GenaLm(cfg, masked_lm=True).state_dict()) == EMBEDDINGS + layers + last + HEAD
    assert list(GenaLm(cfg, masked_lm=False).state_dict()) == EMBEDDINGS + layers + last
    m = GenaLm(cfg, masked_lm=True)
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
    assert m.cls.predictions.decoder.bias is m.cls.predictions.bias


def test_masked_lm_and_base_agree(folders):
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    mlm, base = native.load(folders["st"], masked_lm=True), native.load(folders["st"], masked_lm=False)
    assert isinstance(mlm, GenaLm) and not hasattr(base, "cls")
    with torch.no_grad():
        out = mlm(ids, mask)
        torch.testing.assert_close(out.last_hidden_state, base(ids, mask).last_hidden_state, rtol=0, atol=0)
    assert out.logits.shape == (*ids.shape, _config(folders["st"])["vocab_size"])


@pytest.mark.parametrize("kind", ["st", "lastln"])
def test_padding_equals_unpadded_and_batch_independent(folders, kind):
    model = native.load(folders[kind], masked_lm=True)
    ids, mask = _batch(_config(folders[kind])["vocab_size"])
    with torch.no_grad():
        padded = model(ids, mask)
        for i, n in enumerate(mask.sum(1).tolist()):
            alone = model(ids[i:i + 1, :n])
            torch.testing.assert_close(padded.last_hidden_state[i, :n], alone.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(padded.logits[i, :n], alone.logits[0], atol=1e-5, rtol=0)
        pair = model(ids[[1, 2]], mask[[1, 2]]).last_hidden_state  # another batch around the same windows
        torch.testing.assert_close(pair[0], padded.last_hidden_state[1], atol=1e-5, rtol=0)


def test_hidden_states_and_last_layer_norm(folders):
    model = native.load(folders["lastln"])
    ids, mask = _batch(_config(folders["lastln"])["vocab_size"])
    with torch.no_grad():
        last, states = model.encode(ids, mask, output_hidden_states=True)
        assert len(states) == 3 and states[-1] is last  # embeddings, layer 1, normed layer 2
        ln = model.bert.encoder.last_layer_ln
        ln.weight.mul_(2.0)  # the final LayerNorm is applied
        assert not torch.allclose(model.encode(ids, mask), last)


def test_token_type_zero_for_every_token(folders):
    model = native.load(folders["st"])
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        before = model(ids, mask).last_hidden_state
        model.bert.embeddings.token_type_embeddings.weight[1].add_(1.0)
        torch.testing.assert_close(model(ids, mask).last_hidden_state, before, rtol=0, atol=0)
        model.bert.embeddings.token_type_embeddings.weight[0].add_(1.0)
        assert not torch.allclose(model(ids, mask).last_hidden_state, before)


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
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(st(ids, mask).logits, pt(ids, mask).logits, rtol=0, atol=0)


def test_missing_layer_weight_is_refused(folders, tmp_path):
    shutil.copytree(folders["st"], tmp_path / "broken")
    path = tmp_path / "broken" / "model.safetensors"
    state = load_file(str(path))
    del state["bert.encoder.layer.1.post_attention_ln.weight"]
    save_file(state, str(path))
    with pytest.raises(InputError, match="post_attention_ln"):
        native.load(tmp_path / "broken")


def test_head_alias_may_be_missing_but_not_the_head(folders, tmp_path):
    shutil.copytree(folders["st"], tmp_path / "f")
    path = tmp_path / "f" / "model.safetensors"
    state = load_file(str(path))
    for alias in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
        del state[alias]  # loaded through the tied tensors
    save_file(state, str(path))
    native.load(tmp_path / "f", masked_lm=True)
    del state["cls.predictions.transform.dense.weight"]
    save_file(state, str(path))
    native.load(tmp_path / "f", masked_lm=False)  # a base load needs no head
    with pytest.raises(InputError, match="transform.dense"):
        native.load(tmp_path / "f", masked_lm=True)


def test_matches_only_the_published_form(folders, tmp_path):
    from dnalm.encoders import tiny

    assert GenaLm.matches(_config(folders["st"])) and native.port_for(_config(folders["st"])) is GenaLm
    for folder in (tiny.build_tiny_dnabert(tmp_path / "dnabert", hidden=32, layers=1, heads=2, k=3),
                   tiny.build_tiny_nucleotide_transformer(tmp_path / "nt", hidden=32, layers=1, heads=2, k=3)):
        assert not GenaLm.matches(_config(folder)), folder
    dnabert2 = {"model_type": "bert", "architectures": ["BertForMaskedLM"],
                "auto_map": {"AutoConfig": "configuration_bert.BertConfig", "AutoModel": "bert_layers.BertModel",
                             "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM"}}
    assert not GenaLm.matches(dnabert2)


def test_matches_is_false_for_the_tiny_byte_pair_bert(tmp_path):
    from pathlib import Path

    from dnalm.encoders import tiny

    fasta = Path(__file__).resolve().parents[1] / "data" / "lambda_phage_NC_001416.1.fa.gz"
    folder = tiny.build_tiny_bpe(tmp_path / "bpe", train_fasta=str(fasta), hidden=32, layers=1, heads=2,
                                         vocab_size=64, max_bases=20_000)
    assert not GenaLm.matches(_config(folder))


@pytest.mark.parametrize("change, reason", [
    ({"sparse_config_cls": "deepspeed.ops.sparse_attention:BigBirdSparsityConfig",
      "sparse_attention": {"block": 64}, "position_embedding_type": "rotary"}, "sparse attention"),
    ({"position_embedding_type": "rotary"}, "rotary"),
    ({"pre_layer_norm": False, "last_layer_norm": False}, "post-LayerNorm"),
])
def test_unsupported_variants_are_refused(folders, change, reason):
    cfg = _config(folders["st"])
    assert GenaLm.unsupported(cfg) is None
    assert reason in GenaLm.unsupported({**cfg, **change})
    del cfg["pre_layer_norm"]  # the published code's default is post-LN
    assert "post-LayerNorm" in GenaLm.unsupported(cfg)


def test_bf16_runs_close_to_fp32(folders):
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    fp32 = native.load(folders["st"], masked_lm=True)
    bf16 = native.load(folders["st"], masked_lm=True, dtype=torch.bfloat16)
    with torch.no_grad():
        a, b = fp32(ids, mask), bf16(ids, mask)
    assert b.last_hidden_state.dtype == torch.bfloat16 and b.logits.dtype == torch.bfloat16
    real = mask.bool()
    assert (a.last_hidden_state[real] - b.last_hidden_state.float()[real]).abs().max() < 0.2


def test_gradient_checkpointing_gives_the_same_gradients(folders):
    ids, mask = _batch(_config(folders["st"])["vocab_size"])
    grads = []
    for checkpointing in (False, True):
        model = native.load(folders["st"], masked_lm=True).train()
        for module in model.modules():  # dropout off, so the two runs compare
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        for layer in model.bert.encoder.layer:
            layer.attention_dropout = 0.0
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(ids, mask).logits[mask.bool()].square().mean().backward()
        grads.append(model.bert.encoder.layer[0].attention.self.query.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


# Outputs of the PUBLISHED code (modeling_bert.py under transformers 4.46.3) on these tiny
# folders (build_tiny_hub_folder defaults, seed 0), recorded once: they pin the architecture
# (LayerNorm placement, head bias, ...) that the self-consistency tests above cannot see.
PUBLISHED = {
    "st": {"h1_21": [-0.57593, -0.52363, -0.23593, 1.47646], "h0_0": [-0.84625, -1.26268, 0.21049, 0.09024],
           "l1_5": [-0.05068, 0.08494, 0.07035, -0.01518], "l0_31_last": 0.1511},
    "lastln": {"h1_21": [-0.35337, -0.70563, -0.31277, 1.72711], "h0_0": [-0.62139, -1.32164, 0.08301, 0.12259],
               "l1_5": [-0.11024, -0.10864, 0.00133, 0.08258], "l0_31_last": -0.0365},
}


@pytest.mark.parametrize("kind", ["st", "lastln"])
def test_outputs_match_the_published_code(folders, kind):
    ids = torch.tensor([[1] + [(7 * i) % 250 + 6 for i in range(30)] + [2],
                        [1] + [(11 * i) % 250 + 6 for i in range(20)] + [2] + [3] * 10])
    mask = (torch.arange(32)[None] < torch.tensor([[32], [22]])).long()
    with torch.no_grad():
        out = native.load(folders[kind], masked_lm=True)(ids, mask)
    h, logits, want = out.last_hidden_state, out.logits, PUBLISHED[kind]
    close = dict(atol=2e-5, rtol=0)
    torch.testing.assert_close(h[1, 21, :4], torch.tensor(want["h1_21"]), **close)
    torch.testing.assert_close(h[0, 0, :4], torch.tensor(want["h0_0"]), **close)
    torch.testing.assert_close(logits[1, 5, :4], torch.tensor(want["l1_5"]), **close)
    torch.testing.assert_close(logits[0, 31, -1], torch.tensor(want["l0_31_last"]), **close)
