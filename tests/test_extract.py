"""dnalm.extract: BED / tiles / FASTA sources and their error messages, on real data."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pysam
import pytest
from helpers.data import (
    ECOLI,
    ORCHID,
    ORCHID_LABELS,
    PHIX,
    copy_fasta,
    read_records,
    write_fasta,
)

from dnalm.errors import InputError
from dnalm.inputs.fasta import ensure_fasta_index, read_fai
from dnalm.inputs.labels import read_labels
from dnalm.inputs.regions import regions_to_arrow
from dnalm.inputs.sources import load_regions
from dnalm.settings import InputSettings

ECOLI_LEN = 4641652
CONTIG = "NC_000913.3"


def _bed(tmp_path, text: str, name="regions.bed"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _load_bed(bed, **kw):
    return load_regions(InputSettings(mode="bed", reference=str(ECOLI), bed=str(bed), **kw))


def _error(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as err:
        fn(*args, **kw)
    return str(err.value)


# ---------------------------------------------------------------- BED parsing


def test_bed3_generates_names_and_defaults(tmp_path):
    bed = _bed(tmp_path, "# a comment\ntrack name=x\n\nNC_000913.3\t0\t100\nNC_000913.3\t4641600\t4641652\n")
    regions = _load_bed(bed)
    assert regions["seq_id"].tolist() == ["NC_000913.3:0-100", "NC_000913.3:4641600-4641652"]
    assert regions["strand"].tolist() == ["+", "+"]
    assert regions["length"].tolist() == [100, 52]
    assert regions["label"].isna().all() and regions["split"].isna().all()
    table = regions_to_arrow(regions)
    assert table.num_rows == 2 and table.column("start").to_pylist() == [0, 4641600]


def test_bed6_strands_labels_and_splits(tmp_path):
    bed = _bed(tmp_path, "\n".join([
        "NC_000913.3\t100\t200\tr1\t0\t+\tcoding\ttrain",
        "NC_000913.3\t100\t200\tr2\t0\t-\tintergenic\tdev",
        "NC_000913.3\t300\t400\t.\t0\t.\tcoding\tValidation",
        "NC_000913.3\t300\t400\t.\t0\t-\t.\tTEST",
        "NC_000913.3\t500\t600\tr5\t0\t+\tcoding\t",
        "NC_000913.3\t500\t600\tr6\t0\t+",
    ]) + "\n")
    regions = _load_bed(bed)
    assert regions["seq_id"].tolist() == ["r1", "r2", "NC_000913.3:300-400(+)", "NC_000913.3:300-400(-)",
                                          "r5", "r6"]
    assert regions["strand"].tolist() == ["+", "-", "+", "-", "+", "+"]
    assert regions["label"].tolist() == ["coding", "intergenic", "coding", None, "coding", None]
    assert regions["split"].tolist() == ["train", "val", "val", "test", None, None]


def test_label_and_split_columns_are_configurable(tmp_path):
    bed = _bed(tmp_path, "NC_000913.3\t0\t50\tr1\t0\t+\ttrain\tpromoter\n")
    regions = _load_bed(bed, label_column=8, split_column=7)
    assert regions["label"].tolist() == ["promoter"] and regions["split"].tolist() == ["train"]


def test_real_bundled_bed_loads():
    from helpers.data import DATA

    regions = _load_bed(DATA / "ecoli_k12_regions.bed")
    n_lines = sum(1 for line in open(DATA / "ecoli_k12_regions.bed") if line.strip())
    assert len(regions) == n_lines
    assert set(regions["split"]) <= {"train", "val", "test"}
    assert regions["label"].notna().all()
    assert (regions["end"] <= ECOLI_LEN).all() and (regions["length"] == regions["end"] - regions["start"]).all()


BAD_BEDS = {
    "missing contig": ("NC_000913.3\t0\t10\nchr1\t0\t100\n", 2, ["'chr1'", "NC_000913.3"]),
    "past the end": (f"NC_000913.3\t{ECOLI_LEN - 10}\t{ECOLI_LEN + 1}\n", 1, [str(ECOLI_LEN), "past the end"]),
    "start == end": ("NC_000913.3\t0\t10\nNC_000913.3\t50\t50\n", 2, ["start 50"]),
    "start > end": ("NC_000913.3\t80\t50\n", 1, ["start 80", "end 50"]),
    "negative start": ("NC_000913.3\t-5\t50\n", 1, ["start -5"]),
    "non-integer": ("NC_000913.3\t1.5e3\t2000\n", 1, ["'1.5e3'", "integer"]),
    "non-integer end": ("#c\nNC_000913.3\t100\tabc\n", 2, ["'abc'"]),
    "duplicate name": ("NC_000913.3\t0\t10\tdup\nNC_000913.3\t5\t60\tuniq\nNC_000913.3\t20\t30\tdup\n", 3,
                       ["'dup'", "line 1"]),
    "duplicate generated name": ("NC_000913.3\t0\t10\nNC_000913.3\t0\t10\n", 2, ["NC_000913.3:0-10"]),
    "unknown split": ("NC_000913.3\t0\t10\tr\t0\t+\tcoding\ttraining\nNC_000913.3\t0\t10\tq\t0\t+\tcoding\tholdout\n",
                      2, ["'holdout'"]),
    "bad strand": ("NC_000913.3\t0\t10\tr\t0\tplus\n", 1, ["'plus'"]),
    "two columns": ("NC_000913.3\t0\n", 1, ["at least 3"]),
    "spaces not tabs": ("NC_000913.3 0 10\n", 1, ["tab"]),
}


@pytest.mark.parametrize("case", list(BAD_BEDS))
def test_bad_bed_lines_name_file_line_and_fix(tmp_path, case):
    text, line, needles = BAD_BEDS[case]
    bed = _bed(tmp_path, text)
    msg = _error(_load_bed, bed)
    assert f"{bed}:{line}:" in msg, msg
    assert "Fix:" in msg and msg.split("Fix:")[1].strip(), msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_missing_contig_suggests_chr_prefix_fix(tmp_path):
    # A FASTA naming its contig '1' and a BED saying 'chr1' (and the reverse).
    (phix,) = read_records(PHIX).values()
    fasta = write_fasta(tmp_path / "ref.fa", {"1": phix[:1000], "2": phix[1000:2000]})
    bed = _bed(tmp_path, "chr1\t0\t100\n")
    msg = _error(load_regions, InputSettings(mode="bed", reference=str(fasta), bed=str(bed)))
    assert f"{bed}:1" in msg and "'chr1'" in msg and "'1'" in msg and "1, 2" in msg
    fasta2 = write_fasta(tmp_path / "ref2.fa", {"chr1": phix[:1000]})
    bed2 = _bed(tmp_path, "1\t0\t100\n", "b2.bed")
    msg = _error(load_regions, InputSettings(mode="bed", reference=str(fasta2), bed=str(bed2)))
    assert "'chr1'" in msg and f"{bed2}:1" in msg


def test_empty_bed_only_comments(tmp_path):
    bed = _bed(tmp_path, "# header\n# another\n\n")
    msg = _error(_load_bed, bed)
    assert str(bed) in msg and "no regions" in msg and "Fix:" in msg


def test_missing_bed_file(tmp_path):
    msg = _error(_load_bed, tmp_path / "nope.bed")
    assert "nope.bed" in msg and "Fix:" in msg


def test_gzipped_bed_is_read(tmp_path):
    path = tmp_path / "r.bed.gz"
    path.write_bytes(gzip.compress(b"NC_000913.3\t10\t20\tx\n"))
    assert _load_bed(path)["seq_id"].tolist() == ["x"]


# ---------------------------------------------------------------- FASTA files


def test_empty_fasta_file(tmp_path):
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    msg = _error(read_fai, empty)
    assert str(empty) in msg and "empty" in msg and "Fix:" in msg
    msg = _error(load_regions, InputSettings(mode="fasta", sequences=str(empty)))
    assert str(empty) in msg


def test_malformed_fasta_file(tmp_path):
    junk = tmp_path / "junk.fa"
    junk.write_text("this is not a FASTA file\n")
    msg = _error(read_fai, junk)
    assert str(junk) in msg and "Fix:" in msg and "FASTA" in msg


def test_missing_fasta_file(tmp_path):
    msg = _error(read_fai, tmp_path / "absent.fa")
    assert "absent.fa" in msg and "Fix:" in msg


def test_plain_gzip_fasta_names_bgzip_fix(tmp_path):
    (phix,) = read_records(PHIX).values()
    plain = tmp_path / "phix.fa.gz"
    plain.write_bytes(gzip.compress(f">phix\n{phix}\n".encode()))
    msg = _error(read_fai, plain)
    assert str(plain) in msg and "bgzip" in msg.split("Fix:")[1]
    assert not (tmp_path / "phix.fa.gz.fai").exists()
    bed = _bed(tmp_path, "phix\t0\t10\n")
    msg = _error(load_regions, InputSettings(mode="bed", reference=str(plain), bed=str(bed)))
    assert "bgzip" in msg


def test_fai_is_built_when_missing(tmp_path):
    fasta = copy_fasta(PHIX, tmp_path)
    assert not (tmp_path / f"{fasta.name}.fai").exists()
    assert read_fai(fasta) == {"NC_001422.1": 5386}
    fai = tmp_path / f"{fasta.name}.fai"
    assert fai.exists() and ensure_fasta_index(fasta) == fasta  # the path to open, its index beside it
    assert pysam.FastaFile(str(fasta)).fetch("NC_001422.1", 0, 10) == read_records(PHIX)["NC_001422.1"][:10]


def test_fasta_mode_reads_every_record_with_labels():
    regions = load_regions(InputSettings(mode="fasta", sequences=str(ORCHID), labels=str(ORCHID_LABELS)))
    records = read_records(ORCHID)
    assert regions["seq_id"].tolist() == list(records)
    assert regions["length"].tolist() == [len(s) for s in records.values()]
    assert (regions["start"] == 0).all() and (regions["chrom"] == regions["seq_id"]).all()
    labels = {}
    for line in open(ORCHID_LABELS).read().splitlines()[1:]:
        i, lab, split = line.split("\t")
        labels[i] = (lab, split)
    assert [(r.label, r.split) for r in regions.itertuples()] == [labels[i] for i in regions["seq_id"]]


def test_fasta_mode_records_without_a_row_are_unlabelled(tmp_path, capsys):
    from dnalm.inputs.sources import source_for

    lines = open(ORCHID_LABELS).read().splitlines()
    dropped = [line.split("\t")[0] for line in lines[5:9]]
    partial = tmp_path / "labels.tsv"
    partial.write_text("\n".join(lines[:5] + lines[9:]) + "\n")
    source = InputSettings(mode="fasta", sequences=str(ORCHID), labels=str(partial))
    regions = load_regions(source)
    assert regions.set_index("seq_id").loc[dropped, "label"].isna().all()
    assert regions["label"].notna().sum() == len(lines) - 1 - 4
    source_for(source).labels(regions)
    assert "4 of 94 FASTA records have no row in" in capsys.readouterr().err


def test_labels_table_bad_split_and_header(tmp_path):
    bad_split = tmp_path / "l.tsv"
    bad_split.write_text("id\tlabel\tsplit\nZ78440.1\tx\tholdout\n")
    msg = _error(read_labels, str(bad_split))
    assert "holdout" in msg and "Z78440.1" in msg and str(bad_split) in msg
    no_header = tmp_path / "h.tsv"
    no_header.write_text("Z78440.1\tx\ttrain\n")
    assert str(no_header) in _error(read_labels, str(no_header))
    dup = tmp_path / "d.tsv"
    dup.write_text("id\tlabel\nA\tx\nA\ty\n")
    assert "'A'" in _error(read_labels, str(dup))


# ---------------------------------------------------------------- tiles


@pytest.fixture()
def multi_contig(tmp_path):
    (phix,) = read_records(PHIX).values()
    records = {"chr1": phix[:5000], "chr2": phix[:2048], "chrUn_abc": phix[:333], "MT": phix[:1000],
               "scaffold_7": phix[:4097]}
    return write_fasta(tmp_path / "multi.fa", records), records


def _tiles(fasta, **kw):
    return load_regions(InputSettings(mode="tiles", reference=str(fasta), **kw))


def test_tiles_cover_every_contig_right_anchored(multi_contig):
    fasta, records = multi_contig
    regions = _tiles(fasta, tile_length=1024, tile_step=512)
    assert list(dict.fromkeys(regions["chrom"])) == list(records)
    for chrom, seq in records.items():
        sub = regions[regions["chrom"] == chrom]
        length = len(seq)
        if length <= 1024:
            assert sub[["start", "end"]].values.tolist() == [[0, length]]
            continue
        assert sub["start"].iloc[0] == 0 and sub["end"].iloc[-1] == length
        assert (sub["end"] - sub["start"] == 1024).all()
        assert (np.diff(sub["start"]) <= 512).all() and (np.diff(sub["start"]) > 0).all()
        assert sub["start"].iloc[-1] == length - 1024  # right-anchored tail
    assert regions["seq_id"].is_unique
    assert (regions["seq_id"] == regions["chrom"] + ":" + regions["start"].astype(str) + "-"
            + regions["end"].astype(str)).all()


def test_tiles_include_exclude_full_match(multi_contig):
    fasta, _ = multi_contig
    chroms = lambda r: list(dict.fromkeys(r["chrom"]))  # noqa: E731
    assert chroms(_tiles(fasta, include=(r"chr\d+",))) == ["chr1", "chr2"]
    assert chroms(_tiles(fasta, exclude=(r"chrUn_.*", "MT"))) == ["chr1", "chr2", "scaffold_7"]
    assert chroms(_tiles(fasta, include=(r"chr.*",), exclude=("chr2",))) == ["chr1", "chrUn_abc"]
    # full match: 'chr' alone matches nothing
    with pytest.raises(InputError):
        _tiles(fasta, include=("chr",))


def test_tiles_pattern_removing_every_contig_is_an_error(multi_contig):
    fasta, _ = multi_contig
    msg = _error(_tiles, fasta, exclude=(".*",))
    assert str(fasta) in msg and "chr1" in msg and "Fix:" in msg


def test_tiles_on_real_genome_stream_from_fai():
    regions = _tiles(ECOLI, tile_length=100_000, tile_step=100_000)
    assert len(regions) == -(-ECOLI_LEN // 100_000)
    assert regions["end"].iloc[-1] == ECOLI_LEN and regions["start"].iloc[-1] == ECOLI_LEN - 100_000
    assert regions["start"].iloc[-2] + 100_000 == regions["end"].iloc[-2]


def test_unknown_mode():
    assert "mode" in _error(load_regions, InputSettings(mode="vcf"))


def test_regions_schema_columns(tmp_path):
    bed = _bed(tmp_path, "NC_000913.3\t0\t10\tx\t0\t-\tlab\ttest\tstrainA\n")
    table = regions_to_arrow(_load_bed(bed))
    assert table.column_names == ["seq_id", "chrom", "start", "end", "strand", "length", "label", "split", "group"]
    assert table.to_pylist() == [dict(seq_id="x", chrom=CONTIG, start=0, end=10, strand="-", length=10,
                                      label="lab", split="test", group="strainA")]
    assert re.match(r"int64", str(table.schema.field("start").type))


def test_coordinates_and_labels_round_trip(tmp_path):
    from dnalm.inputs.regions import read_regions, write_coordinates, write_labels
    from dnalm.inputs.sources import source_for

    bed = _bed(tmp_path, "NC_000913.3\t0\t10\tx\t0\t-\tlab\tdev\nNC_000913.3\t5\t60\t.\t0\t+\t.\t.\n")
    regions = _load_bed(bed)
    coords, labels = tmp_path / "regions.parquet", tmp_path / "labels.parquet"
    write_coordinates(regions, str(coords), {"stage": "regions"})
    bare = read_regions(str(coords))  # coordinates alone: no labels
    assert bare["seq_id"].tolist() == ["x", "NC_000913.3:5-60(+)"] and bare["label"].isna().all()
    # labels come from the BED's columns by the same region names
    source = source_for(InputSettings(mode="bed", bed=str(bed), label_column=7, split_column=8))
    write_labels(source.labels(bare), str(labels))
    back = read_regions(str(coords), str(labels))
    assert back.to_dict("list") == regions.to_dict("list")
    assert back["split"].tolist() == ["val", None] and back["label"].tolist() == ["lab", None]


@pytest.mark.parametrize("text,message", [
    (">a\nACGT\n>b\nACGT\n>a\nTTTT\n", "record 3 repeats the name 'a'"),
    (">a\nACGT\n>empty\n>b\nACGT\n", "record 2 (empty) has no sequence"),
])
def test_fasta_mode_rejects_duplicate_and_empty_records(tmp_path, text, message):
    fasta = tmp_path / "seqs.fa"
    fasta.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_regions(InputSettings(mode="fasta", sequences=str(fasta)))
    assert str(fasta) in str(err.value) and "Fix:" in str(err.value)


@pytest.mark.parametrize("source,message", [
    (dict(mode="fasta", sequences=""), "no FASTA of sequences is configured"),
    (dict(mode="bed", reference=str(ECOLI), bed=""), "no BED is configured"),
    (dict(mode="tiles", reference=str(ECOLI), include=("chr[",)), "is not a regular expression"),
])
def test_missing_or_malformed_settings_are_clear(source, message):
    with pytest.raises(InputError, match=re.escape(message)):
        load_regions(InputSettings(**source))


def test_empty_labels_table_is_named(tmp_path):
    from dnalm.inputs.labels import read_labels

    table = tmp_path / "labels.tsv"
    table.write_text("")
    with pytest.raises(InputError, match="cannot be read as a TSV table") as err:
        read_labels(str(table))
    assert str(table) in str(err.value)


def test_labels_with_control_characters_stop_where_they_are_read(tmp_path):
    """A tab or line break in a label would break the TSV, the BED of calls and the tracks:
    refused when the labels are read (before any job), naming the file."""
    fasta = write_fasta(tmp_path / "s.fa", {"a": "ACGT" * 50, "b": "GGCC" * 50})
    table = tmp_path / "labels.csv"
    table.write_text('id,label\na,"coding\tregion"\nb,other\n')
    with pytest.raises(InputError, match="control character") as err:
        load_regions(InputSettings(mode="fasta", sequences=str(fasta), labels=str(table)))
    assert "labels.csv" in str(err.value) and "Fix:" in str(err.value)
    (seq,) = read_records(PHIX).values()
    bed = tmp_path / "r.bed"
    bed.write_text("NC_001422.1\t0\t100\tr1\t0\t+\tcoding\x0bx\ttrain\n")
    with pytest.raises(InputError, match="control character"):
        load_regions(InputSettings(mode="bed", reference=str(copy_fasta(PHIX, tmp_path)), bed=str(bed)))
