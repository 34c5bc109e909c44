"""Rule annotate_shard: per-base class probabilities of one shard of the genome's
inference windows (`split.contig_windows`: every contig end to end, every `stride`
bases), the GPU job on a cluster.

Where windows overlap, a base's probabilities are the mean of the windows' predictions
weighted by `tagger.centre_weights` (a window's middle counts most). A shard writes the
weighted sums and the weights, not their ratio: the gather adds the sums of the shards
that share a base, so the result does not depend on where the shards are cut.

The shard file's layout: `shards`.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch

from ..compute import pick_device
from ..encoders import Encoder
from ..errors import InputError
from ..inputs.fasta import open_fasta, read_fai
from ..settings import EncoderSpec
from ..windows.bases import as_n
from .shards import write_shard
from .split import contig_windows
from .tagger import BaseTagger, centre_weights, load_tagger_head


def shard_windows(lengths: dict[str, int], window_size: int, stride: int, shard: int, per_shard: int,
                  mirrored: bool = False) -> pd.DataFrame:
    """Windows shard * per_shard .. (shard + 1) * per_shard - 1 of the genome's inference
    windows, contig after contig (contig, start, length), made up to the shard's last only."""
    lo, hi = shard * per_shard, (shard + 1) * per_shard
    parts, seen = [], 0
    for contig, length in lengths.items():
        starts, sizes = contig_windows(length, window_size, stride, mirrored)
        a, b = max(lo - seen, 0), min(hi - seen, len(starts))
        if a < b:
            parts.append(pd.DataFrame({"contig": contig, "start": starts[a:b], "length": sizes[a:b]}))
        seen += len(starts)
        if seen >= hi:
            break
    return pd.concat(parts, ignore_index=True)


def load_tagger(spec: EncoderSpec, model_dir: str, window_size: int, stride: int, device: str) -> tuple:
    head, config = load_tagger_head(model_dir)
    encoder = Encoder.load(spec, window_size, stride, device)
    if encoder.identity.hidden_size != config["hidden_size"]:
        raise InputError(f"the annotation head reads {config['hidden_size']}-wide token states, but the encoder "
                         f"gives {encoder.identity.hidden_size}", path=model_dir,
                         fix="train the annotator again with this encoder (remove the folder)")
    return BaseTagger(encoder, head.to(device), frozen=True, swap=config.get("swap")).eval(), config


def predict_stretch(tagger: BaseTagger, sequence: str, starts: np.ndarray, lengths: np.ndarray, n_classes: int,
                    per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(sums (bases, classes), weights (bases,)) of the windows starts[j]..starts[j] + lengths[j]
    of `sequence`: each window's per-base probabilities times its centre weights, added up."""
    sums = np.zeros((len(sequence), n_classes), np.float32)
    weight = np.zeros(len(sequence), np.float32)
    for b in range(0, len(starts), per_batch):
        picks = range(b, min(b + per_batch, len(starts)))
        texts = [sequence[starts[j] : starts[j] + lengths[j]] for j in picks]
        with torch.no_grad():
            proba = torch.softmax(tagger(texts).float(), dim=1).cpu().numpy()  # (bases of the batch, classes)
        at = 0
        for j, text in zip(picks, texts):
            w = centre_weights(len(text))
            where = slice(starts[j], starts[j] + len(text))
            sums[where] += proba[at : at + len(text)] * w[:, None]
            weight[where] += w
            at += len(text)
    return sums, weight


def annotate_shard(fasta: str, shard: int, per_shard: int, window_size: int, stride: int, spec: EncoderSpec,
                   model_dir: str, out_path: str, tokens_per_batch: int = 16384, device: str = "auto",
                   log=None) -> int:
    """Writes the shard's weighted probability sums; returns the bases predicted."""
    log = log or sys.stderr  # the job's log: stderr as redirected at call time
    device = pick_device(device)
    lengths = read_fai(fasta)
    tagger, config = load_tagger(spec, model_dir, window_size, stride, device)
    # Both strands read: windows placed as their own mirror image, so a reverse-complemented
    # genome is read in the same windows and annotated the same, mirrored.
    windows = shard_windows(lengths, window_size, stride, shard, per_shard, tagger.swap is not None)
    n_classes = len(config["classes"]) + 1
    reference = open_fasta(fasta)
    per_batch = max(1, tokens_per_batch // window_size)
    arrays, contigs, starts, ends = {}, [], [], []
    for i, (contig, rows) in enumerate(windows.groupby("contig", sort=False)):
        lo, hi = int(rows.start.min()), int((rows.start + rows.length).max())
        sums, weight = predict_stretch(tagger, as_n(reference.fetch(contig, lo, hi)), rows.start.to_numpy() - lo,
                                       rows.length.to_numpy(), n_classes, per_batch)
        arrays[f"sum_{i}"], arrays[f"weight_{i}"] = sums, weight
        contigs.append(contig)
        starts.append(lo)
        ends.append(hi)
        print(f"{contig}: {len(rows)} windows, bases {lo}-{hi}", file=log, flush=True)
    write_shard(out_path, contigs, starts, ends, arrays)
    return int(sum(e - s for s, e in zip(starts, ends)))
