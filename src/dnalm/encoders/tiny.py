"""Small randomly initialised models of every family, built here because no weights
can be downloaded where the project is built and tested.

Each is saved with `save_pretrained` (safetensors) beside its tokenizer files, so
it loads through exactly the code path a hub checkpoint of its family takes. Their
embeddings carry sequence composition, not learned biology.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError

TINY_FAMILIES = ("dnabert", "nucleotide_transformer", "bpe", "per_base")


def tiny_positions(family: str) -> int:
    """Positions of a tiny model, specials included: BERT's 512, or 1,024 for one token per base."""
    return 1024 if family == "per_base" else 512


def save_tiny(out_dir, family: str, make_model, make_tokenizer, seed: int, shape: dict) -> Path:
    """Seed, build, and write model + tokenizer into `out_dir` atomically."""
    import torch

    from ..io import atomic_dir

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    model = make_model()
    with atomic_dir(out_dir) as tmp:
        tokenizer = make_tokenizer(tmp)
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "dnalm_tiny_encoder.json").write_text(json.dumps(
            {"what": f"randomly initialised {family} encoder built by dnalm for the demo and tests",
             "family": family, "seed": seed, **shape}, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


def build_tiny_encoder(out_dir, family: str = "dnabert", *, kmer: int = 6, hidden: int = 128, layers: int = 2,
                       heads: int = 4, seed: int = 0, positions: int | None = None,
                       train_fasta: str | None = None) -> Path:
    """One tiny model of `family` (dnabert, nucleotide_transformer, bpe, per_base); positions
    default to 512 (1,024 for per-base, so that a 512-bp window and its [SEP] fit)."""
    from . import dnabert, hf_tokenizer, nucleotide_transformer

    positions = positions or tiny_positions(family)
    if hidden % heads:
        raise InputError(f"encoder.tiny.attention_heads ({heads}) does not divide encoder.tiny.hidden ({hidden})",
                         fix="pick a number of heads that divides hidden")
    shape = dict(hidden=hidden, layers=layers, heads=heads, positions=positions, seed=seed)
    if family == "dnabert":
        return dnabert.build_tiny(out_dir, k=kmer, **shape)
    if family == "nucleotide_transformer":
        return nucleotide_transformer.build_tiny(out_dir, k=kmer, **shape)
    if family == "bpe":
        if not train_fasta:
            raise InputError("a tiny byte-pair encoder needs a FASTA to train its tokenizer on",
                             fix="give train_fasta (the workflow uses the run's own FASTA)")
        return hf_tokenizer.build_tiny_bpe(out_dir, train_fasta=train_fasta, **shape)
    if family == "per_base":
        return hf_tokenizer.build_tiny_per_base(out_dir, **shape)
    raise InputError(f"unknown tiny encoder family {family!r}", fix=f"use one of {', '.join(TINY_FAMILIES)}")


def tiny_window_limits(family: str, kmer: int, positions: int | None = None) -> tuple[int | None, int | None]:
    """What `Family.window_limits` will say of a tiny model before it is built (the DAG
    is built before the model). A trained byte-pair vocab's longest token is not known
    yet, so only its guaranteed length is."""
    from . import dnabert, hf_tokenizer, nucleotide_transformer

    positions = positions or tiny_positions(family)
    if family == "dnabert":  # [CLS] ... [SEP]
        return dnabert.window_limits_for(positions - 2, kmer)
    if family == "nucleotide_transformer":  # <cls> ... <eos>
        return nucleotide_transformer.window_limits_for(positions - 2, kmer)
    if family == "per_base":  # ... [SEP]
        return hf_tokenizer.window_limits_for(positions - 1, per_base=True, longest_token=1)
    return hf_tokenizer.window_limits_for(positions - 2, per_base=False, longest_token=0)  # [CLS] ... [SEP]


def tiny_identity(tiny: dict) -> dict:
    """The identity keys of a tiny model known from its config alone (the DAG needs them
    before the model is built)."""
    from . import dnabert, hf_tokenizer, nucleotide_transformer

    k = tiny.get("kmer", 6)
    family, tokenizer = {
        "dnabert": ("dnabert", dnabert.tokenizer_name_for(k)),
        "nucleotide_transformer": ("nucleotide_transformer", nucleotide_transformer.tokenizer_name_for(k)),
        "bpe": ("hf_tokenizer", hf_tokenizer.BYTE_PAIR),
        "per_base": ("hf_tokenizer", hf_tokenizer.PER_BASE),
    }[tiny["family"]]
    return {"family": family, "tokenizer": tokenizer, "hidden_size": tiny["hidden"]}
