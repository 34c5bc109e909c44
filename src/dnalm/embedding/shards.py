"""The embed_shard job: one shard of windows -> per-window summary ([CLS]) and mean
vectors; and reading embedding shards back.

Runs on a GPU (bf16) when one is visible, on the CPU otherwise, through the engine
(`engine`) for every encoder family. Vectors are stored as float16
fixed-size lists keyed by window id, with each window's content-token count (0
means the window gave no sequence token, e.g. shorter than k: it is never used)
and the model passes it needed.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa

from ..compute import pick_device
from ..encoders import Encoder
from ..errors import InputError
from ..identity import EmbeddingSpace
from ..io import read_parquet, read_provenance, with_provenance, write_table_atomic
from ..settings import EncoderSpec
from .engine import Embedder, EngineSettings

WINDOW_KEYS = ["window_id", "seq_index", "window_index", "start", "length", "n_fraction"]
KEY_COLUMNS = WINDOW_KEYS + ["tokens", "passes"]
POOLINGS = ("cls", "mean")


def embeddings_schema(hidden: int) -> pa.Schema:
    vector = pa.list_(pa.float16(), hidden)
    return pa.schema(
        [
            ("window_id", pa.int64()),
            ("seq_index", pa.int64()),
            ("window_index", pa.int32()),
            ("start", pa.int64()),
            ("length", pa.int32()),
            ("n_fraction", pa.float32()),
            ("tokens", pa.int32()),  # content tokens of the window (0: nothing to embed, never used)
            ("passes", pa.int32()),  # model passes (> 1 when its tokens exceed the model's positions)
            ("cls", vector),  # summary state: [CLS] (or the last token where the tokenizer adds none)
            ("mean", vector),  # mean of the last hidden states over the content tokens
        ]
    )


def embed_shard(shard_path: str, out_path: str, spec: EncoderSpec, *, settings: EngineSettings | None = None,
                device: str = "auto") -> None:
    from tqdm import tqdm

    device = pick_device(device)
    windows_meta = read_provenance(shard_path, rule="make_windows")
    encoder = Encoder.load(spec, int(windows_meta["window_size"]), int(windows_meta["window_stride"]), device)
    table = read_parquet(shard_path, columns=WINDOW_KEYS + ["sequence"], rule="make_windows")
    sequences = table.column("sequence").to_pylist()
    settings = settings or EngineSettings()
    space = encoder.space
    print(f"embedding {len(sequences)} windows of {shard_path} with {spec.model} ({space.encoder.family}, "
          f"{space.encoder.tokenizer}) on {device} ({space.precision}, strands {spec.strands}, "
          f"{settings.tokens_per_batch} tokens a batch)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with tqdm(total=len(sequences), desc=f"embed {shard_path}", unit="win", file=sys.stderr,
              mininterval=10) as progress:
        vectors = Embedder(encoder, settings).embed(sequences, spec.strands, progress)
    elapsed = time.perf_counter() - started
    hidden = vectors.mean.shape[1]
    columns = [table.column(name) for name in WINDOW_KEYS]
    columns += [pa.array(vectors.tokens, type=pa.int32()), pa.array(vectors.passes, type=pa.int32())]
    for matrix in (vectors.summary, vectors.mean):
        flat = pa.array(matrix.astype(np.float16).reshape(-1), type=pa.float16())
        columns.append(pa.FixedSizeListArray.from_arrays(flat, hidden))
    provenance = {**{k: v for k, v in windows_meta.items() if k != "stage"}, **space.as_dict(),
                  "stage": "embeddings"}
    out = pa.Table.from_arrays(columns, schema=with_provenance(embeddings_schema(hidden), provenance))
    write_table_atomic(out, out_path)
    rate = len(sequences) / elapsed if elapsed > 0 else float("nan")
    print(f"{len(sequences)} windows on {device} ({space.precision}) in {elapsed:.1f} s: {rate:.1f} windows/s",
          file=sys.stderr)


def check_same_origin(provenance: dict, first: dict, path: str, first_path: str) -> None:
    """The shards of one run come from one embedding space: a head cannot mix vectors of
    two encoders, window settings or arithmetics (e.g. `precision: auto` on a node without
    a GPU)."""
    for key, now, was in EmbeddingSpace.from_dict(provenance).differences(EmbeddingSpace.from_dict(first),
                                                                           within_run=True)[:1]:
        raise InputError(
            f"was embedded with {key}={now!r} but {first_path} with {was!r}: "
            "the shards of one run must come from one encoder setting", path=path,
            fix="re-run the embeddings with one setting (snakemake --forcerun embed_shard); for precision, set "
                "encoder.precision explicitly (auto picks bf16 on GPU nodes and fp32 where no GPU is visible)")


def read_embeddings(paths: list[str], pooling: str) -> tuple[pa.Table, np.ndarray, dict]:
    """Concatenate shards: key columns, the (n_windows, hidden) float32 matrix, and the
    provenance they share (checked to agree across shards)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}")
    keys, mats = [], []
    provenance: dict = {}
    for path in paths:
        table = read_parquet(path, columns=KEY_COLUMNS + [pooling], rule="embed_shard")
        if provenance:
            check_same_origin(read_provenance(path, rule="embed_shard"), provenance, path, paths[0])
        else:
            provenance = read_provenance(path, rule="embed_shard")
        keys.append(table.select(KEY_COLUMNS))
        column = table.column(pooling).combine_chunks()
        hidden = column.type.list_size
        mats.append(column.flatten().to_numpy(zero_copy_only=False).reshape(-1, hidden))
    key_table = pa.concat_tables(keys)
    matrix = np.concatenate(mats).astype(np.float32)  # (n_windows, hidden)
    return key_table, matrix, provenance


def iter_embeddings(paths: list[str], pooling: str):
    """(keys, matrix, provenance) per shard, each holding whole sequences only.

    A sequence whose windows continue in the next shard is carried over, so
    memory holds one shard (plus one sequence), never the whole genome.
    """
    carry: tuple[pa.Table, np.ndarray] | None = None
    first: dict = {}
    for i, path in enumerate(paths):
        keys, matrix, provenance = read_embeddings([path], pooling)
        if first:
            check_same_origin(provenance, first, path, paths[0])
        first = first or provenance
        if carry is not None:
            keys, matrix = pa.concat_tables([carry[0], keys]), np.concatenate([carry[1], matrix])
            carry = None
        if i < len(paths) - 1 and keys.num_rows:
            seq = keys.column("seq_index").to_numpy()
            cut = int(np.searchsorted(seq, seq[-1]))  # first window of the last sequence
            carry = (keys.slice(cut), matrix[cut:])
            keys, matrix = keys.slice(0, cut), matrix[:cut]
        if keys.num_rows:
            yield keys, matrix, provenance
