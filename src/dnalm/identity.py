"""What a set of window vectors was made with, and when two such records disagree.

Two records, one inside the other:
- `EncoderIdentity`: the encoder itself (family, model, its revision and weights hash,
  tokenizer and its files' hash, hidden size);
- `EmbeddingSpace`: that encoder as a run applied it (window size and stride, strands,
  arithmetic). Vectors of one space can be compared, pooled and classified together.

Provenance (every embedding Parquet file) and a trained head's head.json store the space
flat (`as_dict`); `EmbeddingSpace.from_dict` reads either back. `differences` is the one
comparison: a head against the vectors it is applied to (`learning.heads.check_compatible`,
and before any job in the workflow's DAG checks), where a key either record does not know
(None: e.g. the weights' hash, known only once a job has read the weights) is not
compared; and the shards of one run against each other
(`embedding.shards.check_same_origin`), which must agree on everything, arithmetic too.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class EncoderIdentity:
    family: str | None
    model: str | None
    tokenizer: str | None
    tokenizer_sha256: str | None = None
    hidden_size: int | None = None
    model_revision: str | None = None
    model_sha256: str | None = None  # hashed in jobs (reads the weights), None at DAG time


@dataclass(frozen=True)
class EmbeddingSpace:
    encoder: EncoderIdentity
    window_size: int | None
    window_stride: int | None
    strands: str | None = "single"
    precision: str | None = None  # the arithmetic used (float32, bfloat16), known in jobs

    # Keys two spaces must agree on for a head of one to read vectors of the other. The
    # arithmetic may differ there (a head trained on fp32 vectors reads bf16 ones); the
    # shards of one run must agree on it too (`differences(..., within_run=True)`).
    COMPATIBILITY = ("family", "tokenizer", "tokenizer_sha256", "hidden_size", "window_size", "window_stride",
                     "strands", "model_sha256")

    def as_dict(self) -> dict:
        """Flat, as provenance and head.json store it."""
        flat = asdict(self.encoder)
        flat.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "encoder"})
        return flat

    @classmethod
    def from_dict(cls, flat: dict) -> "EmbeddingSpace":
        """A space from a flat record (provenance, head.json); keys it lacks are None (unknown)."""
        encoder = EncoderIdentity(**{f.name: flat.get(f.name) for f in fields(EncoderIdentity)})
        return cls(encoder, **{f.name: flat.get(f.name) for f in fields(cls) if f.name != "encoder"})

    def with_encoder(self, **changes) -> "EmbeddingSpace":
        return replace(self, encoder=replace(self.encoder, **changes))

    def located(self) -> "EmbeddingSpace":
        """The space with a local model folder named by its absolute path (a job is given it
        relative to the run's working directory): what a trained head records, so a later
        run, anywhere, can find the encoder the head reads."""
        model = self.encoder.model
        return self.with_encoder(model=os.path.abspath(model)) if model and os.path.isdir(model) else self

    def differences(self, other: "EmbeddingSpace", within_run: bool = False) -> list[tuple[str, object, object]]:
        """(key, this value, the other's) for each compatibility key the two disagree on. A head
        against vectors (`within_run` False) compares only the keys both records know; the
        embedding shards of one run (`within_run`) must also share the arithmetic, and a key
        one of them lacks is a difference too."""
        mine, theirs = self.as_dict(), other.as_dict()
        keys = self.COMPATIBILITY + (("precision",) if within_run else ())
        known = (lambda key: True) if within_run else (lambda key: mine[key] is not None and theirs[key] is not None)
        return [(key, mine[key], theirs[key]) for key in keys if known(key) and mine[key] != theirs[key]]
