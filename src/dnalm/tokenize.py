"""DNABERT-k tokenization as integer arithmetic on sequence bytes.

DNABERT's vocabulary is `[PAD] [UNK] [CLS] [SEP] [MASK]` followed by every
k-mer in `itertools.product("ATCG", repeat=k)` order, so the id of a k-mer is

    id = 5 + sum_j code(base_j) * 4**(k-1-j)    with A=0, T=1, C=2, G=3.

A window of L bp gives L-k+1 overlapping k-mers plus [CLS] and [SEP]. A k-mer
holding N (or any non-ACGT byte) is [UNK]. This gives exactly the ids of a
Hugging Face BertTokenizer over the DNABERT vocab on the upper-cased,
space-joined k-mers (tests/test_tokenize.py checks it), about 100x faster.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
N_SPECIAL = len(SPECIAL_TOKENS)
BASE_ORDER = "ATCG"

# Byte -> base code; 4 marks a byte that is not A/C/G/T (upper or lower case).
_BASE_CODE = np.full(256, 4, dtype=np.int64)
for _i, _b in enumerate(BASE_ORDER):
    _BASE_CODE[ord(_b)] = _i
    _BASE_CODE[ord(_b.lower())] = _i


def kmer_vocab(k: int) -> list[str]:
    """The DNABERT-k vocabulary, token per line order."""
    return SPECIAL_TOKENS + ["".join(p) for p in itertools.product(BASE_ORDER, repeat=k)]


def vocab_size(k: int) -> int:
    return N_SPECIAL + 4**k


def n_tokens(length_bp: int, k: int) -> int:
    """Tokens a window of `length_bp` gives, [CLS] and [SEP] included."""
    return max(length_bp - k + 1, 0) + 2


def kmer_ids(seq: str | bytes, k: int) -> np.ndarray:
    """Ids of the overlapping k-mers of one sequence, without specials. Shape (L-k+1,)."""
    raw = seq.encode("ascii") if isinstance(seq, str) else seq
    codes = _BASE_CODE[np.frombuffer(raw, dtype=np.uint8)]
    if codes.size < k:
        return np.zeros(0, dtype=np.int64)
    windows = sliding_window_view(codes, k)  # (L-k+1, k)
    weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    ids = N_SPECIAL + windows @ weights
    ids[(windows == 4).any(axis=1)] = UNK_ID
    return ids


def encode_batch(sequences: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] k-mers [SEP] for each sequence, right-padded with [PAD].

    Returns input_ids and attention_mask, both (batch, max_tokens) int64.
    Equal-length windows (the usual case) need no padding at all.
    """
    lengths = [n_tokens(len(s), k) for s in sequences]
    width = max(lengths)
    ids = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    if len({len(s) for s in sequences}) == 1 and all(isinstance(s, str) for s in sequences):
        # One vectorised pass over the whole batch: (batch, L) bytes -> (batch, L-k+1) ids.
        raw = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
        codes = _BASE_CODE[raw].reshape(len(sequences), -1)
        if codes.shape[1] >= k:
            windows = sliding_window_view(codes, k, axis=1)  # (batch, L-k+1, k)
            weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
            body = N_SPECIAL + windows @ weights
            body[(windows == 4).any(axis=2)] = UNK_ID
            ids[:, 1 : width - 1] = body
    else:
        for row, seq in enumerate(sequences):
            body = kmer_ids(seq, k)
            ids[row, 1 : 1 + body.size] = body
    for row, n in enumerate(lengths):
        ids[row, 0] = CLS_ID
        ids[row, n - 1] = SEP_ID
        mask[row, :n] = 1
    return ids, mask
