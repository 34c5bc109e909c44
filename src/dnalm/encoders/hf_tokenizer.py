"""Any other tokenizer the model folder's AutoTokenizer loads: byte-pair (DNABERT-2,
GENA-LM, GROVER) and one token per base (HyenaDNA, Caduceus).

Ids come from the folder's own tokenizer, through its fast (Rust) batch path
when it has one. A per-base vocabulary gets an integer lookup instead, used
only after it was checked to give the tokenizer's very ids on a probe of every
letter class (bases, N, IUPAC codes).

Byte-pair token counts depend on the bases, so how much sequence fits one
model pass does too: `window_limits` gives the guaranteed length (one base a
token) and the longest that can ever fit (the longest token everywhere).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import InputError
from .base import (
    Family,
    ModelFolder,
    Ragged,
    TokenSpans,
    WindowTokenizer,
    load_hf_tokenizer,
    probe_template,
)

# Every letter class a window can hold after make_windows (bases, N) and what a
# caller could pass (IUPAC codes): a per-base lookup must agree on all of them.
_PROBE = "ACGTNRYKMSWBDHVACGGTTAACCNNA"


PER_BASE, BYTE_PAIR = "per-base", "byte-pair"  # the tokenizer names this family records


def window_limits_for(capacity: int | None, per_base: bool, longest_token: int) -> tuple[int | None, int | None]:
    """`Family.window_limits` for `capacity` content tokens: one base a token at worst; at
    best the longest token everywhere (unknown, None, without a vocabulary yet)."""
    if capacity is None:
        return None, None
    if per_base:
        return capacity, capacity
    return capacity, capacity * longest_token if longest_token else None


def _vocab_tokens(folder: ModelFolder) -> list[str]:
    """The tokenizer's vocabulary as far as its files tell (without loading it)."""
    model = folder.tokenizer_json.get("model", {})
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        return list(vocab)
    if isinstance(vocab, list):  # Unigram: [token, score] pairs
        return [item[0] for item in vocab if item]
    if folder.vocab_lines is not None:
        return folder.vocab_lines
    return []


def _special_texts(folder: ModelFolder) -> set[str]:
    added = folder.tokenizer_json.get("added_tokens") or []
    texts = {t.get("content") for t in added if t.get("special")}
    for role in ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token"):
        value = folder.special_token(role, None)
        if value:
            texts.add(value)
    return {t for t in texts if t}


def _dna_tokens(folder: ModelFolder) -> list[str]:
    specials = _special_texts(folder)
    return [t.removeprefix("##") for t in _vocab_tokens(folder)
            if t not in specials and not (t.startswith("[") and t.endswith("]"))
            and not (t.startswith("<") and t.endswith(">"))]


class AutoTokenizerWindows(WindowTokenizer):
    """The folder's tokenizer in batch, or a checked per-base lookup."""

    def __init__(self, hf, name: str, per_base: bool):
        self.hf = hf
        self.name = name
        self.prefix, self.suffix = probe_template(hf)
        self.pad_id = hf.pad_token_id if hf.pad_token_id is not None else 0
        self.mask_id = hf.mask_token_id
        self.vocab_size = len(hf)
        self._backend = getattr(hf, "backend_tokenizer", None) if getattr(hf, "is_fast", False) else None
        self.table = self._per_base_table() if per_base else None
        self._check_splits_dna()

    def _check_splits_dna(self) -> None:
        """A tokenizer that cannot split DNA (a word-level vocabulary of k-mers read whole, say)
        gives every window one token, or unknown tokens only: every window would get the
        same vector. Refuse it, on a probe window, before any window is embedded."""
        probe = (_PROBE[:4] + "GATTACA" + "TTGACA" + "CCGG") * 16  # 336 bp of plain bases
        ids = self.content([probe])
        unk = self.hf.unk_token_id
        if len(ids.ids) <= 1 or (unk is not None and (ids.ids == unk).all()):
            raise InputError(
                f"the folder's tokenizer maps a {len(probe)} bp window to {len(ids.ids)} token(s)"
                + (", all unknown" if len(ids.ids) > 1 else "") + ": it cannot split DNA, so every window "
                "would get the same vector", path=self.hf.name_or_path,
                fix="set encoder.family to the model's family (auto detects DNABERT and NT k-mer vocabularies)")

    def _per_base_table(self) -> np.ndarray | None:
        """Byte -> id, when it reproduces the tokenizer letter for letter; else None."""
        expected = self._tokenizer_ids([_PROBE])[0]
        if len(expected) != len(_PROBE):
            return None
        table = np.full(256, -1, dtype=np.int64)
        for letter, token_id in zip(_PROBE, expected):
            if table[ord(letter)] not in (-1, token_id):
                return None
            table[ord(letter)] = token_id
        unk = self.hf.unk_token_id
        table[table < 0] = unk if unk is not None else self.pad_id
        return table

    def _tokenizer_ids(self, sequences: list[str]) -> list[list[int]]:
        if self._backend is not None:
            return [e.ids for e in self._backend.encode_batch(sequences, add_special_tokens=False)]
        return self.hf(sequences, add_special_tokens=False)["input_ids"]

    def content(self, sequences: list[str]) -> Ragged:
        sequences = [s.upper() for s in sequences]
        if self.table is not None:
            joined = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8)
            return Ragged.from_lengths(self.table[joined], np.fromiter(map(len, sequences), np.int64, len(sequences)))
        return Ragged.from_lists(self._tokenizer_ids(sequences))

    def spans(self, sequences: list[str]) -> TokenSpans:
        """The bases of each token of `content(sequences)`: one base a token on the per-base
        path; otherwise the tokenizer's own character offsets (the same upper-cased text as
        `content`, so the same tokens)."""
        sequences = [s.upper() for s in sequences]
        if self.table is not None:
            return TokenSpans.per_base(sequences)
        if self._backend is not None:
            rows = [e.offsets for e in self._backend.encode_batch(sequences, add_special_tokens=False)]
        else:
            rows = self._slow_offsets(sequences)
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        # [(start, end), ...] per window -> (total, 2)
        pairs = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(rows)), dtype=np.int64,
                            count=2 * int(counts.sum())).reshape(-1, 2)
        return TokenSpans.from_lengths(pairs[:, 0], pairs[:, 1], counts)

    def _slow_offsets(self, sequences: list[str]) -> list[list[tuple[int, int]]]:
        """Offsets from a Python (slow) tokenizer: its offset mapping where it gives one (many
        silently leave it out), else the token texts laid end to end, which holds only where
        every token spells its bases: checked, since an unknown token's text ([UNK]) does not."""
        try:
            encoded = self.hf(sequences, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # transformers 4's Python tokenizers refuse offsets outright
            encoded = {}
        if "offset_mapping" in encoded:
            return [[tuple(pair) for pair in row] for row in encoded["offset_mapping"]]
        rows = []
        for sequence, ids in zip(sequences, self._tokenizer_ids(sequences)):
            widths = [len(token.removeprefix("##")) for token in self.hf.convert_ids_to_tokens(list(ids))]
            ends = list(itertools.accumulate(widths))
            if sum(widths) != len(sequence) or 0 in widths:  # laid end to end, they must tile the window
                raise InputError(
                    f"the folder's tokenizer gives no character offsets, and its tokens' texts do not spell the "
                    f"window ({sum(widths)} letters in {len(ids)} tokens for {len(sequence)} bases; an unknown "
                    "token's text, say): which bases each token stands for is not known",
                    path=self.hf.name_or_path or type(self.hf).__name__,
                    fix="give the model folder a fast tokenizer (tokenizer.json), which tells each token's "
                        "offsets, or set encoder.family to the model's own family (auto detects k-mer vocabularies)")
            rows.append(list(zip([0, *ends[:-1]], ends)))
        return rows


class HfTokenizer(Family):
    name = "hf_tokenizer"
    examples = ("byte-pair: zhihan1996/DNABERT-2-117M, AIRI-Institute/gena-lm-bert-base-t2t, "
                "PoetschLab/GROVER; per-base: LongSafari/hyenadna-*-hf, kuleshov-group/caduceus-*")

    def __init__(self, folder: ModelFolder):
        super().__init__(folder)
        if not self.detect(folder):
            raise InputError("has no tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt/json)",
                             path=folder.path, fix="save the tokenizer into the model folder "
                                                   "(tokenizer.save_pretrained(folder))")
        tokens = _dna_tokens(folder)
        self.per_base = bool(tokens) and all(len(t) == 1 for t in tokens)
        self.longest_token = max((len(t) for t in tokens), default=0)

    @classmethod
    def detect(cls, folder: ModelFolder) -> bool:
        names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")
        return any((folder.path / n).exists() for n in names)

    def n_specials(self) -> int:
        post = self.folder.tokenizer_json.get("post_processor") or {}
        if post.get("type") == "TemplateProcessing":
            return sum(1 for piece in post.get("single", []) if "SpecialToken" in piece)
        if post.get("type") in ("BertProcessing", "RobertaProcessing"):
            return 2
        return 2  # not known from the files: BERT's two, checked again against the loaded tokenizer

    @property
    def tokenizer_name(self) -> str:
        return PER_BASE if self.per_base else BYTE_PAIR

    def window_limits(self):
        return window_limits_for(self.capacity(), self.per_base, self.longest_token)

    def tokenizer(self, trust_remote_code: bool = False) -> AutoTokenizerWindows:
        hf = load_hf_tokenizer(self.folder, trust_remote_code)
        return AutoTokenizerWindows(hf, self.tokenizer_name, self.per_base)
