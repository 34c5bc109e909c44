"""dnalm.tokenize reproduces a Hugging Face BertTokenizer over the DNABERT vocab, id for id."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from transformers import BertTokenizer

from dnalm.tokenize import encode_batch, kmer_ids, kmer_vocab, n_tokens, vocab_size
from helpers_unit import PHIX, VOCAB6, read_records

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _hf_tokenizer(vocab_path) -> BertTokenizer:
    # Path positional: a keyword vocab_file silently builds a 5-token vocab in transformers 5.
    tok = BertTokenizer(str(vocab_path), do_lower_case=False)
    return tok


@pytest.fixture(scope="module")
def hf6() -> BertTokenizer:
    tok = _hf_tokenizer(VOCAB6)
    assert len(tok) == 4101
    return tok


@pytest.fixture(scope="module")
def phix() -> str:
    (seq,) = read_records(PHIX).values()
    assert len(seq) == 5386
    return seq


def _kmers_text(seq: str, k: int) -> str:
    up = seq.upper()
    return " ".join(up[i : i + k] for i in range(len(up) - k + 1))


def _hf_encode(tok, seqs: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    enc = tok([_kmers_text(s, k) for s in seqs], padding=True)
    return np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])


def _dirty(seq: str) -> str:
    """A real window with soft-masked stretches, N runs and IUPAC codes (upper and lower case)."""
    s = list(seq)
    s[40:110] = seq[40:110].lower()  # soft-masked stretch
    s[200:230] = "N" * 30  # assembly gap
    s[300:304] = "nnnn"  # soft-masked N
    for pos, code in zip(range(350, 450, 10), "RYKMSWBDHV"):
        s[pos] = code
    s[470] = "r"
    s[480] = "y"
    return "".join(s)


def _windows(phix: str) -> list[str]:
    starts = [0, 613, 1999, 4000, 5386 - 512]
    return [_dirty(phix[s : s + 512]) for s in starts]


def test_bundled_vocab_is_the_generated_6mer_vocab_byte_for_byte():
    generated = ("\n".join(kmer_vocab(6)) + "\n").encode()
    assert VOCAB6.read_bytes() == generated
    lines = VOCAB6.read_text().splitlines()
    assert len(lines) == 4101 == vocab_size(6)
    assert lines[:5] == SPECIALS


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_vocab_order_is_itertools_product_atcg(k):
    expected = SPECIALS + ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    assert kmer_vocab(k) == expected
    assert vocab_size(k) == len(expected)
    # Every k-mer's id is its line in the vocab (checked token by token, upper and lower case).
    for line, kmer in enumerate(expected[5:], start=5):
        assert kmer_ids(kmer, k).tolist() == [line]
        assert kmer_ids(kmer.lower(), k).tolist() == [line]


def test_kmer_id_formula_by_hand():
    # A=0, T=1, C=2, G=3: id = 5 + sum(code * 4**(k-1-j)).
    assert kmer_ids("AAA", 3).tolist() == [5]
    assert kmer_ids("GCA", 3).tolist() == [5 + 3 * 16 + 2 * 4 + 0]
    assert kmer_ids("TTTTTT", 6).tolist() == [5 + sum(4**j for j in range(6))]
    assert kmer_ids("GGGGGG", 6).tolist() == [4100]
    # overlapping: 'ATCGA' with k=3 -> ATC, TCG, CGA
    assert kmer_ids("ATCGA", 3).tolist() == [5 + 0 + 4 + 2, 5 + 16 + 8 + 3, 5 + 32 + 12 + 0]


def test_bytes_and_str_give_the_same_ids(phix):
    window = _dirty(phix[1000:1512])
    assert np.array_equal(kmer_ids(window, 6), kmer_ids(window.encode(), 6))


def test_kmer_ids_match_hf_on_real_windows(hf6, phix):
    for window in _windows(phix) + [phix[:515], phix[2000:2100].lower()]:
        hf_ids, _ = _hf_encode(hf6, [window], 6)
        ours = kmer_ids(window, 6)
        assert ours.shape == (len(window) - 5,)
        assert np.array_equal(ours, hf_ids[0, 1:-1]), "k-mer ids differ from BertTokenizer"


def test_windows_hold_unk_for_n_and_iupac(hf6, phix):
    window = _windows(phix)[1]
    ids = kmer_ids(window, 6)
    up = window.upper()
    bad = np.array([any(c not in "ACGT" for c in up[i : i + 6]) for i in range(len(up) - 5)])
    assert bad.sum() > 50  # the fixture really has N and IUPAC k-mers
    assert np.all(ids[bad] == 1)
    assert np.all(ids[~bad] >= 5)


def test_encode_batch_equal_lengths_matches_hf(hf6, phix):
    windows = _windows(phix)
    ids, mask = encode_batch(windows, 6)
    hf_ids, hf_mask = _hf_encode(hf6, windows, 6)
    assert ids.shape == (len(windows), 512 - 6 + 1 + 2)
    assert np.array_equal(ids, hf_ids)
    assert np.array_equal(mask, hf_mask)
    assert np.all(mask == 1)


def test_encode_batch_mixed_lengths_pads_right(hf6, phix):
    base = _dirty(phix[100:615])
    lengths = [515, 100, 6, 5, 0, 37, 7, 512]
    seqs = [base[:n] for n in lengths]
    ids, mask = encode_batch(seqs, 6)
    hf_ids, hf_mask = _hf_encode(hf6, seqs, 6)
    assert ids.shape == hf_ids.shape == (len(seqs), 512)
    assert np.array_equal(ids, hf_ids)
    assert np.array_equal(mask, hf_mask)
    for row, n in enumerate(lengths):
        real = max(n - 5, 0) + 2
        assert mask[row].sum() == real == n_tokens(n, 6)
        assert ids[row, 0] == 2 and ids[row, real - 1] == 3
        assert np.all(mask[row, real:] == 0) and np.all(ids[row, real:] == 0)
        assert np.all(mask[row, :real] == 1)


def test_sequences_shorter_than_k(hf6):
    for seq in ["", "A", "ACGT", "acgtn"]:
        assert kmer_ids(seq, 6).size == 0
        ids, mask = encode_batch([seq], 6)
        assert ids.tolist() == [[2, 3]] and mask.tolist() == [[1, 1]]
        hf_ids, _ = _hf_encode(hf6, [seq], 6)
        assert hf_ids.tolist() == ids.tolist()
    # an equal-length batch of short sequences takes the vectorised path
    ids, mask = encode_batch(["ACG", "TTT"], 6)
    assert ids.tolist() == [[2, 3], [2, 3]] and mask.tolist() == [[1, 1], [1, 1]]


def test_soft_masked_equals_upper_case(phix):
    windows = [phix[i : i + 300] for i in (0, 300, 900)]
    lower = [w.lower() for w in windows]
    a, ma = encode_batch(windows, 6)
    b, mb = encode_batch(lower, 6)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.any(a == 1)  # phiX has no N: no [UNK] once case is handled


def test_515bp_window_fills_512_positions():
    assert n_tokens(515, 6) == 512
    assert n_tokens(516, 6) == 513


@pytest.mark.parametrize("k", [3, 5])
def test_other_k_match_hf_tokenizer(tmp_path, phix, k):
    vocab = tmp_path / f"vocab{k}.txt"
    vocab.write_text("\n".join(SPECIALS + ["".join(p) for p in itertools.product("ATCG", repeat=k)]) + "\n")
    tok = _hf_tokenizer(vocab)
    assert len(tok) == 5 + 4**k
    seqs = [_dirty(phix[3000:3512]), phix[10:60].lower(), "NNACGTRA", ""]
    ids, mask = encode_batch(seqs, k)
    hf_ids, hf_mask = _hf_encode(tok, seqs, k)
    assert np.array_equal(ids, hf_ids)
    assert np.array_equal(mask, hf_mask)


def test_encode_batch_of_sub_k_sequences_of_different_lengths(hf6):
    """Sequences shorter than k all give 2 tokens, but their lengths differ: the
    equal-token-count fast path must not reshape their concatenated bytes."""
    seqs = ["AC", "ACGTA"]  # e.g. two tiny BED regions that land in one batch
    ids, mask = encode_batch(seqs, 6)
    hf_ids, hf_mask = _hf_encode(hf6, seqs, 6)
    assert ids.tolist() == hf_ids.tolist() == [[2, 3], [2, 3]]
    assert mask.tolist() == hf_mask.tolist() == [[1, 1], [1, 1]]
