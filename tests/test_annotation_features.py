"""dnalm.annotation.features: annotation classes, reading GFF3 / BED6 + type features
(the bundled E. coli RefSeq annotation, and every refusal with its file:line), class
masks and base labels."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pandas as pd
import pytest
from helpers.workflow import REPO

from dnalm.annotation.features import (
    AnnotationClass,
    annotation_classes,
    base_labels,
    class_masks,
    overlap_count,
    read_features,
)
from dnalm.errors import InputError

ECOLI_FEATURES = REPO / "data" / "ecoli_k12_mg1655_NC_000913.3.features.bed.gz"
ECOLI = "NC_000913.3"
ECOLI_LENGTHS = {ECOLI: 4_641_652}
LENGTHS = {"chr1": 1000, "chr2": 500}
GFF_HEADER = "##gff-version 3\n"


def _union_length(intervals) -> int:
    """Bases covered by a list of (start, end), merged the slow, obvious way."""
    total, reach = 0, -1
    for start, end in sorted(intervals):
        if start >= reach:
            total += end - start
        elif end > reach:
            total += end - reach
        reach = max(reach, end)
    return total


def _as_gff3(frame: pd.DataFrame) -> str:
    """Features (0-based, half-open) as GFF3 lines, phase 0 for CDS."""
    lines = [GFF_HEADER.rstrip("\n")]
    for i, row in enumerate(frame.itertuples()):
        phase = "0" if row.type == "CDS" else "."
        lines.append(f"{row.contig}\tRefSeq\t{row.type}\t{row.start + 1}\t{row.end}\t.\t{row.strand}\t{phase}\tID=f{i}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- classes


def test_annotation_classes_stranded_and_not():
    classes = annotation_classes(["CDS", "tRNA"], stranded=True)
    assert classes == [AnnotationClass("CDS", "+"), AnnotationClass("CDS", "-"),
                       AnnotationClass("tRNA", "+"), AnnotationClass("tRNA", "-")]
    assert [c.name for c in classes] == ["CDS_plus", "CDS_minus", "tRNA_plus", "tRNA_minus"]
    unstranded = annotation_classes(["tRNA", "CDS"], stranded=False)
    assert [c.name for c in unstranded] == ["tRNA", "CDS"]
    assert all(c.strand is None for c in unstranded)


@pytest.mark.parametrize("types, says", [([], "is empty"), (["CDS", "gene", "CDS"], "CDS more than once")])
def test_annotation_classes_refusals(types, says):
    with pytest.raises(InputError) as err:
        annotation_classes(types, stranded=True)
    text = str(err.value)
    assert says in text and "Fix:" in text and "annotation.classes" in text.split("Fix:")[1]


# ----------------------------------------------------------------------------- E. coli


def test_ecoli_features_read_fast_and_complete():
    started = time.perf_counter()
    features = read_features(str(ECOLI_FEATURES), ECOLI_LENGTHS)
    assert time.perf_counter() - started < 1.0
    assert list(features.columns) == ["contig", "start", "end", "type", "strand", "line"]
    assert len(features) == 9487
    counts = features["type"].value_counts()
    assert counts["CDS"] == 4386 and counts["gene"] == 4518 and counts["tRNA"] == 89
    assert set(features["strand"]) == {"+", "-"}
    assert features["start"].is_monotonic_increasing
    thra = features[(features["start"] == 336) & (features["type"] == "CDS")]
    assert thra[["end", "strand", "line"]].values.tolist() == [[2799, "+", 4]]  # line 4 of the file
    cds = read_features(str(ECOLI_FEATURES), ECOLI_LENGTHS, types={"CDS"})
    assert len(cds) == 4386 and set(cds["type"]) == {"CDS"}


def test_ecoli_cds_masks_over_the_whole_contig():
    cds = read_features(str(ECOLI_FEATURES), ECOLI_LENGTHS, types={"CDS"})
    classes = annotation_classes(["CDS"], stranded=True)
    masks = class_masks(cds, classes, ECOLI, 0, ECOLI_LENGTHS[ECOLI])
    assert masks.shape == (2, 4_641_652) and masks.dtype == bool
    plus, minus = masks
    assert plus[336:2799].all() and not plus[335] and not plus[2799]  # thrA, 337..2799 in 1-based closed
    assert not minus[336:2799].any()
    assert minus[5682:6459].all() and not plus[5682:6459].any()  # yaaA on -
    on = {s: list(zip(cds.loc[cds["strand"] == s, "start"], cds.loc[cds["strand"] == s, "end"])) for s in "+-"}
    assert plus.sum() == _union_length(on["+"]) and minus.sum() == _union_length(on["-"])
    both = plus.sum() + minus.sum() - _union_length(on["+"] + on["-"])
    assert overlap_count(masks) == both > 0
    labels = base_labels(masks)
    assert labels.dtype == np.uint8
    assert np.count_nonzero(labels == 1) == plus.sum()  # + wins where the strands overlap
    assert np.count_nonzero(labels == 2) == minus.sum() - both
    assert np.count_nonzero(labels == 0) == 4_641_652 - _union_length(on["+"] + on["-"])


def test_ecoli_as_gff3_reads_the_same(tmp_path):
    bed = read_features(str(ECOLI_FEATURES), ECOLI_LENGTHS)
    bed_order = bed.sort_values("line")  # file order, so the GFF3 lines are the BED lines + 1 (its header)
    plain = tmp_path / "ecoli.gff3"
    plain.write_text(_as_gff3(bed_order))
    hidden_gzip = tmp_path / "ecoli.txt"  # gzip without .gz, GFF3 without .gff3: told by content
    hidden_gzip.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, hidden_gzip):
        gff = read_features(str(path), ECOLI_LENGTHS)
        pd.testing.assert_frame_equal(gff.drop(columns="line"), bed.drop(columns="line"))
        assert (gff["line"] == bed["line"] + 1).all()


# ----------------------------------------------------------------------------- GFF3 details


def test_gff3_skips_comments_and_stops_at_fasta(tmp_path):
    path = tmp_path / "a.gff3"
    path.write_text(GFF_HEADER
                    + "# a comment\n"
                    + "\n"
                    + "track name=x\n"
                    + "chr%201\tsrc\tmy%20type\t11\t20\t.\t?\t.\tID=a%3Bb\n"  # line 5, escapes decoded
                    + "chr2\tsrc\tCDS\t1\t3\t.\t-\t2\tID=c\n"
                    + "##FASTA\nNOT A FEATURE\n>chr2\nACGTACGT\n")  # all after ##FASTA is sequence
    features = read_features(str(path), {"chr 1": 100, "chr2": 500})
    assert features.values.tolist() == [["chr 1", 10, 20, "my type", ".", 5], ["chr2", 0, 3, "CDS", "-", 6]]
    path.write_text(GFF_HEADER + "chr2\tsrc\tCDS\t1\t3\t.\t-\t0\tID=c\n>chr2\nACGT\n")  # FASTA without ##FASTA
    assert len(read_features(str(path), LENGTHS)) == 1


def test_only_the_types_asked_for_are_checked(tmp_path):
    path = tmp_path / "a.gff3"
    path.write_text(GFF_HEADER + "chr1\tsrc\tgene\t1\t3000\t.\t+\t.\tID=g\n" + "chr1\tsrc\tCDS\t1\t300\t.\t+\t0\tID=c\n")
    assert read_features(str(path), LENGTHS, types={"CDS"})["type"].tolist() == ["CDS"]
    with pytest.raises(InputError, match=r"a\.gff3:2: feature ends at 3000"):
        read_features(str(path), LENGTHS)


# ----------------------------------------------------------------------------- refusals

GOOD_GFF = "chr1\tsrc\tgene\t1\t100\t.\t+\t.\tID=g\n"
GOOD_BED = "chr1\t0\t100\tg\t0\t+\tgene\n"

REFUSALS = [
    ("gff3", "chr1\tsrc\tgene\t1\t100\t.\t+\t.\n", "has 8 tab-separated column(s)", "tabs"),
    ("gff3", "chr1 src gene 1 100 . + . ID=x\n", "has 1 tab-separated column(s)", "tabs"),
    ("gff3", "chr1\tsrc\tgene\tone\t100\t.\t+\t.\tID=x\n", "are not integers", "1-based integer"),
    ("gff3", "chr1\tsrc\tgene\t0\t100\t.\t+\t.\tID=x\n", "start 0 is below 1", "1-based"),
    ("gff3", "chr1\tsrc\tgene\t50\t49\t.\t+\t.\tID=x\n", "end 49 is before start 50", "start <= end"),
    ("gff3", "chrX\tsrc\tgene\t1\t100\t.\t+\t.\tID=x\n", "seqid 'chrX' is not a contig", "chr1, chr2"),
    ("gff3", "1\tsrc\tgene\t1\t100\t.\t+\t.\tID=x\n", "seqid '1' is not a contig", "rename '1' to 'chr1'"),
    ("gff3", "chr2\tsrc\tgene\t1\t501\t.\t+\t.\tID=x\n", "ends at 501, past the end of chr2 (500 bp)", "clip"),
    ("gff3", "chr1\tsrc\tgene\t1\t100\t.\tx\t.\tID=x\n", "strand 'x' is not", "column 7"),
    ("gff3", "chr1\tsrc\tgene\t1\t100\t.\t+\t3\tID=x\n", "phase '3' is not", "column 8"),
    ("gff3", "chr1\tsrc\tCDS\t1\t100\t.\t+\t.\tID=x\n", "CDS without a phase", "0, 1 or 2"),
    ("bed", "chr1\t0\t100\tg\t0\t+\n", "has 6 tab-separated column(s)", "feature type"),
    ("bed", "chr1\t0\t1e2\tg\t0\t+\tgene\n", "are not integers", "0-based integer"),
    ("bed", "chr1\t-1\t100\tg\t0\t+\tgene\n", "start -1 is below 0", "0-based"),
    ("bed", "chr1\t100\t100\tg\t0\t+\tgene\n", "end 100 is not after start 100", "start < end"),
    ("bed", "chr9\t0\t100\tg\t0\t+\tgene\n", "contig 'chr9' is not a contig", "chr1, chr2"),
    ("bed", "2\t0\t100\tg\t0\t+\tgene\n", "contig '2' is not a contig", "rename '2' to 'chr2'"),
    ("bed", "chr1\t0\t1001\tg\t0\t+\tgene\n", "past the end of chr1 (1000 bp)", "genome build"),
    ("bed", "chr1\t0\t100\tg\t0\tplus\tgene\n", "strand 'plus' is not", "column 6"),
]


@pytest.mark.parametrize("fmt, bad, says, fix", REFUSALS, ids=[f"{r[0]}-{r[2][:28]}" for r in REFUSALS])
def test_bad_lines_are_refused_with_file_line_and_fix(tmp_path, fmt, bad, says, fix):
    path = tmp_path / f"features.{fmt}"
    # header (GFF3), a comment, a good line, then the bad one: line 4 in GFF3, 3 in BED
    text = (GFF_HEADER + "# c\n" + GOOD_GFF if fmt == "gff3" else "# c\n" + GOOD_BED) + bad
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_features(str(path), LENGTHS)
    message, _, fix_text = str(err.value).partition("\nFix: ")
    assert message.startswith(f"{path}:{4 if fmt == 'gff3' else 3}: ")
    assert says in message and fix in fix_text


@pytest.mark.parametrize("contig, reference, rename", [("MT", ["chr1", "chrM"], "chrM"), ("chrM", ["1", "M"], "M"),
                                                      ("chr1", ["1", "MT"], "1")])
def test_a_rename_is_suggested(tmp_path, contig, reference, rename):
    path = tmp_path / "a.bed.gz"
    path.write_bytes(gzip.compress(f"{contig}\t0\t10\tx\t0\t+\trRNA\n".encode()))
    with pytest.raises(InputError, match=rf"a\.bed\.gz:1: .*\nFix: rename '{contig}' to '{rename}'"):
        read_features(str(path), dict.fromkeys(reference, 100))


def test_features_are_sorted_by_contig_and_start_keeping_their_lines(tmp_path):
    path = tmp_path / "a.bed"
    path.write_text("chr2\t5\t9\ta\t0\t+\tCDS\n" "chr1\t50\t60\tb\t0\t-\tCDS\n" "chr1\t10\t20\tc\t0\t+\tCDS\n")
    features = read_features(str(path), LENGTHS)
    assert features[["contig", "start", "line"]].values.tolist() == [["chr1", 10, 3], ["chr1", 50, 2], ["chr2", 5, 1]]


def test_a_missing_type_lists_the_types_the_file_has(tmp_path):
    path = tmp_path / "a.bed"
    path.write_text(GOOD_BED + GOOD_BED.replace("gene\n", "CDS\n") + GOOD_BED)
    with pytest.raises(InputError) as err:
        read_features(str(path), LENGTHS, types={"CDS", "tRNA", "rRNA"})
    text = str(err.value)
    assert text.startswith(f"{path}: has no feature of type rRNA, tRNA;")
    assert "gene (2), CDS (1)" in text and "Fix:" in text and "annotation.classes" in text


@pytest.mark.parametrize("name, content, says", [
    ("a.txt", "chr1\t0\t100\tg\t0\t+\tgene\n", "cannot tell whether the features file is GFF3 or BED"),
    ("empty.bed", "# only a comment\n", "has no features"),
    ("latin1.bed", GOOD_BED + "chr1\t0\t100\tg\xe9ne\t0\t+\tgene\n", ":2: is not UTF-8 text"),
])
def test_whole_file_refusals(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(InputError) as err:
        read_features(str(path), LENGTHS)
    assert says in str(err.value) and "Fix:" in str(err.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_features(str(tmp_path / "none.gff3"), LENGTHS)


# ----------------------------------------------------------------------------- masks, labels


def test_class_masks_strands_windows_and_contigs():
    features = pd.DataFrame.from_records([
        ("chr1", 2, 5, "CDS", "+", 1),
        ("chr1", 4, 8, "CDS", "-", 2),
        ("chr1", 9, 30, "CDS", ".", 3),  # no strand: only the unstranded class; runs past the window
        ("chr1", 0, 3, "tRNA", "+", 4),  # another type
        ("chr2", 0, 10, "CDS", "+", 5),  # another contig
    ], columns=["contig", "start", "end", "type", "strand", "line"])
    stranded = class_masks(features, annotation_classes(["CDS"], True), "chr1", 1, 11)
    assert stranded.astype(int).tolist() == [[0, 1, 1, 1, 0, 0, 0, 0, 0, 0],
                                             [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]]
    unstranded = class_masks(features, annotation_classes(["CDS"], False), "chr1", 1, 11)
    assert unstranded.astype(int).tolist() == [[0, 1, 1, 1, 1, 1, 1, 0, 1, 1]]
    assert not class_masks(features, annotation_classes(["CDS"], True), "chr1", 30, 40).any()


def test_base_labels_earlier_class_wins():
    masks = np.array([[0, 1, 1, 0, 0],
                      [0, 0, 1, 1, 0],
                      [1, 0, 1, 1, 1]], dtype=bool)
    assert base_labels(masks).tolist() == [3, 1, 1, 2, 3]
    assert overlap_count(masks) == 2
    assert overlap_count(masks[:1]) == 0
