"""What every encoder family shares: the model folder read offline, the batch of
tokens handed to a model, and the interface a family implements.

A family turns windows (upper-case DNA strings) into token ids. Everything
outside `dnalm.encoders` talks to these classes only, never to k or to a
vocabulary: a new model family adds one module beside this one.

Terms used throughout:
- content tokens: the tokens that stand for the window's bases (k-mers,
  byte-pair pieces, single bases). Specials ([CLS], <eos>, ...) are not content.
- capacity: how many content tokens one model pass holds (the model's
  positions minus the specials the tokenizer adds around every sequence).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import InputError

# Byte -> base code A=0 C=1 G=2 T=3, 4 for anything else; soft-masked (lower-case) bases are bases.
BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    BASE_CODE[ord(_b)] = BASE_CODE[ord(_b.lower())] = _i
BASE_CODE_BYTES = BASE_CODE.tobytes()  # the same table for bytes.translate (`byte_codes`)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Files that define how a model tokenizes (hashed into the identity) and that a
# local model folder hands to the workflow as rule inputs.
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "merges.txt", "vocab.json", "added_tokens.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# config.json keys that give the longest input a model was built for, in the order tried.
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_seq_length", "seq_len", "n_ctx")
# config keys that give the hidden size, in the order tried (BERT/ESM, HyenaDNA/Caduceus, GPT-2, DistilBERT).
HIDDEN_KEYS = ("hidden_size", "d_model", "n_embd", "dim")
# config keys that give the number of layers, and where a weight name says its layer.
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|blocks)\.(\d+)\.")
# Architectures whose absolute positions start after the padding id (RoBERTa, ESM):
# max_position_embeddings counts pad_token_id + 1 slots that no token can use.
_PADDING_OFFSET_TYPES = {"esm", "roberta", "xlm-roberta", "camembert"}


def is_local(model: str) -> bool:
    return Path(model).exists() or not _HUB_ID.match(model)


def resolve(model: str, revision: str | None = None) -> Path:
    """The folder holding the model's files: a local path, or a hub snapshot in the local cache."""
    path = Path(model)
    if path.exists():
        if not (path / "config.json").exists():
            raise InputError("model directory has no config.json", path=path,
                             fix="point encoder.model at a directory written by save_pretrained")
        return path
    if not _HUB_ID.match(model):
        raise InputError("model directory does not exist", path=path,
                         fix="check encoder.model (a local directory, or a hub id like "
                             "zhihan1996/DNA_bert_6 that is in the local Hugging Face cache)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise InputError(
            f"model directory does not exist, and no hub model {model!r} is in the local Hugging Face "
            f"cache ({cache}); this workflow never downloads weights at run time", path=model,
            fix=f"set encoder.model to a local directory written by save_pretrained, or fetch the hub "
                f"model beforehand on a machine with network: `hf download {model}` (same HF_HOME)") from None


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"is not valid JSON ({err})", path=path,
                         fix="restore the file from the model's original folder") from None


@dataclass(frozen=True)
class ModelFolder:
    """A model's files, read without importing torch or transformers (cheap enough
    for every DAG build and every cluster job)."""

    model: str  # as configured: local path or hub id
    path: Path
    revision: str | None = None

    @classmethod
    def open(cls, model: str, revision: str | None = None) -> "ModelFolder":
        return cls(model, resolve(model, revision), revision)

    @cached_property
    def config(self) -> dict:
        return _read_json(self.path / "config.json")

    @cached_property
    def tokenizer_config(self) -> dict:
        return _read_json(self.path / "tokenizer_config.json")

    @cached_property
    def special_tokens_map(self) -> dict:
        return _read_json(self.path / "special_tokens_map.json")

    @cached_property
    def tokenizer_json(self) -> dict:
        return _read_json(self.path / "tokenizer.json")

    @cached_property
    def vocab_lines(self) -> list[str] | None:
        vocab = self.path / "vocab.txt"
        return vocab.read_text().splitlines() if vocab.exists() else None

    def special_token(self, role: str, default: str | None) -> str | None:
        """The configured text of a special token (`cls_token`, `eos_token`, ...); an explicit
        null in the tokenizer files means the tokenizer has none."""
        for source in (self.tokenizer_config, self.special_tokens_map):
            if role in source:
                value = source[role]
                return value.get("content") if isinstance(value, dict) else value
        return default

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def hidden_size(self) -> int | None:
        for key in HIDDEN_KEYS:
            if isinstance(self.config.get(key), int):
                return int(self.config[key])
        return None

    @property
    def positions(self) -> int | None:
        """Tokens one model pass can hold (specials included); None when the config sets no limit."""
        for key in _POSITION_KEYS:
            value = self.config.get(key)
            if isinstance(value, int) and value > 0:
                if self.model_type in _PADDING_OFFSET_TYPES and key == "max_position_embeddings":
                    value -= int(self.config.get("pad_token_id", 1)) + 1
                return value
        return None

    @property
    def remote_code(self) -> dict[str, str]:
        """Classes the folder ships code for (`auto_map` of config.json and tokenizer_config.json)."""
        found = {}
        for source in (self.config, self.tokenizer_config):
            auto_map = source.get("auto_map") or {}
            for key, value in auto_map.items():
                found[key] = value if isinstance(value, str) else ", ".join(v for v in value if v)
        return found

    def tokenizer_files(self) -> list[Path]:
        return sorted(self.path / name for name in TOKENIZER_FILES if (self.path / name).exists())

    def tracked_files(self) -> list[Path]:
        """Files whose change changes the embeddings: config, tokenizer, weights, shipped code."""
        names = {"config.json", *TOKENIZER_FILES}
        return sorted(p for p in self.path.iterdir()
                      if p.is_file() and (p.name in names or p.suffix in WEIGHT_SUFFIXES or p.suffix == ".py"))

    @cached_property
    def tokenizer_sha256(self) -> str:
        return _sha256_files(self.tokenizer_files())

    def check_weights(self) -> None:
        """Cheap checks of the weight files, without torch, for DAG time: each safetensors
        file is whole (its header's JSON parses and its tensors end where the file does), a
        .bin is a zip archive or a legacy pickle, and the checkpoint holds as many layers as
        config.json says. A damaged download is found here, not in the first GPU job (a .bin is read only by
        its container: its tensors are known once torch loads it)."""
        import struct
        import zipfile

        layer_keys = [k for k in _LAYER_COUNT_KEYS if isinstance(self.config.get(k), int)]
        seen_layers: set[int] = set()
        names_known = False
        for path in sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
            size = path.stat().st_size
            fix = "the file is damaged or incomplete: download the model's weight files again"
            if path.suffix == ".bin":  # torch.save's zip archive, or its legacy pickle format
                with open(path, "rb") as fh:
                    legacy = fh.read(1) == b"\x80"
                if not (legacy or zipfile.is_zipfile(path)):
                    raise InputError("is not a readable PyTorch checkpoint (neither a zip archive nor a pickle): it "
                                     "is damaged or truncated", path=path, fix=fix)
                continue
            with open(path, "rb") as fh:
                head = fh.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
                try:
                    if not 0 < length <= size - 8:
                        raise ValueError(f"header length {length}")
                    header = json.loads(fh.read(length))
                except (ValueError, UnicodeDecodeError) as err:
                    raise InputError(f"is not a valid safetensors file ({err})", path=path, fix=fix) from None
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
            if 8 + length + max(ends, default=0) != size:
                raise InputError(f"is truncated or damaged: its header lists {8 + length + max(ends, default=0)} "
                                 f"bytes of tensors, the file has {size}", path=path, fix=fix)
            names_known = True
            seen_layers.update(int(m.group(1)) for m in map(_LAYER_INDEX.search, header) if m)
        if names_known and layer_keys and seen_layers:
            want = int(self.config[layer_keys[0]])
            if len(seen_layers) < want:
                raise InputError(f"the checkpoint holds weights of {len(seen_layers)} layer(s), but config.json "
                                 f"says {layer_keys[0]}: {want}: the missing layers would be random",
                                 path=self.path, fix="download the weight files again, or use the config.json "
                                                     "that came with these weights")

    def weight_names(self) -> list[str] | None:
        """The tensor names of the safetensors weight files (None where a .bin holds the
        weights: its names are known once torch loads it)."""
        import struct

        names: list[str] = []
        for path in sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
            if path.suffix != ".safetensors":
                return None
            with open(path, "rb") as fh:
                length = struct.unpack("<Q", fh.read(8))[0]
                names += [k for k in json.loads(fh.read(length)) if k != "__metadata__"]
        return names

    def weight_files(self) -> list[Path]:
        """config.json and the weight files: what `weights_sha256` hashes."""
        return sorted(p for p in self.path.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)

    def weights_sha256(self) -> str:
        """A content hash of config and weights (reads every weight byte: jobs call it; the DAG
        only through a cache, `workflow.dag.cached_weights_sha256`)."""
        return _sha256_files(self.weight_files())


def byte_codes(sequences: list[str], table: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(codes, lengths): every sequence's bytes mapped through `table` (256 bytes) and
    concatenated, as uint8, with each sequence's length. bytes.translate runs at C speed,
    several times faster than indexing a numpy table with the bytes."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    codes = np.frombuffer("".join(sequences).encode("ascii").translate(table), dtype=np.uint8)
    return codes, lengths


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: starts[i] .. starts[i] + counts[i] - 1 for every i, without a loop."""
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    before = np.cumsum(counts) - counts  # where each run begins in the output
    return np.arange(total, dtype=np.int64) + np.repeat(starts - before, counts)


@dataclass
class Ragged:
    """Token ids of many sequences, concatenated: sequence i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # (total,) int64
    offsets: np.ndarray  # (n + 1,) int64, offsets[0] == 0

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_lengths(cls, ids: np.ndarray, lengths: np.ndarray) -> "Ragged":
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.asarray(ids, dtype=np.int64), offsets)

    @classmethod
    def from_lists(cls, rows) -> "Ragged":
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return cls.from_lengths(ids, lengths)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> "Ragged":
        """Equal-length rows (n, width)."""
        n, width = matrix.shape
        return cls(np.ascontiguousarray(matrix, dtype=np.int64).reshape(-1),
                   np.arange(n + 1, dtype=np.int64) * width)

    def slices(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> "Ragged":
        """A new Ragged whose row j is row(rows[j])[lo[j]:hi[j]] (pieces of rows, in one gather)."""
        starts = self.offsets[rows] + lo
        counts = np.asarray(hi - lo, dtype=np.int64)
        if len(counts) and (counts == counts[0]).all():  # equal pieces: a 2-D gather
            width = int(counts[0])
            ids = self.ids[starts[:, None] + np.arange(width)].reshape(-1)
            return Ragged(ids, np.arange(len(counts) + 1, dtype=np.int64) * width)
        return Ragged.from_lengths(self.ids[ranges(starts, counts)], counts)


@dataclass
class TokenSpans:
    """The bases each content token stands for: token j of window i (flat index offsets[i] + j,
    aligned with `content(sequences)`) covers bases starts[t] .. ends[t] - 1 of its window.

    What maps token states back to bases (annotation at base resolution): overlapping
    k-mers cover k bases each and overlap, non-overlapping k-mers and byte-pair pieces
    tile the window, an <unk> may stand for a whole stretch of letters."""

    starts: np.ndarray  # (total tokens,) int64, 0-based within the window
    ends: np.ndarray  # (total tokens,) int64, exclusive
    offsets: np.ndarray  # (n_windows + 1,) int64, the same offsets as content(sequences)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per window."""
        return np.diff(self.offsets)

    @classmethod
    def from_lengths(cls, starts: np.ndarray, ends: np.ndarray, counts: np.ndarray) -> "TokenSpans":
        """Spans concatenated over windows, `counts[i]` tokens in window i."""
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64), offsets)

    @classmethod
    def per_base(cls, sequences: list[str]) -> "TokenSpans":
        """One token per base: token i covers [i, i+1) of its window."""
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        starts = ranges(np.zeros(len(lengths), dtype=np.int64), lengths)
        return cls.from_lengths(starts, starts + 1, lengths)


@dataclass
class TokenBatch:
    """What a model pass takes, right-padded:
    input_ids       (batch, tokens) int64
    attention_mask  (batch, tokens) int64, 1 = a real token (special or content)
    content_mask    (batch, tokens) bool, True = a token of the sequence itself
    summary_index   (batch,) int64, the position whose state is the window's summary
                    vector ([CLS] where the tokenizer adds one, else the last real token)
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    content_mask: np.ndarray
    summary_index: np.ndarray

    @property
    def padded(self) -> bool:
        return bool((self.attention_mask == 0).any())


class WindowTokenizer:
    """Window strings -> token ids, the way the model folder's own tokenizer does it.

    A family implements `content()`; prefix/suffix are the special ids the folder's
    tokenizer puts around every sequence (read from it, never assumed).
    """

    name: str  # e.g. "dnabert-6mer", recorded in provenance
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    pad_id: int = 0
    mask_id: int | None = None
    vocab_size: int = 0
    # Bases a token shares with its neighbours (k - 1 for overlapping k-mers): masked
    # pretraining hides that many neighbours too, so they cannot give a token away.
    overlap: int = 0

    def content(self, sequences: list[str]) -> Ragged:
        raise NotImplementedError

    def spans(self, sequences: list[str]) -> TokenSpans:
        """The bases each token of `content(sequences)` stands for (same tokens, same order)."""
        raise NotImplementedError(f"{type(self).__name__} ({getattr(self, 'name', '?')}) does not tell the bases "
                                  "its tokens stand for")

    @property
    def n_specials(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def assemble(self, rows: "Ragged | list[np.ndarray]") -> TokenBatch:
        """Put the specials around content rows and right-pad them into one batch (no loop
        over rows: the engine assembles every batch of a shard through here)."""
        ragged = rows if isinstance(rows, Ragged) else Ragged.from_lists(rows)
        n, n_pre, n_suf = len(ragged), len(self.prefix), len(self.suffix)
        lengths = ragged.lengths
        total = lengths + n_pre + n_suf
        width = int(total.max()) if n else 0
        if n and (lengths == lengths[0]).all():
            # The usual case (k-mer windows of one size): whole columns, no scatter.
            length = int(lengths[0])
            ids = np.empty((n, width), dtype=np.int64)
            ids[:, :n_pre] = self.prefix
            ids[:, n_pre : n_pre + length] = ragged.ids.reshape(n, length)
            ids[:, n_pre + length :] = self.suffix
            content = np.zeros((n, width), dtype=bool)
            content[:, n_pre : n_pre + length] = True
            attention = np.ones((n, width), dtype=np.int64)
        else:
            ids = np.full((n, width), self.pad_id, dtype=np.int64)
            content = np.zeros((n, width), dtype=bool)
            row = np.repeat(np.arange(n), lengths)
            column = n_pre + ranges(np.zeros(n, dtype=np.int64), lengths)  # n_pre + position in its row
            ids[row, column] = ragged.ids
            content[row, column] = True
            ids[:, :n_pre] = self.prefix
            everyone = np.arange(n)
            for j, special in enumerate(self.suffix):
                ids[everyone, n_pre + lengths + j] = special
            attention = (np.arange(width)[None, :] < total[:, None]).astype(np.int64)
        summary = np.zeros(n, dtype=np.int64) if n_pre else np.maximum(total - 1, 0)
        return TokenBatch(ids, attention, content, summary)

    def encode(self, sequences: list[str]) -> TokenBatch:
        """input_ids, attention_mask, content_mask (and the summary position) of each sequence."""
        return self.assemble(self.content(sequences))


class Family:
    """One family of DNA language models: how to recognise its folder, how much
    sequence fits one pass, and its tokenizer. Subclasses live one per module."""

    name: ClassVar[str]
    # What users know the family by, for messages and the README table.
    examples: ClassVar[str] = ""

    def __init__(self, folder: ModelFolder):
        self.folder = folder

    @classmethod
    def detect(cls, folder: ModelFolder) -> bool:
        raise NotImplementedError

    # --- offline facts (no torch, no transformers) ---------------------------------
    def n_specials(self) -> int:
        """Special tokens around each sequence, as far as the folder's files tell."""
        return 2

    @property
    def tokenizer_name(self) -> str:
        raise NotImplementedError

    def capacity(self) -> int | None:
        """Content tokens one model pass holds; None without a limit."""
        positions = self.folder.positions
        return None if positions is None else positions - self.n_specials()

    def window_limits(self) -> tuple[int | None, int | None]:
        """(always_fits, can_fit): a window up to `always_fits` bp is one model pass
        whatever its bases; one longer than `can_fit` bp never is. Between the two the
        bases decide (N runs, byte-pair pieces): such windows are embedded in several
        passes. Families with one token count per length give the same number twice."""
        raise NotImplementedError

    # --- runtime -------------------------------------------------------------------
    def tokenizer(self, trust_remote_code: bool = False) -> WindowTokenizer:
        raise NotImplementedError


def probe_template(hf_tokenizer, probe: str = "ACGTACGTACGTACGTACGTACGT") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special ids a Hugging Face tokenizer puts before and after a sequence.

    Read from the tokenizer itself (with and without special tokens) rather than
    assumed: DNABERT adds [CLS] ... [SEP], an ESM tokenizer <cls> and maybe <eos>,
    per-base tokenizers sometimes only a trailing [SEP].
    """
    full = list(hf_tokenizer(probe, add_special_tokens=True)["input_ids"])
    body = list(hf_tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return tuple(full[:start]), tuple(full[start + len(body):])
    raise RuntimeError(f"cannot find the sequence's tokens {body} inside {full}")


def load_hf_tokenizer(folder: ModelFolder, trust_remote_code: bool):
    """The folder's own tokenizer through AutoTokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(folder.path, trust_remote_code=trust_remote_code)
    except Exception as err:  # the folder's tokenizer is unusable: say which and why
        raise InputError(f"the model's tokenizer does not load ({type(err).__name__}: {err})", path=folder.path,
                         fix="check the tokenizer files (tokenizer.json / vocab.txt / tokenizer_config.json); "
                             "if the folder ships its own tokenizer code, set encoder.trust_remote_code: true"
                         ) from None

