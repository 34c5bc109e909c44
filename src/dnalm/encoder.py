"""The DNA language model: find it, check it fits the windows, load it.

A model is a local directory or a Hugging Face hub id resolved from the local
cache only: nothing is downloaded at run time. The demo's tiny encoder is
built here too (`build_tiny_encoder`) and saved with `save_pretrained`, so it
is loaded through exactly the code path a real DNABERT checkpoint takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .errors import InputError
from .tokenize import N_SPECIAL, SPECIAL_TOKENS, kmer_vocab, n_tokens

TINY_MAX_POSITIONS = 512  # as DNABERT: windows of up to 515 bp for k = 6
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class EncoderSpec:
    model: str  # local directory or hub id
    revision: str | None = None
    trust_remote_code: bool = False
    precision: str = "auto"  # auto | fp32 | bf16 | fp16


def is_local(model: str) -> bool:
    return Path(model).exists() or not _HUB_ID.match(model)


def resolve(model: str, revision: str | None = None) -> Path:
    """The directory holding the model's files (local path, or hub snapshot in the cache)."""
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


def fingerprint(model_dir: Path) -> str:
    """A content hash of the model: config and weights files (sha256)."""
    digest = hashlib.sha256()
    names = sorted(p.name for p in model_dir.iterdir()
                   if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    for name in names:
        digest.update(name.encode())
        with open(model_dir / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def load_vocab(model_dir: Path) -> list[str]:
    vocab = model_dir / "vocab.txt"
    if not vocab.exists():
        raise InputError("model has no vocab.txt: only DNABERT-style k-mer vocabularies are supported",
                         path=model_dir, fix="use a DNABERT-k checkpoint (k = 3..6)")
    return vocab.read_text().splitlines()


def kmer_size(vocab: list[str], where: object) -> int:
    """k of a DNABERT-k vocab; an error unless it is exactly that vocab in that order."""
    for k in range(3, 7):
        if len(vocab) == N_SPECIAL + 4**k:
            if vocab != kmer_vocab(k):
                break
            return k
    raise InputError(
        f"vocab.txt has {len(vocab)} tokens and is not a DNABERT k-mer vocabulary "
        f"({', '.join(SPECIAL_TOKENS)} then the k-mers in ATCG order)",
        path=where, fix="use a DNABERT-k checkpoint (k = 3..6), whose ids the k-mer tokenizer reproduces")


def check_fits(config, k: int, window_size: int, where: object) -> None:
    """The model must hold a full window's tokens and the k-mer vocab."""
    tokens = n_tokens(window_size, k)
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is not None and tokens > max_pos:
        raise InputError(
            f"a {window_size} bp window gives {tokens} tokens ({window_size - k + 1} {k}-mers + [CLS] + "
            f"[SEP]) but the model takes at most {max_pos} positions",
            path=where, fix=f"set windows.size to at most {max_pos - 2 + k - 1} bp")
    if getattr(config, "vocab_size", N_SPECIAL + 4**k) < N_SPECIAL + 4**k:
        raise InputError(f"the model's vocab_size {config.vocab_size} is smaller than its {k}-mer vocab",
                         path=where, fix="check the checkpoint's config.json")


def preflight(model: str, revision: str | None, window_size: int) -> Path:
    """Cheap checks for DAG-building time: the model resolves offline, its vocab is
    a DNABERT k-mer vocab, and a window fits its positions. Reads two small files
    (no transformers import), so every dry run and cluster job can afford it."""
    model_dir = resolve(model, revision)
    k = kmer_size(load_vocab(model_dir), model_dir / "vocab.txt")
    config = json.loads((model_dir / "config.json").read_text())
    check_fits(SimpleNamespace(**config), k, window_size, model_dir / "config.json")
    return model_dir


def load_encoder(spec: EncoderSpec, window_size: int, device: str):
    """Load the encoder for inference; return (model, k, provenance dict)."""
    # Everything is local by now (resolve() found it): make sure nothing reaches for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    model_dir = resolve(spec.model, spec.revision)
    k = kmer_size(load_vocab(model_dir), model_dir / "vocab.txt")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=spec.trust_remote_code)
    check_fits(config, k, window_size, model_dir / "config.json")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.precision)
    if spec.precision == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype is None:
        raise InputError(f"encoder.precision is {spec.precision!r}", fix="use auto, fp32, bf16 or fp16")
    # A DNABERT checkpoint is a BertForMaskedLM; AutoModel keeps the encoder and
    # drops the MLM head, which transformers reports as unused weights: expected.
    transformers.logging.set_verbosity_error()
    model = AutoModel.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa",
        trust_remote_code=spec.trust_remote_code, add_pooling_layer=False,
    )
    model.eval().to(device)
    provenance = {
        "model": spec.model,
        "model_revision": spec.revision,
        "model_sha256": fingerprint(model_dir),
        "tokenizer": f"dnabert-{k}mer",
        "kmer": k,
        "hidden_size": int(config.hidden_size),
        "precision": str(dtype).removeprefix("torch."),
    }
    return model, k, provenance


def build_tiny_encoder(out_dir: str, *, k: int = 6, hidden: int = 128, layers: int = 2, heads: int = 4,
                       max_positions: int = TINY_MAX_POSITIONS, seed: int = 0) -> Path:
    """A small randomly initialised DNABERT-k-architecture encoder with the real vocab.

    It stands in for a pretrained checkpoint where none can be downloaded; its
    embeddings carry k-mer composition, not learned biology.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    from .io import atomic_dir

    if hidden % heads:
        raise InputError(f"encoder.tiny.attention_heads ({heads}) does not divide encoder.tiny.hidden ({hidden})",
                         fix="pick a number of heads that divides hidden")
    vocab = kmer_vocab(k)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=max_positions, type_vocab_size=2,
    )
    model = BertForMaskedLM(config)
    with atomic_dir(out_dir) as tmp:
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
        # Positional vocab path: as a keyword, transformers 5 silently builds a 5-token vocab.
        tokenizer = BertTokenizer(str(tmp / "vocab.txt"), do_lower_case=False)
        assert len(tokenizer) == len(vocab), f"tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}"
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "dnalm_tiny_encoder.json").write_text(json.dumps(
            {"what": "randomly initialised DNABERT-architecture encoder built by dnalm for the demo/tests",
             "k": k, "hidden": hidden, "layers": layers, "heads": heads, "seed": seed}, indent=2) + "\n")
    return Path(out_dir)
