"""DNABERT-k (k = 3..6): overlapping k-mers, one token per position.

A window of L bp gives L-k+1 k-mer tokens between the tokenizer's specials
([CLS] ... [SEP]); a k-mer holding N (or any byte but A/C/G/T) is [UNK]. The
Hugging Face tokenizer wants the k-mers spelled out and space-joined, which is
about 100x slower than the integer path here: base codes, a base-5
number per k-mer, and a lookup table built from the folder's own vocab.txt
(so the ids follow the folder's order, whatever it is). The k-mer number is
in base 5 (4 = not a base), so one table lookup also gives [UNK] to every
k-mer holding N: k multiply-adds over the byte codes and one lookup, for
windows of any lengths at once.

DNABERT's published tokenizer_config says do_lower_case=true, which makes every
k-mer [UNK] in Hugging Face's tokenizer; the integer path never lower-cases.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import InputError
from .base import (
    BASE_CODE,
    BASE_CODE_BYTES,
    Family,
    ModelFolder,
    Ragged,
    TokenSpans,
    WindowTokenizer,
    byte_codes,
    load_hf_tokenizer,
    probe_template,
    ranges,
)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
KMER_SIZES = range(3, 7)
BASE_ORDER = "ATCG"  # DNABERT's own vocab order (itertools.product), used when building vocabs


def tokenizer_name_for(k: int) -> str:
    return f"dnabert-{k}mer"


def window_limits_for(capacity: int | None, k: int) -> tuple[int | None, int | None]:
    """`Family.window_limits` for `capacity` content tokens: L - k + 1 k-mers, whatever the bases."""
    most = None if capacity is None else capacity + k - 1
    return most, most


def kmer_vocab(k: int) -> list[str]:
    """DNABERT-k's vocab.txt, line by line: the specials, then k-mers in ATCG product order."""
    return SPECIAL_TOKENS + ["".join(p) for p in itertools.product(BASE_ORDER, repeat=k)]


def _kmer_number(kmer: str) -> int:
    """The k-mer's base-5 number (digits: base codes), as `KmerTokenizer._ids` computes it."""
    number = 0
    for letter in kmer:
        number = number * 5 + int(BASE_CODE[ord(letter)])
    return number


def vocab_k(vocab: list[str]) -> int | None:
    """k when `vocab` is a complete DNABERT-style k-mer vocabulary (any order), else None."""
    kmers = [t for t in vocab if t not in SPECIAL_TOKENS]
    if not kmers or any(t not in vocab for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]")):
        return None
    k = len(kmers[0])
    if k not in KMER_SIZES or len(kmers) != 4**k or len(set(kmers)) != len(kmers):
        return None
    if any(len(t) != k or set(t) - set("ACGT") for t in kmers):
        return None
    return k


class KmerTokenizer(WindowTokenizer):
    def __init__(self, vocab: list[str], prefix: tuple[int, ...], suffix: tuple[int, ...]):
        k = vocab_k(vocab)
        assert k is not None
        self.k = k
        self.name = tokenizer_name_for(k)
        ids = {token: i for i, token in enumerate(vocab)}
        self.unk_id, self.pad_id, self.mask_id = ids["[UNK]"], ids["[PAD]"], ids.get("[MASK]")
        # Base-5 k-mer number (digit 4: not a base) -> the folder's id; [UNK] wherever a digit is 4.
        self.table = np.full(5**k, self.unk_id, dtype=np.int64)
        for token, i in ids.items():
            if token not in SPECIAL_TOKENS:
                self.table[_kmer_number(token)] = i
        self._number = np.uint16 if 5**k <= np.iinfo(np.uint16).max else np.uint32
        self.prefix, self.suffix = prefix, suffix
        self.vocab_size = len(vocab)
        self.overlap = k - 1

    def _ids(self, codes: np.ndarray) -> np.ndarray:
        """(..., L) base codes -> (..., L-k+1) ids of the k-mers starting at 0 .. L-k."""
        m = codes.shape[-1] - self.k + 1
        number = codes[..., :m].astype(self._number)
        for j in range(1, self.k):  # Horner over the k shifted views
            number *= 5
            number += codes[..., j : j + m]
        return self.table.take(number)

    def content(self, sequences: list[str]) -> Ragged:
        n, k = len(sequences), self.k
        codes, lengths = byte_codes(sequences, BASE_CODE_BYTES)
        if n and (lengths == lengths[0]).all() and lengths[0] >= k:
            # The usual case, equal-length windows: (n, L) -> (n, L-k+1).
            return Ragged.from_matrix(self._ids(codes.reshape(n, -1)))
        # Any lengths: the k-mers of the concatenation, keeping those inside one sequence.
        counts = np.maximum(lengths - k + 1, 0)
        if len(codes) < k:
            return Ragged.from_lengths(np.zeros(0, dtype=np.int64), counts)
        starts = np.cumsum(lengths) - lengths
        return Ragged.from_lengths(self._ids(codes)[ranges(starts, counts)], counts)

    def spans(self, sequences: list[str]) -> TokenSpans:
        """k-mer i covers bases [i, i+k): neighbours share k - 1 bases. A window shorter than k
        has no tokens, as in `content`."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        counts = np.maximum(lengths - self.k + 1, 0)  # (n,) k-mers per window
        starts = ranges(np.zeros(len(counts), dtype=np.int64), counts)  # (total,) 0 .. count-1 per window
        return TokenSpans.from_lengths(starts, starts + self.k, counts)


class Dnabert(Family):
    name = "dnabert"
    examples = "zhihan1996/DNA_bert_3 ... DNA_bert_6"

    def __init__(self, folder: ModelFolder):
        super().__init__(folder)
        vocab = folder.vocab_lines
        self.k = vocab_k(vocab) if vocab else None
        if self.k is None:
            fix = "use a DNABERT-k checkpoint, or set encoder.family to the model's family (or auto)"
            if vocab is None:
                raise InputError("has no vocab.txt, so it is not a DNABERT (overlapping k-mer) model",
                                 path=folder.path, fix=fix)
            raise InputError(
                f"vocab.txt is not a DNABERT k-mer vocabulary ({', '.join(SPECIAL_TOKENS)} and all 4^k "
                "k-mers of one k in 3..6)", path=folder.path / "vocab.txt", fix=fix)

    @classmethod
    def detect(cls, folder: ModelFolder) -> bool:
        return folder.vocab_lines is not None and vocab_k(folder.vocab_lines) is not None

    @property
    def tokenizer_name(self) -> str:
        return tokenizer_name_for(self.k)

    def window_limits(self):
        return window_limits_for(self.capacity(), self.k)

    def tokenizer(self, trust_remote_code: bool = False) -> KmerTokenizer:
        vocab = self.folder.vocab_lines
        ids = {t: i for i, t in enumerate(vocab)}
        try:
            hf = load_hf_tokenizer(self.folder, trust_remote_code)
            prefix, suffix = probe_template(hf, "A" * self.k)
        except InputError:
            # A bare DNABERT folder (vocab.txt and weights): BERT's own template.
            prefix, suffix = (ids["[CLS]"],), (ids["[SEP]"],)
        return KmerTokenizer(vocab, prefix, suffix)
