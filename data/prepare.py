"""How the bundled data files were made from the team's shared data folder.

Run once by a maintainer (`python data/prepare.py ../shared/data`); a clone
never needs it, the outputs are committed. Every sequence is real (NCBI
records; README.md, section 'Data and licences', gives sources and licences).
"""

import csv
import gzip
import os
import sys
import tempfile

import pysam


def bgzip_fasta(src: str, dst: str) -> None:
    """Re-compress a plain-gzip FASTA with bgzip so pysam can index it."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain.fa")
        with gzip.open(src) as fin, open(plain, "wb") as fout:
            fout.write(fin.read())
        pysam.tabix_compress(plain, dst, force=True)


def csv_to_fasta_and_labels(src: str, fasta: str, labels: str, group: str | None = None) -> None:
    """A labelled CSV (id,label,split,...,sequence) -> bgzip FASTA + labels TSV (with the CSV's
    column `group` as the table's group column, where given)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain.fa")
        with gzip.open(src, "rt") as fin, open(plain, "w") as fa, open(labels, "w") as lab:
            lab.write("id\tlabel\tsplit" + ("\tgroup" if group else "") + "\n")
            for row in csv.DictReader(fin):
                seq = row["sequence"]
                fa.write(f">{row['id']}\n")
                for i in range(0, len(seq), 80):
                    fa.write(seq[i : i + 80] + "\n")
                lab.write(f"{row['id']}\t{row['label']}\t{row['split']}" + (f"\t{row[group]}" if group else "") + "\n")
        pysam.tabix_compress(plain, fasta, force=True)


def region_csv_to_bed(src: str, bed: str) -> None:
    """Labelled E. coli windows -> BED6 + label + split columns."""
    with gzip.open(src, "rt") as fin, open(bed, "w") as out:
        for row in csv.DictReader(fin):
            out.write(
                "\t".join(
                    [row["source_accession"], row["start"], row["end"], row["id"], "0",
                     row["strand"], row["label"], row["split"]]
                )
                + "\n"
            )


TILE_FEATURES = ("CDS", "tRNA", "ncRNA", "rRNA", "repeat_region", "mobile_element")


def ecoli_tile_targets(features_bed: str, fasta_fai: str, bed: str, length: int = 1000, step: int = 2000) -> None:
    """1-kb tiles of the E. coli genome every 2 kb, with what the RefSeq annotation says of each,
    for the regression and multi-label recipes. BED columns: chrom start end name score strand,
    7 = coding_fraction;forward_coding_fraction (bases in any CDS, in a CDS on +), 8 = split
    (train: wholly in the first 75 % of the genome; test: wholly in the last 25 %; a tile across
    the boundary is left out), 9 = the feature types it overlaps, ';'-separated ('-' for none)."""
    import numpy as np

    with open(fasta_fai) as fh:
        chrom, size = fh.readline().split("\t")[:2]
    size = int(size)
    coding, forward = np.zeros(size, bool), np.zeros(size, bool)
    kinds: dict[str, list[tuple[int, int]]] = {kind: [] for kind in TILE_FEATURES}
    with gzip.open(features_bed, "rt") as fh:
        for line in fh:
            _, start, end, _, _, strand, kind = line.rstrip("\n").split("\t")[:7]
            start, end = int(start), int(end)
            if kind == "CDS":
                coding[start:end] = True
                if strand == "+":
                    forward[start:end] = True
            if kind in kinds:
                kinds[kind].append((start, end))
    boundary = int(size * 0.75)
    with open(bed, "w") as out:
        for start in range(0, size - length + 1, step):
            end = start + length
            if start < boundary < end:
                continue
            split = "train" if end <= boundary else "test"
            values = f"{coding[start:end].mean():.3f};{forward[start:end].mean():.3f}"
            overlaps = [kind for kind in TILE_FEATURES if any(s < end and start < e for s, e in kinds[kind])]
            out.write("\t".join([chrom, str(start), str(end), f"{chrom}:{start}-{end}", "0", "+", values, split,
                                  ";".join(overlaps) or "-"]) + "\n")


def ecoli_variants(fasta: str, vcf: str, seed: int = 15) -> None:
    """A VCF of variants on the E. coli genome for the variant recipe (config/examples/
    variants_ecoli.yaml). The positions and alleles are drawn (seeded), not observed: a
    test bed of every kind of record the stage meets, each REF read from the genome. 2,000
    SNVs, 250 deletions and 250 insertions of 1-12 bp, 100 multi-allelic sites, records at
    both contig ends, and a few ALTs no model scores (symbolic, N, '*'), bgzipped."""
    import random

    rng = random.Random(seed)
    with pysam.FastaFile(fasta) as reference:
        contig = reference.references[0]
        length = reference.get_reference_length(contig)

        def bases(start0, n):
            return reference.fetch(contig, start0, start0 + n).upper()

        def other(base, k=1):
            return "ACGT"[("ACGT".index(base) + k) % 4]

        rows = []
        for pos in rng.sample(range(2, length - 20), 2600):
            ref = bases(pos - 1, 1)
            kind = len(rows) % 26
            if kind < 20:  # SNV
                rows.append((pos, ref, other(ref, rng.randint(1, 3))))
            elif kind < 22:  # deletion of 1-12 bp (VCF pads with the base before)
                rows.append((pos, bases(pos - 1, 1 + rng.randint(1, 12)), ref))
            elif kind < 24:  # insertion of 1-12 bp
                rows.append((pos, ref, ref + "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 12)))))
            else:  # multi-allelic SNV
                rows.append((pos, ref, f"{other(ref, 1)},{other(ref, 2)}"))
        rows += [(1, bases(0, 1), other(bases(0, 1))), (2, bases(1, 3), bases(1, 1)),
                 (length, bases(length - 1, 1), other(bases(length - 1, 1))),
                 (length - 5, bases(length - 6, 6), bases(length - 6, 1)),
                 (length - 100, bases(length - 101, 1), "<DEL>"), (length - 200, bases(length - 201, 1), "N"),
                 (length - 300, bases(length - 301, 1), f"{other(bases(length - 301, 1))},*")]
    rows.sort()
    header = ["##fileformat=VCFv4.2", f"##contig=<ID={contig},length={length}>",
              "##source=data/prepare.py ecoli_variants (drawn positions and alleles, REF from the genome)",
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "variants.vcf")
        with open(plain, "w") as out:
            out.write("\n".join(header) + "\n")
            for i, (pos, ref, alt) in enumerate(rows):
                out.write(f"{contig}\t{pos}\tvar{i + 1}\t{ref}\t{alt}\t.\tPASS\t.\n")
        pysam.tabix_compress(plain, vcf, force=True)


def main(shared: str) -> None:
    ref = os.path.join(shared, "reference")
    for name in ["ecoli_k12_mg1655_NC_000913.3", "phiX174_NC_001422.1", "lambda_phage_NC_001416.1"]:
        bgzip_fasta(os.path.join(ref, f"{name}.fa.gz"), f"data/{name}.fa.gz")
    region_csv_to_bed(os.path.join(ref, "ecoli_k12_region_windows.csv.gz"), "data/ecoli_k12_regions.bed")
    ecoli_tile_targets(os.path.join(ref, "ecoli_k12_mg1655_NC_000913.3.features.bed.gz"),
                       "data/ecoli_k12_mg1655_NC_000913.3.fa.gz.fai", "data/ecoli_k12_tiles_annotated.bed")
    ecoli_variants("data/ecoli_k12_mg1655_NC_000913.3.fa.gz", "data/ecoli_k12_variants.vcf.gz")
    with open(os.path.join(ref, "phiX174_NC_001422.1.genes.bed")) as fin, open("data/phiX174_genes.bed", "w") as out:
        out.write(fin.read())
    features = "ecoli_k12_mg1655_NC_000913.3.features.bed.gz"  # the annotation recipe's, unchanged
    with open(os.path.join(ref, features), "rb") as fin, open(f"data/{features}", "wb") as out:
        out.write(fin.read())
    csv_to_fasta_and_labels(
        os.path.join(shared, "bacteria_genus", "bacteria_genus_fragments.csv.gz"),
        "data/bacteria_genus.fa.gz", "data/bacteria_genus_labels.tsv", group="organism")  # the source strain
    csv_to_fasta_and_labels(
        os.path.join(shared, "fixtures", "orchid_its_genus.csv.gz"),
        "data/orchid_its.fa.gz", "data/orchid_its_labels.tsv")
    csv_to_fasta_and_labels(
        os.path.join(shared, "fixtures", "dnabert_sample_101bp.csv.gz"),
        "data/dnabert_101bp.fa.gz", "data/dnabert_101bp_labels.tsv")


if __name__ == "__main__":
    main(sys.argv[1])
