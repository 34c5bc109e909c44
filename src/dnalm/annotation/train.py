"""Rule train_annotator: the token-classification head, with the encoder fine-tuned end to
end (`annotation.encoder: finetune`, the fine-tuning settings of `finetune.*`: learning
rates, warm-up, weight decay, LoRA, precision, gradient checkpointing) or frozen.

Training windows lie whole inside the training part of the genome (`split`), validation
windows inside the validation part; each base's label is its class or background
(`features.base_labels`). Every epoch draws `windows_per_epoch` training windows at
random; the epoch of lowest validation loss is kept, training stops `patience` epochs
after it; a checkpoint is written after every epoch and a killed job resumes from it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from ..compute import autocast, pick_device
from ..encoders import Encoder
from ..encoders.loading import save_model_folder
from ..learning.checkpoint import Checkpoint, fingerprint, rng_state
from ..learning.finetune import adapt_encoder
from ..learning.toolkit import warmup_linear_decay
from ..settings import AnnotationSettings, EncoderSpec, FinetuneSettings
from .genome import GenomeLabels
from .split import part_windows, split_genome
from .tagger import BaseTagger, TokenHead, save_tagger_head, strand_swap

VAL_WINDOWS = 256  # validation windows read each epoch at most (evenly over the validation part)


class AnnotatorTraining:
    def __init__(self, fasta: str, features_path: str, settings: AnnotationSettings, tuning: FinetuneSettings,
                 spec: EncoderSpec, window_size: int, stride: int, checkpoint_dir: str, device: str = "auto",
                 log=None):
        self.log = log or sys.stderr
        self.settings, self.tuning, self.spec = settings, tuning, spec
        self.window_size = window_size
        self.device = pick_device(device)
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        self.genome = GenomeLabels(fasta, features_path, settings, self.log)
        self.stretches = split_genome(self.genome.lengths, settings, window_size, features_path)
        self.train_windows = part_windows(self.stretches, "train", window_size, stride)
        val = part_windows(self.stretches, "val", window_size, window_size)
        pick = np.unique(np.linspace(0, len(val) - 1, min(VAL_WINDOWS, len(val))).round().astype(int))
        self.val_windows = [val[i] for i in pick]
        print(f"{len(self.train_windows)} training windows, {len(self.val_windows)} validation windows; "
              f"classes: background, {', '.join(c.name for c in self.genome.classes)}", file=self.log)
        self.encoder = Encoder.load(replace(spec, precision="fp32"), window_size, stride, self.device,
                                    hash_weights=False)
        frozen = settings.encoder == "frozen"
        if not frozen:
            self.encoder.model = adapt_encoder(self.encoder.model, tuning, self.log)
        head = TokenHead(self.encoder.identity.hidden_size, len(self.genome.classes) + 1)
        self.swap = strand_swap(self.genome.classes) if spec.strands == "both" else None
        self.tagger = BaseTagger(self.encoder, head, frozen, self.swap).to(self.device)
        inputs = [fasta, features_path]
        self.checkpoint = Checkpoint(checkpoint_dir, fingerprint(
            [settings.training_params(), asdict(tuning), asdict(spec), window_size, stride], inputs))

    def _batch(self, picks: list[tuple[str, int]]) -> tuple[list[str], torch.Tensor]:
        windows, labels = zip(*(self.genome.window(contig, start, self.window_size) for contig, start in picks))
        return list(windows), torch.from_numpy(np.concatenate(labels).astype(np.int64)).to(self.device)

    def _loss(self, picks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        windows, y = self._batch(picks)
        with autocast(self.tuning.precision, self.device):
            logits = self.tagger(windows)
        return torch.nn.functional.cross_entropy(logits.float(), y), logits, y

    def validate(self) -> dict:
        """Validation loss and per-base accuracy of the most likely class, no gradients."""
        self.tagger.eval()
        total, n, right = 0.0, 0, 0
        with torch.no_grad():
            for lo in range(0, len(self.val_windows), self.settings.batch_size):
                loss, logits, y = self._loss(self.val_windows[lo : lo + self.settings.batch_size])
                total += loss.item() * len(y)
                n += len(y)
                right += int((logits.argmax(1) == y).sum())
        return {"loss": total / n, "accuracy": right / n}

    def run(self) -> dict:
        s = self.settings
        per_epoch = len(self.train_windows) if s.windows_per_epoch == 0 else \
            min(s.windows_per_epoch, len(self.train_windows))
        steps = max(1, s.epochs * math.ceil(per_epoch / s.batch_size))
        trainable = [p for p in self.tagger.model.parameters() if p.requires_grad]
        groups = [{"params": list(self.tagger.head.parameters()), "lr": self.tuning.head_learning_rate}]
        if trainable:
            groups.append({"params": trainable, "lr": self.tuning.encoder_learning_rate})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.tuning.weight_decay)
        scheduler = warmup_linear_decay(optimizer, steps, self.tuning.warmup_fraction)
        state = self.checkpoint.resume(self.tagger, optimizer, scheduler, self.rng)
        if state:
            print(f"resuming from the checkpoint after epoch {state['epoch']} ({self.checkpoint.folder})",
                  file=self.log, flush=True)
        else:
            state = {"epoch": 0, "best_epoch": 0, "best_loss": None, "history": []}
        for epoch in range(state["epoch"] + 1, s.epochs + 1):
            if state["best_epoch"] and epoch - state["best_epoch"] > s.patience:
                break
            started = time.perf_counter()
            self.tagger.train()
            # The encoder's own dropout stays off: attention dropout sends torch's attention down
            # a path 2-2.5x slower on CPUs (measured, tiny DNABERT-6), and the head has dropout.
            self.tagger.model.eval()
            order = self.rng.permutation(len(self.train_windows))[:per_epoch]
            losses = []
            for lo in range(0, len(order), s.batch_size):
                loss, _, _ = self._loss([self.train_windows[i] for i in order[lo : lo + s.batch_size]])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.tagger.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(loss.item())
            val = self.validate()
            best = state["best_loss"] is None or val["loss"] < state["best_loss"] - 1e-6
            if best:
                state["best_loss"], state["best_epoch"] = val["loss"], epoch
            seconds = round(time.perf_counter() - started, 1)
            state["history"].append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val["loss"],
                                     "val_accuracy": val["accuracy"], "seconds": seconds})
            state.update(epoch=epoch, scheduler=scheduler.state_dict(), rng=rng_state(self.rng))
            self.checkpoint.save(self.tagger, optimizer, state, best=best)
            print(f"epoch {epoch}: train loss {np.mean(losses):.4f}, val loss {val['loss']:.4f}, val per-base "
                  f"accuracy {val['accuracy']:.3f}{' (kept)' if best else ''}, {seconds:.0f} s",
                  file=self.log, flush=True)
        self.checkpoint.load_best(self.tagger)
        self.state = state
        return state

    def save(self, model_dir: str, encoder_dir: str | None) -> None:
        """The head, and the fine-tuned encoder (a model folder like any checkpoint) where the
        encoder was trained; removes the checkpoint."""
        if encoder_dir:
            model = self.encoder.model
            if self.tuning.lora_r > 0:
                model = model.merge_and_unload()
            save_model_folder(model, self.encoder.family.folder, encoder_dir, "dnalm_annotator.json",
                              {"what": "encoder fine-tuned for base annotation by dnalm", "base_model": self.spec.model,
                               "best_epoch": self.state["best_epoch"]})
        config = {"classes": [c.name for c in self.genome.classes],
                  "types": [[c.type, c.strand] for c in self.genome.classes],
                  "hidden_size": self.encoder.identity.hidden_size, "encoder": self.settings.encoder,
                  "base_model": self.spec.model, "family": self.encoder.family.name,
                  "window_size": self.window_size, "strands": self.spec.strands, "swap": self.swap,
                  "best_epoch": self.state["best_epoch"],
                  "history": self.state["history"], "training_windows": len(self.train_windows)}
        save_tagger_head(self.tagger.head.cpu(), model_dir, config)
        self.checkpoint.remove()


def train_annotator(fasta: str, features_path: str, settings: AnnotationSettings, tuning: FinetuneSettings,
                    spec: EncoderSpec, window_size: int, stride: int, checkpoint_dir: str, model_dir: str,
                    encoder_dir: str | None) -> dict:
    training = AnnotatorTraining(fasta, features_path, settings, tuning, spec, window_size, stride, checkpoint_dir)
    state = training.run()
    training.save(model_dir, encoder_dir)
    return state
