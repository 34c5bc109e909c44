"""The project's throughput figures, measured side by side in one run, printed as one table.

    .venv/bin/python benchmarks/bench.py                  # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench.py --only tokenize,embed --embed-windows 256 --rounds 3

Rows (sections, `--only` names them):
  tokenize  each family's `tokenizer.encode(windows)` (content ids + specials + padding into
            arrays, what the engine runs) against that family's own Hugging Face tokenizer, on
            real E. coli windows (512 bp every 256 bp); ids asserted equal.
  embed     tokenize + model + pooled vectors in one process, 1 thread: the naive tutorial path
            (HF tokenizer on joined k-mers, padding to 512, eager attention, fp32, [CLS]) against
            `dnalm.embedding.engine.Embedder` in fp32, bf16 and int8, and bf16 and int8 against fp32
            vectors; then `strands="both"` against `"single"` (reverse-complement averaging).
  precision fp32, bf16 and int8 side by side on a DNABERT-base-sized encoder (12 x 768), on 1
            thread and on every core; and one embedding job's thread scaling (1, 2, every core).
  agreement int8 and bf16 against fp32 on the demo's fine-tuned encoder (`make demo` first): the
            test windows' vectors, and every head's predictions and test accuracy.
  classify  a random-weight head (`dnalm.learning.heads`) applied through `dnalm.learning.windowsets.WindowSets` +
            `predict` (the per-window compute of classification; no Parquet reading), on
            synthetic 128-dim vectors laid out as sequences of 3-40 windows and as 100-kb tiles.
  extract   tiling + `dnalm.windows.shards.write_shards` of a generated 250 Mbp bgzip chromosome, in
            a child process (peak RSS from getrusage).
  plan      `snakemake -n` of a GRCh38-sized whole-genome tiling (3,025 contigs, 3.3 Gbp).
  gpu       a DNABERT-base-sized random encoder through the engine in bf16, against the card's
            measured bf16 matmul throughput (skipped, and said so, where no GPU is visible).
  variants  variants scored per second: the zero-shot LLR (`dnalm.variants.scoring.ZeroShot`) and
            the embedding of the ref and alt windows, on the first `--variants` variants of the
            E. coli recipe VCF with the demo's tiny DNABERT-6, 1 thread; on the GPU too when visible.
  annotation base annotation's inference in bases of genome per second (`dnalm.annotation.infer.
            predict_stretch`: token states, head, tokens to bases, softmax, overlaps weighted) on
            `--annotation-kb` of E. coli in 512 bp windows every 256, tiny DNABERT-6, 1 thread,
            against embedding the same windows (`Embedder`, the sequence path); the per-base
            k-mer baseline's prediction on the same bases; on the GPU too when visible.

Timings drift on shared machines, so contenders run interleaved, round after round, and
each keeps its best round; quote the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ECOLI = REPO / "data" / "ecoli_k12_mg1655_NC_000913.3.fa.gz"
LAMBDA = REPO / "data" / "lambda_phage_NC_001416.1.fa.gz"
SECTIONS = ("tokenize", "embed", "precision", "agreement", "classify", "extract", "plan", "gpu", "variants",
            "annotation")
VARIANTS_VCF = REPO / "data" / "ecoli_k12_variants.vcf.gz"
HUMAN_WINDOWS = 12_000_000  # a human genome tiled at stride 256, one strand (PERF_NOTES: 12.1 million)


@dataclass
class Row:
    section: str
    measure: str
    dnalm: str
    reference: str = ""
    ratio: str = ""
    target: str = ""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def side_by_side(contenders: dict, rounds: int) -> dict[str, float]:
    """Best wall time of each contender over `rounds` interleaved rounds (one warm-up call first)."""
    best = {name: math.inf for name in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def ratio_text(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def real_windows(n: int, size: int = 512, stride: int = 256) -> list[str]:
    import pysam

    with pysam.FastaFile(str(ECOLI)) as fasta:
        name = fasta.references[0]
        seq = fasta.fetch(name, 0, min(fasta.get_reference_length(name), stride * (n - 1) + size)).upper()
    windows = [seq[i : i + size] for i in range(0, len(seq) - size + 1, stride)][:n]
    if len(windows) < n:
        raise SystemExit(f"the E. coli genome holds {len(windows)} windows; ask for at most that many")
    return windows


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} windows/s" if n / seconds >= 100 else f"{n / seconds:,.1f} windows/s"


# ------------------------------------------------------------------------- 1. tokenize


def same_ids(ours, hf_ids: np.ndarray, hf_mask: np.ndarray) -> bool:
    """Same tokens in every row (padding aside): ours is a TokenBatch, the HF side arrays."""
    return (np.array_equal(ours.attention_mask.sum(1), hf_mask.sum(1))
            and np.array_equal(ours.input_ids[ours.attention_mask == 1], hf_ids[hf_mask == 1]))


def bench_tokenize(args, tmp: Path) -> list[Row]:
    from transformers import AutoTokenizer, BertTokenizer

    from dnalm.encoders import ModelFolder, family_for
    from dnalm.encoders.tiny import build_tiny_encoder

    shape = dict(hidden=32, layers=1, heads=2)  # only the tokenizer matters here
    cases = [
        ("DNABERT-6 (overlapping 6-mers)", "dnabert", "HF BertTokenizer, space-joined k-mers, pad 512", 100),
        ("NT-style (non-overlapping 6-mers)", "nucleotide_transformer", "HF EsmTokenizer", 100),
        ("byte-pair", "bpe", "folder's fast tokenizer, called plainly", None),
        ("per-base", "per_base", "folder's fast tokenizer, called plainly", None),
    ]
    rows = []
    for label, family, reference, target in cases:
        folder = build_tiny_encoder(tmp / f"tok_{family}", family, train_fasta=str(LAMBDA), **shape)
        tokenizer = family_for(ModelFolder.open(str(folder))).tokenizer()
        windows = real_windows(args.windows)
        n = len(windows)
        if family == "dnabert":
            # Positional vocab path: as a keyword transformers 5 builds a 5-token vocab (PERF_NOTES).
            hf = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False)
            assert len(hf) == 4101, len(hf)
            joined = [" ".join(w[i : i + 6] for i in range(len(w) - 5)) for w in windows]  # not timed

            def reference_call():
                return hf(joined, padding="max_length", max_length=512, truncation=True, return_tensors="np")
        else:
            hf = AutoTokenizer.from_pretrained(folder)

            def reference_call():
                return hf(windows, padding=True, return_tensors="np")

        theirs = reference_call()
        if not same_ids(tokenizer.encode(windows), theirs["input_ids"], theirs["attention_mask"]):
            raise AssertionError(f"{label}: dnalm ids differ from {reference}")
        log(f"tokenize {label}: {n} windows, ids equal to {type(hf).__name__}")
        best = side_by_side({"hf": reference_call, "ours": lambda: tokenizer.encode(windows)}, args.rounds)
        ratio = best["hf"] / best["ours"]
        rows.append(Row("1 tokenize", f"{label}, `encode` of {n:,} windows, ids equal",
                        rate(n, best["ours"]), f"{rate(n, best['hf'])} ({reference})", ratio_text(ratio),
                        f">= {target}x: {verdict(ratio >= target)}" if target else ""))
    return rows


# ------------------------------------------------------------------ 2-3. embed, strands


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16() -> str:
    """What the CPU has for bf16 arithmetic ("" when nothing: bf16 is then emulated, and slow)."""
    flags = cpu_flags()
    return "+".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


def bench_embed(args, tmp: Path) -> list[Row]:
    import torch
    import transformers
    from transformers import AutoModel, BertTokenizer

    from dnalm.embedding.engine import Embedder, EngineSettings
    from dnalm.encoders import Encoder
    from dnalm.encoders.tiny import build_tiny_encoder
    from dnalm.settings import EncoderSpec

    transformers.logging.set_verbosity_error()
    folder = build_tiny_encoder(tmp / "bert_4x256", "dnabert", hidden=256, layers=4, heads=4)
    windows = real_windows(args.embed_windows)
    n = len(windows)

    hf = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False)
    assert len(hf) == 4101, len(hf)
    naive_model = AutoModel.from_pretrained(folder, attn_implementation="eager", add_pooling_layer=False).eval()
    naive_out = {}

    def naive():  # what a tutorial writes: batches of 16, k-mers joined, padded to 512, eager, fp32
        cls = []
        with torch.inference_mode():
            for lo in range(0, n, 16):
                joined = [" ".join(w[i : i + 6] for i in range(len(w) - 5)) for w in windows[lo : lo + 16]]
                enc = hf(joined, padding="max_length", max_length=512, truncation=True, return_tensors="pt")
                cls.append(naive_model(**enc).last_hidden_state[:, 0])
        naive_out["cls"] = torch.cat(cls).numpy()

    fast = "bf16" if cpu_bf16() else "fp32"
    embedders, out = {}, {}
    for precision in ("fp32", "bf16", "int8"):
        encoder = Encoder.load(EncoderSpec(str(folder), precision=precision), 512, 256, "cpu")
        embedders[precision] = Embedder(encoder, EngineSettings())

    def ours(precision: str, strands: str = "single"):
        return lambda: out.__setitem__((precision, strands), embedders[precision].embed(windows, strands))

    contenders = {"naive": naive, "fp32": ours("fp32"), "bf16": ours("bf16"), "int8": ours("int8"),
                  "both": ours(fast, "both")}
    log(f"embed: {n} windows x {len(contenders)} contenders x {args.embed_rounds} rounds (+ warm-up), "
        f"{torch.get_num_threads()} thread(s)")
    best = side_by_side(contenders, args.embed_rounds)

    # The same vectors, or the speed means nothing: engine fp32 [CLS] against the tutorial's.
    fp32, bf16 = out[("fp32", "single")], out[("bf16", "single")]
    gap = np.abs(fp32.summary - naive_out["cls"]).max() / np.abs(naive_out["cls"]).max()
    assert gap < 1e-4, f"engine fp32 [CLS] differs from the naive path by {gap:.1e}"

    def relative(a, b):
        return float(np.abs(a - b).max() / np.abs(a).max())

    naive_rate = rate(n, best["naive"])
    reference = f"{naive_rate} (naive: HF tokenizer on joined k-mers, pad 512, eager, fp32)"
    rows = [Row("2 embed", f"engine fp32 (SDPA, unpadded batches, {EngineSettings().tokens_per_batch} tokens), "
                           f"{n} windows, 1 thread", rate(n, best["fp32"]), reference,
                f"{best['naive'] / best['fp32']:.1f}x",
                "" if fast == "bf16" else f">= 5x: {verdict(best['naive'] / best['fp32'] >= 5)}")]
    bf16_note = f"CPU has {cpu_bf16()}" if cpu_bf16() else "no bf16 instructions: emulated"
    ratio = best["naive"] / best["bf16"]
    rows.append(Row("2 embed", f"engine bf16 ({bf16_note}), same windows", rate(n, best["bf16"]), reference,
                    f"{ratio:.1f}x", f">= 5x: {verdict(ratio >= 5)}" if fast == "bf16" else ""))
    from dnalm.compute import cpu_int8_dot

    int8 = out[("int8", "single")]
    ratio = best["naive"] / best["int8"]
    rows.append(Row("2 embed", f"engine int8 (dynamic, linear layers; CPU has {cpu_int8_dot() or 'no VNNI'}), same "
                               "windows", rate(n, best["int8"]), reference, f"{ratio:.1f}x",
                    f">= 5x: {verdict(ratio >= 5)}"))
    for name, other in (("bf16", bf16), ("int8", int8)):
        rows.append(Row("2 embed", f"{name} vs fp32 vectors: max abs difference / max abs fp32 value (random weights)",
                        f"[CLS] {relative(fp32.summary, other.summary):.1e}, mean {relative(fp32.mean, other.mean):.1e}",
                        f"engine fp32 [CLS] vs naive [CLS]: {gap:.1e}"))
    cost = best["both"] / best[fast]
    rows.append(Row("3 strands", f"strands both vs single ({fast}), time", rate(n, best["both"]),
                    f"{rate(n, best[fast])} (single)", f"{cost:.2f}x the time", "about 2x"))
    return rows


# ----------------------------------------------------------------- precision, agreement


def bench_precision(args, tmp: Path) -> list[Row]:
    """fp32, bf16 and int8 on a DNABERT-base-sized encoder, 1 thread and every core; then the
    thread scaling of one embedding job (the benchmark's model, fp32 and int8)."""
    import torch

    from dnalm.embedding.engine import Embedder, EngineSettings
    from dnalm.encoders import Encoder
    from dnalm.encoders.tiny import build_tiny_encoder
    from dnalm.settings import EncoderSpec

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    base = build_tiny_encoder(tmp / "dnabert_base_cpu", "dnabert", hidden=768, layers=12, heads=12)
    windows = real_windows(args.precision_windows)
    n = len(windows)
    embedders = {p: Embedder(Encoder.load(EncoderSpec(str(base), precision=p), 512, 256, "cpu"), EngineSettings())
                 for p in ("fp32", "bf16", "int8")}
    before = torch.get_num_threads()
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        best = side_by_side({p: (lambda e=e: e.embed(windows)) for p, e in embedders.items()}, args.embed_rounds)
        log(f"precision: DNABERT-base-sized, {threads} thread(s): " +
            ", ".join(f"{p} {rate(n, t)}" for p, t in best.items()))
        for p in ("bf16", "int8"):
            rows.append(Row("precision", f"DNABERT-base-sized random encoder (12 x 768), {p}, {n} windows, "
                                         f"{threads} thread(s)", rate(n, best[p]), f"{rate(n, best['fp32'])} (fp32)",
                            f"{best['fp32'] / best[p]:.1f}x"))
    small = build_tiny_encoder(tmp / "bert_4x256_threads", "dnabert", hidden=256, layers=4, heads=4)
    windows = real_windows(args.embed_windows)
    n = len(windows)
    for p in ("fp32", "int8"):
        embedder = Embedder(Encoder.load(EncoderSpec(str(small), precision=p), 512, 256, "cpu"), EngineSettings())
        timings = {}
        for threads in sorted({1, 2, cores}):
            torch.set_num_threads(threads)
            timings[threads] = side_by_side({"job": lambda: embedder.embed(windows)}, args.embed_rounds)["job"]
        one = timings[1]
        rows.append(Row("precision", f"one embedding job's threads, {p} (4 x 256 encoder, {n} windows): "
                                     + ", ".join(str(t) for t in timings),
                        ", ".join(rate(n, t) for t in timings.values()), "",
                        ", ".join(f"{one / t:.2f}x" for t in timings.values())))
    torch.set_num_threads(before)
    return rows


def bench_agreement(args, tmp: Path) -> list[Row]:
    """int8 and bf16 against fp32 on the demo's fine-tuned encoder: the test windows' vectors,
    and each head's predictions and test accuracy (vectors stored as float16, as the workflow
    stores them)."""
    import pandas as pd
    import pyarrow as pa

    from dnalm.embedding.engine import Embedder, EngineSettings
    from dnalm.embedding.shards import read_embeddings
    from dnalm.encoders import Encoder
    from dnalm.inputs.regions import read_regions
    from dnalm.learning.heads import load_head, predict
    from dnalm.learning.windowsets import WindowSets
    from dnalm.settings import EncoderSpec

    results = Path(args.demo_results)
    encoder_dir = results / "finetune" / "encoder"
    heads = sorted(p.parent for p in (results / "heads").glob("*/head.json")) if encoder_dir.is_dir() else []
    if not heads:
        return [Row("agreement", "int8 and bf16 against fp32, demo's fine-tuned encoder",
                    f"not measured: no fine-tuned demo run in {results} (run `make demo` first)")]
    regions = read_regions(str(results / "regions/regions.parquet"), str(results / "regions/labels.parquet"))
    test = np.flatnonzero(regions["split"].to_numpy() == "test")
    shards = sorted(str(p) for p in (results / "windows").glob("shard_*.parquet"))
    windows = pd.concat([pd.read_parquet(p, columns=["seq_index", "sequence"]) for p in shards], ignore_index=True)
    keep = np.isin(windows["seq_index"].to_numpy(), test)
    sequences = windows["sequence"][keep].tolist()
    embeddings = sorted(str(p) for p in (results / "embeddings").glob("shard_*.parquet"))
    vectors, rows = {}, []
    for precision in ("fp32", "bf16", "int8"):
        encoder = Encoder.load(EncoderSpec(str(encoder_dir), precision=precision), 512, 256, "cpu")
        got = Embedder(encoder, EngineSettings()).embed(sequences)
        vectors[precision] = {"cls": got.summary, "mean": got.mean}
    n = len(sequences)
    for p in ("bf16", "int8"):
        for pooling in ("mean", "cls"):
            a, b = vectors["fp32"][pooling], vectors[p][pooling]
            cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            relative = np.abs(a - b).max(1) / np.abs(a).max(1)
            rows.append(Row("agreement", f"{p} vs fp32 {pooling} vectors, demo's fine-tuned encoder, {n} test windows",
                            f"relative max difference: max {relative.max():.1e}, mean {relative.mean():.1e}; "
                            f"cosine: min {cosine.min():.5f}, mean {cosine.mean():.6f}"))
    for head_dir in heads:
        head = load_head(head_dir)
        keys, _, provenance = read_embeddings(embeddings, head.config.pooling)
        window_keep = np.isin(keys.column("seq_index").to_numpy(), test)
        test_keys = keys.filter(pa.array(window_keep))
        names = head.config.class_names
        truth = np.array([names.index(label) for label in regions["label"].to_numpy()[test]])
        calls = {}
        for p in ("fp32", "bf16", "int8"):
            matrix = vectors[p][head.config.pooling].astype(np.float16).astype(np.float32)  # as stored
            data = WindowSets(test_keys, matrix, provenance, max_n_fraction=0.5)
            calls[p] = predict(head, data, np.arange(len(data.seq_index))).argmax(1)
        accuracy = {p: float((c == truth).mean()) for p, c in calls.items()}
        for p in ("bf16", "int8"):
            changed = float((calls[p] != calls["fp32"]).mean())
            rows.append(Row("agreement", f"{head_dir.name} head on {p} vectors vs fp32, {len(truth)} test sequences",
                            f"{changed:.2%} of predicted classes change; test accuracy {accuracy[p]:.3f}",
                            f"fp32 test accuracy {accuracy['fp32']:.3f}",
                            f"{accuracy[p] - accuracy['fp32']:+.3f}"))
    return rows


# ------------------------------------------------------------------------ 4. classify


def window_layout(n_windows: int, low: int, high: int, rng):
    """Embedding keys of whole sequences of low..high windows (the last one cut to fit)."""
    import pyarrow as pa

    counts = rng.integers(low, high + 1, size=n_windows // low + 1)
    counts = counts[: int(np.searchsorted(np.cumsum(counts), n_windows)) + 1]
    counts[-1] -= counts.sum() - n_windows
    seq = np.repeat(np.arange(len(counts)), counts)
    index = np.arange(n_windows) - np.repeat(np.cumsum(counts) - counts, counts)
    return pa.table({"seq_index": seq, "start": index * 256, "tokens": np.full(n_windows, 507, dtype=np.int32),
                     "n_fraction": np.zeros(n_windows, dtype=np.float32)})


def bench_classify(args, tmp: Path) -> list[Row]:
    from dnalm.learning.heads import HeadConfig, build_head, predict
    from dnalm.learning.windowsets import WindowSets
    from dnalm.tiling import count_tiles

    rng = np.random.default_rng(0)
    n, dim = args.classify_windows, 128
    matrix = rng.standard_normal((n, dim)).astype(np.float32)
    tile_windows = int(count_tiles(np.array([100_000]), 512, 256)[0])
    layouts = {"sequences of 3-40 windows": (3, 40), f"100-kb tiles ({tile_windows} windows each)":
               (tile_windows, tile_windows)}
    rows = []
    for kind in ("mean", "hierarchical"):
        head = build_head(HeadConfig(kind=kind, class_names=["a", "b"], embed_dim=dim, pooling="mean"))
        for name, (low, high) in layouts.items():
            data = WindowSets(window_layout(n, low, high, rng), matrix, {"window_stride": 256}, max_n_fraction=0.5)
            rows_all = np.flatnonzero(data.has_usable())
            best = side_by_side({kind: lambda: predict(head, data, rows_all)}, 1)[kind]
            minutes = HUMAN_WINDOWS / (n / best) / 60
            target = ""
            if "tiles" in name:
                target = f"< 10 min: {verdict(minutes < 10)}"
            rows.append(Row("4 classify", f"{kind} head, {name}, {n:,} windows, 1 thread", rate(n, best),
                            f"human tiling, 12 M windows: {minutes:.1f} min of one core", "", target))
    return rows


# ------------------------------------------------------------------------- 5. extract

_EXTRACT_CHILD = """
import json, resource, sys, time
from dnalm.inputs.regions import write_coordinates
from dnalm.inputs.sources import load_regions
from dnalm.settings import InputSettings, WindowSpec
from dnalm.windows.shards import plan_shards, write_shards
fasta, out = sys.argv[1], sys.argv[2]
started = time.perf_counter()
regions = load_regions(InputSettings(mode="tiles", reference=fasta, tile_length=100_000, tile_step=100_000))
write_coordinates(regions, out + "/regions/regions.parquet", {"stage": "regions"})
spec = WindowSpec(size=512, stride=256, per_shard=10_000)
shards = write_shards(regions, fasta, spec, out + "/windows", plan_shards(regions["length"].to_numpy(), spec))
print(json.dumps({"seconds": time.perf_counter() - started, "shards": shards,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_random_chromosome(path: Path, length: int, seed: int = 0) -> None:
    """One random A/C/G/T chromosome (with assembly-gap N runs) as bgzip, 60 bp a line, indexed.
    Compression level 1: level 6 on random bases takes ten times longer to write."""
    import pysam

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    gaps = [(0, 10_000), (length // 3, length // 3 + 50_000), (length - 10_000, length)]  # telomeres, a gap
    chunk = 60 * 100_000
    with pysam.BGZFile(str(path), "wb1") as out:
        out.write(b">chrBench\n")
        for lo in range(0, length, chunk):
            seq = letters[rng.integers(0, 4, min(chunk, length - lo), dtype=np.uint8)]
            for start, end in gaps:
                a, b = max(start, lo) - lo, min(end, lo + len(seq)) - lo
                if a < b:
                    seq[a:b] = ord("N")
            full = len(seq) // 60 * 60
            lines = np.concatenate([seq[:full].reshape(-1, 60), np.full((full // 60, 1), 10, np.uint8)], axis=1)
            out.write(lines.tobytes() + (seq[full:].tobytes() + b"\n" if full < len(seq) else b""))
    pysam.faidx(str(path))


def bench_extract(args, tmp: Path) -> list[Row]:
    length = int(args.chromosome_mbp * 1_000_000)
    fasta = tmp / "chromosome.fa.gz"
    started = time.perf_counter()
    write_random_chromosome(fasta, length)
    log(f"extract: wrote a {length / 1e6:.0f} Mbp bgzip chromosome in {time.perf_counter() - started:.0f} s")
    # Through a shell that forks the child rather than exec-ing it: Linux carries a process's
    # peak RSS across exec, so a child started straight from this (large) process would report
    # this process's peak, not its own.
    command = ["/bin/sh", "-c", '"$0" -c "$1" "$2" "$3"; exit $?', sys.executable, _EXTRACT_CHILD, str(fasta),
               str(tmp / "extract")]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if proc.returncode:
        raise RuntimeError(f"extraction failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    windows = proc.stderr.strip().splitlines()[-1].split()[0]  # "N windows of M sequences in K shard(s)"
    shutil.rmtree(tmp / "extract", ignore_errors=True)
    mbps = length / 1e6 / result["seconds"]
    return [Row("5 extract", f"tiling (100-kb tiles) + windows 512/256 into {result['shards']} shards of 10,000, "
                             f"{length / 1e6:.0f} Mbp chromosome, child process",
                f"{mbps:.1f} Mbp/s ({int(windows):,} windows in {result['seconds']:.1f} s), "
                f"peak RSS {result['max_rss_mb']:.0f} MB", "PERF_NOTES: 854,497 windows in 17 s, < 300 MB")]


# ---------------------------------------------------------------------------- 6. plan

# GRCh38 primary chromosomes (bp), as in its .fai.
GRCH38 = {
    "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555, "chr5": 181538259,
    "chr6": 170805979, "chr7": 159345973, "chr8": 145138636, "chr9": 138394717, "chr10": 133797422,
    "chr11": 135086622, "chr12": 133275309, "chr13": 114364328, "chr14": 107043718, "chr15": 101991189,
    "chr16": 90338345, "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
    "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415,
}


def grch38_like(n_contigs: int = 3025, total: int = 3_300_000_000, seed: int = 0) -> dict[str, int]:
    """The 24 GRCh38 chromosomes and chrM, then unplaced, alt and decoy contigs of seeded
    log-normal lengths (1 kb and up) to `n_contigs` contigs and `total` bp."""
    contigs = {**GRCH38, "chrM": 16569}
    rng = np.random.default_rng(seed)
    small = rng.lognormal(np.log(40_000), 1.2, n_contigs - len(contigs))
    small = np.maximum(1000, (small * (total - sum(contigs.values())) / small.sum()).astype(np.int64))
    small[0] += total - sum(contigs.values()) - small.sum()
    chromosomes = list(GRCH38)
    for i, length in enumerate(small.tolist()):
        chrom, accession = chromosomes[i % len(chromosomes)], 270000 + i
        names = (f"{chrom}_KI{accession}v1_random", f"{chrom}_KI{accession}v1_alt", f"chrUn_JTFH0{accession}v1_decoy")
        contigs[names[i % 3]] = int(length)
    return contigs


_LINE = 60  # bases a FASTA line
_LINES_PER_BLOCK = 1000  # 61,000 bytes a BGZF block (at most 65,280)
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _bgzf_block(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = deflate.compress(data) + deflate.flush()
    header = struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(payload) + 25)
    return header + payload + struct.pack("<II", zlib.crc32(data), len(data))


def write_n_fasta(path: Path, contigs: dict[str, int]) -> None:
    """A real bgzip FASTA of N with these contig lengths, and its .fai and .gzi, in seconds
    for a 3.3 Gbp layout: every full block of N lines is the same compressed block, so it is
    compressed once and its place in the indexes is arithmetic. `check_n_fasta` proves the
    indexes equal what samtools (pysam.faidx) writes for the same layout."""
    assert _bgzf_block(b"") == _BGZF_EOF
    full_block = _bgzf_block((b"N" * _LINE + b"\n") * _LINES_PER_BLOCK)
    full_size = _LINES_PER_BLOCK * (_LINE + 1)
    blocks, fai = [], []  # (compressed offset, uncompressed offset) of every block; .fai lines
    coff = uoff = 0
    with open(path, "wb") as out:
        for name, length in contigs.items():
            header = f">{name}\n".encode()
            block = _bgzf_block(header)
            blocks.append((coff, uoff))
            out.write(block)
            coff, uoff = coff + len(block), uoff + len(header)
            line = min(length, _LINE)  # samtools records a one-line contig's own length
            fai.append(f"{name}\t{length}\t{uoff}\t{line}\t{line + 1}\n")
            lines, rest = divmod(length, _LINE)
            repeats = lines // _LINES_PER_BLOCK
            blocks.extend(zip(range(coff, coff + repeats * len(full_block), len(full_block)),
                              range(uoff, uoff + repeats * full_size, full_size)))
            out.write(full_block * repeats)
            coff, uoff = coff + repeats * len(full_block), uoff + repeats * full_size
            tail = (b"N" * _LINE + b"\n") * (lines % _LINES_PER_BLOCK) + (b"N" * rest + b"\n" if rest else b"")
            if tail:
                block = _bgzf_block(tail)
                blocks.append((coff, uoff))
                out.write(block)
                coff, uoff = coff + len(block), uoff + len(tail)
        out.write(_BGZF_EOF)
    Path(f"{path}.gzi").write_bytes(struct.pack("<Q", len(blocks) - 1) + np.array(blocks[1:], dtype="<u8").tobytes())
    Path(f"{path}.fai").write_text("".join(fai))  # written last: newer than the FASTA


def check_n_fasta(tmp: Path) -> None:
    """The shortcut's indexes are byte-identical to samtools' on a small layout of the same kind."""
    import pysam

    layout = {"chr1": 130_001, "chrUn_a": 61, "b": 60_000, "c": 60_001, "d": 59_999, "e": 7, "f": 60}
    ours, theirs = tmp / "ours.fa.gz", tmp / "theirs" / "ref.fa.gz"
    theirs.parent.mkdir(parents=True, exist_ok=True)
    write_n_fasta(ours, layout)
    shutil.copy(ours, theirs)
    pysam.faidx(str(theirs))
    for suffix in (".fai", ".gzi"):
        assert Path(f"{ours}{suffix}").read_bytes() == Path(f"{theirs}{suffix}").read_bytes(), suffix
    with pysam.FastaFile(str(ours)) as fasta:
        assert fasta.fetch("c", 59_990, 60_001) == "N" * 11 and len(fasta.fetch("chr1")) == 130_001


def bench_plan(args, tmp: Path) -> list[Row]:
    from dnalm.learning.heads import HeadConfig, build_head, save_head

    check_n_fasta(tmp / "n_check")
    contigs = grch38_like()
    fasta = tmp / "grch38_like.fa.gz"
    started = time.perf_counter()
    write_n_fasta(fasta, contigs)
    log(f"plan: wrote a {sum(contigs.values()) / 1e9:.2f} Gbp bgzip FASTA of N ({len(contigs):,} contigs, "
        f"{fasta.stat().st_size / 1e6:.0f} MB) with .fai and .gzi in {time.perf_counter() - started:.1f} s")
    # Annotation mode (a tiling has no labels): a head of the demo encoder's identity.
    head_dir = tmp / "head"
    identity = {"family": "dnabert", "tokenizer": "dnabert-6mer", "hidden_size": 128, "window_size": 512,
                "window_stride": 256, "strands": "single"}
    save_head(build_head(HeadConfig(kind="hierarchical", class_names=["a", "b"], embed_dim=128, pooling="mean",
                                    encoder=identity)), head_dir)
    workdir = tmp / "plan"
    (workdir / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    overlay = {"outdir": str(workdir / "results"), "logdir": str(workdir / "logs"),
               "input": {"mode": "tiles", "reference": str(fasta), "tiles": {"length": 100_000, "step": 100_000}},
               "windows": {"per_shard": 10_000}, "classify": {"pretrained_head": str(head_dir)}}
    (workdir / "grch38.yaml").write_text(json.dumps(overlay))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "1", "--configfile", str(workdir / "config" / "config.yaml"), str(workdir / "grch38.yaml")]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"snakemake -n failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    jobs = {}
    for line in (proc.stdout + proc.stderr).split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        jobs[parts[0]] = int(parts[1])
    total = jobs.pop("total")
    ok = seconds < 60 and total < 2000
    return [Row("6 plan", f"`snakemake -n`, GRCh38-sized tiling ({len(contigs):,} contigs, "
                          f"{sum(contigs.values()) / 1e9:.1f} Gbp; 100-kb tiles, 10,000 windows a shard)",
                f"{seconds:.1f} s, {total:,} jobs ({jobs.get('embed_shard', 0):,} embed_shard)", "", "",
                f"< 60 s and < 2,000 jobs: {verdict(ok)}")]


# ----------------------------------------------------------------------------- 7. gpu


def matmul_tflops(device: str, sync, n: int = 8192, repeats: int = 20) -> float:
    """Measured dense bf16 throughput of the card: big square matmuls."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def encoder_flops(config, tokens: int) -> tuple[float, float]:
    """(dense, attention) FLOPs of one window through a BERT encoder: 2 per multiply-add."""
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = layers * tokens * (2 * 4 * h * h + 2 * 2 * h * inner)  # Q, K, V, output; two FFN matmuls
    attention = layers * 2 * 2 * tokens * tokens * h  # scores and weighted values
    return dense, attention


def bench_gpu(args, tmp: Path) -> list[Row]:
    import torch

    from dnalm.compute import pick_device
    from dnalm.embedding.engine import Embedder, EngineSettings
    from dnalm.encoders import Encoder
    from dnalm.encoders.tiny import build_tiny_encoder
    from dnalm.settings import EncoderSpec

    device = pick_device(args.device)  # the one place the device is chosen
    if not device.startswith("cuda"):
        return [Row("7 gpu", "DNABERT-base-sized encoder, bf16, through the engine",
                    "no GPU visible (torch.cuda.is_available() is False): not measured")]

    def sync():
        torch.cuda.synchronize(device)

    name = torch.cuda.get_device_name(device)
    folder = build_tiny_encoder(tmp / "dnabert_base", "dnabert", hidden=768, layers=12, heads=12)
    encoder = Encoder.load(EncoderSpec(str(folder), precision="bf16"), 512, 256, device)
    embedder = Embedder(encoder, EngineSettings(tokens_per_batch=args.gpu_tokens_per_batch))
    windows = real_windows(args.gpu_windows)
    tokens = encoder.tokenizer.encode(windows[:1]).input_ids.shape[1]
    dense, attention = encoder_flops(encoder.model.config, tokens)
    embedder.embed(windows[: max(1, args.gpu_tokens_per_batch // tokens)])  # warm-up: kernels, allocator
    best = math.inf
    for _ in range(args.rounds):
        sync()
        started = time.perf_counter()
        embedder.embed(windows)  # ends by copying the vectors to the host
        sync()
        best = min(best, time.perf_counter() - started)
    tflops = matmul_tflops(device, sync)
    ceiling = tflops * 1e12 / (dense + attention)
    achieved = len(windows) / best
    config = encoder.model.config
    return [Row("7 gpu", f"DNABERT-base-sized random encoder ({config.num_hidden_layers} layers x "
                         f"{config.hidden_size}, {tokens} tokens a window), bf16, engine "
                         f"({args.gpu_tokens_per_batch} tokens a batch), {len(windows):,} windows on {name}",
                rate(len(windows), best),
                f"ceiling {ceiling:,.0f} windows/s = {tflops:.0f} TFLOP/s measured bf16 matmul / "
                f"{(dense + attention) / 1e9:.1f} GFLOP a window ({dense / 1e9:.1f} dense + {attention / 1e9:.2f} "
                f"attention)", f"{achieved / ceiling:.0%} of the ceiling")]


# ------------------------------------------------------------------------ 8. variants


def variant_windows(n: int):
    """The first `n` scorable variants of the E. coli recipe VCF: (ref windows, alt windows,
    zero-shot alt windows, variants), built as the workflow's scoring job builds them."""
    import pysam

    from dnalm.variants.alleles import allele_windows, window_problem
    from dnalm.variants.records import read_variants
    from dnalm.variants.scoring import as_model_bases, zero_shot_alt

    variants, _ = read_variants(VARIANTS_VCF, ECOLI)
    refs, alts, llr_alts, chosen = [], [], [], []
    with pysam.FastaFile(str(ECOLI)) as fasta:
        for variant in variants:
            length = fasta.get_reference_length(variant.chrom)
            if window_problem(variant, 512, length) is not None:
                continue
            w = allele_windows(variant, fasta, 512, length)
            refs.append(as_model_bases(w.ref_seq))
            alts.append(as_model_bases(w.alt_seq))
            llr_alts.append(zero_shot_alt(refs[-1], w.ref_offset, w.ref_len, variant.alt))
            chosen.append(variant)
            if len(chosen) == n:
                break
    if len(chosen) < n:
        raise SystemExit(f"the recipe VCF holds {len(chosen)} scorable variants; ask for at most that many")
    return refs, alts, llr_alts, chosen


def variant_rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} variants/s" if n / seconds >= 100 else f"{n / seconds:,.1f} variants/s"


@contextlib.contextmanager
def one_torch_thread():
    """torch on one thread inside the block (as a job runs), the run's setting after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_gpu(args, section: str, what: str, measure) -> list[Row]:
    """`measure(device, card name)`'s rows on the visible GPU, else one row saying so."""
    import torch

    from dnalm.compute import pick_device

    device = pick_device(args.device)
    if not device.startswith("cuda"):
        return [Row(section, what, "no GPU visible (torch.cuda.is_available() is False): not measured")]
    return measure(device, torch.cuda.get_device_name(device))


def bench_variants(args, tmp: Path) -> list[Row]:
    """Variants scored per second: the zero-shot LLR (a masked pass per SNV, several per indel:
    pseudo-log-likelihood), the embedding of ref + alt windows (what the heads and distances
    read; the heads themselves are cheap), and both, on the CPU and on a visible GPU."""
    import collections

    from dnalm.embedding.engine import Embedder
    from dnalm.encoders import Encoder
    from dnalm.encoders.tiny import build_tiny_encoder
    from dnalm.settings import EncoderSpec
    from dnalm.variants.scoring import ZeroShot, llr_queries

    folder = build_tiny_encoder(tmp / "tiny", "dnabert")  # the demo's encoder shape: 2 layers x 128
    refs, alts, llr_alts, variants = variant_windows(args.variants)
    n = len(variants)
    names = {"snv": "SNV", "mnv": "MNV", "insertion": "indel", "deletion": "indel", "complex": "complex indel"}
    kinds = collections.Counter(names[v.kind] for v in variants)
    mix = ", ".join(f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in kinds.most_common())

    def setup(device: str, embed_precision: str):
        mlm = Encoder.load(EncoderSpec(str(folder), precision="fp32"), 512, 256, device, masked_lm=True)
        embedder = Embedder(Encoder.load(EncoderSpec(str(folder), precision=embed_precision), 512, 256, device))
        return ZeroShot(mlm), embedder

    def passes(zero_shot) -> int:
        """Masked windows the LLR runs (one per SNV, several per indel)."""
        tokenizer = zero_shot.tokenizer
        ref_content, alt_content = tokenizer.content(refs), tokenizer.content(llr_alts)
        return sum(len(llr_queries(ref_content.row(i), alt_content.row(i), zero_shot.encoder.capacity)[1])
                   for i in range(n))

    def measure(label: str, device: str, embed_precision: str, where: str) -> list[Row]:
        zero_shot, embedder = setup(device, embed_precision)
        n_passes = passes(zero_shot)
        log(f"variants ({label}): {n} variants ({mix}), {n_passes:,} masked windows for the LLR, "
            f"{2 * n} windows to embed, {args.rounds} rounds (+ warm-up)")
        best = side_by_side({"llr": lambda: zero_shot.llr(refs, llr_alts),  # both end on the host: synchronized
                             "embed": lambda: embedder.embed(refs + alts)}, args.rounds)
        whole = best["llr"] + best["embed"]
        hours = 1_000_000 * whole / n / 3600
        per = "one core" if device == "cpu" else f"one {where}"
        return [
            Row("8 variants", f"zero-shot LLR, fp32, {n} E. coli variants ({mix}): {n_passes:,} masked windows "
                              f"(one per SNV, several per indel: pseudo-log-likelihood), tiny DNABERT-6 (2 x 128), "
                              f"{where}", variant_rate(n, best["llr"]), f"{n_passes / best['llr']:,.0f} masked windows/s"),
            Row("8 variants", f"embedding ref + alt windows ({2 * n} windows), {embed_precision}, same variants, {where}",
                variant_rate(n, best["embed"]), rate(2 * n, best["embed"])),
            Row("8 variants", f"whole per-variant cost: LLR + embedding (heads and distances not counted), {where}",
                variant_rate(n, whole), f"1 million variants: {hours:,.1f} h of {per}"),
        ]

    with one_torch_thread():
        rows = measure("cpu", "cpu", "fp32", "CPU, 1 thread")
    return rows + on_gpu(args, "8 variants", "the same on the GPU (LLR fp32, embedding bf16)",
                         lambda device, name: measure("gpu", device, "bf16", name))


def bench_annotation(args, tmp: Path) -> list[Row]:
    """Bases of genome annotated per second: the tagger over overlapping windows, against the
    embedding of the same windows (what a sequence run computes), and the k-mer baseline."""
    import pysam
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from dnalm.annotation.baseline import kmer_ids, predict_contig, window_counts
    from dnalm.annotation.infer import predict_stretch
    from dnalm.annotation.split import contig_windows
    from dnalm.annotation.tagger import BaseTagger, TokenHead
    from dnalm.embedding.engine import Embedder
    from dnalm.encoders import Encoder
    from dnalm.encoders.tiny import build_tiny_encoder
    from dnalm.settings import EncoderSpec

    folder = build_tiny_encoder(tmp / "tiny_annotation", "dnabert")  # the demo's encoder shape: 2 layers x 128
    with pysam.FastaFile(str(ECOLI)) as fasta:
        sequence = fasta.fetch(fasta.references[0], 1_000_000, 1_000_000 + args.annotation_kb * 1000).upper()
    starts, lengths = contig_windows(len(sequence), 512, 256)
    windows = [sequence[s : s + n] for s, n in zip(starts, lengths)]
    hours = 3.1e9 / 3600  # bases of a human genome, over 3,600 s

    def measure(device: str, precision: str, where: str) -> list[Row]:
        encoder = Encoder.load(EncoderSpec(str(folder), precision=precision), 512, 256, device)
        tagger = BaseTagger(encoder, TokenHead(encoder.identity.hidden_size, 3).to(device), frozen=True).eval()
        embedder = Embedder(encoder)
        per_batch = 16 if device == "cpu" else 128
        best = side_by_side({"tagger": lambda: predict_stretch(tagger, sequence, starts, lengths, 3, per_batch),
                             "embed": lambda: embedder.embed(windows)}, args.rounds)
        n = len(sequence)
        per = "one core" if device == "cpu" else f"one {where}"
        return [
            Row("9 annotation", f"base annotation, {precision}: {args.annotation_kb} kb of E. coli, {len(windows)} windows "
                                f"(512 bp every 256), tiny DNABERT-6 (2 x 128), 3 classes, {where}",
                f"{n / best['tagger']:,.0f} bp/s", f"embedding the same windows: {n / best['embed']:,.0f} bp/s",
                f"{best['embed'] / best['tagger']:.2f}x",
                f"human genome: {hours / (n / best['tagger']):,.1f} h of {per}"),
        ]

    with one_torch_thread():
        rows = measure("cpu", "fp32", "CPU, 1 thread")
        rng = np.random.default_rng(0)
        positions = np.sort(rng.integers(48, len(sequence) - 48, 20_000))
        ids = kmer_ids(sequence, 4)
        x = window_counts(ids, 4, 48, positions)
        y = rng.integers(0, 3, len(positions))  # the cost does not depend on what was learnt
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(max_iter=50).fit(scaler.transform(x), y)
        best = side_by_side({"kmer": lambda: predict_contig(sequence, scaler, model, 4, 48, 3)}, args.rounds)
        rows.append(Row("9 annotation", f"per-base 4-mer logistic baseline (flank 48), same {args.annotation_kb} kb, "
                                        "CPU, 1 thread", f"{len(sequence) / best['kmer']:,.0f} bp/s"))
    return rows + on_gpu(args, "9 annotation", "the same on the GPU (bf16)",
                         lambda device, name: measure(device, "bf16", name))


# ----------------------------------------------------------------------------- report


def machine() -> str:
    import torch

    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{model}, {cores} cores (bf16: {cpu_bf16() or 'none'}), {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s); load average {load}")


def table(rows: list[Row]) -> str:
    lines = ["| # | measure | dnalm | reference | ratio | target |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.section} | {r.measure} | {r.dnalm} | {r.reference} | {r.ratio} | {r.target} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--threads", type=int, default=1, help="torch, BLAS and tokenizer threads (1 as in jobs)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept), cheap sections")
    parser.add_argument("--windows", type=int, default=2000, help="real windows to tokenize")
    parser.add_argument("--embed-windows", type=int, default=48, help="real windows to embed")
    parser.add_argument("--embed-rounds", type=int, default=2, help="interleaved rounds of the embedding rows")
    parser.add_argument("--precision-windows", type=int, default=8, help="windows of the DNABERT-base-sized rows")
    parser.add_argument("--demo-results", default=str(REPO / "results"), help="outdir of a `make demo` run")
    parser.add_argument("--classify-windows", type=int, default=200_000, help="synthetic window vectors")
    parser.add_argument("--chromosome-mbp", type=float, default=250, help="generated chromosome, Mbp")
    parser.add_argument("--device", default="auto", help="GPU section: auto (cuda when visible), cuda, cuda:1")
    parser.add_argument("--gpu-windows", type=int, default=8192)
    parser.add_argument("--gpu-tokens-per-batch", type=int, default=65536, help="as profiles/slurm sets it")
    parser.add_argument("--variants", type=int, default=200, help="variants of the recipe VCF to score")
    parser.add_argument("--annotation-kb", type=int, default=100, help="kb of E. coli annotated base by base")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")

    from dnalm.compute import limit_torch_threads

    log(limit_torch_threads(args.threads))
    header = machine()
    log(header)
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnalm-bench-") as tmp:
        for section in SECTIONS:
            if section in chosen:
                t0 = time.perf_counter()
                rows += globals()[f"bench_{section}"](args, Path(tmp))
                log(f"{section}: {time.perf_counter() - t0:.0f} s")
    print(f"\n{header}\n")
    print(table(rows))
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; load average at the end "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
