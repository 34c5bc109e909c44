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


def main(shared: str) -> None:
    ref = os.path.join(shared, "reference")
    for name in ["ecoli_k12_mg1655_NC_000913.3", "phiX174_NC_001422.1", "lambda_phage_NC_001416.1"]:
        bgzip_fasta(os.path.join(ref, f"{name}.fa.gz"), f"data/{name}.fa.gz")
    region_csv_to_bed(os.path.join(ref, "ecoli_k12_region_windows.csv.gz"), "data/ecoli_k12_regions.bed")
    ecoli_tile_targets(os.path.join(ref, "ecoli_k12_mg1655_NC_000913.3.features.bed.gz"),
                       "data/ecoli_k12_mg1655_NC_000913.3.fa.gz.fai", "data/ecoli_k12_tiles_annotated.bed")
    with open(os.path.join(ref, "phiX174_NC_001422.1.genes.bed")) as fin, open("data/phiX174_genes.bed", "w") as out:
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
