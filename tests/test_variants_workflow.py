"""The variant stage in a real run: a VCF on the bundled E. coli genome scored by the run's
head, zero-shot and by embedding distance, sharded, gathered in VCF order and written back
into the VCF; and the scores' definitions checked against direct computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pysam
import pytest
from helpers.data import DATA, ECOLI
from helpers.workflow import Workdir, jobs_in_dry_run, write_bed_subset

from dnalm.io import read_parquet
from dnalm.variants.stage import score_shard

COMPLEMENT = {"A": "C", "C": "G", "G": "T", "T": "A"}


def write_vcf(path, records: list[tuple[str, int, str, str]], contig: str, length: int) -> None:
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={contig},length={length}>",
             '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, (chrom, pos, ref, alt) in enumerate(records):
        lines.append(f"{chrom}\t{pos}\tv{i}\t{ref}\t{alt}\t50\tPASS\tDP={10 + i}")
    path.write_text("\n".join(lines) + "\n")


def ecoli_variants(n_snv: int = 12) -> tuple[list[tuple[str, int, str, str]], str, int]:
    """SNVs, indels, a multi-allelic site, both contig ends, and two ALTs no model scores."""
    with pysam.FastaFile(str(ECOLI)) as fasta:
        contig = fasta.references[0]
        length = fasta.get_reference_length(contig)
        seq = lambda start, end: fasta.fetch(contig, start, end).upper()  # noqa: E731
        rng = np.random.default_rng(7)
        records = []
        for pos in sorted(rng.choice(np.arange(10_000, length - 10_000), n_snv, replace=False)):
            ref = seq(int(pos) - 1, int(pos))
            records.append((contig, int(pos), ref, COMPLEMENT[ref]))
        records += [
            (contig, 1, seq(0, 1), COMPLEMENT[seq(0, 1)]),  # the first base
            (contig, length - 3001, seq(length - 3002, length - 2998), seq(length - 3002, length - 3001)),  # deletion
            (contig, length - 2001, seq(length - 2002, length - 2001), seq(length - 2002, length - 2001) + "GAT"),
            (contig, length - 1001, seq(length - 1002, length - 1001),
             f"{COMPLEMENT[seq(length - 1002, length - 1001)]},{COMPLEMENT[COMPLEMENT[seq(length - 1002, length - 1001)]]}"),
            (contig, length - 501, seq(length - 502, length - 501), "<DEL>"),
            (contig, length - 401, seq(length - 402, length - 401), "N"),
            (contig, length, seq(length - 1, length), COMPLEMENT[seq(length - 1, length)]),  # the last base
        ]
    return sorted(records, key=lambda r: r[1]), contig, length


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    wd = Workdir(tmp_path_factory.mktemp("variants") / "wd")
    write_bed_subset(DATA / "ecoli_k12_regions.bed", wd.path("regions.bed"), 8)
    records, contig, length = ecoli_variants()
    write_vcf(wd.path("calls.vcf"), records, contig, length)
    config = wd.write_config("variants.yaml", {"input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]},
                                               "variants": {"vcf": "calls.vcf", "per_shard": 8}})
    planned = jobs_in_dry_run(wd.snakemake("-n", configs=[config]).stdout)
    run = wd.snakemake(configs=[config])
    return wd, records, planned, run


def test_every_variant_is_scored_or_skipped_with_a_reason(scored_run):
    wd, records, planned, _ = scored_run
    scores = pd.read_csv(wd.path("results/variants/scores.tsv"), sep="\t")
    skipped = pd.read_csv(wd.path("results/variants/skipped.tsv"), sep="\t")
    alts = sum(len(alt.split(",")) for *_, alt in records)
    assert len(scores) + len(skipped) == alts
    assert sorted(skipped["reason"].str.split(" ").str[0]) == ["REF/ALT", "symbolic"]
    assert planned["score_variants"] == -(-len(scores) // 8) and planned["variant_table"] == 1
    assert (scores["pos"].diff().dropna() >= 0).all()  # VCF order
    assert {"llr", "cosine_distance", "l2_distance", "mean.log2_odds.coding", "mean.p_alt.intergenic"} \
        <= set(scores.columns)
    assert scores[["llr", "cosine_distance", "mean.delta.coding"]].notna().all().all()
    ends = scores[scores["pos"].isin([1, records[-1][1]])]
    assert len(ends) == 2  # both contig ends scored, their windows moved inside the contig
    table = read_parquet(wd.path("results/variants/scores.parquet")).to_pandas()
    assert table.loc[table["pos"] == 1, "shifted"].item()
    p_ref, p_alt = table["mean.p_ref.coding"], table["mean.p_alt.coding"]
    np.testing.assert_allclose(table["mean.delta.coding"], p_alt - p_ref)
    np.testing.assert_allclose(table["mean.log2_odds.coding"],
                               np.log2(p_alt / (1 - p_alt)) - np.log2(p_ref / (1 - p_ref)), rtol=1e-6)
    np.testing.assert_allclose(table["mean.score_change.coding"], (p_alt - p_ref) * np.maximum(p_ref, p_alt))


def test_the_scored_vcf_holds_every_score_as_info(scored_run):
    wd, records, _, run = scored_run
    scores = read_parquet(wd.path("results/variants/scores.parquet")).to_pandas()
    with pysam.VariantFile(str(wd.path("results/variants/scored.vcf.gz"))) as vcf:
        header = vcf.header.info
        assert "DNALM_llr" in header and "log-likelihood" in header["DNALM_llr"].description
        rows = list(vcf)
        assert len(rows) == len(records) and [r.pos for r in rows] == [r[1] for r in records]
        assert all(r.info["DP"] == 10 + i for i, r in enumerate(rows))  # the input's fields kept
        by_key = {(int(r.record), int(r.alt_index)): r.llr for r in scores.itertuples()}
        for i, row in enumerate(rows):
            for j, _ in enumerate(row.alts):
                want = by_key.get((i, j))
                got = row.info.get("DNALM_llr", (None,) * len(row.alts))[j]
                assert (got is None) if want is None else got == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert len(list(vcf.fetch(records[0][0], 0, 20))) == 1  # tabix-indexed
    assert "variants/scored.vcf.gz" in run.stdout


def test_sharded_scores_equal_one_job(scored_run, tmp_path):
    """The gathered shards (8 variants a job) equal one job over the whole table."""
    wd, *_ = scored_run
    results = wd.path("results")
    gathered = read_parquet(results / "variants" / "scores.parquet").to_pandas()
    from dnalm.settings import EncoderSpec

    whole = score_shard(str(results / "variants" / "variants.parquet"), 0, 10_000, str(ECOLI), 512, 256,
                        EncoderSpec(str(results / "encoder" / "tiny")), {"mean": str(results / "heads" / "mean")},
                        "mean", str(tmp_path / "whole.parquet"), mlm_spec=EncoderSpec(str(results / "encoder" / "tiny"),
                                                                                      precision="fp32"))
    for column in ("llr", "cosine_distance", "mean.p_alt.coding"):
        np.testing.assert_allclose(gathered[column], whole[column], rtol=1e-5, atol=1e-6)
    with pysam.VariantFile(str(results / "variants" / "scored.vcf.gz")) as vcf:
        lines = [r for r in vcf.header.records if r.key == "dnalm_provenance"]
    assert len(lines) == 1 and json.loads(lines[0].value)["stage"] == "score_variants"


def test_bcftools_reads_the_scored_vcf(scored_run):
    """What a user runs next: bcftools (Debian's; `make test` installs it in CI) queries the
    INFO scores of every scored ALT; the skipped ones read as missing."""
    import shutil
    import subprocess

    if shutil.which("bcftools") is None:
        pytest.skip("bcftools is not installed: the scored VCF is read with pysam above only "
                    "(make test installs it in CI)")
    wd, records, *_ = scored_run
    vcf = wd.path("results/variants/scored.vcf.gz")
    query = subprocess.run(["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t%INFO/DNALM_llr\t"
                            "%INFO/DNALM_mean.log2_odds.coding\n", str(vcf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert len(query) == len(records)
    scores = pd.read_csv(wd.path("results/variants/scores.tsv"), sep="\t")
    values = [v for line in query for v in line.split("\t")[4].split(",") if v != "."]
    assert len(values) == len(scores)
    np.testing.assert_allclose(np.array(values, dtype=float), scores["llr"], rtol=1e-5, atol=1e-5)
    region = subprocess.run(["bcftools", "view", "-H", str(vcf), f"{records[0][0]}:1-10"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert len(region) == 1  # the index answers a region query


def test_saturation_mutagenesis_maps_every_base(scored_run):
    """Two short regions: every base changed three ways, per-base tracks without gaps over
    them, and the heatmap; a region over max_length is refused before any job."""
    import pyBigWig

    wd, *_ = scored_run
    contig = "NC_000913.3"
    wd.path("mutate.bed").write_text(f"{contig}\t100000\t100006\n{contig}\t200000\t200004\n")
    config = wd.write_config("mutate.yaml", {"input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]},
                                             "variants": {"vcf": "calls.vcf", "per_shard": 8},
                                             "mutagenesis": {"regions": "mutate.bed", "max_length": 10}})
    planned = jobs_in_dry_run(wd.snakemake("-n", configs=[config]).stdout)
    # only the mutagenesis jobs: 30 changes, 8 a job
    assert {rule for rule in planned if rule != "total"} == {"mutagenesis_table", "score_variants",
                                                             "gather_mutagenesis", "all"}
    assert planned["score_variants"] == 4
    wd.snakemake(configs=[config])
    folder = wd.path("results/mutagenesis")
    scores = pd.read_csv(folder / "scores.tsv", sep="\t")
    assert len(scores) == 3 * 10 and (scores["ref"] != scores["alt"]).all()
    assert scores.groupby("pos")["alt"].nunique().eq(3).all()
    tracks = pd.read_csv(folder / "tracks" / "tracks.tsv", sep="\t")
    assert {"llr", "cosine_distance", "mean.log2_odds.coding"} <= set(tracks["score"])
    bw = pyBigWig.open(str(folder / "tracks" / tracks.loc[tracks["score"] == "llr", "file"].iloc[0]))
    values = bw.values(contig, 100000, 100006)
    bw.close()
    per_base = scores[scores["pos"].between(100001, 100006)].groupby("pos")["llr"].mean().to_numpy()
    np.testing.assert_allclose(values, per_base, rtol=1e-5, atol=1e-6)
    assert (folder / "heatmap.png").stat().st_size > 0

    wd.path("long.bed").write_text(f"{contig}\t100000\t100011\n")
    refused = wd.write_config("long.yaml", {"input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]},
                                            "mutagenesis": {"regions": "long.bed", "max_length": 10}})
    run = wd.snakemake("-n", configs=[refused], check=False)
    assert run.returncode != 0 and "long.bed:1" in run.output and "mutagenesis.max_length" in run.output


def test_variants_scored_in_their_regions_context(scored_run):
    """variants.context: a variant inside a configured region is scored by the head over the
    whole region; its ref score is the region's own classification (the classify table's)."""
    wd, *_ = scored_run
    regions = pd.read_csv(wd.path("regions.bed"), sep="\t", header=None).iloc[[0, 5, 9]]
    records = []
    with pysam.FastaFile(str(ECOLI)) as fasta:
        contig = fasta.references[0]
        for _, region in regions.iterrows():
            middle = (int(region[1]) + int(region[2])) // 2
            ref = fasta.fetch(contig, middle, middle + 1).upper()
            records.append((contig, middle + 1, ref, COMPLEMENT[ref]))
        first = int(regions.iloc[0][1]) + 100  # a 3-bp deletion in the first region too
        records.append((contig, first + 1, fasta.fetch(contig, first, first + 4).upper(),
                        fasta.fetch(contig, first, first + 1).upper()))
        records.append((contig, 5, fasta.fetch(contig, 4, 5).upper(), "G" if fasta.fetch(contig, 4, 5) != "G" else "C"))
    records.sort(key=lambda r: r[1])
    write_vcf(wd.path("inside.vcf"), records, contig, 4641652)
    config = wd.write_config("context.yaml", {
        "input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]}, "outdir": "results",
        "variants": {"vcf": "inside.vcf", "per_shard": 8, "context": True}})
    wd.snakemake(configs=[config])
    scores = read_parquet(wd.path("results/variants/scores.parquet")).to_pandas()
    inside = scores[scores["context_region"] != ""]
    assert len(inside) == 4 and (scores["context_region"] == "").sum() == 1  # pos 5 lies in no region
    table = pd.read_csv(wd.path("results/classify/mean/predictions.tsv"), sep="\t").set_index("seq_id")
    np.testing.assert_allclose(inside["mean.context.p_ref.coding"],
                               table.loc[inside["context_region"], "prob_coding"], rtol=1e-4, atol=1e-5)
    assert (inside["mean.context.delta.coding"].abs() > 0).any()
    assert scores.loc[scores["context_region"] == "", "mean.context.delta.coding"].isna().all()


def test_a_vcf_the_gather_could_not_write_is_refused_before_any_job(tmp_path):
    """Unsorted, or holding the INFO fields the scores go to (a VCF this run scored): both
    found when the DAG is built, not after the scoring jobs."""
    wd = Workdir(tmp_path / "wd")
    write_bed_subset(DATA / "ecoli_k12_regions.bed", wd.path("regions.bed"), 2)
    records, contig, length = ecoli_variants(4)
    snvs = [r for r in records if len(r[2]) == 1 and len(r[3]) == 1 and r[3] in "ACGT"]
    write_vcf(wd.path("unsorted.vcf"), [snvs[2], snvs[0], snvs[1]], contig, length)
    write_vcf(wd.path("scored.vcf"), snvs[:3], contig, length)
    text = wd.path("scored.vcf").read_text().replace(
        "##INFO=<ID=DP", '##INFO=<ID=DNALM_mean.delta.coding,Number=A,Type=Float,Description="x">\n##INFO=<ID=DP')
    wd.path("scored.vcf").write_text(text)
    for vcf, said in (("unsorted.vcf", "out of order"), ("scored.vcf", "DNALM_mean.delta.coding")):
        config = wd.write_config(f"{vcf}.yaml", {"input": {"bed": "regions.bed"}, "heads": {"train": ["mean"]},
                                                 "variants": {"vcf": vcf}})
        run = wd.snakemake("-n", configs=[config], check=False)
        assert run.returncode != 0 and said in run.output and vcf in run.output, run.output[-2000:]
        assert not wd.path("results").exists()
