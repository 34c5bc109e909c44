"""The encoder layer: one interface over every family of DNA language model.

Everything outside this package talks to what is defined here, never to k or to a
vocabulary:

- `preflight(spec, window_size)`: offline checks from the model folder's files (no
  torch), for DAG-building time: the folder resolves, the family is known, remote code
  is allowed when shipped, the weights are whole, and a window fits the model.
- `Encoder.load(spec, window_size, window_stride, device)`: model + tokenizer +
  identity for a job; `encoder.tokenizer.encode(windows)` gives input ids,
  attention mask and content mask.
- `identify(family, ...)`: the one constructor of an `identity.EncoderIdentity` from a
  model folder (a job's loaded encoder, a written fine-tuned folder, the DAG's checks).

Families, one module each: dnabert (overlapping k-mers), nucleotide_transformer
(non-overlapping k-mers), character (HyenaDNA's and Caduceus's character tokenizers,
which are custom code, reproduced natively), hf_tokenizer (byte-pair or per-base,
through the folder's own tokenizer). The family is detected from the folder or set by
`encoder.family`. Models whose published code breaks under transformers 5 run through
native ports (`native`), chosen from config.json apart from the tokenizer family. `tiny`
builds small random models of every family (demo, tests).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..errors import InputError
from ..identity import EmbeddingSpace, EncoderIdentity
from ..settings import EncoderSpec
from .base import (
    HIDDEN_KEYS,
    Family,
    ModelFolder,
    Ragged,
    TokenBatch,
    TokenSpans,
    WindowTokenizer,
    is_local,
    resolve,
)
from .character import Character
from .dnabert import Dnabert
from .hf_tokenizer import HfTokenizer
from .nucleotide_transformer import NucleotideTransformer

# Detection order: the most specific vocabulary first, the generic tokenizer last.
FAMILIES: dict[str, type[Family]] = {f.name: f for f in (Dnabert, NucleotideTransformer, Character, HfTokenizer)}
STRANDS = ("single", "both")

__all__ = ["FAMILIES", "STRANDS", "Encoder", "Family", "ModelFolder", "Ragged", "TokenBatch", "TokenSpans",
           "WindowTokenizer", "family_for", "identify", "is_local", "preflight", "resolve", "window_fit"]


def identify(family: Family, model: str, revision: str | None = None, hash_weights: bool = True,
             hidden_size: int | None = None) -> EncoderIdentity:
    """What the model in `family.folder` is. `hash_weights` reads every weight byte (jobs);
    without it (DAG time) the weights' hash is unknown. `hidden_size`: the loaded model's,
    where config.json does not say it."""
    folder = family.folder
    return EncoderIdentity(family=family.name, model=model, tokenizer=family.tokenizer_name,
                           tokenizer_sha256=folder.tokenizer_sha256, hidden_size=folder.hidden_size or hidden_size,
                           model_revision=revision, model_sha256=folder.weights_sha256() if hash_weights else None)


def family_for(folder: ModelFolder, requested: str = "auto") -> Family:
    """The folder's family: detected from its files, or the one the config names."""
    if requested != "auto":
        if requested not in FAMILIES:
            raise InputError(f"encoder.family is {requested!r}", fix=f"use auto or one of {', '.join(FAMILIES)}")
        fits = next((name for name, f in FAMILIES.items() if f.detect(folder)), None)
        if requested == HfTokenizer.name and fits not in (None, HfTokenizer.name):
            # The generic tokenizer would read a k-mer vocabulary as words: a whole window
            # becomes one [UNK], and every window the same vector.
            raise InputError(
                f"encoder.family is hf_tokenizer, but the folder's vocabulary is a {fits} k-mer vocabulary, which "
                "the folder's own tokenizer cannot split a window with (every window would be one unknown "
                "token and get the same vector)", path=folder.path, fix=f"set encoder.family: {fits} (or auto)")
        return FAMILIES[requested](folder)
    for family in FAMILIES.values():
        if family.detect(folder):
            return family(folder)
    raise InputError(
        "no encoder family recognises this model folder (no DNABERT or NT k-mer vocab.txt, no tokenizer files)",
        path=folder.path, fix="save the model's tokenizer into the folder (tokenizer.save_pretrained), or set "
                              f"encoder.family to one of {', '.join(FAMILIES)}")


def window_fit(window_size: int, limits: tuple[int | None, int | None], positions: int | None, tokenizer: str,
               where: object) -> str:
    """Stop when a window can never fit one model pass; return a note (or "") when
    only some windows will need several passes."""
    always, most = limits
    if most is not None and window_size > most:
        raise InputError(
            f"a {window_size} bp window does not fit the model: it takes at most {positions} positions, which "
            f"with {tokenizer} tokens hold at most {most} bp", path=where,
            fix=f"set windows.size to at most {most} bp"
                + (f" (up to {always} bp always fits in one pass)" if always is not None and always < most else ""))
    if always is not None and window_size > always:
        return (f"note: {tokenizer} token counts depend on the bases; a {window_size} bp window is one model pass "
                f"for most sequence, but windows with many N (or, for byte-pair tokens, unusual sequence) may need "
                f"more than the model's {positions} positions and are then embedded in several passes (counted "
                f"in each embedding job's log; up to {always} bp is always one pass)")
    return ""


MLM_HEAD_WEIGHTS = ("lm_head.", "cls.predictions.")  # BERT's and ESM's masked-LM heads


def masked_lm_head_in(folder: ModelFolder) -> bool:
    """Whether a model folder's checkpoint carries a masked-LM head (without torch): a native
    port's published form says so; otherwise its safetensors hold BERT's or ESM's LM-head
    weights (a .bin checkpoint: its architectures say *ForMaskedLM). Loading a model without
    one as a masked LM would give it a random head, and a score of noise."""
    from .loading import native_form

    form = native_form(folder)
    if form is not None:
        return form.has_lm_head
    names = folder.weight_names()
    if names is None:
        return any(str(a).endswith("ForMaskedLM") for a in folder.config.get("architectures") or [])
    return any(name.startswith(MLM_HEAD_WEIGHTS) or f".{MLM_HEAD_WEIGHTS[0]}" in name for name in names)


def preflight(spec: EncoderSpec, window_size: int, masked_lm: bool = False) -> tuple[Family, str]:
    """DAG-time checks (reads small files only, imports no torch): (family, note).
    `masked_lm`: the run also pretrains the model as a masked LM."""
    from .loading import check_remote_code, native_form

    if spec.strands not in STRANDS:
        raise InputError(f"encoder.strands is {spec.strands!r}", fix="use single or both")
    folder = ModelFolder.open(spec.model, spec.revision)
    check_remote_code(folder, spec.trust_remote_code)
    folder.check_weights()
    form = native_form(folder)
    if masked_lm and form is not None and not form.has_lm_head:
        raise InputError(f"{form.published_as} is not a masked language model (its checkpoint has no masked-LM "
                         "head), so pretrain cannot train it", path=folder.path / "config.json",
                         fix="set pretrain.activate: false (fine-tuning and embedding work as they are)")
    family = family_for(folder, spec.family)
    note = window_fit(window_size, family.window_limits(), folder.positions, family.tokenizer_name,
                      folder.path / "config.json")
    return family, note


@dataclass
class Encoder:
    """A loaded model, its window tokenizer, what it is (`identity`) and the space of the
    window vectors it makes (`space`: the identity with the windows, strands, arithmetic)."""

    family: Family
    tokenizer: WindowTokenizer
    model: object  # torch.nn.Module
    identity: EncoderIdentity
    space: EmbeddingSpace
    capacity: int | None  # content tokens one pass holds (None: no limit)
    takes_attention_mask: bool = True
    device: str = "cpu"
    # Passes per model call at most (None: as many as a batch's token budget holds). An int8
    # encoder scales the activations of one call together, so a pass's vector would depend
    # on the passes beside it: int8 runs one pass a call (no slower on a CPU).
    passes_per_call: int | None = None

    @classmethod
    def load(cls, spec: EncoderSpec, window_size: int, window_stride: int, device: str = "cpu",
             masked_lm: bool = False, hash_weights: bool = True) -> "Encoder":
        from ..compute import encoder_arithmetic
        from .loading import describe_load, load_model, quantize_int8, takes_attention_mask, torch_dtype

        family, _ = preflight(spec, window_size)
        folder = family.folder
        print(describe_load(folder, spec.trust_remote_code), file=sys.stderr)  # the job's log: which code runs
        tokenizer = family.tokenizer(spec.trust_remote_code)
        arithmetic = encoder_arithmetic(spec.precision, device)
        dtype = torch_dtype(arithmetic)
        model = load_model(folder, trust_remote_code=spec.trust_remote_code, dtype=dtype, masked_lm=masked_lm)
        model.eval().to(device)
        if arithmetic == "int8":
            model = quantize_int8(model)
        positions = folder.positions
        capacity = None if positions is None else positions - tokenizer.n_specials
        if capacity is not None and capacity < 1:
            raise InputError(f"the model takes {positions} positions, no more than its {tokenizer.n_specials} "
                             "special tokens", path=folder.path / "config.json", fix="check max_position_embeddings")
        identity = identify(family, spec.model, spec.revision, hash_weights, _hidden(model))
        space = EmbeddingSpace(identity, window_size, window_stride, spec.strands,
                               "int8" if arithmetic == "int8" else str(dtype).removeprefix("torch."))
        return cls(family, tokenizer, model, identity, space, capacity, takes_attention_mask(model), device,
                   1 if arithmetic == "int8" else None)


def masked_lm_logits(model, input_ids, attention_mask, masked):
    """Vocabulary logits (masked tokens, vocab) at the `masked` positions (batch, tokens) of a
    masked-LM model, in row-major order. The LM head (BERT's `cls`, ESM's `lm_head`) is run
    on those positions, not on every token: with a 4,101-token k-mer vocabulary it costs more
    than a small encoder itself."""
    if hasattr(model, "lm_logits"):  # a native port: encoder and LM head apart
        return model.lm_logits(model.encode(input_ids, attention_mask)[masked])
    base = getattr(model, "base_model", None)
    heads = [m for _, m in model.named_children() if m is not base]
    if base is not None and base is not model and len(heads) == 1:
        hidden = base(input_ids=input_ids, attention_mask=attention_mask)[0]  # (batch, tokens, hidden)
        return heads[0](hidden[masked])
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[masked]


def _hidden(model) -> int | None:
    config = getattr(model, "config", None)
    for key in HIDDEN_KEYS:  # as ModelFolder.hidden_size, from the loaded config's defaults too
        if isinstance(getattr(config, key, None), int):
            return int(getattr(config, key))
    return None
