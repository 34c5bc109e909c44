"""One token per base, HyenaDNA's CharacterTokenizer (and Caduceus's CaduceusTokenizer) without its code.

Both ship their tokenizer as code (tokenizer_config.json auto_map -> tokenization_hyena.
CharacterTokenizer / tokenization_caduceus.CaduceusTokenizer) with no vocabulary file: the
vocabulary is fixed by that code and the config's `characters` list:

    [CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6, then characters[i] = 7 + i

(A C G T N = 7..11 on the hub). A sequence becomes its letters then [SEP]: no [CLS]. Any
letter outside `characters` is [UNK]. HyenaDNA's tokenizer splits the text as it is, so a
lower-case base is [UNK] there; Caduceus's upper-cases first. This family reproduces both
through one 256-entry byte table, no loop over bases, and never runs the shipped code.
The published tokenizers pad on the left; batches here are right-padded, which the causal
model's real tokens do not see.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import InputError
from .base import Family, ModelFolder, Ragged, TokenSpans, WindowTokenizer

SPECIALS = ["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"]  # ids 0..6
SEP, MASK, PAD, UNK = 1, 3, 4, 6
HUB_CHARACTERS = ["A", "C", "G", "T", "N"]
# tokenizer code module -> whether its _tokenize upper-cases the text first
_UPPER_CASES = {"tokenization_hyena": False, "tokenization_caduceus": True}


def _tokenizer_module(tokenizer_config: dict) -> str | None:
    """The module of tokenizer_config.json's AutoTokenizer auto_map, when it is a known character tokenizer."""
    value = (tokenizer_config.get("auto_map") or {}).get("AutoTokenizer")
    for ref in [value] if isinstance(value, str) else value or []:
        if ref:
            module, _, cls = ref.split("--")[-1].rpartition(".")
            if (module, cls) in (("tokenization_hyena", "CharacterTokenizer"),
                                 ("tokenization_caduceus", "CaduceusTokenizer")):
                return module
    return None


def character_table(characters: list[str], upper_cases: bool) -> np.ndarray:
    """Byte -> id as the published tokenizer gives it: 7 + index for each character, else [UNK]."""
    table = np.full(256, UNK, dtype=np.int64)
    for i, ch in enumerate(characters):
        if len(ch) == 1 and ord(ch) < 256:
            table[ord(ch)] = 7 + i
    if upper_cases:  # every byte whose upper case is a character maps as that character
        for byte in range(256):
            upper = chr(byte).upper()
            if len(upper) == 1 and upper in characters and ord(upper) < 256:
                table[byte] = table[ord(upper)]
    return table


class CharacterWindows(WindowTokenizer):
    name = "per-base"
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = (SEP,)
    pad_id = PAD
    mask_id = MASK

    def __init__(self, characters: list[str], upper_cases: bool):
        self.table = character_table(characters, upper_cases)
        self.vocab_size = len(SPECIALS) + len(characters)

    def content(self, sequences: list[str]) -> Ragged:
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        joined = np.frombuffer("".join(sequences).encode("latin-1"), dtype=np.uint8)
        return Ragged.from_lengths(self.table[joined], lengths)

    def spans(self, sequences: list[str]) -> TokenSpans:
        """One token per letter, [UNK] included: token i covers base i."""
        return TokenSpans.per_base(sequences)


class Character(Family):
    name = "character"
    examples = "LongSafari/hyenadna-*-seqlen-hf, kuleshov-group/caduceus-*"

    def __init__(self, folder: ModelFolder):
        super().__init__(folder)
        module = _tokenizer_module(folder.tokenizer_config)
        characters = folder.tokenizer_config.get("characters", HUB_CHARACTERS if module else None)
        if not isinstance(characters, list) or not characters or not all(isinstance(c, str) for c in characters):
            raise InputError("tokenizer_config.json is not a CharacterTokenizer's (no `characters` list and no "
                             "auto_map to tokenization_hyena.CharacterTokenizer)",
                             path=folder.path / "tokenizer_config.json",
                             fix="use a HyenaDNA/Caduceus folder, or set encoder.family to auto")
        self.characters = characters
        self.upper_cases = _UPPER_CASES.get(module, False)

    @classmethod
    def detect(cls, folder: ModelFolder) -> bool:
        config = folder.tokenizer_config
        if _tokenizer_module(config):
            return True
        return (isinstance(config.get("characters"), list)
                and config.get("tokenizer_class") in ("CharacterTokenizer", "CaduceusTokenizer"))

    def n_specials(self) -> int:
        return 1  # [SEP] after the bases

    @property
    def tokenizer_name(self) -> str:
        return "per-base"

    def window_limits(self):
        capacity = self.capacity()
        return capacity, capacity

    def tokenizer(self, trust_remote_code: bool = False) -> CharacterWindows:
        return CharacterWindows(self.characters, self.upper_cases)


def hub_tokenizer_files(model_max_length: int, characters: list[str] | None = None) -> dict[str, str]:
    """tokenizer_config.json and special_tokens_map.json as a LongSafari/hyenadna-*-hf repo holds them.
    The roles (bos_token, ...) live in special_tokens_map.json only: the published __init__ passes
    them itself, so tokenizer_config.json keys of those names would be passed twice."""
    characters = characters or HUB_CHARACTERS
    added = {str(i): {"content": token, "lstrip": token == "[MASK]", "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for i, token in enumerate(SPECIALS) if token != "[RESERVED]"}
    roles = {"bos_token": "[BOS]", "cls_token": "[CLS]", "eos_token": "[SEP]", "mask_token": "[MASK]",
             "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"}
    config = {"added_tokens_decoder": added,
              "auto_map": {"AutoTokenizer": ["tokenization_hyena.CharacterTokenizer", None]},
              "characters": characters, "clean_up_tokenization_spaces": True,
              "model_max_length": model_max_length, "padding_side": "left", "tokenizer_class": "CharacterTokenizer"}
    special = {role: {"content": text, "lstrip": text == "[MASK]", "normalized": False, "rstrip": False,
                      "single_word": False} for role, text in roles.items()}
    return {"tokenizer_config.json": json.dumps(config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(special, indent=2) + "\n"}
