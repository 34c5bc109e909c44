"""A variant scored in its region's context (`variants.context`): the head reads the whole
configured region (a BED region or a genome tile of the run) as it does when it classifies
it, once with the run's own window vectors and once with the windows that overlap the
variant re-embedded with the alt allele.

Which region: of the run's regions that hold the variant's REF span whole, the one where
it lies nearest the middle (tiles overlap, so several may). A variant in none gets no
context scores (NaN) and an empty `context_region`.

The alt windows keep their starts and lengths in the region (its own orientation: a
minus-strand region reads the reverse complement, so REF and ALT are complemented too):
an indel shifts the bases after it inside each window that holds it, and the windows that
do not hold it keep their vectors. A region whose bases at the variant are not REF (an
IUPAC code read as N) gets no context scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..embedding.shards import read_embeddings
from ..inputs.regions import read_regions
from ..io import read_parquet
from ..windows.bases import assemble, reverse_complement

NO_REGION = ""


def context_regions(table: pd.DataFrame, regions: pd.DataFrame) -> np.ndarray:
    """Per variant: the row of `regions` it is scored in (-1: none holds it whole)."""
    chosen = np.full(len(table), -1, dtype=np.int64)
    by_chrom = {chrom: frame for chrom, frame in regions.groupby("chrom", sort=False)}
    for i, row in enumerate(table.itertuples(index=False)):
        frame = by_chrom.get(row.chrom)
        if frame is None:
            continue
        start0, end0 = row.pos - 1, row.pos - 1 + len(row.ref)
        holds = frame[(frame["start"] <= start0) & (frame["end"] >= end0)]
        if len(holds):
            off_centre = np.abs((holds["start"] + holds["end"]) / 2 - (start0 + end0) / 2)
            chosen[i] = int(holds.index[int(np.argmin(off_centre.to_numpy()))])
    return chosen


def _shards_of(seq_indices: np.ndarray, sequences_path: str, per_shard: int) -> list[int]:
    """The window shards that hold the windows of these sequences."""
    sequences = read_parquet(sequences_path, columns=["seq_index", "n_windows", "first_window_id"],
                             rule="make_windows").to_pandas().set_index("seq_index")
    shards: set[int] = set()
    for seq in np.unique(seq_indices):
        first = int(sequences.at[seq, "first_window_id"])
        last = first + int(sequences.at[seq, "n_windows"]) - 1
        shards.update(range(first // per_shard, last // per_shard + 1))
    return sorted(shards)


def _windows_of(seq_indices: np.ndarray, window_paths: list[str], embedding_paths: list[str], shards: list[int],
                pooling: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The windows (seq_index, window_index, start, n_fraction, tokens, sequence) of these
    sequences and their vectors, from the shards that hold them."""
    frames, vectors = [], []
    wanted = pa.array(np.unique(seq_indices))
    for shard in shards:
        windows = read_parquet(window_paths[shard], columns=["seq_index", "window_index", "start", "sequence"],
                               rule="make_windows")
        keys, matrix, _ = read_embeddings([embedding_paths[shard]], pooling)
        keep = pc.is_in(keys.column("seq_index"), value_set=wanted).to_numpy(zero_copy_only=False)
        frame = keys.to_pandas()[keep][["seq_index", "window_index", "start", "n_fraction", "tokens"]]
        frame["sequence"] = np.asarray(windows.column("sequence").to_pylist(), dtype=object)[keep]
        frames.append(frame)
        vectors.append(matrix[keep])
    return pd.concat(frames, ignore_index=True), np.concatenate(vectors)


def context_outputs(table: pd.DataFrame, regions_path: str, sequences_path: str, window_paths: list[str],
                    embedding_paths: list[str], per_shard: int, heads: dict, embedder, strands: str,
                    window_stride: int, max_n_fraction: float) -> tuple[list[str], dict]:
    """(per variant: the seq_id of its region or "", {head: (ref outputs, alt outputs)})
    of the variants scored in their region's context."""
    from ..learning.heads import predict
    from ..learning.windowsets import WindowSets

    regions = read_regions(regions_path)
    chosen = context_regions(table, regions)
    region_ids = [regions.at[r, "seq_id"] if r >= 0 else NO_REGION for r in chosen]
    outputs = {name: (np.full((len(table), h.config.n_classes), np.nan),
                      np.full((len(table), h.config.n_classes), np.nan)) for name, h in heads.items()}
    placed = np.flatnonzero(chosen >= 0)
    if not len(placed) or not heads:
        return region_ids, outputs
    shards = _shards_of(chosen[placed], sequences_path, per_shard)
    poolings = {h.config.pooling for h in heads.values()}
    windows: dict[str, tuple[pd.DataFrame, np.ndarray]] = {
        pooling: _windows_of(chosen[placed], window_paths, embedding_paths, shards, pooling) for pooling in poolings}
    frame = next(iter(windows.values()))[0]
    # The alt version of every window that holds a variant: (variant row, window row, bases).
    changed: list[tuple[int, int, str]] = []
    usable_pairs = []
    for i in placed:
        row, region = table.iloc[i], regions.loc[chosen[i]]
        rows = np.flatnonzero(frame["seq_index"].to_numpy() == chosen[i])
        sequence = assemble(frame["start"].to_numpy()[rows], frame["sequence"].to_numpy()[rows])
        ref, alt = row.ref, row.alt
        offset = row.pos - 1 - int(region["start"])
        if region["strand"] == "-":
            offset = int(region["end"]) - (row.pos - 1 + len(row.ref))
            ref, alt = reverse_complement(ref), reverse_complement(alt)
        if sequence[offset: offset + len(ref)] != ref:
            continue  # the region reads other bases there (N): no context score
        mutated = sequence[:offset] + alt + sequence[offset + len(ref):]
        for w in rows:
            start, length = int(frame.at[w, "start"]), len(frame.at[w, "sequence"])
            if start < offset + len(ref) and start + length > offset:
                changed.append((i, w, mutated[start: start + length]))
        usable_pairs.append((i, rows))
    vectors = embedder.embed([bases for *_, bases in changed], strands) if changed else None
    by_variant: dict[int, list[tuple[int, int]]] = {}  # variant row -> its (window row, alt vector row)
    for j, (i, w, _) in enumerate(changed):
        by_variant.setdefault(i, []).append((w, j))
    for name, head in heads.items():
        keys, matrix = windows[head.config.pooling]
        alt_vectors = None if vectors is None else (vectors.mean if head.config.pooling == "mean" else vectors.summary)
        tokens = keys["tokens"].to_numpy()
        for i, rows in usable_pairs:
            alt_matrix, alt_tokens = matrix[rows].copy(), tokens[rows].copy()
            for w, j in by_variant.get(i, []):
                at = int(np.flatnonzero(rows == w)[0])
                alt_matrix[at], alt_tokens[at] = alt_vectors[j], vectors.tokens[j]
            for which, (vecs, toks) in enumerate(((matrix[rows], tokens[rows]), (alt_matrix, alt_tokens))):
                data = WindowSets(_keys(keys, rows, toks), np.ascontiguousarray(vecs, dtype=np.float32),
                                  {"window_stride": window_stride}, max_n_fraction)
                if data.has_usable()[0]:
                    outputs[name][which][i] = predict(head, data, np.array([0]))[0]
    return region_ids, outputs


def _keys(keys: pd.DataFrame, rows: np.ndarray, tokens: np.ndarray) -> pa.Table:
    """The key columns a `WindowSets` reads, of one region's windows."""
    return pa.table({"seq_index": np.zeros(len(rows), dtype=np.int64),
                     "window_index": keys["window_index"].to_numpy()[rows].astype(np.int32),
                     "start": keys["start"].to_numpy()[rows].astype(np.int64),
                     "n_fraction": keys["n_fraction"].to_numpy()[rows].astype(np.float32),
                     "tokens": np.asarray(tokens, dtype=np.int32)})
