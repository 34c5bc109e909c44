"""The scored VCF (dnalm.variants.vcf_out): real pysam, small hand-written VCFs."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pysam
import pytest

from dnalm.errors import InputError
from dnalm.variants.vcf_out import INFO_PREFIX, check_sortable, info_key, info_keys, write_scored_vcf

HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr1,length=1000>
##contig=<ID=chr2,length=1000>
##INFO=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FILTER=<ID=q10,Description="Quality below 10">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	S1
"""
RECORDS = [
    "chr1	100	rs1	A	C	50	PASS	DP=10	GT	0/1",      # 0: one ALT, scored
    "chr1	200	.	G	A,T,GC	.	PASS	DP=20	GT	1/2",  # 1: multi-allelic, every ALT scored
    "chr1	300	rs3	T	C,G	.	q10	DP=30	GT	0/2",     # 2: ALT 1 skipped
    "chr2	50	.	C	T	.	PASS	DP=5	GT	0/0",         # 3: no scores at all
    "chr2	150	.	A	G	.	PASS	.	GT	1/1",            # 4: cosine NaN
    "chr2	400	.	ACGT	A	.	PASS	DP=7	GT	./.",      # 5: scored
]
COLUMNS = ["hierarchical.log2_odds.coding", "llr", "cosine"]
DESCRIPTIONS = {
    "hierarchical.log2_odds.coding": 'log2 odds of "coding", ALT minus REF (a\\b)',
    "llr": "log-likelihood ratio of ALT to REF",
    "cosine": "cosine distance of the\nREF and ALT embeddings",  # a newline becomes a space
}
# (record, alt_index): (log2 odds, llr, cosine)
SCORES = {
    (0, 0): (1.5, -0.25, 0.125),
    (1, 0): (0.123456789, 2.0, 0.5),
    (1, 1): (-3.75, 1e-7, 0.0),
    (1, 2): (12345.678, -1.0, 0.75),
    (2, 0): (0.5, 0.25, 0.0625),
    (4, 0): (-0.001, 3.5, math.nan),
    (5, 0): (2.0, -2.0, 1.0),
}


def _vcf(path, records=RECORDS, header=HEADER):
    path.write_text(header + "".join(line + "\n" for line in records))
    return path


def _scores(rows=SCORES) -> pd.DataFrame:
    items = list(rows.items())[::-1]  # out of order on purpose: the writer sorts
    frame = pd.DataFrame([values for _, values in items], columns=COLUMNS)
    frame.insert(0, "record", [key[0] for key, _ in items])
    frame.insert(1, "alt_index", [key[1] for key, _ in items])
    return frame


def _fields(record: pysam.VariantRecord) -> tuple:
    """Everything of a record but the scores."""
    info = {k: v for k, v in record.info.items() if not k.startswith(INFO_PREFIX)}
    return (record.contig, record.pos, record.id, record.alleles, record.qual, list(record.filter),
            info, [s["GT"] for s in record.samples.values()])


def _write(tmp_path, vcf_in=None, **kwargs):
    vcf_in = vcf_in or _vcf(tmp_path / "in.vcf")
    out = tmp_path / "out" / "scored.vcf.gz"
    write_scored_vcf(vcf_in, _scores(), DESCRIPTIONS, out, **kwargs)
    return vcf_in, out


def test_every_record_written_in_order_with_its_fields_and_scores(tmp_path):
    vcf_in, out = _write(tmp_path, provenance={"model": "tiny", "stage": "variants"})
    with pysam.VariantFile(str(vcf_in)) as original, pysam.VariantFile(str(out)) as scored:
        before, after = list(original), list(scored)
        header = scored.header
    assert [_fields(r) for r in after] == [_fields(r) for r in before]
    assert after[0].info["DP"] == 10 and "DP" not in after[4].info

    for number, record in enumerate(after):
        for j, column in enumerate(COLUMNS):
            key = info_key(column)
            expected = [SCORES.get((number, alt), (math.nan,) * 3)[j] for alt in range(len(record.alts))]
            if all(math.isnan(v) for v in expected):
                assert key not in record.info, (number, key)  # no scored ALT: no field
                continue
            got = record.info[key]
            assert len(got) == len(record.alts)
            for value, want in zip(got, expected):
                if math.isnan(want):
                    assert value is None  # a skipped ALT (or a NaN) is missing
                else:
                    # htslib prints six significant digits
                    assert value == pytest.approx(want, rel=5e-6, abs=1e-12)
    assert after[0].info[info_key("llr")] == (np.float32(-0.25),)  # short values round-trip exactly
    assert after[2].info[info_key("llr")] == (0.25, None)
    assert not any(k.startswith(INFO_PREFIX) for k in after[3].info)

    meta = header.info[info_key("llr")]
    assert (meta.number, meta.type, meta.description) == ("A", "Float", DESCRIPTIONS["llr"])
    text = str(header)
    assert 'Description="log2 odds of \\"coding\\", ALT minus REF (a\\\\b)"' in text
    assert 'Description="cosine distance of the REF and ALT embeddings"' in text
    [line] = [line for line in text.splitlines() if line.startswith("##dnalm_provenance=")]
    provenance = json.loads(line.split("=", 1)[1])
    assert provenance["model"] == "tiny" and "dnalm_version" in provenance


def test_output_is_tabix_indexed(tmp_path):
    _, out = _write(tmp_path)
    assert (out.parent / (out.name + ".tbi")).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["scored.vcf.gz", "scored.vcf.gz.tbi"]
    with pysam.VariantFile(str(out)) as scored:
        assert [r.pos for r in scored.fetch("chr2", 100, 500)] == [150, 400]
        assert [r.pos for r in scored.fetch("chr1", 150, 250)] == [200]
        assert len(list(scored.fetch("chr2"))) == 3


def test_bcf_and_bgzipped_inputs_give_the_same_records(tmp_path):
    plain = _vcf(tmp_path / "in.vcf")
    bgzipped = tmp_path / "in.vcf.gz"
    pysam.tabix_compress(str(plain), str(bgzipped))
    bcf = tmp_path / "in.bcf"
    with pysam.VariantFile(str(plain)) as source, pysam.VariantFile(str(bcf), "wb", header=source.header) as sink:
        for record in source:
            sink.write(record)

    outputs = []
    for vcf_in in (plain, bgzipped, bcf):
        out = tmp_path / f"out_{vcf_in.name}.vcf.gz"
        write_scored_vcf(vcf_in, _scores(), DESCRIPTIONS, out)
        with pysam.VariantFile(str(out)) as scored:
            outputs.append([str(record) for record in scored])
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) == len(RECORDS)


def test_info_key_sanitises_and_prefixes():
    valid = re.compile(r"^[A-Za-z_][0-9A-Za-z_.]*$")
    assert info_key("llr") == "DNALM_llr"
    assert info_key("hierarchical.log2_odds.coding") == "DNALM_hierarchical.log2_odds.coding"
    assert info_key("log2 odds/coding-vs-rest (nt)") == "DNALM_log2_odds_coding_vs_rest__nt_"
    assert info_key("1st") == "DNALM_1st"
    for column in ("llr", "a b", "ü=1;x", "1st", ".dot", "a,b"):
        assert valid.match(info_key(column)) and info_key(column) == info_key(column)
    assert info_keys(["llr", "cosine"]) == {"llr": "DNALM_llr", "cosine": "DNALM_cosine"}
    with pytest.raises(ValueError, match=r"'a-b'.*'a b'"):
        info_keys(["a-b", "a b"])


@pytest.mark.parametrize("where", ["declared", "undeclared"])
def test_an_existing_score_key_is_refused(tmp_path, where):
    if where == "declared":
        header = HEADER.replace("##FILTER", '##INFO=<ID=DNALM_llr,Number=1,Type=Float,Description="old">\n##FILTER')
        vcf_in = _vcf(tmp_path / "in.vcf", header=header)
    else:  # used by a record without a header line: htslib declares it while reading
        records = RECORDS[:2] + [RECORDS[2].replace("DP=30", "DP=30;DNALM_llr=1")] + RECORDS[3:]
        vcf_in = _vcf(tmp_path / "in.vcf", records=records)
    with pytest.raises(InputError, match=r"DNALM_llr(.|\n)*rename or remove"):
        _write(tmp_path, vcf_in)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_check_sortable(tmp_path):
    check_sortable(_vcf(tmp_path / "sorted.vcf"))
    # Contigs in another order than the header's are fine: tabix looks contigs up by name.
    check_sortable(_vcf(tmp_path / "chr2_first.vcf", records=RECORDS[3:] + RECORDS[:3]))

    swapped = _vcf(tmp_path / "swapped.vcf", records=[RECORDS[1], RECORDS[0]] + RECORDS[2:])
    with pytest.raises(InputError, match=r"record 2 \(chr1:100\) is out of order(.|\n)*bcftools sort"):
        check_sortable(swapped)
    split = _vcf(tmp_path / "split.vcf", records=RECORDS[:1] + RECORDS[3:] + RECORDS[1:3])
    with pytest.raises(InputError, match=r"record 5 \(chr1:200\)"):
        check_sortable(split)
    with pytest.raises(InputError, match="out of order"):
        _write(tmp_path, swapped)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_vcf_without_contig_lines(tmp_path):
    """A plain VCF may use contigs (and INFO keys) it does not declare."""
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    records = ["chr1	100	.	A	C	.	.	XX=1", "chr2	5	.	A	C,G	.	.	.", "chr3	7	.	A	T	.	.	."]
    vcf_in = _vcf(tmp_path / "bare.vcf", records=records, header=header)
    scores = pd.DataFrame({"record": [0, 1, 2], "alt_index": [0, 1, 0], "llr": [1.0, 2.0, 3.0]})
    out = tmp_path / "bare.scored.vcf.gz"
    write_scored_vcf(vcf_in, scores, {"llr": "llr"}, out)
    with pysam.VariantFile(str(out)) as scored:
        assert [(r.contig, r.info["DNALM_llr"]) for r in scored] == [
            ("chr1", (1.0,)), ("chr2", (None, 2.0)), ("chr3", (3.0,))]
        assert [r.pos for r in scored.fetch("chr2")] == [5]


def _only(folder, names):
    return sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_a_failure_leaves_no_output_and_no_temporary_files(tmp_path):
    vcf_in = _vcf(tmp_path / "in.vcf")
    out = tmp_path / "scored.vcf.gz"
    # Found before anything is written.
    with pytest.raises(ValueError, match="descriptions lack"):
        write_scored_vcf(vcf_in, _scores(), {"llr": "x"}, out)
    assert _only(tmp_path, ["in.vcf"])
    # Found half-way, with the header and two records already written: ALT 3 of record 2.
    bad = _scores({**SCORES, (2, 3): (1.0, 1.0, 1.0)})
    with pytest.raises(ValueError, match="ALT 3 of record 2"):
        write_scored_vcf(vcf_in, bad, DESCRIPTIONS, out)
    assert _only(tmp_path, ["in.vcf"])

    # An earlier output and its index stay as they were when a rerun fails ...
    write_scored_vcf(vcf_in, _scores(), DESCRIPTIONS, out)
    before = out.read_bytes(), (tmp_path / "scored.vcf.gz.tbi").read_bytes()
    with pytest.raises(ValueError, match="ALT 3 of record 2"):
        write_scored_vcf(vcf_in, bad, DESCRIPTIONS, out)
    assert _only(tmp_path, ["in.vcf", "scored.vcf.gz", "scored.vcf.gz.tbi"])
    assert (out.read_bytes(), (tmp_path / "scored.vcf.gz.tbi").read_bytes()) == before
    # ... and are both replaced when it succeeds.
    write_scored_vcf(vcf_in, _scores({(5, 0): (9.0, 9.0, 9.0)}), DESCRIPTIONS, out)
    assert _only(tmp_path, ["in.vcf", "scored.vcf.gz", "scored.vcf.gz.tbi"])
    with pysam.VariantFile(str(out)) as scored:
        assert [r.info.get("DNALM_llr") for r in scored.fetch("chr2", 300, 500)] == [(9.0,)]


def test_scores_table_errors(tmp_path):
    vcf_in = _vcf(tmp_path / "in.vcf")
    out = tmp_path / "scored.vcf.gz"
    with pytest.raises(ValueError, match="more than one row for record 0, ALT 0"):
        write_scored_vcf(vcf_in, pd.concat([_scores(), _scores()]), DESCRIPTIONS, out)
    with pytest.raises(ValueError, match="record 6, but"):
        write_scored_vcf(vcf_in, _scores({(6, 0): (1.0, 1.0, 1.0)}), DESCRIPTIONS, out)
    with pytest.raises(ValueError, match=r"\*\.vcf\.gz"):
        write_scored_vcf(vcf_in, _scores(), DESCRIPTIONS, tmp_path / "scored.vcf")
    with pytest.raises(InputError, match="does not exist"):
        write_scored_vcf(tmp_path / "missing.vcf", _scores(), DESCRIPTIONS, out)
    assert _only(tmp_path, ["in.vcf"])
