"""Nucleotide Transformer style (NT v1/v2, AgroNT, ...): non-overlapping 6-mers.

The folder's EsmTokenizer splits a sequence greedily with a trie over its whole
vocabulary, longest match first. For windows of A/C/G/T/N that means: every
maximal run of A/C/G/T of m bases gives m // k k-mers then m % k single-base
tokens; N (and any other letter with its own token) is one token; a stretch of
letters with no token at all is one <unk>. The integer path below reproduces
exactly that (tests/test_encoders.py checks it against EsmTokenizer on real
windows), about two orders of magnitude faster than the trie. Windows of pure
A/C/G/T are tokenized together, one array operation per window length; only
windows holding other letters (N runs) go one by one.

NT v1 checkpoints are stock `EsmForMaskedLM` and load natively; NT v2 ships its
own model code (config.json `auto_map`) and loads only with trust_remote_code.
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


def tokenizer_name_for(k: int) -> str:
    return f"nt-{k}mer"


def window_limits_for(capacity: int | None, k: int) -> tuple[int | None, int | None]:
    """`Family.window_limits` for `capacity` content tokens: pure A/C/G/T takes k bases a
    token; the worst case (N every few bases) one base a token."""
    return (None, None) if capacity is None else (capacity, capacity * k)


def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


def vocab_layout(vocab: list[str]) -> tuple[int, dict[str, int], dict[str, int]] | None:
    """(k, k-mer -> id, single letter -> id) for an NT-style vocab (every k-mer of one k,
    and single-letter tokens for at least A, C, G, T), else None."""
    ids = {t: i for i, t in enumerate(vocab)}
    words = [t for t in vocab if not _is_special(t)]
    singles = {t: ids[t] for t in words if len(t) == 1}
    kmers = {t: ids[t] for t in words if len(t) > 1}
    lengths = {len(t) for t in kmers}
    if len(lengths) != 1 or "<cls>" not in ids or "<pad>" not in ids:
        return None
    k = lengths.pop()
    if len(kmers) != 4**k or any(set(t) - set("ACGT") for t in kmers) or set("ACGT") - set(singles):
        return None
    return k, kmers, singles


class NonOverlappingKmerTokenizer(WindowTokenizer):
    def __init__(self, vocab: list[str], prefix: tuple[int, ...], suffix: tuple[int, ...], unk_token: str = "<unk>"):
        layout = vocab_layout(vocab)
        assert layout is not None
        self.k, kmers, singles = layout
        ids = {t: i for i, t in enumerate(vocab)}
        self.name = tokenizer_name_for(self.k)
        self.table = np.empty(4**self.k, dtype=np.int64)  # base-4 k-mer number -> the folder's id
        for token, i in kmers.items():
            number = 0
            for base in token:
                number = number * 4 + int(BASE_CODE[ord(base)])
            self.table[number] = i
        # Byte -> its single-letter token, -1 where the vocab has none (an unmatched letter).
        self.single = np.full(256, -1, dtype=np.int64)
        for letter, i in singles.items():
            self.single[ord(letter)] = i
        self.unk_id = ids[unk_token] if unk_token in ids else ids["<unk>"]
        self.pad_id, self.mask_id = ids["<pad>"], ids.get("<mask>")
        self._single_base = self.single[np.frombuffer(b"ACGT", np.uint8)]  # base code -> its single-base id
        self.prefix, self.suffix = prefix, suffix
        self.vocab_size = len(vocab)

    def _clean(self, codes: np.ndarray) -> np.ndarray:
        """(n, L) codes of pure A/C/G/T windows -> (n, L//k + L%k) ids: the k-mers, then the
        leftover single bases."""
        n, length = codes.shape
        q = length // self.k
        kmers = codes[:, : q * self.k].reshape(n, q, self.k)
        number = kmers[..., 0].astype(np.int64)
        for j in range(1, self.k):
            number *= 4
            number += kmers[..., j]
        rest = self._single_base[codes[:, q * self.k:]]
        return np.concatenate([self.table[number], rest], axis=1)

    def _window(self, data: np.ndarray) -> np.ndarray:
        """Ids of one window holding letters other than A/C/G/T (upper-case bytes)."""
        return self._window_tokens(data)[0]

    def _run_spans(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the tokens `_clean` gives a run of `length` bases: the k-mers, then
        the leftover single bases."""
        q, k = length // self.k, self.k
        starts = np.r_[np.arange(q, dtype=np.int64) * k, q * k + np.arange(length % k, dtype=np.int64)]
        return starts, np.r_[starts[:q] + k, starts[q:] + 1]

    def _window_tokens(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, starts, ends) of one window holding letters other than A/C/G/T (upper-case
        bytes): ids and spans come from one pass, so the spans follow the ids exactly."""
        codes = BASE_CODE[data]
        is_base = codes < 4
        cuts = np.flatnonzero(np.diff(is_base.astype(np.int8))) + 1
        ids, starts, ends = [], [], []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(codes)]):
            if lo == hi:
                continue
            if is_base[lo]:
                ids.append(self._clean(codes[None, lo:hi])[0])
                run_starts, run_ends = self._run_spans(int(hi - lo))
                starts.append(lo + run_starts)
                ends.append(lo + run_ends)
                continue
            letters = self.single[data[lo:hi]]
            unmatched = letters < 0
            # A stretch of letters without a token is one <unk>, as the trie leaves it in one piece.
            keep = ~unmatched | np.r_[True, ~unmatched[:-1]]
            letters = np.where(unmatched, self.unk_id, letters)
            ids.append(letters[keep])
            # A kept letter's token runs to the next kept letter: one base for a letter with a
            # token, the whole stretch for an <unk>.
            at = lo + np.flatnonzero(keep)
            starts.append(at)
            ends.append(np.r_[at[1:], hi])
        if not ids:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return tuple(np.concatenate(parts).astype(np.int64) for parts in (ids, starts, ends))

    def content(self, sequences: list[str]) -> Ragged:
        n, k = len(sequences), self.k
        codes, lengths = byte_codes(sequences, BASE_CODE_BYTES)
        starts = np.cumsum(lengths) - lengths
        not_base = np.concatenate([[0], np.cumsum(codes > 3, dtype=np.int64)])
        clean = not_base[starts + lengths] == not_base[starts]  # windows of pure A/C/G/T
        if n and clean.all() and (lengths == lengths[0]).all():
            # The usual case: equal-length windows of A/C/G/T only, one vectorised pass.
            return Ragged.from_matrix(self._clean(codes.reshape(n, int(lengths[0]))))
        tokens = np.where(clean, lengths // k + lengths % k, 0)
        dirty = {}
        for i in np.flatnonzero(~clean):  # soft-masked bases are bases: upper-case first
            dirty[i] = self._window(np.frombuffer(sequences[i].upper().encode("ascii"), dtype=np.uint8))
            tokens[i] = len(dirty[i])
        out = Ragged.from_lengths(np.empty(int(tokens.sum()), dtype=np.int64), tokens)
        for length in np.unique(lengths[clean]):
            rows = np.flatnonzero(clean & (lengths == length))
            window_codes = codes[starts[rows][:, None] + np.arange(length)]  # (rows, length)
            out.ids[ranges(out.offsets[rows], tokens[rows])] = self._clean(window_codes).reshape(-1)
        for i, ids in dirty.items():
            out.ids[out.offsets[i] : out.offsets[i + 1]] = ids
        return out

    def spans(self, sequences: list[str]) -> TokenSpans:
        """The bases of each token of `content(sequences)`: a k-mer covers k bases, a leftover
        base, N or other letter with a token one, an <unk> its whole stretch of letters."""
        n, k = len(sequences), self.k
        codes, lengths = byte_codes(sequences, BASE_CODE_BYTES)
        starts = np.cumsum(lengths) - lengths
        not_base = np.concatenate([[0], np.cumsum(codes > 3, dtype=np.int64)])
        clean = not_base[starts + lengths] == not_base[starts]  # windows of pure A/C/G/T
        tokens = np.where(clean, lengths // k + lengths % k, 0)  # (n,)
        dirty = {}
        for i in np.flatnonzero(~clean):  # as in content: one by one, upper-cased
            _, *dirty[i] = self._window_tokens(np.frombuffer(sequences[i].upper().encode("ascii"), dtype=np.uint8))
            tokens[i] = len(dirty[i][0])
        # Clean windows, all at once: token j of a window of L bases is k-mer j while
        # j < L // k, then leftover base L // k * k + (j - L // k). (total,) arrays below.
        j = ranges(np.zeros(n, dtype=np.int64), tokens)
        q = np.repeat(lengths // k, tokens)
        kmer = j < q
        token_starts = np.where(kmer, j * k, q * k + (j - q))
        token_ends = token_starts + np.where(kmer, k, 1)
        out = TokenSpans.from_lengths(token_starts, token_ends, tokens)
        for i, (window_starts, window_ends) in dirty.items():  # overwrite the dirty windows' rows
            out.starts[out.offsets[i] : out.offsets[i + 1]] = window_starts
            out.ends[out.offsets[i] : out.offsets[i + 1]] = window_ends
        return out


class NucleotideTransformer(Family):
    name = "nucleotide_transformer"
    examples = "InstaDeepAI/nucleotide-transformer-500m-human-ref (v1), -v2-*-multi-species, agro-nucleotide-transformer-1b"

    def __init__(self, folder: ModelFolder):
        super().__init__(folder)
        layout = vocab_layout(folder.vocab_lines) if folder.vocab_lines else None
        if layout is None:
            fix = "use an NT-style checkpoint, or set encoder.family to the model's family (or auto)"
            if folder.vocab_lines is None:
                raise InputError("has no vocab.txt, so it is not a Nucleotide Transformer (non-overlapping k-mer) "
                                 "model", path=folder.path, fix=fix)
            raise InputError(
                "vocab.txt is not a Nucleotide Transformer vocabulary (<cls>, <pad>, ... , all 4^k k-mers of "
                "one k and single-letter tokens)", path=folder.path / "vocab.txt", fix=fix)
        self.k = layout[0]

    @classmethod
    def detect(cls, folder: ModelFolder) -> bool:
        return folder.vocab_lines is not None and vocab_layout(folder.vocab_lines) is not None

    def n_specials(self) -> int:
        eos = self.folder.special_token("eos_token", "<eos>")
        return 1 + int(eos is not None and eos in (self.folder.vocab_lines or []))

    @property
    def tokenizer_name(self) -> str:
        return tokenizer_name_for(self.k)

    def window_limits(self):
        return window_limits_for(self.capacity(), self.k)

    def tokenizer(self, trust_remote_code: bool = False) -> NonOverlappingKmerTokenizer:
        hf = load_hf_tokenizer(self.folder, trust_remote_code)
        prefix, suffix = probe_template(hf, "A" * (2 * self.k))
        return NonOverlappingKmerTokenizer(self.folder.vocab_lines, prefix, suffix,
                                           unk_token=str(getattr(hf, "unk_token", "<unk>")))


def nt_vocab(k: int = 6) -> list[str]:
    """The NT v1/v2 vocabulary layout: specials, k-mers in ATCG product order, single letters."""
    return (["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
            + ["".join(p) for p in itertools.product("ATCG", repeat=k)] + list("ATCGN"))
