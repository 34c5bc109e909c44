"""The variant-effect stage of a run (`variants.vcf` set): plan, table, scoring jobs, gather.

    plan_variants      DAG time: the VCF read and checked against the reference (REF at
                       every record, contig names, unscorable alleles), so a bad VCF stops
                       the run before any job; the count of variants to score sets the
                       number of scoring jobs. Kept under <outdir>/.dnalm/ while the inputs
                       are unchanged, so a large VCF is read once.
    variant_table      job: variants/variants.parquet (one row per scored ALT, VCF order)
                       and variants/skipped.tsv (one row per ALT not scored, with why).
    score_shard        job (the GPU job on a cluster, like embed_shard): `variants.per_shard`
                       rows of the table scored (`variants.scoring`).
    gather_scores      job: scores.parquet and scores.tsv in VCF order, and the input VCF
                       with every score as an INFO field, bgzipped and tabix-indexed.

Saturation mutagenesis (`mutagenesis.regions`) is a second study through the same scoring
jobs: `plan_mutagenesis` (DAG time), `mutagenesis_table` and `gather_mutagenesis` (the
per-base table, tracks and heatmap; `variants.mutagenesis`).

Variant windows are `windows.size` bases (`variants.alleles`); a variant whose alleles or
contig do not fit one is skipped with its reason, as is every ALT `variants.records` cannot
score.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import __version__
from ..errors import InputError
from ..inputs.fasta import open_fasta, read_fai
from ..inputs.plan import file_state
from ..io import read_parquet, read_provenance, write_json_atomic, write_table_atomic
from .alleles import allele_windows, window_problem
from .records import Skipped, Variant, read_regions_bed, read_variants, write_skipped

TABLE_COLUMNS = ("record", "alt_index", "chrom", "pos", "id", "ref", "alt", "kind")
KEY_COLUMNS = ("record", "alt_index")


@dataclass(frozen=True)
class VariantPlan:
    scored: int  # ALTs to score
    skipped: int  # ALTs listed in skipped.tsv
    per_shard: int
    key: str

    @property
    def shards(self) -> int:
        return max(1, -(-self.scored // self.per_shard))


def read_and_check(vcf: str, fasta: str, window_size: int, regions: str = "",
                   ref_mismatch: str = "stop") -> tuple[list[Variant], list[Skipped]]:
    """The variants to score and the skipped ALTs, in VCF order: `read_variants`, then the
    variants whose windows cannot be made (`window_problem`) moved to the skipped."""
    wanted = read_regions_bed(regions) if regions else None
    variants, skipped = read_variants(vcf, fasta, regions=wanted, ref_mismatch=ref_mismatch)
    lengths = read_fai(fasta)
    kept = []
    for variant in variants:
        problem = window_problem(variant, window_size, lengths[variant.chrom])
        if problem:
            skipped.append(Skipped.of(variant, problem))
        else:
            kept.append(variant)
    skipped.sort(key=lambda row: (row.record, row.alt_index))
    return kept, skipped


def _plan_key(settings, fasta: str, window_size: int, heads: tuple[str, ...] = ()) -> str:
    from . import alleles, records, vcf_out

    code = b"".join(Path(module.__file__).read_bytes()
                    for module in (records, alleles, vcf_out, sys.modules[__name__]))
    files = [settings.vcf, settings.regions, fasta, f"{fasta}.fai"]
    state = {"version": __version__, "code": hashlib.sha256(code).hexdigest(), "settings": asdict(settings),
             "window_size": window_size, "heads": list(heads), "files": [file_state(f) if f else None for f in files]}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _plan_file(outdir: str) -> Path:
    return Path(outdir) / ".dnalm" / "variants_plan.json"


def plan_variants(settings, fasta: str, window_size: int, outdir: str, heads: tuple[str, ...] = ()) -> VariantPlan:
    """The variant plan (every check made), from the cache under `outdir` when the VCF,
    regions, reference, settings and heads are those it was made from. Besides the records
    (`read_and_check`), the VCF must be sorted and free of the INFO fields the scores of
    these `heads` go to (`vcf_out.check_input_vcf`): found at the gather, after the
    scoring jobs, either would waste them."""
    from .vcf_out import check_input_vcf

    key = _plan_key(settings, fasta, window_size, heads)
    try:
        cached = json.loads(_plan_file(outdir).read_text())
        if cached.get("key") == key:
            return VariantPlan(**cached)
    except (OSError, ValueError, TypeError):
        pass
    variants, skipped = read_and_check(settings.vcf, fasta, window_size, settings.regions, settings.ref_mismatch)
    check_input_vcf(settings.vcf, ["llr", "cosine_distance", "l2_distance"], [f"{head}." for head in heads])
    if not variants:
        raise InputError(f"no variant to score: {len(skipped)} ALT(s) skipped (the first: "
                         f"{_first_reason(skipped)})" if skipped else "no variant in the VCF (or in variants.regions)",
                         path=settings.vcf, fix="check variants.vcf, variants.regions and the reasons above")
    return VariantPlan(len(variants), len(skipped), settings.per_shard, key)


def _first_reason(skipped: list[Skipped]) -> str:
    row = skipped[0]
    return f"{row.chrom}:{row.pos} {row.ref}>{row.alt}: {row.reason}"


def save_variant_plan(plan: VariantPlan, outdir: str) -> None:
    write_json_atomic(_plan_file(outdir), asdict(plan))


# --------------------------------------------------------------------- table


def variant_table(vcf: str, fasta: str, window_size: int, regions: str, ref_mismatch: str, table_out: str,
                  skipped_out: str, expected: int) -> None:
    """variants.parquet (TABLE_COLUMNS) and skipped.tsv; `expected`: the DAG's count."""
    variants, skipped = read_and_check(vcf, fasta, window_size, regions, ref_mismatch)
    if len(variants) != expected:
        raise InputError(f"holds {len(variants)} variants to score, but {expected} when the run was planned",
                         path=vcf, fix="the VCF changed while the workflow ran: run snakemake again")
    write_table(variants, table_out, {"stage": "variants", "vcf": os.path.abspath(vcf),
                                      "reference": os.path.abspath(fasta), "window_size": window_size,
                                      "skipped": len(skipped)})
    write_skipped(skipped, skipped_out)
    reasons: dict[str, int] = {}
    for row in skipped:
        reasons[row.reason.split(" (")[0]] = reasons.get(row.reason.split(" (")[0], 0) + 1
    print(f"{len(variants)} variant(s) to score, {len(skipped)} ALT(s) skipped"
          + "".join(f"\n  {count} {reason}" for reason, count in reasons.items()), file=sys.stderr)


def write_table(variants: list[Variant], table_out: str, provenance: dict) -> None:
    table = pd.DataFrame([{name: getattr(v, name) for name in TABLE_COLUMNS} for v in variants],
                         columns=list(TABLE_COLUMNS))
    write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), table_out, provenance)


def plan_mutagenesis(settings, fasta: str, window_size: int, per_shard: int) -> VariantPlan:
    """The saturation-mutagenesis plan: its regions checked, its changes counted."""
    from .mutagenesis import mutagenesis_variants, read_mutagenesis_regions

    regions = read_mutagenesis_regions(settings.regions, fasta, settings.max_length, window_size)
    return VariantPlan(len(mutagenesis_variants(regions, fasta)), 0, per_shard, "")


def mutagenesis_table(regions_bed: str, fasta: str, window_size: int, max_length: int, table_out: str,
                      expected: int) -> None:
    """mutagenesis/variants.parquet: every single-base change of the regions."""
    from .mutagenesis import mutagenesis_variants, read_mutagenesis_regions

    regions = read_mutagenesis_regions(regions_bed, fasta, max_length, window_size)
    variants = mutagenesis_variants(regions, fasta)
    if len(variants) != expected:
        raise InputError(f"gives {len(variants)} changes to score, but {expected} when the run was planned",
                         path=regions_bed, fix="the regions changed while the workflow ran: run snakemake again")
    write_table(variants, table_out, {"stage": "mutagenesis", "regions": os.path.abspath(regions_bed),
                                      "reference": os.path.abspath(fasta), "window_size": window_size})
    print(f"{len(regions)} region(s), {len(variants)} single-base changes to score", file=sys.stderr)


# ------------------------------------------------------------------- scoring


def _variant(row) -> Variant:
    return Variant(int(row.record), int(row.alt_index), row.chrom, int(row.pos), row.id, row.ref, row.alt)


def shard_windows(table: pd.DataFrame, fasta: str, window_size: int, lean: int = 0) -> tuple[list[str], list[str],
                                                                                             list[str], pd.DataFrame]:
    """The ref and alt windows of the table's rows (what the heads and distances read), the
    alt windows of the zero-shot score (`scoring.zero_shot_alt`), and where each lies
    (`lean`: `alleles.allele_windows`)."""
    from .scoring import as_model_bases, zero_shot_alt

    lengths = read_fai(fasta)
    refs, alts, llr_alts, places = [], [], [], []
    with open_fasta(fasta) as reference:
        for row in table.itertuples(index=False):
            windows = allele_windows(_variant(row), reference, window_size, lengths[row.chrom], lean)
            refs.append(as_model_bases(windows.ref_seq))
            alts.append(as_model_bases(windows.alt_seq))
            llr_alts.append(zero_shot_alt(refs[-1], windows.ref_offset, windows.ref_len, row.alt))
            places.append((windows.start0, windows.alt_start0, windows.shifted))
    where = pd.DataFrame(places, columns=["window_start", "alt_window_start", "shifted"])
    return refs, alts, llr_alts, where


def score_shard(table_path: str, shard: int, per_shard: int, fasta: str, window_size: int, window_stride: int,
                spec, head_dirs: dict[str, str], pooling: str, out_path: str, *, mlm_spec=None,
                device: str = "cpu", engine_settings=None, context: dict | None = None,
                max_n_fraction: float = 1.0) -> pd.DataFrame:
    """Scores of rows [shard * per_shard, (shard + 1) * per_shard) of the variant table.

    `spec`: the encoder the heads read (the run's embedding encoder); `head_dirs`: head
    name -> folder; `pooling`: the window vector the distances use; `mlm_spec`: the
    masked-LM model of the zero-shot score (None: no LLR column); `max_n_fraction`
    (`heads.max_n_fraction`): a window with more N gets no head scores (NaN).

    With `strands: both` every variant is scored on both placements of its windows (the
    extra base of uneven flanks on the right, then on the left) and the outputs averaged:
    a placement is the other's reverse complement on the reverse-complemented contig, so the
    scores do not depend on the strand the reference is written on.

    `context` (`variants.context`): also each head's scores in the variant's region
    (`variants.context.context_outputs`; keys: regions, sequences, windows, embeddings,
    per_shard, max_n_fraction), as columns <head>.context.<score>.<class> and the region's
    seq_id in `context_region`.
    """
    from ..compute import pick_device
    from ..embedding.engine import Embedder
    from ..encoders import Encoder
    from ..learning.heads import check_compatible, load_head
    from .scoring import FIXED_MEANINGS, ZeroShot, describe_llr_method, head_columns

    device = pick_device(device)
    full = read_parquet(table_path, rule="variant_table").to_pandas()
    table = full.iloc[shard * per_shard: (shard + 1) * per_shard].reset_index(drop=True)
    started = time.perf_counter()
    encoder = Encoder.load(spec, window_size, window_stride, device)
    embedder = Embedder(encoder, engine_settings)
    heads = {}
    for name, folder in head_dirs.items():
        heads[name] = load_head(folder)
        check_compatible(heads[name].config, encoder.identity.hidden_size, encoder.space.as_dict(), Path(folder))
    zero_shot = None
    if mlm_spec is None:
        print("no zero-shot score (llr): variants.zero_shot is false, or the model's checkpoint has no masked-LM "
              "head (said when the run was planned)", file=sys.stderr)
    else:
        mlm = Encoder.load(mlm_spec, window_size, window_stride, device, masked_lm=True, hash_weights=False)
        print(describe_llr_method(mlm.tokenizer), file=sys.stderr)
        zero_shot = ZeroShot(mlm)
    placements = (0, 1) if spec.strands == "both" else (0,)
    scored = [_score_placement(table, fasta, window_size, window_stride, lean, embedder, spec.strands, heads,
                               pooling, zero_shot, max_n_fraction) for lean in placements]
    where = scored[0][0]
    columns = {name: np.mean([s[1][name] for s in scored], axis=0) for name in scored[0][1]}
    meanings = dict(FIXED_MEANINGS)
    for name, head in heads.items():
        ref = np.mean([s[2][name][0] for s in scored], axis=0)
        alt = np.mean([s[2][name][1] for s in scored], axis=0)
        task = (head.config.task or {}).get("name", "classification")
        head_scores, head_meanings = head_columns(name, task, list(head.config.class_names), ref, alt)
        columns.update(head_scores)
        meanings.update(head_meanings)
    if context is not None:
        from .context import context_outputs

        region_ids, outputs = context_outputs(table, context["regions"], context["sequences"], context["windows"],
                                              context["embeddings"], context["per_shard"], heads, embedder,
                                              spec.strands, window_stride, context["max_n_fraction"])
        where["context_region"] = region_ids
        for name, head in heads.items():
            task = (head.config.task or {}).get("name", "classification")
            head_scores, head_meanings = head_columns(f"{name}.context", task, list(head.config.class_names),
                                                      *outputs[name])
            columns.update(head_scores)
            meanings.update({key: f"{text}, in the variant's region" for key, text in head_meanings.items()})
    if zero_shot is None:
        meanings.pop("llr")
    n = len(table)
    elapsed = time.perf_counter() - started
    print(f"{n} variant(s) scored on {device} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.1f} variants/s"
          f"{', both window placements' if len(placements) > 1 else ''})", file=sys.stderr)
    result = pd.concat([table[list(KEY_COLUMNS)], where, pd.DataFrame(columns)], axis=1)
    provenance = {**read_provenance(table_path, rule="variant_table"), **encoder.space.as_dict(),
                  "stage": "score_variants", "heads": head_dirs, "pooling": pooling,
                  "zero_shot_model": mlm_spec.model if mlm_spec is not None else None, "meanings": meanings}
    write_table_atomic(pa.Table.from_pandas(result, preserve_index=False), out_path, provenance)
    return result


def _score_placement(table: pd.DataFrame, fasta: str, window_size: int, window_stride: int, lean: int, embedder,
                     strands: str, heads: dict, pooling: str, zero_shot, max_n_fraction: float) -> tuple:
    """One placement's (where the windows lie, {distance and llr columns}, {head: (ref
    outputs, alt outputs)})."""
    from ..learning.heads import predict
    from .scoring import distances, n_fractions, one_window_sets

    refs, alts, llr_alts, where = shard_windows(table, fasta, window_size, lean)
    n = len(table)
    vectors = embedder.embed(refs + alts, strands)
    chosen = vectors.mean if pooling == "mean" else vectors.summary
    columns = distances(chosen[:n], chosen[n:])
    outputs = {}
    for name, head in heads.items():
        matrix = vectors.mean if head.config.pooling == "mean" else vectors.summary
        data = one_window_sets(matrix, vectors.tokens, window_stride, n_fractions(refs + alts), max_n_fraction)
        usable = data.has_usable()
        predicted = np.full((2 * n, head.config.n_classes), np.nan)
        predicted[usable] = predict(head, data, np.arange(2 * n)[usable])
        outputs[name] = (predicted[:n], predicted[n:])
    if zero_shot is not None:
        columns["llr"] = zero_shot.llr(refs, llr_alts, strands)
    return where, columns, outputs


# -------------------------------------------------------------------- gather


def _merged_scores(shard_paths: list[str], table_path: str):
    """(the table with every score, the scores with their keys, the scores' meanings, the
    scoring jobs' provenance), the shards checked to hold the table's rows in order."""
    table = read_parquet(table_path, rule="variant_table").to_pandas()
    scores = pd.concat([read_parquet(path, rule="score_variants").to_pandas() for path in shard_paths],
                       ignore_index=True)
    if len(scores) != len(table) or \
            not (scores[list(KEY_COLUMNS)].to_numpy() == table[list(KEY_COLUMNS)].to_numpy()).all():
        raise RuntimeError("the scored shards do not hold the variant table's rows in order: re-run the workflow")
    provenance = read_provenance(shard_paths[0], rule="score_variants")
    meanings = provenance.pop("meanings")
    merged = pd.concat([table, scores.drop(columns=list(KEY_COLUMNS))], axis=1)
    return merged, scores, meanings, provenance


def _write_tables(merged: pd.DataFrame, parquet_out: str, tsv_out: str, provenance: dict, meanings: dict,
                  stage: str) -> None:
    from ..io import atomic_path

    write_table_atomic(pa.Table.from_pandas(merged, preserve_index=False), parquet_out,
                       {**provenance, "stage": stage, "meanings": meanings})
    with atomic_path(tsv_out) as tmp:
        merged.drop(columns=list(KEY_COLUMNS)).to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


def gather_scores(shard_paths: list[str], table_path: str, vcf: str, parquet_out: str, tsv_out: str,
                  vcf_out: str) -> pd.DataFrame:
    """The shards' scores in VCF order beside each variant's chrom, pos, id, ref, alt;
    Parquet, TSV, and the input VCF with the scores as INFO fields."""
    from .vcf_out import write_scored_vcf

    merged, scores, meanings, provenance = _merged_scores(shard_paths, table_path)
    score_columns = [c for c in scores.columns if c in meanings]
    _write_tables(merged, parquet_out, tsv_out, provenance, meanings, "variants")
    write_scored_vcf(vcf, scores[list(KEY_COLUMNS) + score_columns], {c: meanings[c] for c in score_columns},
                     vcf_out, provenance={key: value for key, value in provenance.items() if key != "heads"})
    print(f"{len(merged)} variant(s), {len(score_columns)} score(s) each: {parquet_out}, {tsv_out}, {vcf_out}",
          file=sys.stderr)
    return merged


def gather_mutagenesis(shard_paths: list[str], table_path: str, regions_bed: str, fasta: str, window_size: int,
                       max_length: int, parquet_out: str, tsv_out: str, tracks_dir: str,
                       heatmap_out: str) -> pd.DataFrame:
    """The per-base table, a bigWig per score (mean and largest change at each base) and
    the heatmap of the first regions."""
    from .mutagenesis import heatmap_score, plot_heatmap, read_mutagenesis_regions, track_columns, write_tracks

    merged, scores, meanings, provenance = _merged_scores(shard_paths, table_path)
    score_columns = [c for c in scores.columns if c in meanings]
    _write_tables(merged, parquet_out, tsv_out, provenance, meanings, "mutagenesis")
    files = write_tracks(merged, track_columns(score_columns), tracks_dir, read_fai(fasta))
    regions = read_mutagenesis_regions(regions_bed, fasta, max_length, window_size)
    shown = heatmap_score(score_columns)
    plot_heatmap(merged, shown, regions, heatmap_out)
    print(f"{len(merged)} single-base change(s) of {len(regions)} region(s): {parquet_out}, {tsv_out}; "
          f"{len(files)} track(s) in {tracks_dir}; heatmap of {shown}: {heatmap_out}", file=sys.stderr)
    return merged
