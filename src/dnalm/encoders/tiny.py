"""Small randomly initialised models of every family, built here because no weights
can be downloaded where the project is built and tested.

Each is saved with `save_pretrained` (safetensors) beside its tokenizer files, so
it loads through exactly the code path a hub checkpoint of its family takes. Their
embeddings carry sequence composition, not learned biology.

This module reads the family modules (their vocabularies, names and limits); they never
import it, so what a family is does not depend on how a tiny one is built.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..identity import EncoderIdentity
from ..settings import TinyEncoder
from . import dnabert, hf_tokenizer, nucleotide_transformer

TINY_FAMILIES = ("dnabert", "nucleotide_transformer", "bpe", "per_base")


def tiny_positions(family: str) -> int:
    """Positions of a tiny model, specials included: BERT's 512, or 1,024 for one token per base."""
    return 1024 if family == "per_base" else 512


def save_tiny(out_dir, family: str, make_model, make_tokenizer, seed: int, shape: dict) -> Path:
    """Seed, build, and write model + tokenizer into `out_dir` atomically."""
    import torch
    from transformers.utils import logging as hf_logging

    from ..io import atomic_dir

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
    positions = positions or tiny_positions(family)
    if hidden % heads:
        raise InputError(f"encoder.tiny.attention_heads ({heads}) does not divide encoder.tiny.hidden ({hidden})",
                         fix="pick a number of heads that divides hidden")
    shape = dict(hidden=hidden, layers=layers, heads=heads, positions=positions, seed=seed)
    if family == "dnabert":
        return build_tiny_dnabert(out_dir, k=kmer, **shape)
    if family == "nucleotide_transformer":
        return build_tiny_nucleotide_transformer(out_dir, k=kmer, **shape)
    if family == "bpe":
        if not train_fasta:
            raise InputError("a tiny byte-pair encoder needs a FASTA to train its tokenizer on",
                             fix="give train_fasta (the workflow uses the run's own FASTA)")
        return build_tiny_bpe(out_dir, train_fasta=train_fasta, **shape)
    if family == "per_base":
        return build_tiny_per_base(out_dir, **shape)
    raise InputError(f"unknown tiny encoder family {family!r}", fix=f"use one of {', '.join(TINY_FAMILIES)}")


def tiny_window_limits(family: str, kmer: int, positions: int | None = None) -> tuple[int | None, int | None]:
    """What `Family.window_limits` will say of a tiny model before it is built (the DAG
    is built before the model). A trained byte-pair vocab's longest token is not known
    yet, so only its guaranteed length is."""
    positions = positions or tiny_positions(family)
    if family == "dnabert":  # [CLS] ... [SEP]
        return dnabert.window_limits_for(positions - 2, kmer)
    if family == "nucleotide_transformer":  # <cls> ... <eos>
        return nucleotide_transformer.window_limits_for(positions - 2, kmer)
    if family == "per_base":  # ... [SEP]
        return hf_tokenizer.window_limits_for(positions - 1, per_base=True, longest_token=1)
    return hf_tokenizer.window_limits_for(positions - 2, per_base=False, longest_token=0)  # [CLS] ... [SEP]


def planned_identity(tiny: TinyEncoder) -> EncoderIdentity:
    """The identity of a tiny model as far as its settings tell (the DAG needs it before the
    model is built): family, tokenizer and hidden size; the rest is known once it exists."""
    family, tokenizer = {
        "dnabert": ("dnabert", dnabert.tokenizer_name_for(tiny.kmer)),
        "nucleotide_transformer": ("nucleotide_transformer", nucleotide_transformer.tokenizer_name_for(tiny.kmer)),
        "bpe": ("hf_tokenizer", hf_tokenizer.BYTE_PAIR),
        "per_base": ("hf_tokenizer", hf_tokenizer.PER_BASE),
    }[tiny.family]
    return EncoderIdentity(family=family, model=None, tokenizer=tokenizer, hidden_size=tiny.hidden)


# ------------------------------------------------------------------ the builders


def build_tiny_dnabert(out_dir, *, k: int = 6, hidden: int = 128, layers: int = 2, heads: int = 4,
                       positions: int = 512, seed: int = 0):
    """A small random BERT with DNABERT-k's real vocabulary, saved like a hub checkpoint."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = dnabert.kmer_vocab(k)

    def tokenizer(folder):
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        # Positional vocab path: as a keyword, transformers 5 silently builds a 5-token vocab.
        tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False)
        assert len(tok) == len(vocab), f"tokenizer has {len(tok)} tokens, expected {len(vocab)}"
        return tok

    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=positions, type_vocab_size=2)
    return save_tiny(out_dir, "dnabert", lambda: BertForMaskedLM(config), tokenizer, seed,
                     {"k": k, "hidden": hidden, "layers": layers, "heads": heads})


def build_tiny_nucleotide_transformer(out_dir, *, k: int = 6, hidden: int = 128, layers: int = 2, heads: int = 4,
                                      positions: int = 512, seed: int = 0):
    """A small random ESM masked LM with an NT-style vocabulary and EsmTokenizer."""
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    vocab = nucleotide_transformer.nt_vocab(k)

    def tokenizer(folder):
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = EsmTokenizer(str(folder / "vocab.txt"))
        assert len(tok) == len(vocab)
        return tok

    config = EsmConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=4 * hidden,
                       max_position_embeddings=positions + 2,  # positions start after the pad id (1)
                       pad_token_id=1, mask_token_id=2, position_embedding_type="absolute",
                       token_dropout=False, emb_layer_norm_before=False)
    return save_tiny(out_dir, "nucleotide_transformer", lambda: EsmForMaskedLM(config), tokenizer, seed,
                     {"k": k, "hidden": hidden, "layers": layers, "heads": heads})


def _fast(tokenizer):
    """A `tokenizers` tokenizer as a transformers tokenizer (saved as tokenizer.json + config)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _bert(vocab_size: int, hidden: int, layers: int, heads: int, positions: int, pad_id: int):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=positions, type_vocab_size=2, pad_token_id=pad_id)
    return lambda: BertForMaskedLM(config)


# BERT's five specials, as the byte-pair and per-base tiny tokenizers use them.
_SPECIALS = dnabert.SPECIAL_TOKENS


def build_tiny_bpe(out_dir, *, train_fasta: str, vocab_size: int = 512, hidden: int = 128, layers: int = 2,
                   heads: int = 4, positions: int = 512, seed: int = 0, max_bases: int = 2_000_000):
    """A small random BERT with a byte-pair tokenizer trained (with `tokenizers`) on a real genome."""
    import pysam
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    def chunks():
        seen = 0
        with pysam.FastxFile(str(train_fasta)) as records:
            for record in records:
                seq = record.sequence.upper()
                for lo in range(0, len(seq), 1000):  # 1-kb "sentences", as DNABERT-2 trained on reads
                    yield seq[lo : lo + 1000]
                    seen += 1000
                    if seen >= max_bases:
                        return

    def tokenizer(folder):
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS,
                                      initial_alphabet=list("ACGTN"), show_progress=False)
        tok.train_from_iterator(chunks(), trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        return _fast(tok)

    return save_tiny(out_dir, "hf_tokenizer", _bert(vocab_size, hidden, layers, heads, positions, 0), tokenizer,
                     seed, {"tokenizer": hf_tokenizer.BYTE_PAIR, "trained_on": str(train_fasta),
                            "vocab_size": vocab_size, "hidden": hidden, "layers": layers, "heads": heads})


def build_tiny_per_base(out_dir, *, hidden: int = 128, layers: int = 2, heads: int = 4, positions: int = 512,
                        seed: int = 0):
    """A small random BERT with one token per base. Like HyenaDNA's tokenizer it puts no
    token before the sequence and [SEP] after it, so no [CLS] can be assumed."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(_SPECIALS + list("ACGTN"))}

    def tokenizer(folder):
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tok.post_processor = processors.TemplateProcessing(single="$A [SEP]", pair="$A [SEP] $B:1 [SEP]:1",
                                                           special_tokens=[("[SEP]", vocab["[SEP]"])])
        return _fast(tok)

    return save_tiny(out_dir, "hf_tokenizer", _bert(len(vocab), hidden, layers, heads, positions, 0), tokenizer,
                     seed, {"tokenizer": hf_tokenizer.PER_BASE, "hidden": hidden, "layers": layers, "heads": heads})
