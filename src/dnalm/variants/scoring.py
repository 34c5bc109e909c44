"""Scores of a variant, from its ref and alt windows (`variants.alleles`), three ways.

1. Supervised, for every head of the run: the window pair goes through the encoder the
   head was trained on, each window read as a one-window sequence, and the head's
   outputs compared. For classes (and labels), per class c:
       p_ref, p_alt                 the head's probability of c for each allele
       delta = p_alt - p_ref
       log2_odds = log2(p_alt / (1 - p_alt)) - log2(p_ref / (1 - p_ref))
       score_change = delta * max(p_ref, p_alt)   (DNABERT's mutation analysis, DeepVRegulome)
   Probabilities are clipped to [1e-6, 1 - 1e-6] for the odds. For a regression head, per
   target: ref, alt and delta, in the target's units.
2. Zero-shot, for masked-LM families (`ZeroShot`): log P(alt) - log P(ref) with the
   tokens that cover the variant masked, averaged over both strands with
   `encoder.strands: both`. It compares the ref window with the same window holding ALT
   for REF (`zero_shot_alt`: both flanks shared, so its length changes with an indel), so
   that the tokens that differ are those around the variant only (`llr_queries`).
3. Embedding distance: cosine distance (1 - cosine similarity) and L2 distance between the
   ref and alt window vectors (`heads.pooling`).

Swapping REF and ALT (on a reference that carries the ALT) negates delta, log2_odds, the
LLR and score_change, and leaves the distances as they are: tests hold every score to it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..windows.bases import as_n, reverse_complement

EPS = 1e-6
PASS_ROWS = 64  # masked windows per model call of the zero-shot score


def as_model_bases(window: str) -> str:
    """Reference flanks may hold IUPAC codes (or lower case): read them as N, as the
    embedding jobs do with `windows.iupac: as_n`."""
    return as_n(window)


# ---------------------------------------------------------------- supervised


def probability_scores(p_ref: np.ndarray, p_alt: np.ndarray) -> dict[str, np.ndarray]:
    """Per output: p_ref, p_alt, delta, log2_odds and score_change (arrays of one class)."""
    ref, alt = np.clip(p_ref, EPS, 1 - EPS), np.clip(p_alt, EPS, 1 - EPS)
    delta = p_alt - p_ref
    return {
        "p_ref": p_ref, "p_alt": p_alt, "delta": delta,
        "log2_odds": np.log2(alt / (1 - alt)) - np.log2(ref / (1 - ref)),
        "score_change": delta * np.maximum(p_ref, p_alt),
    }


def value_scores(ref: np.ndarray, alt: np.ndarray) -> dict[str, np.ndarray]:
    return {"ref": ref, "alt": alt, "delta": alt - ref}


SCORE_MEANINGS = {
    "p_ref": "probability of {output} by head {head}, ref window",
    "p_alt": "probability of {output} by head {head}, alt window",
    "delta": "{output} by head {head}: alt minus ref",
    "log2_odds": "log2 odds ratio of {output} by head {head}: log2(p_alt/(1-p_alt)) - log2(p_ref/(1-p_ref))",
    "score_change": "score change of {output} by head {head}: (p_alt - p_ref) * max(p_ref, p_alt)",
    "ref": "{output} predicted by head {head}, ref window",
    "alt": "{output} predicted by head {head}, alt window",
}
FIXED_MEANINGS = {
    "llr": "zero-shot log-likelihood ratio log P(alt) - log P(ref) of the masked-LM, variant tokens masked",
    "cosine_distance": "1 - cosine similarity of the ref and alt window vectors",
    "l2_distance": "L2 distance between the ref and alt window vectors",
}


def head_columns(head_name: str, task_name: str, outputs: list[str], ref: np.ndarray,
                 alt: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Score columns of one head ({head}.{score}.{output}) and their meanings."""
    columns, meanings = {}, {}
    for i, output in enumerate(outputs):
        scores = value_scores(ref[:, i], alt[:, i]) if task_name == "regression" \
            else probability_scores(ref[:, i], alt[:, i])
        for score, values in scores.items():
            name = f"{head_name}.{score}.{output}"
            columns[name] = values.astype(np.float64)
            meanings[name] = SCORE_MEANINGS[score].format(head=head_name, output=output)
    return columns, meanings


def n_fractions(windows: list[str]) -> np.ndarray:
    """The fraction of N in each window (the embedding jobs' `n_fraction`)."""
    return np.array([w.count("N") / max(len(w), 1) for w in windows], dtype=np.float32)


def one_window_sets(vectors: np.ndarray, tokens: np.ndarray, window_stride: int, n_fraction: np.ndarray,
                    max_n_fraction: float):
    """A `WindowSets` of one-window sequences (row i: window i), what a head reads. A
    window with more N than `heads.max_n_fraction` is not usable, so the head scores it
    as it classifies such a sequence: not at all (NaN), never as if it were bases."""
    from ..learning.windowsets import WindowSets

    n = len(vectors)
    keys = pa.table({"seq_index": np.arange(n, dtype=np.int64), "window_index": np.zeros(n, dtype=np.int32),
                     "start": np.zeros(n, dtype=np.int64), "n_fraction": np.asarray(n_fraction, dtype=np.float32),
                     "tokens": np.asarray(tokens, dtype=np.int32)})
    return WindowSets(keys, vectors, {"window_stride": window_stride}, max_n_fraction)


def distances(ref: np.ndarray, alt: np.ndarray) -> dict[str, np.ndarray]:
    ref64, alt64 = ref.astype(np.float64), alt.astype(np.float64)
    norms = np.linalg.norm(ref64, axis=1) * np.linalg.norm(alt64, axis=1)
    cosine = np.where(norms > 0, (ref64 * alt64).sum(1) / np.maximum(norms, 1e-30), 0.0)
    return {"cosine_distance": 1.0 - cosine, "l2_distance": np.linalg.norm(alt64 - ref64, axis=1)}


# ----------------------------------------------------------------- zero-shot


def zero_shot_alt(ref_window: str, ref_offset: int, ref_len: int, alt: str) -> str:
    """The ref window with ALT in place of REF: both flanks as they are (W - len(REF) +
    len(ALT) bases), so an indel shifts no token of the flanks."""
    return ref_window[:ref_offset] + alt + ref_window[ref_offset + ref_len:]


@dataclass(frozen=True)
class MaskedQuery:
    """One masked window: content token ids, the positions masked, and the tokens whose
    log-probabilities at those positions are wanted (one list per allele)."""

    ids: np.ndarray
    positions: np.ndarray
    wanted: tuple[np.ndarray, ...]


def differing_span(ref_ids: np.ndarray, alt_ids: np.ndarray) -> tuple[int, int, int]:
    """(first differing token, end of it in ref, end of it in alt): the tokens outside the
    span are the same in both windows (common prefix and suffix)."""
    shortest = min(len(ref_ids), len(alt_ids))
    lo = 0
    while lo < shortest and ref_ids[lo] == alt_ids[lo]:
        lo += 1
    tail = 0
    while tail < shortest - lo and ref_ids[len(ref_ids) - 1 - tail] == alt_ids[len(alt_ids) - 1 - tail]:
        tail += 1
    return lo, len(ref_ids) - tail, len(alt_ids) - tail


def crop(ids: np.ndarray, lo: int, hi: int, capacity: int | None) -> tuple[np.ndarray, int]:
    """At most `capacity` tokens of `ids` around [lo, hi) (the model's positions), and the
    offset of the crop."""
    if capacity is None or len(ids) <= capacity:
        return ids, 0
    start = min(max(0, (lo + hi) // 2 - capacity // 2), len(ids) - capacity)
    return ids[start: start + capacity], start


def llr_queries(ref_ids: np.ndarray, alt_ids: np.ndarray, capacity: int | None) -> tuple[str, list[MaskedQuery]]:
    """How one window pair is scored zero-shot, and the masked windows it needs.

    Where the differing tokens are as many in both windows (an SNV or MNV of per-base or
    k-mer tokens, overlapping k-mers included: the k tokens that hold the base all
    differ), one window is masked at those positions, its context the same for both
    alleles, and the LLR is the sum of log P(alt token) - log P(ref token) there
    ("masked"). Otherwise (indels, byte-pair tokens that regroup) each differing token is
    masked alone in its own window and the LLR is the difference of the two
    pseudo-log-likelihood sums ("pll"); a side with no differing token takes the token
    before the span (after it, at the window's start) on both sides.
    """
    lo, ref_hi, alt_hi = differing_span(ref_ids, alt_ids)
    if ref_hi - lo == alt_hi - lo and ref_hi > lo:
        ids, at = crop(ref_ids, lo, ref_hi, capacity)
        positions = np.arange(lo, ref_hi) - at
        return "masked", [MaskedQuery(ids, positions, (ref_ids[lo:ref_hi], alt_ids[lo:alt_hi]))]
    if ref_hi == lo or alt_hi == lo:  # one allele's tokens all shared: widen by one token
        if lo > 0:
            lo -= 1
        else:
            ref_hi, alt_hi = ref_hi + 1, alt_hi + 1
    queries = []
    for side, (ids_all, hi) in enumerate(((ref_ids, ref_hi), (alt_ids, alt_hi))):
        for position in range(lo, min(hi, len(ids_all))):
            ids, at = crop(ids_all, position, position + 1, capacity)
            wanted = [np.array([], dtype=np.int64), np.array([], dtype=np.int64)]
            wanted[side] = ids_all[position: position + 1]
            queries.append(MaskedQuery(ids, np.array([position - at]), tuple(wanted)))
    return "pll", queries


class ZeroShot:
    """The zero-shot LLR of window pairs with a masked-LM `Encoder` (loaded masked_lm=True)."""

    def __init__(self, encoder, log=None):
        if encoder.tokenizer.mask_id is None:
            raise ValueError("the tokenizer has no mask token")
        self.encoder, self.tokenizer = encoder, encoder.tokenizer
        self.log = log or sys.stderr

    def llr(self, ref_windows: list[str], alt_windows: list[str], strands: str = "single") -> np.ndarray:
        """(pairs,) log P(alt) - log P(ref); with strands both, the mean of both strands."""
        forward = self._llr(ref_windows, alt_windows)
        if strands != "both":
            return forward
        reverse = self._llr([reverse_complement(w) for w in ref_windows], [reverse_complement(w) for w in alt_windows])
        return (forward + reverse) / 2

    def _llr(self, ref_windows: list[str], alt_windows: list[str]) -> np.ndarray:
        ref_content = self.tokenizer.content(ref_windows)
        alt_content = self.tokenizer.content(alt_windows)
        queries, owner = [], []
        for pair in range(len(ref_windows)):
            _, pair_queries = llr_queries(ref_content.row(pair), alt_content.row(pair), self.encoder.capacity)
            queries += pair_queries
            owner += [pair] * len(pair_queries)
        totals = np.zeros(len(ref_windows), dtype=np.float64)
        for start in range(0, len(queries), PASS_ROWS):
            batch = queries[start: start + PASS_ROWS]
            for j, (query, logp) in enumerate(zip(batch, self._log_probs(batch))):
                ref_tokens, alt_tokens = query.wanted
                # logp: (masked positions, vocab); a pll query wants one allele's token only
                pair = owner[start + j]
                if len(alt_tokens):
                    totals[pair] += logp[np.arange(len(alt_tokens)), alt_tokens].sum()
                if len(ref_tokens):
                    totals[pair] -= logp[np.arange(len(ref_tokens)), ref_tokens].sum()
        return totals

    def _log_probs(self, queries: list[MaskedQuery]) -> list[np.ndarray]:
        """Log-softmax over the vocabulary at each query's masked positions."""
        import torch

        from ..encoders import masked_lm_logits

        rows = []
        for query in queries:
            ids = query.ids.copy()
            ids[query.positions] = self.tokenizer.mask_id
            rows.append(ids)
        batch = self.tokenizer.assemble(rows)
        n_pre = len(self.tokenizer.prefix)
        masked = np.zeros(batch.input_ids.shape, dtype=bool)
        for row, query in enumerate(queries):
            masked[row, n_pre + query.positions] = True
        device = self.encoder.device
        with torch.inference_mode():
            logits = masked_lm_logits(self.encoder.model, torch.from_numpy(batch.input_ids).to(device),
                                      torch.from_numpy(batch.attention_mask).to(device),
                                      torch.from_numpy(masked).to(device))
            logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        out, at = [], 0
        for query in queries:  # masked rows come out in row-major order: query by query
            out.append(logp[at: at + len(query.positions)])
            at += len(query.positions)
        return out


def describe_llr_method(tokenizer) -> str:
    """A line for the job's log: how this family's variants are scored zero-shot."""
    overlap = getattr(tokenizer, "overlap", 0)
    how = (f"overlapping k-mers: the {overlap + 1} tokens holding a changed base are masked together"
           if overlap else "each changed token is masked")
    return f"zero-shot LLR with {tokenizer.name} ({how}; indels and regrouped tokens: pseudo-log-likelihood)"
