"""Masked-language-model pretraining (or continued pretraining) of any masked-LM
family on one or more reference FASTAs, e.g. the user's own genome.

Windows of `windows.size` bp tile every record without overlap (windows with more N
than `max_n_fraction` are skipped); every 1/`heldout_fraction`-th window is held out
to score the model. Windows whose tokens exceed the model's positions are trained in
pieces, as the embedding engine embeds them.

Masking suits the tokenizer: `mask_fraction` of a window's tokens are chosen in
spans of (overlap + 1) tokens, so for overlapping k-mers the k tokens that share a
base are hidden together and no neighbour gives the answer away (DNABERT's scheme);
of the chosen tokens 80 % become [MASK], 10 % a random token, 10 % stay. Reports
masked-token accuracy on the held-out windows against the k-mer frequency baseline
(always guessing the most frequent token). Checkpoints after every epoch; a killed
job resumes. Writes a model folder (`save_pretrained` + the tokenizer files) that
every other rule loads like any checkpoint.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from ..compute import autocast, pick_device
from ..embedding.engine import plan_passes
from ..encoders import Encoder, Ragged, masked_lm_logits
from ..encoders.loading import save_model_folder
from ..errors import InputError
from ..inputs.fasta import check_pretrain_lengths, open_fasta, read_fai
from ..settings import EncoderSpec, PretrainSettings
from ..tiling import tile_starts
from ..windows.bases import as_n
from .checkpoint import Checkpoint, fingerprint, rng_state
from .toolkit import warmup_linear_decay



def _fmt(value: float | None) -> str:
    return "not measured (no held-out window)" if value is None else f"{value:.4f}"


class GenomeWindows:
    """Non-overlapping windows over the records of some FASTAs, fetched on demand."""

    def __init__(self, fastas: list[str], size: int, heldout_fraction: float):
        check_pretrain_lengths(fastas, size)  # the DAG-time check, again for callers outside the workflow
        self.fastas, self.size = fastas, size
        files, contigs, starts = [], [], []
        self.names: list[list[str]] = []
        for f, fasta in enumerate(fastas):
            records = read_fai(fasta)
            self.names.append(list(records))
            for c, length in enumerate(records.values()):
                if length < size:
                    continue
                s = tile_starts(length, size, size)
                files.append(np.full(len(s), f))
                contigs.append(np.full(len(s), c))
                starts.append(s)
        self.file, self.contig, self.start = (np.concatenate(a) for a in (files, contigs, starts))
        every = max(2, round(1 / heldout_fraction)) if heldout_fraction > 0 else 0
        self.heldout = (np.arange(len(self.start)) % every == every - 1) if every else \
            np.zeros(len(self.start), dtype=bool)
        self._open: dict[int, object] = {}

    def fetch(self, index: np.ndarray, max_n_fraction: float) -> list[str]:
        """Upper-case windows (letters other than ACGTN read as N); too-N windows dropped."""
        out = []
        for i in index:
            f = int(self.file[i])
            if f not in self._open:
                self._open[f] = open_fasta(self.fastas[f])
            raw = self._open[f].fetch(self.names[f][self.contig[i]], int(self.start[i]), int(self.start[i]) + self.size)
            seq = as_n(raw)  # IUPAC codes and anything else read as N
            if seq.count("N") <= max_n_fraction * len(seq):
                out.append(seq)
        return out


def mask_pieces(rows: Ragged, tokenizer, rng: np.random.Generator, fraction: float, pool: np.ndarray):
    """(original ids, masked input ids, attention mask, labels) of content rows, with span
    masking and 80/10/10; labels are -100 where nothing is to be predicted."""
    batch = tokenizer.assemble(rows)
    inputs, labels = batch.input_ids.copy(), np.full_like(batch.input_ids, -100)
    span = tokenizer.overlap + 1
    start = len(tokenizer.prefix)
    for i, n in enumerate(rows.lengths):
        if n == 0:
            continue
        spans = max(1, round(fraction * n / span))
        chosen = np.zeros(n, dtype=bool)
        for s in rng.integers(0, max(1, n - span + 1), size=spans):
            chosen[s : s + span] = True
        where = start + np.flatnonzero(chosen)
        labels[i, where] = inputs[i, where]
        roll = rng.random(len(where))
        inputs[i, where[roll < 0.8]] = tokenizer.mask_id
        swap = where[(roll >= 0.8) & (roll < 0.9)]
        inputs[i, swap] = rng.choice(pool, size=len(swap))
    return batch.input_ids, inputs, batch.attention_mask, labels


class Pretrainer:
    def __init__(self, spec: EncoderSpec, fastas: list[str], window_size: int, settings: PretrainSettings,
                 checkpoint_dir: str, device: str = "auto", log=None):
        self.settings, self.spec, self.fastas = settings, spec, fastas
        self.log = log or sys.stderr  # at call time: the job's log once step() redirected it
        self.device = pick_device(device)
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.encoder = Encoder.load(replace(spec, precision="fp32"), window_size, window_size, self.device,
                                    masked_lm=True, hash_weights=False)
        if self.encoder.tokenizer.mask_id is None:
            raise InputError("the model's tokenizer has no mask token, so it cannot be trained as a masked LM",
                             path=self.encoder.family.folder.path, fix="pretrain a masked-LM family (BERT, ESM)")
        self.model = self.encoder.model
        self.windows = GenomeWindows(fastas, window_size, settings.heldout_fraction)
        self.checkpoint = Checkpoint(checkpoint_dir, fingerprint([asdict(settings), asdict(spec), window_size], fastas))
        # Tokens to draw the 10 % random replacements from, and the frequency baseline.
        sample = self.windows.fetch(np.flatnonzero(~self.windows.heldout)[:2000], settings.max_n_fraction)
        if not sample:
            raise InputError(f"none of the first {min(2000, int((~self.windows.heldout).sum()))} training windows has "
                             f"at most {settings.max_n_fraction:.0%} N, so there is nothing to pretrain on (is the "
                             "FASTA all N, or hard-masked?)", path=", ".join(map(str, fastas)),
                             fix="pretrain on an unmasked genome, or raise pretrain.max_n_fraction")
        ids = self.encoder.tokenizer.content(sample).ids
        values, counts = np.unique(ids, return_counts=True)
        self.pool, self.most_frequent = values, int(values[counts.argmax()])

    def _pieces(self, sequences: list[str]) -> Ragged:
        content = self.encoder.tokenizer.content(sequences)
        plan = plan_passes(content.lengths, self.encoder.capacity)
        return content.slices(plan.view, plan.lo, plan.hi)

    def _loss(self, pieces, rng):
        _, inputs, attention, labels = mask_pieces(pieces, self.encoder.tokenizer, rng, self.settings.mask_fraction,
                                                   self.pool)
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        labels_t = to(labels)
        masked = labels_t != -100
        with autocast(self.settings.precision, self.device):
            logits = masked_lm_logits(self.model, to(inputs), to(attention), masked)  # (masked tokens, vocab)
        targets = labels_t[masked]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        correct = int((logits.argmax(-1) == targets).sum())
        baseline = int((targets == self.most_frequent).sum())
        return loss, correct, baseline, int(masked.sum())

    def heldout(self) -> dict:
        """Masked-token accuracy on the held-out windows, masked the same way every time."""
        self.model.eval()
        rng = np.random.default_rng(self.settings.seed + 1)
        index = np.flatnonzero(self.windows.heldout)
        total = {"loss": 0.0, "correct": 0, "baseline": 0, "masked": 0, "windows": 0}
        with torch.inference_mode():
            for lo in range(0, len(index), self.settings.batch_size):
                sequences = self.windows.fetch(index[lo : lo + self.settings.batch_size], self.settings.max_n_fraction)
                if not sequences:
                    continue
                loss, correct, baseline, masked = self._loss(self._pieces(sequences), rng)
                total["loss"] += float(loss) * masked
                total["correct"] += correct
                total["baseline"] += baseline
                total["masked"] += masked
                total["windows"] += len(sequences)
        if not total["masked"]:  # nothing held out (heldout_fraction 0, or a small genome): nothing measured
            return {"windows": total["windows"], "masked_tokens": 0, "loss": None, "accuracy": None,
                    "baseline_accuracy": None,
                    "note": "no held-out window (pretrain.heldout_fraction, or too small a genome): not measured"}
        masked = total["masked"]
        return {"windows": total["windows"], "masked_tokens": masked, "loss": total["loss"] / masked,
                "accuracy": total["correct"] / masked, "baseline_accuracy": total["baseline"] / masked}

    def run(self) -> dict:
        s = self.settings
        train_index = np.flatnonzero(~self.windows.heldout)
        per_epoch = min(len(train_index), s.windows_per_epoch) if s.windows_per_epoch else len(train_index)
        total_steps = max(1, s.epochs * math.ceil(per_epoch / s.batch_size))
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        scheduler = warmup_linear_decay(optimizer, total_steps, s.warmup_fraction)
        state = self.checkpoint.resume(self.model, optimizer, scheduler, self.rng)
        if state:
            print(f"resuming from the checkpoint after epoch {state['epoch']}", file=self.log, flush=True)
        else:
            state = {"epoch": 0, "history": [], "before": self.heldout()}
            print(f"held-out masked-token accuracy before: {_fmt(state['before']['accuracy'])} (most-frequent-token "
                  f"baseline {_fmt(state['before']['baseline_accuracy'])})", file=self.log, flush=True)
        for epoch in range(state["epoch"] + 1, s.epochs + 1):
            started = time.perf_counter()
            self.model.train()
            order = self.rng.permutation(train_index)[:per_epoch]
            total, steps = 0.0, 0
            for lo in range(0, len(order), s.batch_size):
                sequences = self.windows.fetch(order[lo : lo + s.batch_size], s.max_n_fraction)
                if not sequences:
                    continue
                loss, *_ = self._loss(self._pieces(sequences), self.rng)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                total += loss.item()
                steps += 1
            heldout = self.heldout()
            state["history"].append({"epoch": epoch, "train_loss": total / max(steps, 1), **heldout,
                                     "seconds": round(time.perf_counter() - started, 1)})
            state.update(epoch=epoch, scheduler=scheduler.state_dict(), rng=rng_state(self.rng))
            self.checkpoint.save(self.model, optimizer, state, best=False)
            print(f"epoch {epoch}: train loss {total / max(steps, 1):.4f}, held-out masked-token accuracy "
                  f"{_fmt(heldout['accuracy'])} (baseline {_fmt(heldout['baseline_accuracy'])}), "
                  f"{time.perf_counter() - started:.0f} s", file=self.log, flush=True)
        self.state = state
        return state

    def save(self, out_dir: str) -> dict:
        save_model_folder(self.model, self.encoder.family.folder, out_dir, "dnalm_pretrained.json",
                          {"what": "masked-LM pretraining by dnalm", "base_model": self.spec.model,
                           "fasta": self.fastas, "epochs": self.state["epoch"]})
        last = self.state["history"][-1] if self.state["history"] else self.state["before"]
        metrics = {
            "base_model": self.spec.model, "fasta": self.fastas, "window_size": self.windows.size,
            "windows": {"train": int((~self.windows.heldout).sum()), "heldout": int(self.windows.heldout.sum())},
            "masking": {"fraction": self.settings.mask_fraction, "span_tokens": self.encoder.tokenizer.overlap + 1,
                        "scheme": "80% [MASK], 10% random token, 10% unchanged"},
            "heldout_before": self.state["before"],
            "heldout": {k: last[k] for k in ("windows", "masked_tokens", "loss", "accuracy", "baseline_accuracy", "note")
                        if k in last},
            "baseline": "always the most frequent token of the training windows",
            "history": self.state["history"],
        }
        self.checkpoint.remove()
        return metrics
