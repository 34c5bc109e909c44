"""Stage 3: one shard of windows -> per-window [CLS] and mean-over-k-mer vectors.

Runs on a GPU (bf16) when one is visible, on the CPU otherwise. Windows are
batched in shard order; equal-length windows need no padding. Vectors are
stored as float16 fixed-size lists keyed by window id.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .encoder import EncoderSpec, load_encoder
from .errors import InputError
from .io import read_provenance, with_provenance, write_table_atomic
from .tokenize import encode_batch

KEY_COLUMNS = ["window_id", "seq_index", "window_index", "start", "length", "n_fraction"]
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
            ("cls", vector),  # last hidden state at [CLS]
            ("mean", vector),  # mean of the last hidden states over the k-mer tokens
        ]
    )


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def embed_windows(model, sequences: list[str], k: int, batch_size: int, device: str,
                  progress=None) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] and mean-token vectors, each (n_windows, hidden) float32."""
    import torch

    cls_out, mean_out = [], []
    with torch.inference_mode():
        for lo in range(0, len(sequences), batch_size):
            ids, mask = encode_batch(sequences[lo : lo + batch_size], k)  # (batch, tokens)
            input_ids = torch.from_numpy(ids).to(device)
            attention = torch.from_numpy(mask).to(device)
            padded = bool((mask == 0).any())
            hidden = model(input_ids=input_ids, attention_mask=attention if padded else None).last_hidden_state
            hidden = hidden.float()  # (batch, tokens, hidden)
            # k-mer tokens only: drop [CLS], [SEP] and padding from the mean.
            kmer_mask = attention.clone()
            kmer_mask[:, 0] = 0
            kmer_mask[torch.arange(len(ids)), attention.sum(1) - 1] = 0
            weights = kmer_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
            cls_out.append(hidden[:, 0].cpu().numpy())
            mean_out.append(mean.cpu().numpy())
            if progress is not None:
                progress.update(len(ids))
    return np.concatenate(cls_out), np.concatenate(mean_out)


def embed_shard(shard_path: str, out_path: str, spec: EncoderSpec, *, batch_size: int = 16,
                device: str = "auto", threads: int = 1) -> None:
    import torch
    from tqdm import tqdm

    torch.set_num_threads(max(1, threads))
    device = pick_device(device)
    windows_meta = read_provenance(shard_path)
    window_size = int(windows_meta.get("window_size", 512))
    model, k, model_meta = load_encoder(spec, window_size, device)
    table = pq.read_table(shard_path, columns=KEY_COLUMNS + ["sequence"])
    sequences = table.column("sequence").to_pylist()
    print(f"embedding {len(sequences)} windows of {shard_path} with {spec.model} on {device} "
          f"({model_meta['precision']}, batch {batch_size}, {max(1, threads)} thread(s))", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with tqdm(total=len(sequences), desc=f"embed {shard_path}", unit="win", file=sys.stderr,
              mininterval=10, disable=False) as progress:
        cls, mean = embed_windows(model, sequences, k, batch_size, device, progress)
    elapsed = time.perf_counter() - started
    hidden = cls.shape[1]
    schema = embeddings_schema(hidden)
    columns = [table.column(name) for name in KEY_COLUMNS]
    for matrix in (cls, mean):
        flat = pa.array(matrix.astype(np.float16).reshape(-1), type=pa.float16())
        columns.append(pa.FixedSizeListArray.from_arrays(flat, hidden))
    provenance = {**{k_: v for k_, v in windows_meta.items() if k_ != "stage"}, **model_meta,
                  "stage": "embeddings"}
    out = pa.Table.from_arrays(columns, schema=with_provenance(schema, provenance))
    write_table_atomic(out, out_path)
    rate = len(sequences) / elapsed if elapsed > 0 else float("nan")
    print(f"{len(sequences)} windows on {device} ({model_meta['precision']}) in {elapsed:.1f} s: "
          f"{rate:.1f} windows/s", file=sys.stderr)


# What every shard of one run must share: a head cannot mix vectors of two encoders,
# window settings or precisions (e.g. `precision: auto` on a node without a GPU).
SHARED_PROVENANCE = ("model_sha256", "precision", "kmer", "hidden_size", "window_size", "window_stride")


def check_same_origin(provenance: dict, first: dict, path: str, first_path: str) -> None:
    for key in SHARED_PROVENANCE:
        if provenance.get(key) != first.get(key):
            raise InputError(
                f"was embedded with {key}={provenance.get(key)!r} but {first_path} with {first.get(key)!r}: "
                "the shards of one run must come from one encoder setting", path=path,
                fix="set encoder.precision explicitly (auto picks bf16 on GPU nodes and fp32 where no GPU "
                    "is visible) and re-run the embeddings (snakemake --forcerun embed_shard)")


def read_embeddings(paths: list[str], pooling: str) -> tuple[pa.Table, np.ndarray, dict]:
    """Concatenate shards: key columns, the (n_windows, hidden) float32 matrix, and the
    provenance they share (checked to agree across shards)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}")
    keys, mats = [], []
    provenance: dict = {}
    for path in paths:
        table = pq.read_table(path, columns=KEY_COLUMNS + [pooling])
        if provenance:
            check_same_origin(read_provenance(path), provenance, path, paths[0])
        else:
            provenance = read_provenance(path)
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
