"""dnalm.io: atomic outputs, Parquet provenance, float16 embedding round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dnalm
from dnalm.embedding.shards import KEY_COLUMNS, embeddings_schema, read_embeddings
from dnalm.errors import InputError
from dnalm.io import (
    PROVENANCE_KEY,
    atomic_dir,
    atomic_path,
    read_provenance,
    with_provenance,
    write_json_atomic,
    write_table_atomic,
)


class Boom(Exception):
    pass


def test_atomic_path_success_leaves_only_the_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("hello")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_exception_leaves_no_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise Boom()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_exception_keeps_the_previous_version(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise Boom()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_success_moves_files_and_cleans_up(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    (out / "b.txt").write_text("old b")
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        (tmp / "b.txt").write_text("b")
        assert not (out / "a.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "keep.txt"]
    assert (out / "b.txt").read_text() == "b" and (out / "keep.txt").read_text() == "keep"


def test_atomic_dir_exception_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Boom):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("a")
            (tmp / "b.txt").write_text("b")
            raise Boom()
    assert not out.exists() or list(out.iterdir()) == []


def test_write_json_atomic_numpy_scalars(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": np.float32(0.5), "c": np.int64(7), "d": [np.bool_(True)]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "c": 7, "d": [True]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_write_json_atomic_numpy_arrays(tmp_path):
    """_json_default means to serialise arrays via .tolist(), but tests .item() first:
    a numpy array has .item(), which raises for more than one element."""
    write_json_atomic(tmp_path / "m.json", {"b": np.arange(3), "m": np.eye(2, dtype=np.float32)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"b": [0, 1, 2], "m": [[1.0, 0.0], [0.0, 1.0]]}


def test_write_json_atomic_unserialisable_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "m.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_provenance_round_trip(tmp_path):
    schema = pa.schema([("x", pa.int64())], metadata={b"other": b"kept"})
    prov = {"model": "tiny", "window_size": 512, "nested": {"k": [1, 2]}, "none": None}
    with_prov = with_provenance(schema, prov)
    assert with_prov.metadata[b"other"] == b"kept"
    table = pa.Table.from_pydict({"x": [1, 2, 3]}, schema=with_prov)
    pq.write_table(table, tmp_path / "a.parquet")
    read = read_provenance(tmp_path / "a.parquet")
    assert read == {**prov, "dnalm_version": dnalm.__version__}
    assert pq.read_schema(tmp_path / "a.parquet").metadata[b"other"] == b"kept"
    # provenance given by the caller wins over nothing; a file without it reads as {}
    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    assert read_provenance(tmp_path / "plain.parquet") == {}


def test_write_table_atomic_with_provenance_is_reproducible(tmp_path):
    table = pa.table({"x": np.arange(100), "s": ["a", "b"] * 50})
    write_table_atomic(table, tmp_path / "one.parquet", {"stage": "test", "n": 1})
    write_table_atomic(table, tmp_path / "two.parquet", {"stage": "test", "n": 1})
    assert read_provenance(tmp_path / "one.parquet")["stage"] == "test"
    assert PROVENANCE_KEY in pq.read_schema(tmp_path / "one.parquet").metadata
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    assert pq.read_table(tmp_path / "one.parquet").to_pydict() == table.to_pydict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "two.parquet"]


def _embedding_file(path, rng, first_id: int, n: int, hidden: int, provenance: dict):
    cls = rng.standard_normal((n, hidden)).astype(np.float16)
    mean = rng.standard_normal((n, hidden)).astype(np.float16)
    columns = [
        pa.array(np.arange(first_id, first_id + n), pa.int64()),
        pa.array(np.repeat(np.arange(n // 2 + 1), 2)[:n] + first_id, pa.int64()),
        pa.array(np.tile([0, 1], n)[:n], pa.int32()),
        pa.array(np.arange(n) * 10, pa.int64()),
        pa.array(np.full(n, 512), pa.int32()),
        pa.array(rng.random(n).astype(np.float32), pa.float32()),
        pa.array(np.full(n, 507), pa.int32()),  # tokens
        pa.array(np.ones(n), pa.int32()),  # passes
    ]
    for matrix in (cls, mean):
        columns.append(pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float16()), hidden))
    table = pa.Table.from_arrays(columns, schema=with_provenance(embeddings_schema(hidden), provenance))
    write_table_atomic(table, path)
    return cls, mean


def test_float16_embeddings_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    hidden = 24
    cls1, mean1 = _embedding_file(tmp_path / "e1.parquet", rng, 0, 7, hidden, {"stage": "embeddings", "k": 1})
    cls2, mean2 = _embedding_file(tmp_path / "e2.parquet", rng, 7, 5, hidden, {"stage": "embeddings", "k": 2})
    schema = pq.read_schema(tmp_path / "e1.parquet")
    assert schema.field("cls").type == pa.list_(pa.float16(), hidden)
    assert schema.remove_metadata().equals(embeddings_schema(hidden))
    paths = [str(tmp_path / "e1.parquet"), str(tmp_path / "e2.parquet")]
    keys, matrix, prov = read_embeddings(paths, "cls")
    assert matrix.dtype == np.float32 and matrix.shape == (12, hidden)
    assert np.array_equal(matrix, np.concatenate([cls1, cls2]).astype(np.float32))
    assert keys.column_names == KEY_COLUMNS
    assert keys.column("window_id").to_pylist() == list(range(12))
    assert prov["k"] == 1 and prov["dnalm_version"] == dnalm.__version__
    # Shards of one run must share their encoder settings.
    _embedding_file(tmp_path / "e3.parquet", rng, 12, 3, hidden, {"stage": "embeddings", "precision": "bfloat16"})
    with pytest.raises(InputError, match="precision=.bfloat16"):
        read_embeddings(paths + [str(tmp_path / "e3.parquet")], "cls")
    _, matrix_mean, _ = read_embeddings(paths, "mean")
    assert np.array_equal(matrix_mean, np.concatenate([mean1, mean2]).astype(np.float32))
    assert not np.array_equal(matrix, matrix_mean)
    with pytest.raises(ValueError):
        read_embeddings(paths, "max")
