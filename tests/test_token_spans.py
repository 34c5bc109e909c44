"""WindowTokenizer.spans: the bases each content token stands for, for every family.

Base-resolution annotation maps token states back to bases through these spans, so they
are checked against the tokenizers themselves (vocabulary texts, Hugging Face's own
offsets), not only for shape."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from dnalm.encoders import ModelFolder, TokenSpans, WindowTokenizer, family_for
from dnalm.encoders.character import SPECIALS as CHARACTER_SPECIALS
from dnalm.encoders.character import HUB_CHARACTERS, hub_tokenizer_files
from dnalm.encoders.hf_tokenizer import AutoTokenizerWindows
from dnalm.errors import InputError

FAMILIES = ("dnabert", "nucleotide_transformer", "bpe", "per_base", "character")
# The class each family's tokenizer must be, so that each test runs the path it means to.
TOKENIZER_CLASS = {"dnabert": "KmerTokenizer", "nucleotide_transformer": "NonOverlappingKmerTokenizer",
                   "bpe": "AutoTokenizerWindows", "per_base": "AutoTokenizerWindows",
                   "character": "CharacterWindows"}
IUPAC = "RYKMSWBDHV"


@pytest.fixture(scope="module")
def folders(tiny_models, tmp_path_factory):
    """The tiny models of conftest, plus a HyenaDNA-style character tokenizer folder (no weights needed)."""
    character = tmp_path_factory.mktemp("character")
    (character / "config.json").write_text("{}")
    for name, text in hub_tokenizer_files(1026).items():
        (character / name).write_text(text)
    return {**tiny_models, "character": character}


@pytest.fixture(scope="module")
def tokenizers(folders) -> dict[str, WindowTokenizer]:
    found = {name: family_for(ModelFolder.open(str(folders[name]))).tokenizer() for name in FAMILIES}
    assert {name: type(tok).__name__ for name, tok in found.items()} == TOKENIZER_CLASS
    assert found["per_base"].table is not None and found["bpe"].table is None  # both hf_tokenizer paths
    return found


def random_windows(seed: int, letters: str = "") -> list[str]:
    """Six 512-bp windows (N runs, soft-masked stretches, soft-masked N; with `letters`, runs of
    those letters too), one of 301 bp, one shorter than a 6-mer, and an empty one."""
    rng = np.random.default_rng(seed)
    windows = []
    for i, length in enumerate([512] * 6 + [301, 5, 0]):
        s = list(rng.choice(list("ACGT"), size=length))
        if length > 100:
            lo, run = int(rng.integers(0, length - 60)), int(rng.integers(1, 40))
            if i % 3 != 1:  # an N run
                s[lo : lo + run] = ["N"] * run
            if i % 3 != 0:  # a soft-masked stretch, N included
                lo = int(rng.integers(0, length - 60))
                s[lo : lo + 50] = [b.lower() for b in s[lo : lo + 50]]
            for _ in range(3 if letters else 0):  # stretches of other letters, some lower-case
                lo, run = int(rng.integers(0, length - 5)), int(rng.integers(1, 5))
                s[lo : lo + run] = list(rng.choice(list(letters + letters.lower()), size=run))
        windows.append("".join(s))
    assert [len(w) for w in windows] == [512] * 6 + [301, 5, 0]
    return windows


def clean_windows(seed: int, n: int = 5, length: int = 200) -> list[str]:
    """Equal-length windows of A/C/G/T only: the families' vectorised content path."""
    rng = np.random.default_rng(seed)
    return ["".join(row) for row in rng.choice(list("ACGT"), size=(n, length))]


def rows(spans: TokenSpans, i: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = spans.offsets[i], spans.offsets[i + 1]
    return spans.starts[lo:hi], spans.ends[lo:hi]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("windows", [random_windows(0), random_windows(1, IUPAC), clean_windows(2)],
                         ids=["n-runs-soft-masked", "iupac", "clean-equal-length"])
def test_spans_follow_content_and_cover_every_base(tokenizers, name, windows):
    tok = tokenizers[name]
    content = tok.content(windows)
    spans = tok.spans(windows)
    assert spans.starts.dtype == spans.ends.dtype == spans.offsets.dtype == np.int64
    assert spans.offsets.tolist() == content.offsets.tolist()  # one span per content token, same windows
    assert len(spans.starts) == len(spans.ends) == len(content.ids)
    for i, window in enumerate(windows):
        starts, ends = rows(spans, i)
        assert ((0 <= starts) & (starts < ends) & (ends <= len(window))).all(), (name, i)
        covered = np.zeros(len(window), dtype=bool)
        for start, end in zip(starts, ends):
            covered[start:end] = True
        if name == "dnabert":  # overlapping 6-mers: one per position, none in a window shorter than k
            k = tok.k
            assert starts.tolist() == list(range(max(len(window) - k + 1, 0)))
            assert (ends - starts == k).all()
            assert covered.all() or len(window) < k
        else:  # the tokens tile the window, in order
            assert covered.all(), (name, i)
            assert (starts[1:] == ends[:-1]).all(), (name, i)
            if len(window):
                assert starts[0] == 0 and ends[-1] == len(window)


@pytest.mark.parametrize("name", ["dnabert", "nucleotide_transformer"])
@pytest.mark.parametrize("windows", [random_windows(3), random_windows(4, IUPAC), clean_windows(5)],
                         ids=["n-runs-soft-masked", "iupac", "clean-equal-length"])
def test_kmer_spans_spell_each_tokens_vocabulary_text(folders, tokenizers, name, windows):
    """A known token's vocabulary text is the window's bases over its span; an unknown token's
    span holds a letter with no k-mer ([UNK], DNABERT) or is a whole stretch of letters without
    a token (<unk>, NT)."""
    tok = tokenizers[name]
    vocab = ModelFolder.open(str(folders[name])).vocab_lines
    content, spans = tok.content(windows), tok.spans(windows)
    unknown = 0
    for i, window in enumerate(windows):
        upper = window.upper()
        ids = content.row(i)
        no_token = [tok.single[ord(c)] < 0 for c in upper] if name == "nucleotide_transformer" else None
        for token, start, end in zip(ids, *rows(spans, i)):
            letters = upper[start:end]
            if token != tok.unk_id:
                assert vocab[token] == letters, (i, start, end)
                continue
            unknown += 1
            if name == "dnabert":
                assert set(letters) - set("ACGT"), letters
            else:  # NT: letters without a token, and the whole stretch of them
                assert all(no_token[start:end]), letters
                assert not (start > 0 and no_token[start - 1]) and not (end < len(upper) and no_token[end])
    # The unknown tokens were checked too: DNABERT's on N, NT's on IUPAC codes (N has a token there).
    without_token = set("".join(windows).upper()) - set("ACGT" if name == "dnabert" else "ACGTN")
    assert (unknown > 0) == bool(without_token)


def test_nt_unmatched_stretch_of_letters_is_one_unk_spanning_it(tokenizers):
    tok = tokenizers["nucleotide_transformer"]
    assert tok.k == 6 and tok.single[ord("R")] < 0 and tok.single[ord("N")] >= 0  # IUPAC codes have no token
    window = "ACGTACGT" + "RYk" + "N" + "ms" + "acgtacg" + "W"
    spans = tok.spans([window, "ACGTAC"])
    ids = tok.content([window]).ids
    expected = [(0, 6), (6, 7), (7, 8),  # a 6-mer and the run's two leftover bases
                (8, 11),                 # R Y k: one <unk>
                (11, 12),                # N has its own token
                (12, 14),                # m s: one <unk>
                (14, 20), (20, 21),      # soft-masked bases are bases
                (21, 22)]                # W at the end: one <unk>
    starts, ends = rows(spans, 0)
    assert list(zip(starts.tolist(), ends.tolist())) == expected
    assert [i for i, token in enumerate(ids) if token == tok.unk_id] == [3, 5, 8]
    assert list(zip(*(a.tolist() for a in rows(spans, 1)))) == [(0, 6)]


@pytest.mark.parametrize("name", ["bpe", "per_base"])
@pytest.mark.parametrize("windows", [random_windows(6), random_windows(7, IUPAC), clean_windows(8)],
                         ids=["n-runs-soft-masked", "iupac", "clean-equal-length"])
def test_hf_spans_equal_the_tokenizers_own_offsets(folders, tokenizers, name, windows):
    hf = AutoTokenizer.from_pretrained(folders[name])
    encoded = hf([w.upper() for w in windows], add_special_tokens=False, return_offsets_mapping=True)
    spans = tokenizers[name].spans(windows)
    for i, offsets in enumerate(encoded["offset_mapping"]):
        assert list(zip(*(a.tolist() for a in rows(spans, i)))) == [tuple(pair) for pair in offsets], i


def test_character_spans_are_one_base_and_spell_each_character(tokenizers):
    """HyenaDNA's tokenizer: one token per letter, case-sensitive (a soft-masked base is [UNK])."""
    tok = tokenizers["character"]
    windows = random_windows(9, IUPAC)
    content, spans = tok.content(windows), tok.spans(windows)
    unk = CHARACTER_SPECIALS.index("[UNK]")
    for i, window in enumerate(windows):
        starts, ends = rows(spans, i)
        assert starts.tolist() == list(range(len(window))) and (ends == starts + 1).all()
        for token, start in zip(content.row(i), starts):
            letter = window[start]
            assert HUB_CHARACTERS[token - 7] == letter if token != unk else letter not in HUB_CHARACTERS


def test_slow_tokenizer_spans_come_from_token_texts_or_are_refused(folders, tokenizers):
    """A Python tokenizer gives no offsets (transformers 5 leaves them out silently): the spans
    come from its token texts, and a window those texts do not spell is refused."""
    hf = AutoTokenizer.from_pretrained(folders["nucleotide_transformer"])  # EsmTokenizer: Python only
    assert not hf.is_fast
    tok = AutoTokenizerWindows(hf, "byte-pair", per_base=False)
    assert tok._backend is None and tok.table is None
    windows = random_windows(10)  # N and soft-masked bases: every token's text spells its bases
    spans, nt = tok.spans(windows), tokenizers["nucleotide_transformer"].spans(windows)
    assert spans.offsets.tolist() == tok.content(windows).offsets.tolist()
    assert spans.starts.tolist() == nt.starts.tolist() and spans.ends.tolist() == nt.ends.tolist()
    with pytest.raises(InputError, match="do not spell") as err:  # <unk> is 5 letters, not the 2 of RY
        tok.spans(["ACGTACGTRYACGT"])
    assert str(folders["nucleotide_transformer"]) in str(err.value) and "Fix:" in str(err.value)


def test_slow_wordpiece_spans_drop_the_continuation_marker(tmp_path):
    """A Python WordPiece tokenizer: "##ACG" stands for 3 bases, not 5."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    pieces = ["ACG", "TT", "GATTACA"] + list("ACGTN")
    (tmp_path / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + pieces + ["##" + p for p in pieces]) + "\n")
    hf = BertTokenizerLegacy(str(tmp_path / "vocab.txt"), do_lower_case=False)
    hf.wordpiece_tokenizer.max_input_chars_per_word = 10_000  # a window is one "word"
    tok = AutoTokenizerWindows(hf, "byte-pair", per_base=False)
    assert tok._backend is None
    # Short windows: WordPiece's longest-match search is quadratic in a word's length.
    windows = [w[lo : lo + 64] for w in random_windows(11) for lo in range(0, len(w), 64)]
    content, spans = tok.content(windows), tok.spans(windows)
    assert any(t.startswith("##") and len(t) > 3 for t in hf.convert_ids_to_tokens(content.ids.tolist()))
    for i, window in enumerate(windows):
        texts = hf.convert_ids_to_tokens(content.row(i).tolist())
        assert [window.upper()[a:b] for a, b in zip(*rows(spans, i))] == [t.removeprefix("##") for t in texts]


def test_base_tokenizer_says_which_has_no_spans():
    class Plain(WindowTokenizer):
        name = "plain-test"

    with pytest.raises(NotImplementedError, match="plain-test"):
        Plain().spans(["ACGT"])
