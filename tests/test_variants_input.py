"""The variant stage's input: a VCF (plain, bgzip, BCF) read against a reference FASTA,
REF checked, multi-allelic records split, everything unscorable listed with its reason,
and the ref/alt windows around each variant checked base by base against sequences
built here independently. Real files, real pysam."""

from __future__ import annotations

import random
from pathlib import Path

import pysam
import pytest
from helpers.data import write_fasta

from dnalm.errors import InputError
from dnalm.inputs.fasta import open_fasta
from dnalm.variants.alleles import (
    AlleleTooLong,
    ContigTooShort,
    allele_windows,
    window_problem,
)
from dnalm.variants.records import (
    SKIPPED_COLUMNS,
    Skipped,
    Variant,
    read_regions_bed,
    read_variants,
    write_skipped,
)

W = 20  # window size of the window tests


def _random_bases(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("ACGT") for _ in range(n))


CONTIGS = {"1": _random_bases(200, 1), "2": _random_bases(120, 2), "MT": _random_bases(60, 3)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Three contigs, the first written in lower case (soft-masked) to show case does not matter."""
    folder = tmp_path_factory.mktemp("ref")
    records = dict(CONTIGS, **{"1": CONTIGS["1"].lower()})
    path = write_fasta(folder / "ref.fa", records)
    pysam.faidx(str(path))
    return path


def _vcf(folder: Path, body: list[str], contigs=CONTIGS, name: str = "calls.vcf") -> Path:
    """A VCF with ##contig lines for `contigs` (BCF needs them) and tab-separated `body`
    lines written with spaces for readability. htslib's BCF writer needs INFO/END declared
    once a record has a symbolic allele such as <DEL>, as callers' VCFs declare it."""
    header = ["##fileformat=VCFv4.2", '##INFO=<ID=END,Number=1,Type=Integer,Description="End position">']
    header += [f"##contig=<ID={chrom},length={len(seq)}>" for chrom, seq in contigs.items()]
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    lines = header + ["\t".join(line.split() + ["."] * (8 - len(line.split()))) for line in body]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _three_forms(vcf: Path) -> list[Path]:
    """The VCF as written, bgzip-compressed, and converted to BCF."""
    gz = vcf.with_name(vcf.name + ".gz")
    pysam.tabix_compress(str(vcf), str(gz), force=True)
    bcf = vcf.with_suffix(".bcf")
    with pysam.VariantFile(str(vcf)) as src, pysam.VariantFile(str(bcf), "wb", header=src.header) as dst:
        for rec in src:
            dst.write(rec)
    return [vcf, gz, bcf]


def _error(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as err:
        fn(*args, **kw)
    return str(err.value)


def _ref(chrom: str, pos: int, length: int = 1) -> str:
    return CONTIGS[chrom][pos - 1:pos - 1 + length]


def _other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base]


# ------------------------------------------------------------------- reading the records


def test_plain_bgzip_and_bcf_read_the_same(reference, tmp_path):
    s = CONTIGS["1"]
    body = [
        f"1 10 rs10 {_ref('1', 10).lower()} {_other(s[9]).lower()}",  # lower case is upper-cased
        f"1 20 . {_ref('1', 20)} {_other(s[19])},{_ref('1', 20)}TT,<DEL>",
        f"1 30 del1 {_ref('1', 30, 4)} {_ref('1', 30)}",
        f"2 5 . {_ref('2', 5, 2)} {_other(CONTIGS['2'][4])}{CONTIGS['2'][5]}",
        f"MT 7 . {_ref('MT', 7, 3)} {_other(CONTIGS['MT'][6])}A",
    ]
    results = [read_variants(path, reference) for path in _three_forms(_vcf(tmp_path, body))]
    assert results[0] == results[1] == results[2]
    variants, skipped = results[0]
    assert [(v.record, v.alt_index, v.chrom, v.pos, v.kind) for v in variants] == [
        (0, 0, "1", 10, "snv"), (1, 0, "1", 20, "snv"), (1, 1, "1", 20, "insertion"),
        (2, 0, "1", 30, "deletion"), (3, 0, "2", 5, "snv"), (4, 0, "MT", 7, "complex")]
    assert variants[0].ref == s[9] and variants[0].alt == _other(s[9]) and variants[0].id == "rs10"
    assert variants[1].id == "."
    assert [(k.record, k.alt_index, k.alt, k.reason) for k in skipped] == [(1, 2, "<DEL>", "symbolic allele")]


def test_multiallelic_record_splits_into_one_row_per_alt_in_file_order(reference, tmp_path):
    r = _ref("1", 50)
    alts = [b for b in "ACGT" if b != r]
    body = [f"1 60 . {_ref('1', 60)} {_other(_ref('1', 60))}",
            f"1 50 multi {r} {','.join(alts)},{r}G",  # positions out of order: file order is kept
            f"1 70 . {_ref('1', 70, 3)} {_ref('1', 70)},{_ref('1', 70, 3)}A"]
    variants, skipped = read_variants(_vcf(tmp_path, body), reference)
    assert skipped == []
    assert [(v.record, v.alt_index, v.pos, v.alt) for v in variants] == [
        (0, 0, 60, _other(_ref("1", 60))),
        (1, 0, 50, alts[0]), (1, 1, 50, alts[1]), (1, 2, 50, alts[2]), (1, 3, 50, r + "G"),
        (2, 0, 70, _ref("1", 70)), (2, 1, 70, _ref("1", 70, 3) + "A")]
    assert {v.id for v in variants if v.record == 1} == {"multi"}
    assert [v.kind for v in variants] == ["snv", "snv", "snv", "snv", "insertion", "deletion", "insertion"]
    # split alleles keep their padding: the shared bases do not make them complex
    assert Variant(0, 0, "1", 1, ".", "ACG", "ACT").kind == "snv"
    assert Variant(0, 0, "1", 1, ".", "ACGT", "AGCT").kind == "mnv"
    assert Variant(0, 0, "1", 1, ".", "ACG", "TT").kind == "complex"


def test_every_alt_is_either_a_variant_or_skipped_with_its_reason(reference, tmp_path):
    a = _ref("1", 5)
    body = [
        f"1 5 sv {a} <DEL>,<*>",
        f"1 6 bnd {_ref('1', 6)} {_ref('1', 6)}[1:50[,]2:10]{_ref('1', 6)}",
        f"1 7 sbnd {_ref('1', 7)} .{_ref('1', 7)},{_ref('1', 7)}.",
        f"1 8 . {_ref('1', 8)} *,{_other(_ref('1', 8))}",
        f"1 9 . {_ref('1', 9)} .",
        f"1 11 . {_ref('1', 11)} N,{_ref('1', 11)}R",
        f"1 12 . {_ref('1', 12)} {_ref('1', 12)}",
        f"1 13 . N {_other(_ref('1', 13))}",  # REF N: matches any base, but is not scored
    ]
    for path in _three_forms(_vcf(tmp_path, body)):
        variants, skipped = read_variants(path, reference)
        reasons = [(k.record, k.alt_index, k.alt, k.reason) for k in skipped]
        assert reasons == [
            (0, 0, "<DEL>", "symbolic allele"), (0, 1, "<*>", "symbolic allele"),
            (1, 0, f"{_ref('1', 6)}[1:50[", "breakend"), (1, 1, f"]2:10]{_ref('1', 6)}", "breakend"),
            (2, 0, f".{_ref('1', 7)}", "breakend"), (2, 1, f"{_ref('1', 7)}.", "breakend"),
            (3, 0, "*", "spanning deletion '*'"),
            (4, 0, ".", "no ALT allele"),
            (5, 0, "N", "REF/ALT has bases other than ACGT"), (5, 1, f"{_ref('1', 11)}R",
                                                              "REF/ALT has bases other than ACGT"),
            (6, 0, _ref("1", 12), "ALT equals REF"),
            (7, 0, _other(_ref("1", 13)), "REF/ALT has bases other than ACGT")]
        assert [(v.record, v.alt_index) for v in variants] == [(3, 1)]
        alts = sum(max(1, len(line.split()[4].split(","))) for line in body)
        assert len(variants) + len(skipped) == alts == 13
        assert skipped[0].id == "sv" and skipped[0].ref == a and skipped[0].chrom == "1" and skipped[0].pos == 5


def test_ref_mismatch_stop_is_one_error_naming_the_first_records_and_the_count(reference, tmp_path):
    body = [f"1 {pos} . {_other(_ref('1', pos))} {_ref('1', pos)}" for pos in (3, 13, 23, 33, 43, 53, 63)]
    body.insert(2, f"1 100 . {_ref('1', 100)} {_other(_ref('1', 100))}")  # a good one in between
    body.append(f"2 119 . {_ref('2', 119, 2)}A {_ref('2', 119)}")  # runs past the end of 2 (120 bp)
    vcf = _vcf(tmp_path, body)
    message = _error(read_variants, vcf, reference)
    assert str(vcf) in message
    assert "8 record(s) have a REF that does not match the reference" in message
    for pos in (3, 13, 23, 33, 43):
        assert f"1:{pos} REF {_other(_ref('1', pos))} vs reference {_ref('1', pos)}" in message
    assert "1:53" not in message and "1:100" not in message
    assert "wrong genome build?" in message and "variants.ref_mismatch: skip" in message
    assert message.count("Fix:") == 1


def test_ref_mismatch_skip_lists_each_alt_with_what_the_reference_has(reference, tmp_path):
    wrong = _other(_ref("1", 40))
    body = [f"1 40 . {wrong} {_ref('1', 40)},G",
            f"1 41 . {_ref('1', 41)} {_other(_ref('1', 41))}",
            f"2 119 . {_ref('2', 119, 2)}A {_ref('2', 119)}",
            f"1 50 . {_ref('1', 50, 3)} {_ref('1', 50)}"]
    variants, skipped = read_variants(_vcf(tmp_path, body), reference, ref_mismatch="skip")
    assert [(v.record, v.pos) for v in variants] == [(1, 41), (3, 50)]
    reason = f"REF does not match the reference (reference has {_ref('1', 40)})"
    assert [(k.record, k.alt_index, k.ref, k.reason) for k in skipped] == [
        (0, 0, wrong, reason), (0, 1, wrong, reason),
        (2, 0, _ref("2", 119, 2) + "A",
         f"REF does not match the reference (reference has {_ref('2', 119, 2)}; the contig ends at 120 bp)")]
    with pytest.raises(ValueError, match="ref_mismatch"):
        read_variants(_vcf(tmp_path, body), reference, ref_mismatch="warn")


# -------------------------------------------------------------------- contigs and files


def test_contigs_named_otherwise_than_in_the_reference_say_how_to_rename(reference, tmp_path):
    renamed = {"chr1": CONTIGS["1"], "chrM": CONTIGS["MT"]}
    body = [f"chr1 {pos} . {_ref('1', pos)} {_other(_ref('1', pos))}" for pos in (5, 6, 7)]
    body.append(f"chrM 3 . {_ref('MT', 3)} {_other(_ref('MT', 3))}")
    vcf = _vcf(tmp_path, body, contigs=renamed)
    message = _error(read_variants, vcf, reference)
    assert str(vcf) in message
    assert "2 contig(s) of the VCF are not in the reference: chr1 (3 record(s)), chrM (1 record(s))" in message
    assert "the VCF says chr1, the reference 1" in message and "the VCF says chrM, the reference MT" in message
    assert "bcftools annotate --rename-chrs" in message

    # the other way round: the reference has the prefix, the VCF not
    prefixed = write_fasta(tmp_path / "chr.fa", {"chr1": CONTIGS["1"]})
    bare = _vcf(tmp_path, [f"1 5 . {_ref('1', 5)} {_other(_ref('1', 5))}"], contigs={"1": CONTIGS["1"]},
                name="bare.vcf")
    assert "the VCF says 1, the reference chr1" in _error(read_variants, bare, prefixed)

    # no likely rename: the reference's contigs are listed; never dropped, even outside the regions
    other = _vcf(tmp_path, [f"scaffold_{i} 1 . A C" for i in range(7)], contigs={}, name="other.vcf")
    message = _error(read_variants, other, reference, regions=[("1", 0, 10)])
    assert "7 contig(s)" in message and "scaffold_0 (1 record(s))" in message and "and 2 more" in message
    assert "this one has 1, 2, MT" in message


def test_unreadable_vcfs_name_the_file_and_the_record(reference, tmp_path):
    missing = tmp_path / "missing.vcf"
    assert "VCF file does not exist" in _error(read_variants, missing, reference)
    junk = tmp_path / "junk.vcf"
    junk.write_bytes(b"\x00\x01 not a vcf")
    message = _error(read_variants, junk, reference)
    assert str(junk) in message and "cannot be read as VCF or BCF" in message
    bad = _vcf(tmp_path, [f"1 5 . {_ref('1', 5)} C", "1 x . A C"], name="bad.vcf")
    message = _error(read_variants, bad, reference)
    assert str(bad) in message and "record 2 (after record 1 (1:5)) cannot be parsed" in message


def test_regions_keep_variants_whose_ref_overlaps_them(reference, tmp_path):
    body = [f"1 {pos} . {_ref('1', pos, 3)} {_ref('1', pos)}" for pos in (10, 20, 30, 40)]
    body.append(f"2 15 . {_ref('2', 15)} {_other(_ref('2', 15))}")
    body.append(f"1 21 . {_other(_ref('1', 21))} {_ref('1', 21)}")  # a REF mismatch outside the regions
    bed = tmp_path / "regions.bed"
    bed.write_text("# regions\ntrack name=variants\nbrowser position 1:1-100\n"
                   "1\t21\t25\tREF 20-22 overlaps at base 21\n1\t32\t35\n2\t0\t14\n2\t10\t20\n\n")
    regions = read_regions_bed(bed)
    assert regions == [("1", 21, 25), ("1", 32, 35), ("2", 0, 14), ("2", 10, 20)]
    variants, skipped = read_variants(_vcf(tmp_path, body), reference, regions=regions)
    # 1:10 (REF 9-12) and 1:40 are outside; 1:30's REF [29, 32) ends where the region begins
    assert [(v.record, v.chrom, v.pos) for v in variants] == [(1, "1", 20), (4, "2", 15)]
    assert skipped == []

    bad = tmp_path / "bad.bed"
    bad.write_text("1\t0\t10\n1\tten\t20\n")
    assert f"{bad}:2" in _error(read_regions_bed, bad)
    bad.write_text("# nothing\n")
    assert "no regions" in _error(read_regions_bed, bad)
    assert "the regions say chr1, the reference 1" in _error(
        read_variants, _vcf(tmp_path, body), reference, regions=[("chr1", 0, 10)])


def test_write_skipped_writes_header_and_rows_in_file_order_atomically(tmp_path):
    late = Skipped(4, 1, "2", 9, "rs9", "AC", "<DEL>", "symbolic allele")
    early = Skipped(1, 0, "1", 5, ".", "A", ".", "no ALT allele")
    out = tmp_path / "variants" / "skipped.tsv"
    write_skipped([late, early], out)
    assert out.read_text().splitlines() == [
        "\t".join(SKIPPED_COLUMNS), "1\t5\t.\tA\t.\tno ALT allele", "2\t9\trs9\tAC\t<DEL>\tsymbolic allele"]
    write_skipped([], out)
    assert out.read_text() == "chrom\tpos\tid\tref\talt\treason\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["skipped.tsv"]  # no temporary file left
    variant = Variant(2, 0, "1", 7, ".", "A", "C" * 30)
    assert Skipped.of(variant, "allele longer than the window (30 bp > 20 bp)") == Skipped(
        2, 0, "1", 7, ".", "A", "C" * 30, "allele longer than the window (30 bp > 20 bp)")


# ------------------------------------------------------------------------------- windows


def _windows(reference: Path, variant: Variant, size: int = W):
    with open_fasta(reference) as fasta:
        return allele_windows(variant, fasta, size, len(CONTIGS[variant.chrom]))


def _variant(chrom: str, pos: int, ref_len: int, alt: str) -> Variant:
    return Variant(0, 0, chrom, pos, ".", _ref(chrom, pos, ref_len), alt)


def _haplotype(variant: Variant) -> str:
    seq = CONTIGS[variant.chrom]
    return seq[:variant.start0] + variant.alt + seq[variant.ref_end0:]


def test_centred_windows_of_an_snv_an_insertion_and_a_deletion(reference):
    s = CONTIGS["1"]
    snv = _variant("1", 100, 1, _other(_ref("1", 100)))
    insertion = _variant("1", 100, 1, _ref("1", 100) + "GATTACA")
    deletion = _variant("1", 100, 6, _ref("1", 100))
    for variant in (snv, insertion, deletion):
        win = _windows(reference, variant)
        left = (W - len(variant.ref)) // 2
        assert win.start0 == win.alt_start0 == variant.start0 - left and not win.shifted
        assert win.ref_offset == win.alt_offset == left
        assert (win.ref_len, win.alt_len) == (len(variant.ref), len(variant.alt))
        assert len(win.ref_seq) == len(win.alt_seq) == W
        assert win.ref_seq == s[win.start0:win.start0 + W]
        # left flank + ALT + as much right flank as fills the window
        right = W - left - len(variant.alt)
        expected = s[variant.start0 - left:variant.start0] + variant.alt + s[variant.ref_end0:variant.ref_end0 + right]
        assert win.alt_seq == expected
        assert win.ref_seq[win.ref_offset:win.ref_offset + win.ref_len] == variant.ref
        assert win.alt_seq[win.alt_offset:win.alt_offset + win.alt_len] == variant.alt
    assert _windows(reference, deletion).alt_seq[left + 1:] == s[105:105 + W - left - 1]  # 5 more bases on the right


def test_windows_at_both_contig_ends_are_moved_inside(reference):
    s = CONTIGS["2"]
    n = len(s)
    cases = {
        "first base": _variant("2", 1, 1, _other(s[0])),
        "last base": _variant("2", n, 1, _other(s[-1])),
        "deletion at the very end": _variant("2", n - 3, 4, s[n - 4]),
        "deletion at the start": _variant("2", 1, 5, s[0]),
        "insertion at the end": _variant("2", n, 1, s[-1] + "CCCC"),
    }
    for what, variant in cases.items():
        win = _windows(reference, variant)
        assert len(win.ref_seq) == len(win.alt_seq) == W, what
        assert win.shifted, what
        assert 0 <= win.start0 and win.start0 + W <= n, what
        assert win.ref_seq == s[win.start0:win.start0 + W], what
        assert win.alt_seq == _haplotype(variant)[win.alt_start0:win.alt_start0 + W], what
        assert win.ref_seq[win.ref_offset:win.ref_offset + win.ref_len] == variant.ref, what
        assert win.alt_seq[win.alt_offset:win.alt_offset + win.alt_len] == variant.alt, what
    assert _windows(reference, cases["first base"]).start0 == 0
    assert _windows(reference, cases["last base"]).start0 == n - W
    end_deletion = _windows(reference, cases["deletion at the very end"])
    # the alt window runs out of contig after ALT: it takes 3 more bases on the left instead
    assert end_deletion.start0 == n - W and end_deletion.alt_start0 == n - W - 3
    assert end_deletion.alt_seq == s[n - W - 3:n - 4] + s[n - 4]
    assert end_deletion.alt_offset == end_deletion.ref_offset + 3


def test_an_alt_longer_than_the_right_half_ends_the_window(reference):
    s = CONTIGS["1"]
    variant = _variant("1", 100, 1, _ref("1", 100) + "ACGTACGTACGTAC")  # 15 bp > W - left
    win = _windows(reference, variant)
    assert win.shifted and win.start0 == 99 - 9 and win.alt_start0 == 99 + 15 - W
    assert win.alt_seq == s[99 + 15 - W:99] + variant.alt and win.alt_offset == W - 15
    assert win.ref_seq == s[90:110]


def test_windows_hold_for_every_variant_of_a_random_set(reference):
    rng = random.Random(7)
    for _ in range(300):
        chrom = rng.choice(["1", "2", "MT"])
        seq = CONTIGS[chrom]
        ref_len = rng.randint(1, 8)
        pos = rng.randint(1, len(seq) - ref_len + 1)
        alt = seq[pos - 1] + "".join(rng.choice("ACGT") for _ in range(rng.randint(0, 12)))
        variant = _variant(chrom, pos, ref_len, alt)
        size = rng.choice([8, 15, 20, 31])
        if window_problem(variant, size, len(seq)):
            continue
        win = _windows(reference, variant, size)
        assert len(win.ref_seq) == len(win.alt_seq) == size
        assert win.ref_seq == seq[win.start0:win.start0 + size]
        assert win.alt_seq == _haplotype(variant)[win.alt_start0:win.alt_start0 + size]
        assert win.ref_seq[win.ref_offset:win.ref_offset + ref_len] == variant.ref
        assert win.alt_seq[win.alt_offset:win.alt_offset + len(alt)] == alt
        assert win.shifted == (win.start0 != variant.start0 - (size - ref_len) // 2 or win.alt_start0 != win.start0)


def test_alleles_longer_than_the_window_and_short_contigs_are_reasons_to_skip(reference):
    long_insertion = _variant("1", 50, 1, "A" * (W + 1))
    assert window_problem(long_insertion, W, 200) == f"allele longer than the window ({W + 1} bp > {W} bp)"
    with pytest.raises(AlleleTooLong):
        _windows(reference, long_insertion)
    snv = _variant("MT", 5, 1, "A")
    assert window_problem(snv, 61, 60) == "contig shorter than the window (60 bp < 61 bp)"
    with pytest.raises(ContigTooShort):
        _windows(reference, snv, size=61)
    deletion = _variant("MT", 5, 3, _ref("MT", 5))
    assert window_problem(deletion, 59, 60).startswith("contig shorter than the window once ALT replaces REF")
    with pytest.raises(ValueError):
        _windows(reference, deletion, size=59)
    assert window_problem(deletion, 58, 60) is None and len(_windows(reference, deletion, 58).alt_seq) == 58
