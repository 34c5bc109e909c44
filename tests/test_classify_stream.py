"""Classification streams shard by shard (memory of one shard, not a genome) and
gives exactly what a whole-run, in-memory pass gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dnalm.classify import predict_all
from dnalm.embed import iter_embeddings, read_embeddings
from dnalm.data import WindowSets
from dnalm.heads import load_head, predict_proba

pytestmark = pytest.mark.workflow


def test_chunks_hold_whole_sequences_and_cover_everything(trained_bed_run):
    wd, _, _ = trained_bed_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    assert len(paths) == 4  # 216 windows in shards of 64: sequences of 3 windows straddle shards
    whole_keys, whole_matrix, _ = read_embeddings(paths, "mean")
    chunks = list(iter_embeddings(paths, "mean"))
    seen = [set(keys.column("seq_index").to_pylist()) for keys, _, _ in chunks]
    for a, b in zip(seen, seen[1:]):
        assert not a & b, "a sequence is split between chunks"
    assert pa.concat_tables([k for k, _, _ in chunks]).equals(whole_keys)
    assert np.array_equal(np.concatenate([m for _, m, _ in chunks]), whole_matrix)
    assert max(m.shape[0] for _, m, _ in chunks) <= 64 + 2  # one shard plus a carried-over sequence


def test_streamed_probabilities_equal_in_memory(trained_bed_run):
    wd, _, _ = trained_bed_run
    paths = sorted(str(p) for p in wd.root.glob("results/embeddings/shard_*.parquet"))
    for kind in ("hierarchical", "mean"):
        head = load_head(wd.path(f"results/heads/{kind}"))
        whole = WindowSets.from_files(paths, head.config.pooling, 0.5)
        expected = predict_proba(head, whole, np.arange(len(whole.seq_index)))
        streamed, _ = predict_all(head, paths, len(whole.seq_index), 0.5, "test")
        np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-6)


def test_windows_without_sequence_tokens_are_not_usable():
    """A window that gave the encoder no sequence token (fewer than k bases) must not produce a call."""
    keys = pa.table({"seq_index": pa.array([0, 1, 1], pa.int64()), "start": pa.array([0, 0, 256], pa.int64()),
                     "length": pa.array([3, 512, 300], pa.int32()), "tokens": pa.array([0, 507, 295], pa.int32()),
                     "n_fraction": pa.array([0.0, 0.0, 0.9], pa.float32())})
    data = WindowSets(keys, np.zeros((3, 4), np.float32), {"window_stride": 256}, 0.5)
    assert data.usable.tolist() == [False, True, False]
    assert data.has_usable().tolist() == [False, True]
