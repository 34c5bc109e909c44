"""The encoder families: ids equal to each model folder's own Hugging Face tokenizer on
real windows (soft-masked, N, IUPAC), family detection, and the offline checks that
stop a wrong model before any job."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil

import numpy as np
import pytest
from helpers.data import PHIX, VOCAB6, read_records
from transformers import AutoTokenizer, BertTokenizer

from dnalm.encoders import Encoder, ModelFolder, family_for, preflight
from dnalm.encoders.dnabert import KmerTokenizer, kmer_vocab, vocab_k
from dnalm.encoders.tiny import planned_identity, tiny_window_limits
from dnalm.errors import InputError
from dnalm.settings import EncoderSpec, TinyEncoder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def phix() -> str:
    (seq,) = read_records(PHIX).values()
    assert len(seq) == 5386
    return seq


def dirty(seq: str) -> str:
    """A real window with soft-masked stretches, N runs and IUPAC codes (upper and lower case)."""
    s = list(seq)
    s[40:110] = seq[40:110].lower()  # soft-masked stretch
    s[200:230] = "N" * 30  # assembly gap
    s[300:304] = "nnnn"  # soft-masked N
    for pos, code in zip(range(350, 450, 10), "RYKMSWBDHV"):
        s[pos] = code
    s[470] = "r"
    s[480] = "y"
    s[490:493] = "RYN"  # letters without a token next to one with a token
    return "".join(s)


def real_windows(phix: str) -> list[str]:
    """Full, dirty, odd-length, short and empty windows of the real phiX genome."""
    starts = [0, 613, 1999, 4000, 5386 - 512]
    windows = [dirty(phix[s : s + 512]) for s in starts] + [phix[s : s + 512] for s in starts]
    return windows + [phix[17:530], phix[2000:2100].lower(), phix[5:12], "ACG", "NNNNNNN", "", "ACGTNNACGTRYACGTAN"]


def hf_ids_kmers(tok, window: str, k: int) -> list[int]:
    up = window.upper()
    return tok(" ".join(up[i : i + k] for i in range(len(up) - k + 1)))["input_ids"]


def our_ids(tokenizer, windows: list[str]) -> list[list[int]]:
    batch = tokenizer.encode(windows)
    return [row[mask == 1].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask)]


# ------------------------------------------------------------------- DNABERT-k


def test_bundled_vocab_is_the_generated_6mer_vocab_byte_for_byte():
    assert VOCAB6.read_bytes() == ("\n".join(kmer_vocab(6)) + "\n").encode()
    assert vocab_k(VOCAB6.read_text().splitlines()) == 6


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_every_kmer_gets_its_line_in_the_vocab(k):
    vocab = SPECIALS + ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    assert kmer_vocab(k) == vocab
    tok = KmerTokenizer(vocab, (2,), (3,))
    kmers = vocab[5:]
    content = tok.content(kmers + [k.lower() for k in kmers])
    assert content.ids.tolist() == list(range(5, len(vocab))) * 2


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_dnabert_ids_equal_bert_tokenizer_on_real_windows(tmp_path, phix, k):
    (tmp_path / "vocab.txt").write_text("\n".join(kmer_vocab(k)) + "\n")
    hf = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False)  # path positional (transformers 5)
    assert len(hf) == 5 + 4**k
    tok = KmerTokenizer(kmer_vocab(k), (2,), (3,))
    windows = real_windows(phix)
    for window, ours in zip(windows, our_ids(tok, windows)):
        assert ours == hf_ids_kmers(hf, window, k), window[:30]
    # the equal-length fast path and the per-window path agree
    same = [w for w in windows if len(w) == 512]
    assert our_ids(tok, same) == [our_ids(tok, [w])[0] for w in same]


def test_dnabert_ids_follow_the_folders_vocab_order(tmp_path, phix):
    """A vocab.txt in another order (a re-trained or converted checkpoint) still gives the folder's ids."""
    vocab = kmer_vocab(4)
    shuffled = vocab[:5] + random.Random(0).sample(vocab[5:], len(vocab) - 5)
    (tmp_path / "vocab.txt").write_text("\n".join(shuffled) + "\n")
    hf = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=False)
    tok = KmerTokenizer(shuffled, (2,), (3,))
    for window in real_windows(phix)[:6]:
        assert our_ids(tok, [window])[0] == hf_ids_kmers(hf, window, 4)


def test_tiny_dnabert_folder_ids_equal_its_own_tokenizer(tiny_models, phix):
    folder = ModelFolder.open(str(tiny_models["dnabert"]))
    family = family_for(folder)
    assert family.name == "dnabert" and family.tokenizer_name == "dnabert-6mer"
    hf = AutoTokenizer.from_pretrained(folder.path)
    tok = family.tokenizer()
    windows = real_windows(phix)
    for window, ours in zip(windows, our_ids(tok, windows)):
        assert ours == hf_ids_kmers(hf, window, 6)
    assert family.window_limits() == (515, 515)  # 512 positions: 510 6-mers + [CLS] + [SEP]


# --------------------------------------------------------- Nucleotide Transformer


def test_nt_ids_equal_esm_tokenizer_on_real_windows(tiny_models, phix):
    folder = ModelFolder.open(str(tiny_models["nucleotide_transformer"]))
    family = family_for(folder)
    assert family.name == "nucleotide_transformer" and family.tokenizer_name == "nt-6mer"
    hf = AutoTokenizer.from_pretrained(folder.path)
    assert type(hf).__name__ == "EsmTokenizer"
    tok = family.tokenizer()
    windows = real_windows(phix)
    for window, ours in zip(windows, our_ids(tok, windows)):
        # Windows reach the encoder upper-cased (soft-masked bases are bases).
        assert ours == hf(window.upper())["input_ids"], window[:40]
    # N and leftover bases are single tokens: 512 bp of pure sequence -> 85 6-mers + 2 single bases
    assert len(tok.content([phix[:512]]).ids) == 85 + 2


def test_nt_ids_on_random_letters_equal_esm_tokenizer(tiny_models):
    """Seeded fuzz over every letter class, including runs of letters with no token."""
    folder = ModelFolder.open(str(tiny_models["nucleotide_transformer"]))
    hf = AutoTokenizer.from_pretrained(folder.path)
    tok = family_for(folder).tokenizer()
    rng = random.Random(1)
    letters = "ACGT" * 6 + "NN" + "RYKMSWBDHV"
    windows = ["".join(rng.choice(letters) for _ in range(rng.randint(0, 120))) for _ in range(300)]
    for window, ours in zip(windows, our_ids(tok, windows)):
        assert ours == hf(window)["input_ids"], window


# --------------------------------------------------- byte-pair and per-base tokenizers


@pytest.mark.parametrize("name, kind", [("bpe", "byte-pair"), ("per_base", "per-base")])
def test_tokenizer_family_ids_equal_the_folders_tokenizer(tiny_models, phix, name, kind):
    folder = ModelFolder.open(str(tiny_models[name]))
    family = family_for(folder)
    assert family.name == "hf_tokenizer" and family.tokenizer_name == kind
    hf = AutoTokenizer.from_pretrained(folder.path)
    tok = family.tokenizer()
    windows = real_windows(phix)
    for window, ours in zip(windows, our_ids(tok, windows)):
        assert ours == hf(window.upper())["input_ids"], window[:40]
    lengths = tok.content([w for w in windows if len(w) == 512]).lengths
    if kind == "per-base":
        assert tok.table is not None  # the checked integer lookup, not the tokenizer, was used
        assert set(lengths) == {512}
    else:
        assert len(set(lengths)) > 1 and lengths.max() < 512  # byte-pair: counts vary with the bases


def test_content_mask_and_summary_position_follow_the_tokenizer(tiny_models, phix):
    """Do not assume [CLS] first and [SEP] last: the per-base tokenizer adds only a trailing [SEP]."""
    window = phix[100:140]
    for name, prefix, suffix in [("dnabert", 1, 1), ("nucleotide_transformer", 1, 1), ("per_base", 0, 1)]:
        tok = family_for(ModelFolder.open(str(tiny_models[name]))).tokenizer()
        assert (len(tok.prefix), len(tok.suffix)) == (prefix, suffix), name
        batch = tok.encode([window, window[:20]])
        n0 = int(batch.attention_mask[0].sum())
        assert batch.content_mask[0, :prefix].sum() == 0 and batch.content_mask[0, n0 - suffix : n0].sum() == 0
        assert batch.content_mask[0].sum() == n0 - prefix - suffix
        assert not batch.content_mask[1, int(batch.attention_mask[1].sum()):].any()  # padding is not content
        expected = [0, 0] if prefix else [n0 - 1, int(batch.attention_mask[1].sum()) - 1]
        assert batch.summary_index.tolist() == expected, name


def test_vectorised_assembly_equals_one_window_at_a_time(tiny_models, phix):
    """Equal and mixed lengths, pieces cut out of rows: the batch equals one encode() per window."""
    windows = real_windows(phix)
    for name in ("dnabert", "nucleotide_transformer", "per_base"):
        tok = family_for(ModelFolder.open(str(tiny_models[name]))).tokenizer()
        content = tok.content(windows)
        assert content.lengths.tolist() == [len(tok.content([w]).ids) for w in windows], name
        for chosen in (np.arange(len(windows)), np.flatnonzero(content.lengths == content.lengths[0])):
            batch = tok.assemble(content.slices(chosen, np.zeros(len(chosen), dtype=np.int64),
                                                content.lengths[chosen]))
            for row, i in enumerate(chosen):
                alone = tok.encode([windows[i]])
                width = alone.input_ids.shape[1]
                assert batch.input_ids[row, :width].tolist() == alone.input_ids[0].tolist(), (name, i)
                assert batch.content_mask[row, :width].tolist() == alone.content_mask[0].tolist()
                assert batch.attention_mask[row].sum() == width and batch.summary_index[row] == alone.summary_index[0]
        lo, hi = np.array([0, 3, 10]), np.array([5, 9, 10])  # pieces of row 0 and 1, and an empty one
        pieces = content.slices(np.array([0, 1, 2]), lo, hi)
        assert [pieces.row(j).tolist() for j in range(3)] == [content.row(r)[a:b].tolist()
                                                               for r, a, b in zip(range(3), lo, hi)]


# --------------------------------------------------------------- offline checks


def test_tiny_identity_and_limits_match_the_built_models(tiny_models):
    """The DAG knows a tiny model's identity and window limits before building it."""
    for name, path in tiny_models.items():
        folder = ModelFolder.open(str(path))
        family = family_for(folder)
        known = planned_identity(TinyEncoder(family=name, kmer=6, hidden=32))
        assert (known.family, known.tokenizer, known.hidden_size) == (family.name, family.tokenizer_name,
                                                                      folder.hidden_size)
        always, most = tiny_window_limits(name, 6)
        assert family.window_limits()[0] == always
        if most is not None:
            assert family.window_limits()[1] == most


@pytest.mark.parametrize("name, too_big, fix", [("dnabert", 516, "at most 515 bp"),
                                                 ("nucleotide_transformer", 3061, "at most 3060 bp"),
                                                 ("per_base", 1024, "at most 1023 bp")])
def test_window_that_never_fits_stops_with_the_largest_that_does(tiny_models, name, too_big, fix):
    spec = EncoderSpec(str(tiny_models[name]))
    preflight(spec, too_big - 1)
    with pytest.raises(InputError, match=fix) as err:
        preflight(spec, too_big)
    assert "config.json" in str(err.value)


def test_window_longer_than_one_pass_for_some_sequence_gives_a_note(tiny_models):
    _, note = preflight(EncoderSpec(str(tiny_models["nucleotide_transformer"])), 2048)
    assert "several passes" in note and "510 bp is always one pass" in note
    _, note = preflight(EncoderSpec(str(tiny_models["nucleotide_transformer"])), 510)
    assert note == ""


def test_family_set_by_config_must_match_the_folder(tiny_models):
    assert preflight(EncoderSpec(str(tiny_models["bpe"]), family="hf_tokenizer"), 512)[0].name == "hf_tokenizer"
    with pytest.raises(InputError, match="not a DNABERT k-mer vocabulary"):
        preflight(EncoderSpec(str(tiny_models["nucleotide_transformer"]), family="dnabert"), 512)
    with pytest.raises(InputError, match="encoder.family"):
        preflight(EncoderSpec(str(tiny_models["dnabert"]), family="hyena"), 512)


def _remote_code_folder(tiny_models, folder, code: str | None = None):
    """The tiny byte-pair model as a folder shipping its own code (which no native port implements)."""
    shutil.copytree(tiny_models["bpe"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_mine.MyModel"}
    (folder / "config.json").write_text(json.dumps(config))
    if code is not None:
        (folder / "modeling_mine.py").write_text(code)
    return folder


def test_remote_code_is_refused_unless_asked_for(tiny_models, tmp_path):
    folder = _remote_code_folder(tiny_models, tmp_path / "remote")
    with pytest.raises(InputError, match="trust_remote_code") as err:
        preflight(EncoderSpec(str(folder)), 512)
    assert "modeling_mine.MyModel" in str(err.value)
    preflight(EncoderSpec(str(folder), trust_remote_code=True), 512)  # allowed when asked


def test_remote_code_that_needs_removed_transformers_apis_is_refused_before_any_job(tiny_models, tmp_path):
    folder = _remote_code_folder(tiny_models, tmp_path / "old_code",
                                 "from transformers.modeling_utils import find_pruneable_heads_and_indices\n")
    with pytest.raises(InputError, match="find_pruneable_heads_and_indices") as err:
        preflight(EncoderSpec(str(folder), trust_remote_code=True), 512)
    assert "modeling_mine.py" in str(err.value) and "transformers 5" in str(err.value)


def test_weights_that_would_be_newly_initialised_are_refused(tiny_models, tmp_path):
    """A load that leaves encoder weights random (DNABERT-2 without its code, once) must not pass."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_models["dnabert"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 2  # the checkpoint holds one layer: found from the file header, before any job
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="holds weights of 1 layer.*num_hidden_layers: 2"):
        preflight(EncoderSpec(str(folder)), 512)
    config["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    del weights["bert.embeddings.LayerNorm.weight"]  # a weight outside the layers: found when loading
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(InputError, match="newly initialised"):
        Encoder.load(EncoderSpec(str(folder)), 512, 256)


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_damaged_weight_files_are_refused_before_any_job(tiny_models, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_models["dnabert"], folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "random bytes": os.urandom(4096),
                         "empty": b""}[damage])
    with pytest.raises(InputError, match="download the model's weight files again") as err:
        preflight(EncoderSpec(str(folder)), 512)
    assert "trust_remote_code" not in str(err.value)


def test_folder_without_any_tokenizer_is_one_clear_error(tiny_models, tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(tiny_models["bpe"] / "config.json", folder / "config.json")
    with pytest.raises(InputError, match="no encoder family recognises"):
        preflight(EncoderSpec(str(folder)), 512)


def test_loaded_identity_names_family_tokenizer_and_hashes(tiny_models):
    encoder = Encoder.load(EncoderSpec(str(tiny_models["nucleotide_transformer"]), strands="both"), 600, 300)
    identity = encoder.space.as_dict()
    assert identity["family"] == "nucleotide_transformer" and identity["tokenizer"] == "nt-6mer"
    assert identity["strands"] == "both" and identity["window_size"] == 600 and identity["hidden_size"] == 32
    assert identity["model_sha256"].startswith("sha256:") and identity["tokenizer_sha256"].startswith("sha256:")
    assert identity["precision"] == "float32" and encoder.capacity == 510


def test_one_accessor_reads_hidden_states_from_every_output_form():
    """Plain tuples (DNABERT-2's published forward), base-model outputs, masked-LM outputs
    run with output_hidden_states (NT v2's published way) and native outputs."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

    from dnalm.encoders.loading import hidden_of
    from dnalm.encoders.native.base import NativeOutput

    last = torch.randn(2, 5, 8)
    earlier = torch.randn(2, 5, 8)
    assert hidden_of((last, torch.randn(2, 8))) is last
    assert hidden_of(BaseModelOutput(last_hidden_state=last)) is last
    assert hidden_of(MaskedLMOutput(logits=torch.randn(2, 5, 30), hidden_states=(earlier, last))) is last
    assert hidden_of(NativeOutput(last)) is last


def test_generic_tokenizer_on_a_kmer_vocabulary_is_refused_naming_the_family(tiny_models):
    """WordPiece over DNABERT's k-mer vocab reads a window as one [UNK]: every window would
    get one vector. Refused before any job (preflight reads only the folder's files)."""
    with pytest.raises(InputError, match="set encoder.family: dnabert"):
        preflight(EncoderSpec(str(tiny_models["dnabert"]), family="hf_tokenizer"), 512)
    with pytest.raises(InputError, match="set encoder.family: nucleotide_transformer"):
        preflight(EncoderSpec(str(tiny_models["nucleotide_transformer"]), family="hf_tokenizer"), 512)


def test_a_tokenizer_that_cannot_split_dna_is_refused(tmp_path):
    """A word-level tokenizer with DNA words but no way to split a window: one [UNK] a window."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from dnalm.encoders.hf_tokenizer import AutoTokenizerWindows

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ACGTAC", "GATTAC"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                 sep_token="[SEP]", mask_token="[MASK]")
    with pytest.raises(InputError, match="cannot split DNA"):
        AutoTokenizerWindows(hf, "byte-pair", per_base=False)


def test_a_truncated_bin_checkpoint_is_refused_before_any_job(tiny_models, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(tiny_models["dnabert"], folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    preflight(EncoderSpec(str(folder)), 512)  # a whole .bin passes
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        preflight(EncoderSpec(str(folder)), 512)


def test_remote_code_using_apis_transformers_5_still_has_is_not_refused(tiny_models, tmp_path):
    folder = _remote_code_folder(tiny_models, tmp_path / "current_code", (
        "from transformers.pytorch_utils import apply_chunking_to_forward, prune_linear_layer\n"
        "class MyModel:\n    def get_head_mask(self, mask):  # its own helper of that name\n        return mask\n"
        "    def post_init(self):\n        self.init_weights()\n        self.get_head_mask(None)\n"))
    preflight(EncoderSpec(str(folder), trust_remote_code=True), 512)


@pytest.mark.parametrize("family, kind", [("nucleotide_transformer", "Nucleotide Transformer"),
                                          ("dnabert", "DNABERT")])
def test_a_kmer_family_on_a_folder_without_vocab_txt_says_so(tiny_models, family, kind):
    """A k-mer family asked for on a per-base folder: the message names the folder and what it
    lacks, not a vocab.txt that does not exist."""
    folder = tiny_models["per_base"]
    assert not (folder / "vocab.txt").exists()
    with pytest.raises(InputError) as err:
        preflight(EncoderSpec(str(folder), family=family), 512)
    assert str(err.value).startswith(f"{folder}: has no vocab.txt, so it is not a {kind}")
