"""dnalm.windows: the window rule, sequence cleaning, strands and the Parquet shards."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pysam
import pytest
from helpers.data import PHIX, read_records, revcomp, write_fasta

import dnalm
from dnalm.errors import InputError
from dnalm.inputs.sources import load_regions
from dnalm.io import PROVENANCE_KEY, read_provenance
from dnalm.settings import InputSettings, WindowSpec
from dnalm.tiling import count_tiles, tile_starts
from dnalm.windows.bases import clean_sequence
from dnalm.windows.shards import (
    SEQUENCES_FILE,
    WINDOWS_SCHEMA,
    plan_shards,
    write_shards,
)


def _reference_starts(length: int, size: int, stride: int) -> list[int]:
    """The window rule written out plainly: regular starts, then one right-anchored tail."""
    if length <= size:
        return [0]
    starts = []
    s = 0
    while s + size <= length:
        starts.append(s)
        s += stride
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


SPECS = [(512, 256), (100, 100), (100, 30), (7, 3), (1, 1), (10, 9)]


@pytest.mark.parametrize("size,stride", SPECS)
def test_tile_starts_and_count_windows_agree(size, stride):
    lengths = list(range(0, 3 * size + 7)) + [size * m for m in (1, 2, 5, 17)] + \
        [size * m + 1 for m in (1, 4)] + [size + stride * m for m in (1, 3, 10)] + [4641652]
    counts = count_tiles(np.array(lengths), size, stride)
    for length, count in zip(lengths, counts):
        starts = tile_starts(length, size, stride)
        expected = _reference_starts(length, size, stride)
        assert starts.tolist() == expected, (length, size, stride)
        assert count == len(expected), (length, size, stride)


@pytest.mark.parametrize("size,stride", SPECS)
def test_windows_cover_the_sequence_and_the_tail_is_right_anchored(size, stride):
    for length in [size + 1, size + stride - 1, 2 * size, 2 * size + 3, 10 * size + 1, 1000]:
        if length <= size:
            continue
        starts = tile_starts(length, size, stride)
        ends = starts + size
        assert ends[-1] == length  # the tail ends exactly at the end
        assert starts[0] == 0 and np.all(ends <= length)
        assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= stride)
        covered = np.zeros(length, dtype=bool)
        for s, e in zip(starts, ends):
            covered[s:e] = True
        assert covered.all()


def test_length_equal_to_size_and_shorter_give_one_window():
    assert tile_starts(512, 512, 256).tolist() == [0]
    assert tile_starts(100, 512, 256).tolist() == [0]
    assert tile_starts(513, 512, 256).tolist() == [0, 1]
    assert count_tiles(np.array([512, 100, 513, 0]), 512, 256).tolist() == [1, 1, 2, 1]


# ---------------------------------------------------------------- clean_sequence


def test_clean_sequence_upper_cases_soft_masked_bases():
    seq, amb = clean_sequence("acgtNNacGT", "error", "r1", "ref.fa")
    assert seq == "ACGTNNACGT" and amb == 0


def test_clean_sequence_iupac_error_names_record_offset_and_fix():
    with pytest.raises(InputError) as err:
        clean_sequence("ACGTACGRTTY", "error", "myrecord (chr:0-11)", "ref.fa")
    msg = str(err.value)
    assert "myrecord (chr:0-11)" in msg
    assert "ref.fa" in msg
    assert "offset 7" in msg
    assert "'R'" in msg
    assert "windows.iupac: as_n" in msg


def test_clean_sequence_iupac_lower_case_is_found_too():
    with pytest.raises(InputError, match="offset 2"):
        clean_sequence("acyt", "error", "r", "ref.fa")


def test_clean_sequence_iupac_as_n():
    seq, amb = clean_sequence("ACRYkmSWBDHVn", "as_n", "r", "ref.fa")
    assert seq == "AC" + "N" * 11
    assert amb == 10


@pytest.mark.parametrize("policy", ["error", "as_n"])
@pytest.mark.parametrize("bad,pos", [("ACGT1ACGT", 4), ("AC-GT", 2), ("ACG.T", 3), ("ACGT*", 4)])
def test_clean_sequence_digit_or_gap_is_always_an_error(policy, bad, pos):
    with pytest.raises(InputError) as err:
        clean_sequence(bad, policy, "recX", "ref.fa")
    msg = str(err.value)
    assert "recX" in msg and f"offset {pos}" in msg and "ref.fa" in msg and "Fix:" in msg


# ---------------------------------------------------------------- shards


@pytest.fixture()
def reference(tmp_path):
    """A plain FASTA of real phiX sequence with soft-masked and N stretches, and a short record."""
    (phix,) = read_records(PHIX).values()
    dirty = list(phix[:1500])
    dirty[100:400] = phix[100:400].lower()
    dirty[600:700] = "N" * 100
    dirty[1450:1460] = "n" * 10
    records = {"phix": phix, "dirty": "".join(dirty), "short": phix[2000:2100]}
    return write_fasta(tmp_path / "ref.fa", records), records


def _bed(tmp_path, lines: list[str]):
    bed = tmp_path / "regions.bed"
    bed.write_text("".join("\t".join(map(str, fields)) + "\n" for fields in lines))
    return bed


def _regions(tmp_path, fasta, lines):
    return load_regions(InputSettings(mode="bed", reference=str(fasta), bed=str(_bed(tmp_path, lines))))


def _read_dir(out):
    shards = sorted(out.glob("shard_*.parquet"))
    table = pq.read_table(shards).to_pandas() if shards else None
    return shards, table


BED_LINES = [
    ("phix", 0, 5386, "whole", 0, "+"),
    ("dirty", 0, 1500, "dirty_plus", 0, "+"),
    ("dirty", 50, 1000, "dirty_minus", 0, "-"),
    ("short", 0, 100, "short", 0, "+"),
    ("phix", 4000, 4700, "exact", 0, "-"),
]


def test_write_shards_windows_match_the_reference(tmp_path, reference):
    fasta, records = reference
    regions = _regions(tmp_path, fasta, BED_LINES)
    spec = WindowSpec(size=200, stride=100, per_shard=7)
    n = write_shards(regions, str(fasta), spec, str(tmp_path / "w"), plan_shards(regions["length"], spec))
    shards, table = _read_dir(tmp_path / "w")
    assert n == len(shards)
    summary = pq.read_table(tmp_path / "w" / SEQUENCES_FILE).to_pandas()
    fa = pysam.FastaFile(str(fasta))
    for row in regions.itertuples():
        raw = fa.fetch(row.chrom, row.start, row.end).upper()
        seq = revcomp(raw) if row.strand == "-" else raw
        wins = table[table["seq_index"] == row.Index].sort_values("window_index")
        expected = _reference_starts(len(seq), 200, 100)
        assert wins["start"].tolist() == expected
        assert wins["window_index"].tolist() == list(range(len(expected)))
        for w in wins.itertuples():
            piece = seq[w.start : w.start + 200]
            assert w.sequence == piece and w.length == len(piece)
            assert w.n_fraction == pytest.approx(piece.count("N") / len(piece), abs=1e-6)
        statuses = wins["status"].astype(str).tolist()
        if len(seq) <= 200:
            assert statuses == ["short"]
        else:
            tail = expected[-1] % 100 != 0
            assert statuses == ["full"] * (len(expected) - tail) + ["tail"] * tail
        srow = summary[summary["seq_index"] == row.Index].iloc[0]
        assert srow["n_windows"] == len(expected)
        assert srow["first_window_id"] == wins["window_id"].min()
        assert srow["n_fraction"] == pytest.approx(seq.count("N") / len(seq), abs=1e-6)
    # the fixture really exercises N, soft masking, both strands and a tail
    assert (table["n_fraction"] > 0).any() and "tail" in set(table["status"].astype(str))


def test_short_sequence_gives_one_short_window(tmp_path, reference):
    fasta, records = reference
    regions = _regions(tmp_path, fasta, [("short", 0, 100)])
    spec = WindowSpec(size=512, stride=256, per_shard=10)
    write_shards(regions, str(fasta), spec, str(tmp_path / "w"), 1)
    _, table = _read_dir(tmp_path / "w")
    assert len(table) == 1
    assert table["length"].iloc[0] == 100 and table["start"].iloc[0] == 0
    assert str(table["status"].iloc[0]) == "short"
    assert table["sequence"].iloc[0] == records["short"]


def test_minus_strand_regions_are_reverse_complemented(tmp_path, reference):
    fasta, _ = reference
    lines = [("phix", 10, 60, "a", 0, "-"), ("dirty", 90, 620, "b", 0, "-"), ("phix", 10, 60, "c", 0, "+")]
    regions = _regions(tmp_path, fasta, lines)
    spec = WindowSpec(size=600, stride=300, per_shard=10)
    write_shards(regions, str(fasta), spec, str(tmp_path / "w"), 1)
    _, table = _read_dir(tmp_path / "w")
    fa = pysam.FastaFile(str(fasta))
    seqs = table.sort_values("window_id")["sequence"].tolist()
    assert seqs[0] == revcomp(fa.fetch("phix", 10, 60))
    assert seqs[1] == revcomp(fa.fetch("dirty", 90, 620).upper())
    assert seqs[2] == fa.fetch("phix", 10, 60)
    assert seqs[0] != seqs[2]


def test_shards_round_trip_schema_provenance_ids_and_plan(tmp_path, reference):
    fasta, _ = reference
    regions = _regions(tmp_path, fasta, BED_LINES)
    for per_shard in (5, 8, 1000):
        spec = WindowSpec(size=150, stride=75, per_shard=per_shard)
        planned = plan_shards(regions["length"].to_numpy(), spec)
        out = tmp_path / f"w{per_shard}"
        assert write_shards(regions, str(fasta), spec, str(out), planned) == planned
        shards, table = _read_dir(out)
        assert len(shards) == planned
        total = int(count_tiles(regions["length"].to_numpy(), 150, 75).sum())
        assert planned == -(-total // per_shard)
        ids = np.concatenate([pq.read_table(p, columns=["window_id"])["window_id"].to_numpy() for p in shards])
        assert ids.tolist() == list(range(total))
        for p in shards:
            schema = pq.read_schema(p)
            assert schema.remove_metadata().equals(WINDOWS_SCHEMA)
            assert PROVENANCE_KEY in schema.metadata
            prov = read_provenance(p)
            assert prov["window_size"] == 150 and prov["window_stride"] == 75
            assert prov["reference_fai_sha256"].startswith("sha256:")
            assert prov["dnalm_version"] == dnalm.__version__
            assert pq.ParquetFile(p).metadata.num_rows <= per_shard
        assert read_provenance(out / SEQUENCES_FILE)["window_size"] == 150
        # nothing but the shards and the summary is left in the folder
        assert sorted(q.name for q in out.iterdir()) == sorted([p.name for p in shards] + [SEQUENCES_FILE])


def test_write_shards_is_deterministic(tmp_path, reference):
    fasta, _ = reference
    regions = _regions(tmp_path, fasta, BED_LINES)
    spec = WindowSpec(size=128, stride=64, per_shard=16)
    planned = plan_shards(regions["length"], spec)
    for out in ("a", "b"):
        write_shards(regions, str(fasta), spec, str(tmp_path / out), planned)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == planned + 1
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_iupac_as_n_counts_ambiguous_bases(tmp_path):
    (phix,) = read_records(PHIX).values()
    seq = phix[:300]
    seq = seq[:50] + "RY" + seq[52:250] + "k" + seq[251:]
    fasta = write_fasta(tmp_path / "amb.fa", {"amb": seq})
    regions = _regions(tmp_path, fasta, [("amb", 0, 300)])
    with pytest.raises(InputError, match="as_n"):
        write_shards(regions, str(fasta), WindowSpec(300, 300, 10, "error"), str(tmp_path / "e"), 1)
    write_shards(regions, str(fasta), WindowSpec(300, 300, 10, "as_n"), str(tmp_path / "w"), 1)
    _, table = _read_dir(tmp_path / "w")
    assert table["sequence"].iloc[0] == seq[:50] + "NN" + seq[52:250] + "N" + seq[251:]
    assert table["n_fraction"].iloc[0] == pytest.approx(3 / 300)
    summary = pq.read_table(tmp_path / "w" / SEQUENCES_FILE).to_pandas()
    assert summary["ambiguous_bases"].tolist() == [3]


def test_bad_record_leaves_no_shards(tmp_path):
    (phix,) = read_records(PHIX).values()
    good = phix[:2000]
    bad = phix[2000:2600]
    bad = bad[:333] + "-" + bad[334:]
    fasta = write_fasta(tmp_path / "mixed.fa", {"good": good, "bad": bad})
    regions = _regions(tmp_path, fasta, [("good", 0, 2000), ("bad", 0, 600)])
    spec = WindowSpec(size=100, stride=50, per_shard=5)  # the good record alone fills several shards
    out = tmp_path / "w"
    with pytest.raises(InputError) as err:
        write_shards(regions, str(fasta), spec, str(out), plan_shards(regions["length"], spec))
    assert "bad" in str(err.value) and "offset 333" in str(err.value)
    leftovers = [p for p in out.rglob("*")] if out.exists() else []
    assert leftovers == []


def test_plan_mismatch_is_an_error_and_leaves_no_shards(tmp_path, reference):
    fasta, _ = reference
    regions = _regions(tmp_path, fasta, BED_LINES)
    spec = WindowSpec(size=200, stride=100, per_shard=7)
    out = tmp_path / "w"
    with pytest.raises(RuntimeError, match="plan"):
        write_shards(regions, str(fasta), spec, str(out), plan_shards(regions["length"], spec) + 1)
    assert not out.exists() or list(out.rglob("*")) == []


def test_window_spec_checks():
    with pytest.raises(InputError, match="stride"):
        WindowSpec(size=100, stride=101, per_shard=5).check()
    with pytest.raises(InputError):
        WindowSpec(size=0, stride=1, per_shard=5).check()
    with pytest.raises(InputError, match="iupac"):
        WindowSpec(size=10, stride=5, per_shard=5, iupac="ignore").check()
    WindowSpec(size=10, stride=10, per_shard=1, iupac="as_n").check()


def test_shards_of_an_earlier_larger_plan_are_removed(tmp_path):
    from helpers.data import PHIX

    from dnalm.inputs.sources import load_regions
    from dnalm.settings import InputSettings, WindowSpec
    from dnalm.windows.shards import plan_shards, write_shards

    regions = load_regions(InputSettings(mode="tiles", reference=str(PHIX), tile_length=1000, tile_step=1000))
    for per_shard in (5, 50):
        spec = WindowSpec(size=512, stride=256, per_shard=per_shard)
        n = plan_shards(regions["length"].to_numpy(), spec)
        write_shards(regions, str(PHIX), spec, str(tmp_path), n)
    assert sorted(p.name for p in tmp_path.glob("shard_*.parquet")) == ["shard_00000.parquet"]


@pytest.mark.parametrize("size, stride", [(5, 3), (64, 32), (100, 100), (100, 7), (512, 256)])
def test_mirrored_starts_cover_the_sequence_symmetrically(size, stride):
    """Spread windows (encoder.strands both): first at 0, last at the end, at most a stride
    apart, the set its own mirror image, one window more than tile_starts at most."""
    from dnalm.tiling import count_mirrored, mirrored_starts

    for length in range(1, 3 * size + 50):
        starts = mirrored_starts(length, size, stride)
        assert len(starts) == count_mirrored(np.array([length]), size, stride)[0]
        if length <= size:
            assert starts.tolist() == [0]
            continue
        span = length - size
        assert starts[0] == 0 and starts[-1] == span
        assert (np.diff(starts) > 0).all() and (np.diff(starts) <= stride).all()
        assert sorted((span - starts).tolist()) == starts.tolist()
        assert len(starts) - len(tile_starts(length, size, stride)) in (0, 1)


def test_a_region_and_its_reverse_complement_get_the_same_mirrored_windows(tmp_path):
    """With mirrored windows a minus-strand region's windows are its plus-strand twin's,
    reverse-complemented, in the opposite order; with the usual tiling they are not."""
    regions = _regions(tmp_path, PHIX, [("NC_001422.1", 100, 100 + length, f"r{length}{strand}", 0, strand)
                                        for length in (1280, 1301) for strand in "+-"])
    for mirrored in (True, False):
        out = tmp_path / f"w{mirrored}"
        write_shards(regions, str(PHIX), WindowSpec(size=512, stride=256, per_shard=100, mirrored=mirrored), str(out), 1)
        table = pq.read_table(out / "shard_00000.parquet").to_pandas()
        same = []
        for pair in ((0, 1), (2, 3)):
            plus, minus = (table[table["seq_index"] == i] for i in pair)
            same.append(plus["sequence"].tolist() == [revcomp(s) for s in minus["sequence"]][::-1])
        assert same == ([True, True] if mirrored else [True, False])  # 1280 - 512 = 3 strides; 1301 - 512 is not
