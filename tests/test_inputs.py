"""The input layer against inputs as users bring them: stale or foreign indexes,
read-only reference folders, plain gzip, repeated contigs, UCSC header lines, byte-order
marks, labels written two ways, partial labels tables, damaged Parquet files, the
cached input plan and the outdir lock. Real files and real pysam throughout."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pysam
import pytest
from helpers.data import (
    ECOLI,
    ORCHID,
    ORCHID_LABELS,
    PHIX,
    read_only,
    read_records,
    write_fasta,
)

from dnalm.errors import InputError
from dnalm.inputs.fasta import (
    bgzip_copy,
    check_fai,
    ensure_fasta_index,
    open_fasta,
    plan_fasta,
    read_fai,
    scan_fasta,
)
from dnalm.inputs.labels import read_labels
from dnalm.inputs.plan import load_plan, plan_inputs, plan_key, save_plan
from dnalm.inputs.regions import read_regions, write_coordinates
from dnalm.inputs.sources import load_regions, source_for
from dnalm.io import read_parquet, read_parquet_schema, read_provenance
from dnalm.settings import InputSettings, WindowSpec
from dnalm.windows.shards import plan_shards, write_shards
from dnalm.workflow.jobs import (
    check_run_folder,
    lock_path,
    release_run_lock,
    take_run_lock,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def _error(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as err:
        fn(*args, **kw)
    return str(err.value)


@pytest.fixture(scope="module")
def phix() -> str:
    (seq,) = read_records(PHIX).values()
    return seq


def _records(phix: str) -> dict[str, str]:
    return {"chrA": phix[:2500], "chrB": phix[2500:4000], "chrC": phix[4000:]}


def _age(path: Path, seconds: int = 100) -> None:
    """Make a file look `seconds` older than now."""
    past = time.time() - seconds
    os.utime(path, (past, past))


# ------------------------------------------------------- 1: stale or foreign indexes


def test_rewrapped_fasta_with_a_newer_fai_is_reindexed(tmp_path, phix, capsys):
    """A FASTA re-wrapped from 60 to 80 columns while its .fai stays newer: the old
    index would shift every base (or read a newline as a base); it is rebuilt."""
    records = _records(phix)
    fasta = write_fasta(tmp_path / "ref.fa", records, width=60)
    pysam.faidx(str(fasta))
    write_fasta(fasta, records, width=80)
    _age(fasta)  # the .fai looks up to date by its mtime
    assert check_fai(fasta).stale
    assert ensure_fasta_index(fasta) == fasta
    assert f"dnalm: {fasta} has a .fai index that does not belong to it (the first line of record chrA" \
        in capsys.readouterr().err
    with open_fasta(fasta) as fa:
        for name, seq in records.items():
            assert fa.fetch(name) == seq
    assert Path(f"{fasta}.fai").read_text().split("\n")[0].split("\t")[3:] == ["80", "81"]


def test_windows_of_a_rewrapped_fasta_are_its_bases(tmp_path, phix):
    """The stale index used to reach make_windows as "holds '\\n' ... not a DNA letter"."""
    records = _records(phix)
    fasta = write_fasta(tmp_path / "ref.fa", records, width=60)
    pysam.faidx(str(fasta))
    write_fasta(fasta, records, width=70)
    _age(fasta)
    bed = tmp_path / "r.bed"
    bed.write_text("chrB\t100\t1100\tr1\t0\t+\n")
    regions = load_regions(InputSettings(mode="bed", reference=str(fasta), bed=str(bed)))
    spec = WindowSpec(size=1000, stride=500, per_shard=10)
    write_shards(regions, str(fasta), spec, str(tmp_path / "w"), plan_shards(regions["length"], spec))
    window = pq.read_table(tmp_path / "w" / "shard_00000.parquet").column("sequence").to_pylist()
    assert window == [records["chrB"][100:1100]]


def test_fai_of_another_file_with_the_same_layout_is_not_trusted(tmp_path, phix):
    records = _records(phix)
    other = write_fasta(tmp_path / "other.fa", {name.replace("chr", "scf"): seq[::-1]
                                                for name, seq in records.items()})
    pysam.faidx(str(other))
    fasta = write_fasta(tmp_path / "ref.fa", records)
    shutil.copy(f"{other}.fai", f"{fasta}.fai")  # same offsets and line lengths, newer than the FASTA
    check = check_fai(fasta)
    assert check.stale == "the .fai names record 1 'scfA' but its header says 'chrA'"
    assert read_fai(fasta) == {name: len(seq) for name, seq in records.items()}
    with open_fasta(fasta) as fa:
        assert fa.fetch("chrC", 10, 50) == records["chrC"][10:50]


def test_stale_gzi_of_a_bgzip_fasta_is_rebuilt(tmp_path, phix):
    records = _records(phix)
    plain = write_fasta(tmp_path / "ref.fa", records, width=60)
    fasta = tmp_path / "ref.fa.gz"
    pysam.tabix_compress(str(plain), str(fasta))
    pysam.faidx(str(fasta))
    write_fasta(plain, records, width=50)
    pysam.tabix_compress(str(plain), str(fasta), force=True)
    _age(fasta)
    assert check_fai(fasta).stale
    ensure_fasta_index(fasta)
    with open_fasta(fasta) as fa:
        assert fa.fetch("chrC") == records["chrC"]


def _read_only_python(code: str, folder: Path, cwd: Path) -> dict:
    """Run Python code with `folder` read-only; it prints one JSON line."""
    cmd = read_only(folder, [sys.executable, "-c", code])
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture()
def readonly_reference(tmp_path, phix):
    """A reference folder that will be read-only, holding a FASTA and a stale .fai (the
    FASTA re-wrapped after indexing), and a writable working directory."""
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    work.mkdir()
    records = _records(phix)
    fasta = write_fasta(ref / "genome.fa", records, width=60)
    pysam.faidx(str(fasta))
    write_fasta(fasta, records, width=75)
    _age(Path(f"{fasta}.fai"), 1000)  # stale by mtime too
    yield fasta, work, records
    ref.chmod(0o755)


def test_read_only_folder_gets_an_index_under_the_results_folder(readonly_reference):
    fasta, work, records = readonly_reference
    stale_fai = Path(f"{fasta}.fai").read_bytes()
    code = ("import json, pysam\n"
            "from dnalm.inputs.fasta import ensure_fasta_index, read_fai\n"
            f"path = ensure_fasta_index({str(fasta)!r}, 'results/reference')\n"
            "fa = pysam.FastaFile(str(path))\n"
            "print(json.dumps({'path': str(path), 'contigs': read_fai(path),\n"
            "                  'seqs': {n: fa.fetch(n) for n in fa.references}}))")
    out = _read_only_python(code, fasta.parent, work)
    assert out["path"] == "results/reference/genome.fa"
    assert os.readlink(work / out["path"]) == str(fasta)
    assert out["seqs"] == records and out["contigs"] == {n: len(s) for n, s in records.items()}
    assert (work / "results/reference/genome.fa.fai").exists()
    assert Path(f"{fasta}.fai").read_bytes() == stale_fai  # the user's folder is untouched
    # A second look finds the index there and keeps it.
    mtime = (work / "results/reference/genome.fa.fai").stat().st_mtime_ns
    assert _read_only_python(code, fasta.parent, work)["path"] == out["path"]
    assert (work / "results/reference/genome.fa.fai").stat().st_mtime_ns == mtime


def test_read_only_folder_without_a_fallback_says_the_fix(readonly_reference):
    fasta, work, _ = readonly_reference
    out = _read_only_python(
        "import json\nfrom dnalm.errors import InputError\nfrom dnalm.inputs.fasta import ensure_fasta_index\n"
        f"try:\n    ensure_fasta_index({str(fasta)!r})\n    print(json.dumps({{'error': None}}))\n"
        "except InputError as err:\n    print(json.dumps({'error': str(err)}))", fasta.parent, work)
    assert out["error"] and str(fasta) in out["error"] and "not writable" in out["error"]
    assert "Fix: index it where you can write" in out["error"]
    assert (fasta.parent / "genome.fa.fai").stat().st_mtime < fasta.stat().st_mtime  # not rebuilt


# --------------------------------------------------- 3: repeated contig names


@pytest.mark.parametrize("compress", [False, True])
def test_repeated_contig_in_the_reference_names_both_records(tmp_path, phix, compress):
    fasta = write_fasta(tmp_path / "ref.fa", {"chrA": phix[:500], "chrB": phix[500:900]})
    with open(fasta, "a") as fh:
        fh.write(">chrC\n" + phix[900:1000] + "\n>chrA second copy\n" + phix[1000:1300] + "\n")
    if compress:
        pysam.tabix_compress(str(fasta), f"{fasta}.gz")
        fasta = Path(f"{fasta}.gz")
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t0\t100\n")
    for source in (InputSettings(mode="bed", reference=str(fasta), bed=str(bed)),
                   InputSettings(mode="tiles", reference=str(fasta), tile_length=100, tile_step=100)):
        msg = _error(load_regions, source)
        assert f"{fasta}: record 4 repeats the name 'chrA' of record 1" in msg, msg
        assert "Fix: give every record a unique name" in msg


def test_repeated_contig_is_found_in_a_valid_existing_index(tmp_path, phix):
    """The index htslib wrote silently keeps the first record: the gap between records shows the other."""
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">a\n{phix[:70]}\n>b\n{phix[70:90]}\n>a\n{phix[90:99]}\n")
    pysam.faidx(str(fasta))
    assert [line.split("\t")[0] for line in Path(f"{fasta}.fai").read_text().splitlines()] == ["a", "b"]
    check = check_fai(fasta)
    assert check.stale is None and check.duplicates == [(3, "a", 1)]
    assert "record 3 repeats the name 'a' of record 1" in _error(read_fai, fasta)


def test_empty_records_are_seen_but_harmless_in_a_reference(tmp_path, phix):
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">a\n{phix[:70]}\n>empty\n>b\n{phix[70:90]}\n")
    assert read_fai(fasta) == {"a": 70, "b": 20}
    assert check_fai(fasta).empty == [(2, "empty")]
    msg = _error(load_regions, InputSettings(mode="fasta", sequences=str(fasta)))
    assert "record 2 (empty) has no sequence" in msg


# ------------------------------------------------------------- 9 and 11: plain gzip


def _plain_gzip(path: Path, records: dict[str, str]) -> Path:
    text = "".join(f">{name} plain gzip\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n"
                   for name, seq in records.items())
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_plain_gzip_is_planned_through_a_bgzip_copy(tmp_path, phix):
    records = _records(phix)
    source = _plain_gzip(tmp_path / "genome.fa.gz", records)
    access, contigs = plan_fasta(str(source), tmp_path / "results")
    assert access.recompress and access.path == str(tmp_path / "results/reference/genome.fa.bgz.gz")
    assert contigs == {name: len(seq) for name, seq in records.items()}
    assert not Path(access.path).exists()  # made by rule bgzip_fasta, not when the DAG is built
    bgzip_copy(source, access.path)
    assert sorted(p.name for p in Path(access.path).parent.iterdir() if not p.name.endswith(".json")) == [
        "genome.fa.bgz.gz", "genome.fa.bgz.gz.fai", "genome.fa.bgz.gz.gzi"]
    assert gzip.decompress(Path(access.path).read_bytes()) == gzip.decompress(source.read_bytes())
    assert check_fai(access.path).stale is None
    with open_fasta(access.path) as fa:
        assert {name: fa.fetch(name) for name in fa.references} == records


def test_scan_of_plain_gzip_is_cached_by_size_and_mtime(tmp_path, phix):
    source = _plain_gzip(tmp_path / "genome.fa.gz", {"a": phix[:100], "b": phix[100:300]})
    cache = tmp_path / "cache"
    assert scan_fasta(source, cache) == {"a": 100, "b": 200}
    stored = json.loads((cache / "genome.fa.gz.records.json").read_text())
    assert stored["records"] == [["a", 100], ["b", 200]]
    # The cache answers while size and mtime hold (proved by a planted answer) ...
    stored["records"] = [["planted", 1]]
    (cache / "genome.fa.gz.records.json").write_text(json.dumps(stored))
    assert scan_fasta(source, cache) == {"planted": 1}
    # ... and not once the file changes.
    _plain_gzip(source, {"a": phix[:100], "b": phix[100:300], "c": phix[300:310]})
    assert scan_fasta(source, cache) == {"a": 100, "b": 200, "c": 10}


def test_plain_gzip_repeated_name_names_both_records(tmp_path, phix):
    source = _plain_gzip(tmp_path / "s.fa.gz", {"a": phix[:100], "b": phix[100:200]})
    source.write_bytes(source.read_bytes() + gzip.compress(f">a\n{phix[:5]}\n".encode()))
    msg = _error(plan_fasta, str(source), tmp_path / "results")
    assert f"{source}: record 3 repeats the name 'a' of record 1" in msg


def test_mode_fasta_reads_a_plain_gzip_fasta_of_sequences(tmp_path):
    source = tmp_path / "orchid.fa.gz"
    source.write_bytes(gzip.compress(gzip.decompress(ORCHID.read_bytes())))  # BGZF -> plain gzip
    plan = plan_inputs(source_for(InputSettings(mode="fasta", sequences=str(source), labels=str(ORCHID_LABELS))),
                       str(tmp_path / "results"))
    assert plan.fasta.recompress and plan.labelled
    assert plan.lengths.tolist() == [len(s) for s in read_records(ORCHID).values()]


# ------------------------------------------------------------------ 2: tiles


def test_tile_step_larger_than_length_is_refused(tmp_path):
    source = InputSettings(mode="tiles", reference=str(PHIX), tile_length=1000, tile_step=1500)
    msg = _error(load_regions, source)
    assert "input.tiles.step (1500) is larger than input.tiles.length (1000)" in msg and "Fix:" in msg
    assert _error(lambda: plan_inputs(source_for(source), str(tmp_path / "results"))) == msg


# ------------------------------------------------------------------ 4: outdir


@pytest.mark.parametrize("key", ["outdir", "logdir"])
@pytest.mark.parametrize("value", ["", "/", "//", " "])
def test_empty_or_root_run_folder_is_refused(key, value):
    msg = _error(check_run_folder, value, key)
    assert f"{key} is {value!r}" in msg and "root of the filesystem" in msg and f"Fix: set {key}" in msg


def test_ordinary_run_folders_pass():
    assert check_run_folder("results/", "outdir") == "results"
    assert check_run_folder("/scratch/me/run1", "outdir") == "/scratch/me/run1"


# ------------------------------------------------------ 5 and 6: BED header lines, BOM


def test_contigs_named_track_or_browser_are_data(tmp_path, phix):
    fasta = write_fasta(tmp_path / "ref.fa", {"track1": phix[:300], "browser_x": phix[300:600],
                                              "track": phix[600:900]})
    bed = tmp_path / "r.bed"
    bed.write_text('browser position track1:1-100\nbrowser hide all\n'
                   'track name="my regions" description="x y" visibility=2\n# comment\n'
                   "track1\t0\t100\tr1\nbrowser_x\t10\t50\tr2\ntrack\t5\t25\tr3\n")
    regions = load_regions(InputSettings(mode="bed", reference=str(fasta), bed=str(bed)))
    assert regions["seq_id"].tolist() == ["r1", "r2", "r3"]
    assert regions["chrom"].tolist() == ["track1", "browser_x", "track"]
    assert regions.attrs["skipped_lines"] == 4


def test_byte_order_mark_is_not_part_of_the_contig(tmp_path):
    bed = tmp_path / "bom.bed"
    bed.write_bytes(b"\xef\xbb\xbfNC_000913.3\t10\t20\tr1\n")
    regions = load_regions(InputSettings(mode="bed", reference=str(ECOLI), bed=str(bed)))
    assert regions["chrom"].tolist() == ["NC_000913.3"]
    table = tmp_path / "labels.tsv"
    table.write_bytes(b"\xef\xbb\xbfid\tlabel\nZ78533.1\tx\n")
    assert read_labels(str(table)).index.tolist() == ["Z78533.1"]


# ------------------------------------------------------ 6: labels written two ways


def test_labels_one_number_two_spellings_are_refused_in_a_bed(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("".join(f"NC_000913.3\t{i * 10}\t{i * 10 + 5}\tr{i}\t0\t+\t{lab}\ttrain\n"
                           for i, lab in enumerate(["1", "0", "1", "1.0", "0.0"])))
    source = InputSettings(mode="bed", reference=str(ECOLI), bed=str(bed))
    msg = _error(load_regions, source)
    assert f"labels '1' ({bed}:1) and '1.0' ({bed}:4) are the same number written two ways" in msg
    assert "Fix: write each class one way" in msg
    regions = load_regions(source, labels=False)  # extract_regions reads no labels
    assert "'1.0'" in _error(source_for(source).labels, regions)


def test_labels_one_number_two_spellings_are_refused_in_a_table(tmp_path):
    table = tmp_path / "labels.tsv"
    table.write_text("id\tlabel\nZ78533.1\t0\nZ78532.1\t1\nZ78531.1\t00\n")
    msg = _error(read_labels, str(table))
    assert f"labels '0' ({table}:2) and '00' ({table}:4)" in msg
    table.write_text("id\tlabel\nZ78533.1\tcoding\nZ78532.1\t1\nZ78531.1\t2\n")  # distinct numbers are fine
    assert read_labels(str(table))["label"].tolist() == ["coding", "1", "2"]


# ------------------------------------------------------------ 11: labels tables


def test_comma_separated_table_named_tsv_is_read(tmp_path):
    lines = ORCHID_LABELS.read_text().replace("\t", ",")
    table = tmp_path / "labels.tsv"
    table.write_text(lines)
    regions = load_regions(InputSettings(mode="fasta", sequences=str(ORCHID), labels=str(table)))
    expected = load_regions(InputSettings(mode="fasta", sequences=str(ORCHID), labels=str(ORCHID_LABELS)))
    assert regions.to_dict("list") == expected.to_dict("list")
    tabbed = tmp_path / "labels.csv"
    tabbed.write_text(ORCHID_LABELS.read_text())
    assert read_labels(str(tabbed)).equals(read_labels(str(ORCHID_LABELS)))


def test_table_without_a_header_says_so(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("Z78533.1,coding,train\n")
    msg = _error(read_labels, str(table))
    assert "read as CSV, its first line has the columns ['Z78533.1', 'coding', 'train']" in msg
    assert "Fix: make the first line the header id<TAB>label<TAB>split" in msg


def test_table_id_without_a_record_is_an_error(tmp_path):
    table = tmp_path / "labels.tsv"
    table.write_text(ORCHID_LABELS.read_text() + "Z99999.9\tCypripedium\ttrain\n")
    msg = _error(load_regions, InputSettings(mode="fasta", sequences=str(ORCHID), labels=str(table)))
    n_lines = len(ORCHID_LABELS.read_text().splitlines()) + 1
    assert f"1 id(s) name no record of {ORCHID}, e.g. 'Z99999.9' (line {n_lines})" in msg
    assert "Fix: correct the id" in msg


# ---------------------------------------------------------------- 6: Parquet


def test_truncated_parquet_is_one_clear_error(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("NC_001422.1\t0\t100\tr1\n")
    regions = load_regions(InputSettings(mode="bed", reference=str(PHIX), bed=str(bed)))
    path = tmp_path / "regions.parquet"
    write_coordinates(regions, str(path), {"stage": "regions"})
    path.write_bytes(path.read_bytes()[:-20])
    for call in (lambda: read_parquet(path, rule="extract_regions"), lambda: read_parquet_schema(path),
                 lambda: read_provenance(path), lambda: read_regions(str(path))):
        msg = _error(call)
        assert msg.startswith(f"{path}: cannot be read as Parquet"), msg
        assert "Fix:" in msg and "--forcerun" in msg
    assert "snakemake --forcerun extract_regions" in _error(read_regions, str(path))
    assert "does not exist" in _error(read_parquet, tmp_path / "absent.parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), good)
    assert read_parquet(good, columns=["x"]).num_rows == 2


# ------------------------------------------------------------- 10: plan cache


def test_plan_is_cached_until_an_input_or_setting_changes(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("NC_001422.1\t0\t1000\tr1\t0\t+\tx\n")
    outdir = str(tmp_path / "results")
    source = source_for(InputSettings(mode="bed", reference=str(PHIX), bed=str(bed)))
    plan = plan_inputs(source, outdir)
    assert load_plan(outdir, plan.key) is None  # nothing saved yet
    save_plan(plan, outdir)
    cached = load_plan(outdir, plan_key(source, outdir))
    assert cached is not None and cached.lengths.tolist() == [1000] and cached.labelled
    assert cached.coordinates_digest == plan.coordinates_digest and cached.fasta == plan.fasta
    # Same size, same mtime: the cache answers without reading the BED.
    stat = bed.stat()
    bed.write_text("NC_001422.1\t0\t1000\tr1\t0\t+\t \n")
    os.utime(bed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert plan_inputs(source, outdir).labelled
    # A new mtime, another setting or another label column: a new key, a fresh plan.
    os.utime(bed)
    assert load_plan(outdir, plan_key(source, outdir)) is None
    assert not plan_inputs(source, outdir).labelled
    other = source_for(InputSettings(mode="bed", reference=str(PHIX), bed=str(bed), label_column=9))
    assert plan_key(other, outdir) != plan_key(source, outdir)
    tiles = source_for(InputSettings(mode="tiles", reference=str(PHIX), tile_length=500, tile_step=250))
    assert plan_inputs(tiles, outdir).lengths.tolist() == [500] * 21  # 0, 250, ..., 4750, then 4886


@pytest.mark.parametrize("module", ["inputs.plan", "inputs.sources.bed", "inputs.sources.tiles", "inputs.fasta", "io"])
def test_plan_key_changes_with_the_code_that_plans(tmp_path, monkeypatch, module):
    """A changed planner (FASTA index checks, BED parsing, tiling, readers) never reuses an old plan."""
    import importlib

    source = source_for(InputSettings(mode="tiles", reference=str(PHIX), tile_length=500, tile_step=250))
    outdir = str(tmp_path / "results")
    before = plan_key(source, outdir)
    code = importlib.import_module(f"dnalm.{module}")
    edited = tmp_path / f"{module.replace('.', '_')}.py"
    edited.write_bytes(Path(code.__file__).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(code, "__file__", str(edited))
    assert plan_key(source, outdir) != before


# ------------------------------------------------------------------ 8: lock


def test_lock_is_taken_refused_released_and_taken_over(tmp_path):
    outdir = tmp_path / "results"
    lock = take_run_lock(outdir)
    assert lock == lock_path(outdir) and json.loads(lock.read_text())["pid"] == os.getpid()
    assert take_run_lock(outdir) == lock  # the holder may take it again
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = json.loads(lock.read_text())
        owner.update(pid=holder.pid, cwd="/somewhere/else", start_ticks=None)
        lock.write_text(json.dumps(owner))
        msg = _error(take_run_lock, outdir)
        assert f"{outdir}: is in use by another dnalm run: pid {holder.pid}" in msg
        assert "in the working directory /somewhere/else" in msg and f"delete {lock}" in msg
        release_run_lock(outdir)  # not ours: left alone
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()
    assert take_run_lock(outdir) == lock  # the holder is gone: taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_run_lock(outdir)
    assert not lock.exists()


# ------------------------------------------------- issue 14, item 13: wording


def test_a_record_listed_at_a_wrong_offset_is_called_so(tmp_path):
    """A .fai naming a record at the wrong place says so; it is not 'a record the .fai does not list'."""
    from dnalm.inputs.fasta import check_fai

    fasta = write_fasta(tmp_path / "two.fa", {"a": "ACGT" * 30, "b": "GGCC" * 30}, width=60)
    pysam.faidx(str(fasta))
    fai = tmp_path / "two.fa.fai"
    rows = [line.split("\t") for line in fai.read_text().splitlines()]
    rows[1][2] = str(int(rows[1][2]) + 61)  # b's second sequence line, not its first
    fai.write_text("".join("\t".join(row) + "\n" for row in rows))
    stale = check_fai(fasta).stale
    assert stale == "the .fai puts record b at an offset where the file does not have it"


def test_an_unindexable_fasta_names_its_index_not_a_temporary_file(tmp_path):
    fasta = tmp_path / "ragged.fa"
    fasta.write_text(">a\nACGT\nAC\nACGT\n>b\nACGT\n")  # a short line inside a record: no index possible
    msg = _error(ensure_fasta_index, fasta)
    assert f"Could not build fai index {fasta}.fai" in msg and ".tmp" not in msg and "stderr=" not in msg


def test_a_truncated_window_shard_names_the_rule_to_rerun(tmp_path):
    """What an embedding job says of a damaged shard of windows: the rule that writes it."""
    from dnalm.embedding.shards import embed_shard
    from dnalm.settings import EncoderSpec

    regions = load_regions(InputSettings(mode="fasta", sequences=str(ORCHID)))
    write_shards(regions, str(ORCHID), WindowSpec(size=512, stride=256, per_shard=1000), str(tmp_path), 1)
    shard = tmp_path / "shard_00000.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    msg = _error(embed_shard, str(shard), str(tmp_path / "out.parquet"), EncoderSpec(str(tmp_path / "no-model")))
    assert "snakemake --forcerun make_windows" in msg
