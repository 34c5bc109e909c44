"""Stage 5: apply a trained head to every sequence; write the tables and tracks.

Two rules. `classify_shards`, one job per `classify.shards_per_job` consecutive
embedding shards (in parallel on a cluster), computes what every head predicts (class
probabilities; values or label probabilities for the other tasks) for the
sequences that *close* in its shards, by every head, and writes them to
`classify/<head>/shards/group_NNNNN.parquet`. `gather_predictions`, one job per head,
joins those into the per-sequence table and writes the tracks (tracks.py). What is said
below of a shard's job holds for each shard of a job, in order.

Sequences straddling shards. make_windows cuts a shard every `windows.per_shard`
windows, not at sequence ends, so a sequence may continue into the next shard, and a
long one spans many (a 5 Mbp contig at stride 256 is 20,000 windows: 10 shards of
2,000). The head needs all of a sequence's windows at once, so each sequence is
classified exactly once, by the job of the shard where it closes. A sequence closes
where the next one begins (at the window after its last); the run's last sequence
closes in the last shard. So the job of shard i classifies
  - every sequence with windows in shard i except the one holding its last window,
    which goes on into shard i+1 or closes there (in the last shard: that one too);
  - the sequence carried in: the one holding shard i-1's last window (which either
    continues into shard i or ended just there), unless it also holds shard i's last
    window. Its first windows lie in earlier shards: the job reads back through them
    and keeps that sequence's windows only.
A job whose shard lies wholly inside one long sequence classifies nothing and writes an
empty table; the job where that sequence closes holds its windows, all of them.
`shard_reads` gives, from the sequence lengths alone, the shards each job reads, so
the DAG is static (rules/common.smk) and a job waits only for the shards it reads.

Memory of a job: its shard's vectors, plus the carried sequence's (earlier shards are
read one at a time), plus one batch of the head: `heads.predict` batches at most
`learning.heads.WINDOW_BUDGET` windows (a longer sequence goes alone), and the hierarchical head
attends within blocks of windows, so memory grows linearly with the longest sequence.
The rule asks for memory by the longest sequence closing in the shard
(`closing_widths`, `shard_memory_mb`).

Why "closes" and not "starts": it is the cut of one streaming pass over the shards in
order (a sequence is known to be complete when the next one begins). Each job therefore
forms exactly the batches that pass forms (`classify`, the single-process path), and
the tables are byte-identical to it (floating-point results of a batched forward pass
depend on the batch's shape).

Per-sequence table (TSV and Parquet), the DESIGN contract:
    seq_id chrom start end strand length n_windows n_fraction <prediction columns>
    [+ true_label split when labels are known]
where the prediction columns are the head's task's (`learning.tasks`): pred_label
prob_<class>... (classification), pred_<target>... (regression), pred_labels
prob_<label>... (multilabel). Coordinates are 0-based half-open, as in BED. A sequence
none of whose windows passes the N threshold gets no call (empty call, NaN values).

torch (and learning.heads, learning.windowsets) are imported by the functions that run the head, not at
the top: the Snakefile imports the plan functions when it builds the DAG, without torch.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..embedding.shards import POOLINGS, check_same_origin, read_embeddings
from ..inputs.fasta import read_fai
from ..inputs.labels import check_label_text
from ..inputs.regions import read_regions
from ..io import (
    atomic_path,
    read_parquet,
    read_parquet_schema,
    read_provenance,
    write_table_atomic,
)
from ..learning.tasks import task_of_config
from ..settings import WindowSpec
from ..windows.bases import assemble
from ..windows.shards import count_windows, plan_shards
from .tracks import write_tracks

ATTENTION_BYTES = 8  # per (window, window) pair and attention head, see shard_memory_mb
# Provenance keys of a shard's partial result that the final table does not carry.
PARTIAL_KEYS = ("class_names",)
# Provenance keys every partial of a head must agree on.
SAME_KEYS = ("head", "head_kind", "pooling", "max_n_fraction", "class_names", "task")


# ------------------------------------------------------------------ the plan


def shard_reads(lengths: np.ndarray, spec: WindowSpec) -> list[list[int]]:
    """For each shard, the shards to read to classify the sequences closing in it, in order,
    its own last.

    Mirrors how make_windows numbers windows (in sequence order) and cuts shards
    (every `per_shard` windows), from the sequence lengths alone.
    """
    counts = count_windows(lengths, spec)
    ends = np.cumsum(counts)  # per sequence: the window id after its last window
    starts = ends - counts
    n_shards = plan_shards(lengths, spec)
    reads = []
    for shard in range(n_shards):
        first_window = shard * spec.per_shard
        if shard == 0:
            reads.append([0])
            continue
        carried = int(np.searchsorted(ends, first_window - 1, side="right"))  # holds the window before
        holds_last = ends[carried] >= (shard + 1) * spec.per_shard  # also shard's last window
        if holds_last and shard < n_shards - 1:
            reads.append([shard])  # the carried sequence closes later: nothing to read back
        else:
            reads.append(list(range(int(starts[carried]) // spec.per_shard, shard + 1)))
    return reads


@dataclass(frozen=True)
class ClassifyJob:
    """One classification job: the sequences closing in `shards` (consecutive), read from `reads`."""

    shards: list[int]
    reads: list[int]  # consecutive shard indices, its last shard last
    width: int  # the most windows of a sequence closing in its shards (its memory)


def classify_jobs(lengths: np.ndarray, spec: WindowSpec, shards_per_job: int) -> list[ClassifyJob]:
    """Classification jobs of `shards_per_job` consecutive embedding shards each.

    Classifying costs tens to hundreds of times less than embedding a window, so one job
    per shard would mostly pay scheduler overhead on a cluster (and double the DAG):
    a job takes several shards, in parallel with the other jobs.
    """
    reads, widths = shard_reads(lengths, spec), closing_widths(lengths, spec)
    jobs = []
    for lo in range(0, len(reads), max(1, shards_per_job)):
        shards = list(range(lo, min(lo + max(1, shards_per_job), len(reads))))
        first = min(reads[s][0] for s in shards)
        jobs.append(ClassifyJob(shards, list(range(first, shards[-1] + 1)), max(widths[s] for s in shards)))
    return jobs


def closing_widths(lengths: np.ndarray, spec: WindowSpec) -> list[int]:
    """For each shard, the most windows of a sequence that closes in it (0: none does)."""
    counts = count_windows(lengths, spec)
    n_shards = plan_shards(lengths, spec)
    closes = np.minimum(np.cumsum(counts) // spec.per_shard, n_shards - 1)  # shard of the window after the last
    widths = np.zeros(n_shards, dtype=np.int64)
    np.maximum.at(widths, closes, counts)
    return widths.tolist()


def shard_memory_mb(width: int, attention_heads: int, block: int = 256, base_mb: int = 4000) -> int:
    """Memory for a classification job whose longest sequence has `width` windows.

    The hierarchical head attends within blocks of `block` windows: a sequence costs about
    ATTENTION_BYTES per (window, window) pair of its blocks and attention head, i.e.
    width x block pairs, linear in its length (164 MB for a 20,000-window contig with 4
    heads). Heads without attention (`mean`) pass attention_heads=0. The base holds a
    shard, the process and batches of `learning.heads.WINDOW_BUDGET` windows.
    """
    pairs = width * min(width, block)
    return base_mb + -(-ATTENTION_BYTES * attention_heads * pairs // 2**20)


# --------------------------------------------------------- one shard's job


def _closing_windows(paths: list[str], pooling: str, final: bool, read=None) -> tuple[pa.Table, np.ndarray, dict, int]:
    """Keys and vectors of the windows of the sequences that close in the shard paths[-1].

    `paths`: that shard, preceded by (at least) the shards holding the first windows
    of the sequence carried into it; `read(path, pooling)`: how a shard is read (default
    `read_embeddings`; a job of several shards passes a cache, as each shard is read again
    for the sequence carried out of it). Returns keys, (n_windows, hidden) matrix, the
    shard's provenance and how many windows came from earlier shards.
    """
    read = read or (lambda path, pooling: read_embeddings([path], pooling))
    keys, matrix, provenance = read(paths[-1], pooling)
    if keys.num_rows == 0:
        return keys, matrix, provenance, 0
    seq = keys.column("seq_index").to_numpy()
    first_seq, first_window = int(seq[0]), int(keys.column("window_index")[0].as_py())
    carried = first_seq if first_window > 0 else first_seq - 1  # holds the previous shard's last window
    if not final:
        if carried == seq[-1]:  # it goes on past this shard (or closes at the next): nothing closes here
            return keys.slice(0, 0), matrix[:0], provenance, 0
        cut = int(np.searchsorted(seq, seq[-1]))  # first window of this shard's last sequence
        keys, matrix = keys.slice(0, cut), matrix[:cut]
    if carried < 0:  # the run's first shard
        return keys, matrix, provenance, 0
    before_keys, before = [], []
    for path in reversed(paths[:-1]):
        earlier, vectors, earlier_provenance = read(path, pooling)
        check_same_origin(earlier_provenance, provenance, path, paths[-1])
        rows = np.flatnonzero(earlier.column("seq_index").to_numpy() == carried)
        before_keys.insert(0, earlier.take(rows))
        before.insert(0, vectors[rows])
        if rows.size and earlier.column("window_index")[int(rows[0])].as_py() == 0:
            break
    else:
        raise RuntimeError(f"the first windows of sequence {carried}, carried into {paths[-1]}, are not in "
                           f"{paths[:-1]}: the shard plan and the shards disagree (re-run the workflow)")
    carried_keys = pa.concat_tables(before_keys)
    return (pa.concat_tables([carried_keys, keys]), np.concatenate([*before, matrix]), provenance,
            carried_keys.num_rows)


def load_heads(head_dirs, embedding_path: str) -> dict:
    """Every head of the job, checked against the embeddings before any work."""
    from ..learning.heads import check_compatible, load_head

    schema = read_parquet_schema(embedding_path, rule="embed_shard")
    embedded = read_provenance(embedding_path, rule="embed_shard")
    heads = {}
    for head_dir in head_dirs:
        head = load_head(head_dir)
        check_label_text(head.config.class_names, head_dir)
        if head.config.pooling not in POOLINGS:
            raise RuntimeError(f"{head_dir}: unknown pooling {head.config.pooling!r}")
        check_compatible(head.config, schema.field(head.config.pooling).type.list_size, embedded, Path(head_dir))
        heads[head_dir] = head
    return heads


def _classify_closing(embedding_paths: list[str], heads: dict, max_n_fraction: float, final: bool,
                      read=None) -> dict:
    """head folder -> (seq_index + prediction table, provenance) of the sequences closing in
    shard `embedding_paths[-1]`. The shards are read once per pooling (`read`: see
    `_closing_windows`)."""
    import torch

    from ..learning.windowsets import WindowSets

    own = embedding_paths[-1]
    results = {}
    for pooling in dict.fromkeys(head.config.pooling for head in heads.values()):
        keys, matrix, embedded, carried_in = _closing_windows(embedding_paths, pooling, final, read)
        chunk = WindowSets(keys, matrix, embedded, max_n_fraction)
        for head_dir, head in heads.items():
            if head.config.pooling != pooling:
                continue
            started = time.perf_counter()
            proba = predict_sequences(head, chunk)
            elapsed = time.perf_counter() - started
            rate = f"{keys.num_rows / elapsed:,.0f} windows/s" if elapsed > 0 and keys.num_rows else "no windows"
            print(f"{own}: {len(proba)} sequence(s) close here ({keys.num_rows} windows, {carried_in} of them read "
                  f"back from earlier shards); {head.config.kind} head ({head_dir}) on {torch.get_num_threads()} "
                  f"thread(s): {elapsed:.2f} s, {rate}", file=sys.stderr)
            result = pd.DataFrame({"seq_index": chunk.seq_index.astype(np.int64)})
            prefix = task_of_config(head.config.task).column_prefix
            for i, name in enumerate(head.config.class_names):
                result[f"{prefix}{name}"] = proba[:, i]
            provenance = {**embedded, "stage": "classify_shard", "head": str(head_dir), "head_kind": head.config.kind,
                          "pooling": pooling, "max_n_fraction": max_n_fraction,
                          "class_names": list(head.config.class_names),
                          **({"task": head.config.task} if head.config.task else {})}
            results[head_dir] = (result, provenance)
    return results


def classify_shards(embedding_paths: list[str], shards: int, outputs: dict[str, str], max_n_fraction: float, *,
                    final: bool) -> dict[str, pd.DataFrame]:
    """What each head predicts for the sequences that close in the last `shards` of
    `embedding_paths` (one classification job).

    `embedding_paths`: consecutive shards, the job's last; at least back to the first window
    of the sequence carried into its first shard (`ClassifyJob.reads`); `outputs`: head
    folder -> the Parquet file to write its seq_index + prediction columns (NaN: no call) to;
    `final`: whether the job's last shard is the run's last.
    """
    heads = load_heads(outputs, embedding_paths[-1])
    # The sequence carried out of a shard is read back from it by the next shard's step:
    # keep recent shards in memory rather than reading them twice. Three a pooling: the
    # step for shard i reads i, then i - 1 for its carried sequence (which makes i - 1 the
    # most recent), and the next step needs i.
    poolings = len({head.config.pooling for head in heads.values()})
    read = functools.lru_cache(maxsize=3 * poolings)(lambda path, pooling: read_embeddings([path], pooling))
    return _classify_job(embedding_paths, shards, outputs, final,
                         lambda paths, last: _classify_closing(paths, heads, max_n_fraction, last, read))


def classify_kmer_shards(window_paths: list[str], shards: int, outputs: dict[str, str], max_n_fraction: float, *,
                         final: bool) -> dict[str, pd.DataFrame]:
    """`classify_shards` for k-mer heads (`learning.kmer_head`), from the window shards:
    each sequence closing in the job's shards is put back together from its windows and
    its k-mer frequencies go through every head. Same jobs, same partial files."""
    from ..learning.kmer_head import KmerHead

    heads = {head_dir: KmerHead.load(head_dir) for head_dir in outputs}
    for head_dir, head in heads.items():
        check_label_text(head.class_names, head_dir)
    read = functools.lru_cache(maxsize=3)(read_window_bases)
    return _classify_job(window_paths, shards, outputs, final,
                         lambda paths, last: _classify_closing_bases(paths, heads, max_n_fraction, last, read))


def _classify_job(paths: list[str], shards: int, outputs: dict[str, str], final: bool, closing) -> dict:
    """Each of the job's last `shards` shards in turn (`closing(paths up to it, whether it is
    the run's last)` -> head folder -> (table, provenance)), then every head's table written."""
    parts: dict[str, list] = {head_dir: [] for head_dir in outputs}
    provenance: dict[str, dict] = {}
    for end in range(len(paths) - shards, len(paths)):
        last = final and end == len(paths) - 1
        for head_dir, (result, prov) in closing(paths[: end + 1], last).items():
            parts[head_dir].append(result)
            provenance[head_dir] = prov
    tables = {head_dir: pd.concat(frames, ignore_index=True) for head_dir, frames in parts.items()}
    for head_dir, table in tables.items():  # every shard and head done: write
        write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), outputs[head_dir],
                           provenance[head_dir])
    return tables


def read_window_bases(path: str, pooling: str = "bases") -> tuple[pa.Table, np.ndarray, dict]:
    """A window shard as `_closing_windows` reads an embedding shard: key columns, the
    windows' bases (an object array, one string a window) and its provenance."""
    table = read_parquet(path, columns=["seq_index", "window_index", "start", "n_fraction", "sequence"],
                         rule="make_windows")
    bases = np.array(table.column("sequence").to_pylist() + [None], dtype=object)[:-1]  # 1-d even when equal lengths
    return table.drop_columns(["sequence"]), bases, read_provenance(path, rule="make_windows")


def _classify_closing_bases(window_paths: list[str], heads: dict, max_n_fraction: float, final: bool,
                            read) -> dict:
    """`_classify_closing` of k-mer heads: head folder -> (seq_index + prediction table,
    provenance) of the sequences closing in window shard `window_paths[-1]`."""
    from ..learning.baselines import kmer_frequencies
    from ..learning.toolkit import usable_windows

    keys, bases, provenance, carried_in = _closing_windows(window_paths, "bases", final, read)
    seq = keys.column("seq_index").to_numpy()
    starts = keys.column("start").to_numpy()
    usable = usable_windows(keys.column("n_fraction").to_numpy(), max_n_fraction)
    order, bounds = np.unique(seq, return_index=True)  # windows of a sequence are consecutive
    spans = list(zip(bounds.tolist(), [*bounds.tolist()[1:], len(seq)]))
    called = [row for row, (lo, hi) in enumerate(spans) if usable[lo:hi].any()]  # as the heads: else no call
    sequences = [assemble(starts[lo:hi], bases[lo:hi]).encode("ascii") for lo, hi in (spans[r] for r in called)]
    features: dict[int, np.ndarray] = {}  # k -> (called sequences, 4^k), counted once for heads of one k
    results = {}
    for head_dir, head in heads.items():
        started = time.perf_counter()
        if head.k not in features:
            features[head.k] = np.array([kmer_frequencies(s, head.k) for s in sequences], dtype=np.float32) \
                .reshape(len(sequences), 4**head.k)
        pred = np.full((len(order), head.n_classes), np.nan, dtype=np.float64)
        pred[called] = head.predict(features[head.k])
        elapsed = time.perf_counter() - started
        print(f"{window_paths[-1]}: {len(order)} sequence(s) close here ({len(seq)} windows, {carried_in} of them "
              f"read back from earlier shards); k-mer head {head.kind} ({head_dir}): {elapsed:.2f} s",
              file=sys.stderr)
        result = pd.DataFrame({"seq_index": order.astype(np.int64)})
        prefix = task_of_config(head.task).column_prefix
        for i, name in enumerate(head.class_names):
            result[f"{prefix}{name}"] = pred[:, i]
        results[head_dir] = (result, {**provenance, "stage": "classify_shard", "head": str(head_dir),
                                      "head_kind": head.kind, "pooling": "bases", "max_n_fraction": max_n_fraction,
                                      "class_names": list(head.class_names), "task": head.task})
    return results


def classify_shard(embedding_paths: list[str], outputs: dict[str, str], max_n_fraction: float, *,
                   final: bool) -> dict[str, pd.DataFrame]:
    """`classify_shards` of one shard, `embedding_paths[-1]` (its `shard_reads` before it)."""
    return classify_shards(embedding_paths, 1, outputs, max_n_fraction, final=final)


def predict_sequences(head, chunk) -> np.ndarray:
    """(sequences, outputs) predictions of a WindowSets' sequences, NaN rows where no
    window is usable (batched by window budget, `heads.predict`)."""
    from ..learning.heads import predict

    proba = np.full((len(chunk.seq_index), head.config.n_classes), np.nan, dtype=np.float64)
    rows = np.flatnonzero(chunk.has_usable())
    proba[rows] = predict(head, chunk, rows)
    return proba


# ------------------------------------------------------------------ gather


def prediction_table(regions: pd.DataFrame, sequences: pd.DataFrame, proba: np.ndarray,
                     class_names: list[str], task=None) -> pd.DataFrame:
    """The per-sequence table; proba is (n_sequences, outputs), NaN rows for no call; the
    prediction columns are the task's (classification by default)."""
    task = task or task_of_config(None)
    table = pd.DataFrame({
        "seq_id": regions["seq_id"], "chrom": regions["chrom"], "start": regions["start"],
        "end": regions["end"], "strand": regions["strand"], "length": regions["length"],
        "n_windows": sequences["n_windows"].to_numpy(), "n_fraction": sequences["n_fraction"].to_numpy(),
    })
    for column, values in task.columns(proba, class_names).items():
        table[column] = values
    if regions["label"].notna().any():
        table["true_label"] = regions["label"]
        table["split"] = regions["split"]
    return table


def write_tables(table: pd.DataFrame, tsv: str, parquet: str, provenance: dict) -> None:
    with atomic_path(tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
    write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), parquet, provenance)


def read_partials(paths: list[str], n_sequences: int) -> tuple[np.ndarray, list[str], dict]:
    """The shards' predictions as one (n_sequences, outputs) array, the output names and
    the final table's provenance (checked to agree across shards)."""
    first = read_provenance(paths[0], rule="classify_shards")
    same = {key: first.get(key) for key in SAME_KEYS}
    class_names = first["class_names"]
    prefix = task_of_config(first.get("task")).column_prefix
    seq_parts, prob_parts = [], []
    provenance = first
    for path in paths:
        provenance = read_provenance(path, rule="classify_shards")
        check_same_origin(provenance, first, path, paths[0])
        differ = [key for key, value in same.items() if provenance.get(key) != value]
        if differ:
            raise RuntimeError(f"{path} and {paths[0]} differ in {differ}: re-run classify_shards for this head")
        table = read_parquet(path, rule="classify_shards")
        seq_parts.append(table.column("seq_index").to_numpy())
        prob_parts.append(np.column_stack([table.column(f"{prefix}{n}").to_numpy() for n in class_names])
                          if table.num_rows else np.zeros((0, len(class_names))))
    seq = np.concatenate(seq_parts)
    if not np.array_equal(seq, np.arange(n_sequences)):
        raise RuntimeError(f"the classified shards hold {len(seq)} sequences, not each of the {n_sequences} of the "
                           "regions table once and in order: re-run the workflow")
    proba = np.concatenate(prob_parts).astype(np.float64)
    final = {key: value for key, value in provenance.items() if key not in PARTIAL_KEYS}
    return proba, class_names, {**final, "stage": "classify"}


def gather(shard_paths: list[str], regions_path: str, sequences_path: str, tsv: str, parquet: str,
           tracks_dir: str | None, labels_path: str | None = None,
           chrom_sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """The per-sequence table (TSV + Parquet) and tracks from every shard's probabilities.

    `shard_paths`: the classification jobs' outputs in order; `chrom_sizes`: contig ->
    length for the bigWig header (`inputs.fasta.read_fai` of the FASTA), by default each contig
    as long as its furthest sequence end.
    """
    regions = read_regions(regions_path, labels_path)
    check_label_text(regions["label"].dropna().unique(), labels_path or regions_path)
    sequences = read_parquet(sequences_path, rule="make_windows").to_pandas()
    proba, class_names, provenance = read_partials(shard_paths, len(regions))
    check_label_text(class_names, provenance["head"])
    task = task_of_config(provenance.get("task"))
    table = prediction_table(regions, sequences, proba, class_names, task)
    write_tables(table, tsv, parquet, provenance)
    called = int((~np.isnan(proba).any(axis=1)).sum())
    print(f"{len(table)} sequences from {len(shard_paths)} shard(s), {called} called: {tsv}, {parquet}",
          file=sys.stderr)
    if tracks_dir:
        files = write_tracks(table, class_names, tracks_dir, chrom_sizes, task.column_prefix)
        print(f"tracks in {tracks_dir}: {', '.join(files)}", file=sys.stderr)
    remove_stale_groups(shard_paths)
    return table


def remove_stale_groups(shard_paths: list[str]) -> None:
    """Group files beside these that no job of the current plan writes (left by a run with
    another classify.shards_per_job): gone, so the folder holds this run's files only."""
    current = {Path(p).resolve() for p in shard_paths}
    for folder in {Path(p).parent for p in shard_paths}:
        for stale in folder.glob("group_*.parquet"):
            if stale.resolve() not in current:
                stale.unlink()


# ----------------------------------------------------- one process, all shards


def classify(embedding_paths: list[str], regions_path: str, sequences_path: str, head_dir: str,
             max_n_fraction: float, tsv: str, parquet: str, tracks_dir: str | None,
             labels_path: str | None = None, fasta: str | None = None) -> pd.DataFrame:
    """What the two rules do, in one process: each shard in turn, then the gather.

    `embedding_paths`: every shard of the run in order; `fasta`: the reference (or
    FASTA of sequences) whose .fai gives the bigWig's contig lengths.
    """
    with tempfile.TemporaryDirectory(prefix="dnalm-classify-") as tmp:
        partials = []
        for i in range(len(embedding_paths)):
            partials.append(str(Path(tmp) / f"shard_{i:05d}.parquet"))
            classify_shard(embedding_paths[: i + 1], {head_dir: partials[-1]}, max_n_fraction,
                           final=i == len(embedding_paths) - 1)
        sizes = read_fai(fasta) if fasta else None
        return gather(partials, regions_path, sequences_path, tsv, parquet, tracks_dir, labels_path, sizes)
