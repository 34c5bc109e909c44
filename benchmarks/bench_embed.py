"""Throughput of tokenization and embedding, measured side by side in one run.

    .venv/bin/python benchmarks/bench_embed.py [--windows 400] [--threads 1]

Windows are real: 512 bp every 256 bp over E. coli K-12 (data/). The encoder is
a random DNABERT-6-architecture BERT built on the spot (4 layers, hidden 256,
as in the team's baseline notes). "naive" is what a tutorial writes: k-mers
joined with spaces through the Hugging Face tokenizer, padding to 512 tokens,
eager attention, fp32. Prints a table; ratios are against the naive row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam
import torch

from dnalm.embed import embed_windows
from dnalm.encoder import EncoderSpec, build_tiny_encoder, load_encoder
from dnalm.tokenize import encode_batch

REPO = Path(__file__).resolve().parents[1]


def real_windows(n: int) -> list[str]:
    fasta = pysam.FastaFile(str(REPO / "data" / "ecoli_k12_mg1655_NC_000913.3.fa.gz"))
    seq = fasta.fetch("NC_000913.3", 100_000, 100_000 + 256 * n + 256).upper()
    return [seq[i : i + 512] for i in range(0, 256 * n, 256)]


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    windows = real_windows(args.windows)
    rows = []

    from transformers import BertTokenizer

    tokenizer = BertTokenizer(str(REPO / "data" / "dnabert6_vocab.txt"), do_lower_case=False)
    assert len(tokenizer) == 4101
    joined = [" ".join(w[i : i + 6] for i in range(len(w) - 5)) for w in windows]
    t_naive_tok = timed(lambda: tokenizer(joined, padding="max_length", max_length=512, truncation=True), 3)
    t_ours_tok = timed(lambda: [encode_batch(windows[i : i + args.batch], 6)
                                for i in range(0, len(windows), args.batch)], 3)
    ours_ids = np.concatenate([encode_batch(windows[i : i + args.batch], 6)[0]
                               for i in range(0, len(windows), args.batch)])
    hf_ids = np.array(tokenizer(joined)["input_ids"])
    assert (ours_ids == hf_ids).all(), "tokenizers disagree"
    rows.append(("tokenize: HF BertTokenizer on joined k-mers", t_naive_tok))
    rows.append(("tokenize: dnalm integer k-mers", t_ours_tok))

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_encoder(tmp, hidden=256, layers=4, heads=4)
        from transformers import AutoModel

        naive = AutoModel.from_pretrained(model_dir, attn_implementation="eager", add_pooling_layer=False).eval()
        encoded = tokenizer(joined, padding="max_length", max_length=512, truncation=True, return_tensors="pt")

        def run_naive():
            with torch.inference_mode():
                for i in range(0, len(windows), args.batch):
                    naive(input_ids=encoded["input_ids"][i : i + args.batch],
                          attention_mask=encoded["attention_mask"][i : i + args.batch]).last_hidden_state[:, 0]

        rows.append(("embed: naive (HF tokens, pad 512, eager, fp32)", timed(run_naive)))
        results = {}
        for precision in ("fp32", "bf16"):
            model, k, _ = load_encoder(EncoderSpec(str(model_dir), precision=precision), 512, "cpu")
            seconds = timed(lambda: results.__setitem__(precision, embed_windows(model, windows, k, args.batch, "cpu")))
            rows.append((f"embed: dnalm ({precision}, SDPA, no padding)", seconds))
        cls32, cls16 = results["fp32"][0], results["bf16"][0]
        rel = float(np.abs(cls32 - cls16).max() / np.abs(cls32).max())

    base_tok, base_emb = rows[0][1], rows[2][1]
    print(f"\n{len(windows)} real 512-bp windows, batch {args.batch}, {args.threads} thread(s), "
          f"torch {torch.__version__}\n")
    print(f"| {'step':<48} | {'seconds':>8} | {'windows/s':>10} | {'vs naive':>8} |")
    print(f"|{'-' * 50}|{'-' * 10}|{'-' * 12}|{'-' * 10}|")
    for i, (name, seconds) in enumerate(rows):
        base = base_tok if i < 2 else base_emb
        print(f"| {name:<48} | {seconds:8.3f} | {len(windows) / seconds:10.1f} | {base / seconds:7.1f}x |")
    print(f"\nbf16 vs fp32 [CLS], max relative difference (random weights): {rel:.1e}")


if __name__ == "__main__":
    main()
