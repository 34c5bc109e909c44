"""Saturation mutagenesis (`mutagenesis.regions`): every base of short regions changed to
each of the three others and scored as a variant (`variants.scoring`), giving per-base maps
of what the model reads where: a table, bigWig tracks per score (the mean over the three
changes at each base, and the largest change in absolute value, signed), and a heatmap of
bases x alleles of the first regions for the report.

A region's base that is not A, C, G or T gets no change (its rows are missing from the
table and its tracks have no value there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..inputs.fasta import open_fasta, read_fai
from ..io import atomic_dir, atomic_path, bed_header_like, open_text
from .records import Region, Variant

BASES = "ACGT"
# The scores mapped to tracks: the effects (signed) and the distances; p_ref and p_alt are
# the head's outputs, not effects.
TRACK_SCORES = ("delta", "log2_odds", "score_change", "llr", "cosine_distance", "l2_distance")
HEATMAP_REGIONS = 3


def read_mutagenesis_regions(path: str | os.PathLike, fasta: str | os.PathLike, max_length: int,
                             window_size: int) -> list[Region]:
    """The regions of a BED (chrom, start, end; more columns ignored), each checked: on a
    contig of the reference long enough for a window, inside it, and at most `max_length`
    bp (3 x length variants each)."""
    lengths = read_fai(fasta)
    regions: list[Region] = []
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or line.startswith("#") or bed_header_like(fields[0]):
                continue
            where = f"{path}:{number}"
            try:
                chrom, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise InputError("is not a BED line (chrom, start, end: tab-separated, integers)", path=where,
                                 fix="give mutagenesis.regions as a BED file") from None
            if chrom not in lengths:
                raise InputError(f"contig {chrom!r} is not in the reference", path=where,
                                 fix=f"use the reference's contig names ({', '.join(list(lengths)[:5])}, ...)")
            if not 0 <= start < end <= lengths[chrom]:
                raise InputError(f"region {start}-{end} is empty or outside {chrom} (0-{lengths[chrom]})", path=where,
                                 fix="give 0-based, half-open coordinates inside the contig")
            if end - start > max_length:
                raise InputError(f"region of {end - start:,} bp: saturation mutagenesis scores 3 variants a base, and "
                                 f"takes regions of at most mutagenesis.max_length ({max_length:,}) bp", path=where,
                                 fix="cut the region into pieces, or raise mutagenesis.max_length")
            if lengths[chrom] < window_size:
                raise InputError(f"contig {chrom} ({lengths[chrom]:,} bp) is shorter than a window "
                                 f"({window_size} bp)", path=where, fix="score regions of longer contigs")
            regions.append((chrom, start, end))
    if not regions:
        raise InputError("holds no region", path=path, fix="give mutagenesis.regions a BED with regions to mutate")
    return regions


def mutagenesis_variants(regions: list[Region], fasta: str | os.PathLike) -> list[Variant]:
    """Every single-base change of the regions, region by region, base by base, alleles in
    ACGT order: `record` counts bases, `alt_index` the three changes of one base."""
    variants: list[Variant] = []
    record = 0
    with open_fasta(fasta) as reference:
        for chrom, start, end in regions:
            bases = reference.fetch(chrom, start, end).upper()
            for offset, ref in enumerate(bases):
                if ref in BASES:
                    pos = start + offset + 1
                    for alt_index, alt in enumerate(b for b in BASES if b != ref):
                        variants.append(Variant(record, alt_index, chrom, pos, f"{chrom}:{pos}", ref, alt))
                record += 1
    return variants


def track_columns(columns: list[str]) -> list[str]:
    """The score columns mapped to tracks (`TRACK_SCORES`)."""
    return [c for c in columns if c in TRACK_SCORES or (c.count(".") >= 2 and c.split(".")[1] in TRACK_SCORES)]


def per_base(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """chrom, start, end, mean, max_abs of one score at each mutated base: the mean of its
    three changes, and the change of largest absolute value (with its sign)."""
    grouped = scores.groupby(["chrom", "pos"], sort=False)[column]
    mean = grouped.mean()
    max_abs = grouped.agg(lambda values: values.iloc[int(np.nanargmax(np.abs(values.to_numpy())))]
                          if values.notna().any() else np.nan)
    out = mean.rename("mean").to_frame().join(max_abs.rename("max_abs")).reset_index()
    out.insert(1, "start", out["pos"] - 1)
    out.insert(2, "end", out["pos"])
    return out.drop(columns="pos")


def write_tracks(scores: pd.DataFrame, columns: list[str], out_dir: str, sizes: dict[str, int]) -> list[str]:
    """<score>.mean.bw and <score>.max_abs.bw per score column, in one folder written whole."""
    from ..outputs.tracks import track_names, write_bigwig

    stems = track_names(columns, prefix="")
    files = []
    with atomic_dir(out_dir) as tmp:
        for column in columns:
            values = per_base(scores, column)
            for stat in ("mean", "max_abs"):
                segments = values[["chrom", "start", "end"]].assign(value=values[stat]).dropna()
                name = f"{stems[column]}.{stat}.bw"
                write_bigwig(Path(tmp) / name, sizes, segments)
                files.append(name)
        pd.DataFrame({"score": [c for c in columns for _ in (0, 1)],
                      "statistic": ["mean", "max_abs"] * len(columns), "file": files}) \
            .to_csv(Path(tmp) / "tracks.tsv", sep="\t", index=False)
    return files


def heatmap_score(columns: list[str]) -> str:
    """The score the heatmap shows: the zero-shot LLR where there is one, else the first
    head's first log2 odds (or delta), else the cosine distance."""
    if "llr" in columns:
        return "llr"
    for score in ("log2_odds", "delta"):
        found = [c for c in columns if c.count(".") >= 2 and c.split(".")[1] == score]
        if found:
            return found[0]
    return "cosine_distance"


def plot_heatmap(scores: pd.DataFrame, column: str, regions: list[Region], path: str) -> None:
    """Bases x alleles of the first regions: the score of changing each base to each allele
    (the reference base's own cell empty), one panel a region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = regions[:HEATMAP_REGIONS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(min(24, 4 + 0.12 * max(e - s for _, s, e in shown)),
                                                      1.9 * len(shown) + 0.6), squeeze=False)
    limit = float(np.nanmax(np.abs(scores[column].to_numpy()))) if scores[column].notna().any() else 1.0
    for ax, (chrom, start, end) in zip(axes[:, 0], shown):
        grid = np.full((4, end - start), np.nan)
        here = scores[(scores["chrom"] == chrom) & (scores["pos"] > start) & (scores["pos"] <= end)]
        grid[[BASES.index(a) for a in here["alt"]], (here["pos"] - start - 1).to_numpy()] = here[column].to_numpy()
        image = ax.imshow(grid, aspect="auto", cmap="coolwarm", vmin=-limit if column != "cosine_distance" else 0,
                          vmax=limit, interpolation="nearest", extent=(start, end, 3.5, -0.5))
        ax.set_yticks(range(4), list(BASES))
        ax.set_ylabel("allele")
        ax.set_title(f"{chrom}:{start + 1:,}-{end:,}", fontsize=9)
        fig.colorbar(image, ax=ax, label=column, fraction=0.03, pad=0.01)
    axes[-1, 0].set_xlabel("position (0-based)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
