"""Fine-tuning end to end: the encoder and a head (the seed's two models: window vectors
-> masked mean -> linear, or -> hierarchical transformer) trained together on the
user's labels, for any encoder family.

Memory stays bounded whatever the sequence length: a step takes a few sequences
(`sequences_per_step`), and of each at most `max_windows` windows chosen at random
(every window when evaluating, in batches of the engine's token budget); gradient
checkpointing, gradient accumulation, bf16 autocast on GPUs; separate learning rates
for encoder and head, with warm-up then linear decay; LoRA adapters through `peft`
when `lora_r` > 0. The kept epoch is the best by the validation measure `select_by` (MCC
by default: a model predicting one class cannot win), training stops `patience` epochs
after it but not before `min_epochs`; a checkpoint is written after every epoch and a
killed job resumes from it.

Writes the fine-tuned encoder (`save_pretrained`, safetensors, with the tokenizer
files) and the head (safetensors + JSON) tied to that encoder's identity; the
workflow then embeds every sequence with the fine-tuned encoder and classifies with
the head, so an annotation run reuses both like any other checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import pyarrow as pa
import torch

from ..compute import autocast, pick_device
from ..embedding.engine import Embedder, EngineSettings
from ..encoders import Encoder, ModelFolder, family_for, identify
from ..encoders.loading import save_model_folder
from ..inputs.regions import read_regions
from ..inputs.splits import label_sequences
from ..io import atomic_path, read_parquet, read_provenance
from ..settings import EncoderSpec, FinetuneSettings
from .checkpoint import Checkpoint, fingerprint, rng_state
from .heads import predict, save_head
from .model import SequenceClassifier
from .tasks import task_for
from .toolkit import better, head_metrics, new_head, seed_spread, usable_windows, warmup_linear_decay
from .windowsets import WindowSets

WINDOW_COLUMNS = ["seq_index", "start", "n_fraction", "sequence"]


class LabelledWindows:
    """The windows of the labelled sequences (strings), grouped by sequence in order."""

    def __init__(self, shard_paths: list[str], keep: np.ndarray, tokens_of, max_n_fraction: float):
        parts = []
        for path in shard_paths:
            table = read_parquet(path, columns=WINDOW_COLUMNS, rule="make_windows")
            seq = table.column("seq_index").to_numpy()
            parts.append(table.filter(pa.array(keep[seq])))
        table = pa.concat_tables(parts)
        self.seq_index = table.column("seq_index").to_numpy()
        self.start = table.column("start").to_numpy()
        self.sequences = table.column("sequence").to_pylist()
        self.tokens = tokens_of(self.sequences)
        self.usable = usable_windows(table.column("n_fraction").to_numpy(), max_n_fraction, self.tokens)
        self.first = np.searchsorted(self.seq_index, np.arange(len(keep)))
        self.last = np.searchsorted(self.seq_index, np.arange(len(keep)), side="right")

    def usable_of(self, seq: int) -> np.ndarray:
        idx = np.arange(self.first[seq], self.last[seq])
        return idx[self.usable[idx]]

    def has_usable(self, n_sequences: int) -> np.ndarray:
        counts = np.bincount(self.seq_index[self.usable], minlength=n_sequences)
        return counts > 0


class Finetuner:
    def __init__(self, shard_paths: list[str], regions_path: str, labels_path: str | None, spec: EncoderSpec,
                 settings: FinetuneSettings, checkpoint_dir: str, device: str = "auto",
                 engine: EngineSettings | None = None, log=None):
        settings.check()
        self.settings, self.spec = settings, spec
        self.log = log or sys.stderr  # at call time: the job's log once step() redirected it
        self.engine = engine or EngineSettings()
        self.device = pick_device(device)
        torch.manual_seed(settings.seed)
        self.rng = np.random.default_rng(settings.seed)
        windows_meta = read_provenance(shard_paths[0], rule="make_windows")
        self.window_size, self.stride = int(windows_meta["window_size"]), int(windows_meta["window_stride"])
        # Master weights in fp32; bf16 is autocast (GPU by default), never the stored weights.
        self.encoder = Encoder.load(replace(spec, precision="fp32"), self.window_size, self.stride, self.device,
                                    hash_weights=False)
        self.regions = read_regions(regions_path, labels_path)
        labelled = self.regions["label"].notna().to_numpy()
        self.windows = LabelledWindows(shard_paths, labelled, lambda s: self.encoder.tokenizer.content(s).lengths,
                                       settings.max_n_fraction)
        self.sets = label_sequences(self.regions, self.windows.has_usable(len(self.regions)), settings,
                                    labels_path or regions_path)
        for note in self.sets.notes:
            print(f"warning: {note}", file=self.log)
        inputs = [regions_path] + ([labels_path] if labels_path else []) + list(shard_paths)
        self.checkpoint = Checkpoint(checkpoint_dir, fingerprint([asdict(settings), asdict(spec)], inputs))
        self.task = task_for(settings.task, settings)
        self.task.fit_state(self.sets.y[self.sets.rows("train")])
        head = new_head(settings.head, settings, self.sets.names, self.encoder.identity.hidden_size,
                        self._training_vectors(), spec.strands, task=self.task).to(self.device)
        self.encoder.model = adapt_encoder(self.encoder.model, settings, self.log)
        self.classifier = SequenceClassifier(self.encoder, head, settings.pooling, spec.strands).to(self.device)
        self.weights = self.task.weights(self.sets.y[self.sets.rows("train")], len(self.sets.names),
                                         settings.class_weights).to(self.device)

    def _training_vectors(self) -> np.ndarray:
        """Window vectors of the starting encoder, of up to 2,000 training windows: the head's
        input is standardised with their statistics."""
        train = self.sets.rows("train")
        picks = np.concatenate([self.windows.usable_of(s) for s in train])
        if len(picks) > 2000:
            picks = np.sort(self.rng.choice(picks, 2000, replace=False))
        return self._embed([self.windows.sequences[i] for i in picks])

    # ------------------------------------------------------------- evaluation
    def _embed(self, sequences: list[str]) -> np.ndarray:
        """Window vectors (pooling of the settings) of every given window, no gradients."""
        self.encoder.model.eval()
        with autocast(self.settings.precision, self.device):
            vectors = Embedder(self.encoder, self.engine, log=self.log).embed(sequences, self.spec.strands)
        return vectors.summary if self.settings.pooling == "cls" else vectors.mean

    def _window_sets(self, rows: np.ndarray) -> tuple[WindowSets, np.ndarray]:
        """Every usable window of these sequences as a WindowSets, and the rows of `rows` in it."""
        picks = np.concatenate([self.windows.usable_of(s) for s in rows]) if len(rows) else np.zeros(0, int)
        matrix = self._embed([self.windows.sequences[i] for i in picks]) if len(picks) else \
            np.zeros((0, self.encoder.identity.hidden_size), np.float32)
        keys = pa.table({"seq_index": self.windows.seq_index[picks], "start": self.windows.start[picks],
                         "n_fraction": np.zeros(len(picks), np.float32), "tokens": self.windows.tokens[picks]})
        data = WindowSets(keys, matrix, {"window_stride": self.stride}, 1.0)
        return data, np.searchsorted(data.seq_index, rows)

    def evaluate(self, rows: np.ndarray) -> np.ndarray:
        """What the head predicts (len(rows), outputs) for these sequences, from every window."""
        if len(rows) == 0:
            return np.zeros((0, len(self.sets.names)), np.float32)
        head = self.classifier.head.cpu()
        data, data_rows = self._window_sets(rows)
        proba = predict(head, data, data_rows)
        self.classifier.head.to(self.device)
        return proba

    # --------------------------------------------------------------- training
    def _step_batch(self, rows: np.ndarray):
        """Windows of these sequences for one step: at most max_windows each, at random, in order."""
        windows, sequence, positions = [], [], []
        for i, seq in enumerate(rows):
            usable = self.windows.usable_of(seq)
            if len(usable) > self.settings.max_windows:
                usable = np.sort(self.rng.choice(usable, self.settings.max_windows, replace=False))
            windows += [self.windows.sequences[j] for j in usable]
            sequence.append(np.full(len(usable), i))
            positions.append(self.windows.start[usable] / self.stride)
        return windows, np.concatenate(sequence), np.concatenate(positions)

    def run(self) -> dict:
        s = self.settings
        train_rows, val_rows = self.sets.rows("train"), self.sets.rows("val")
        monitor = val_rows if len(val_rows) else train_rows
        steps_per_epoch = math.ceil(len(train_rows) / s.sequences_per_step)
        total_steps = max(1, s.epochs * math.ceil(steps_per_epoch / s.accumulate))
        encoder_params = [p for p in self.encoder.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW([{"params": encoder_params, "lr": s.encoder_learning_rate},
                                       {"params": list(self.classifier.head.parameters()), "lr": s.head_learning_rate}],
                                      weight_decay=s.weight_decay)
        scheduler = warmup_linear_decay(optimizer, total_steps, s.warmup_fraction)
        state = self.checkpoint.resume(self.classifier, optimizer, scheduler, self.rng)
        if state:
            print(f"resuming from the checkpoint after epoch {state['epoch']} ({self.checkpoint.folder})",
                  file=self.log, flush=True)
        else:
            state = {"epoch": 0, "best_epoch": 0, "best_score": None, "history": []}
        for epoch in range(state["epoch"] + 1, s.epochs + 1):
            if epoch - state["best_epoch"] > s.patience and state["best_epoch"] and epoch > s.min_epochs:
                break
            started = time.perf_counter()
            train_loss = self._train_epoch(train_rows, optimizer, scheduler)
            val, score = self.task.validation(self.evaluate(monitor), self.sets.y[monitor],
                                              self.weights.cpu().numpy(), s.select_by)
            measure, shown = self.task.measure
            state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                                     **{f"val_{key}": value for key, value in val.items() if key != "loss"},
                                     "seconds": round(time.perf_counter() - started, 1)})
            best = better(score, state["best_score"] and tuple(state["best_score"]))
            if best:
                state["best_score"], state["best_epoch"] = list(score), epoch
            state.update(epoch=epoch, scheduler=scheduler.state_dict(), rng=rng_state(self.rng))
            self.checkpoint.save(self.classifier, optimizer, state, best=best)
            measured = f"val accuracy {val['accuracy']:.3f}, " if "accuracy" in val else ""
            value = "n/a" if val[measure] is None else f"{val[measure]:.3f}"
            print(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, {measured}"
                  f"{shown} {value}{' (kept)' if best else ''}, "
                  f"{time.perf_counter() - started:.0f} s", file=self.log, flush=True)
        self.checkpoint.load_best(self.classifier)
        self.state = state
        return state

    def _train_epoch(self, train_rows: np.ndarray, optimizer, scheduler) -> float:
        """One pass over the training sequences in a new random order; the mean step loss."""
        s = self.settings
        self.classifier.train()
        order = self.rng.permutation(train_rows)
        ytrain = torch.from_numpy(self.sets.y).to(self.device)
        total, n_steps = 0.0, 0
        optimizer.zero_grad()
        for step, lo in enumerate(range(0, len(order), s.sequences_per_step)):
            rows = order[lo : lo + s.sequences_per_step]
            windows, sequence, positions = self._step_batch(rows)
            with autocast(s.precision, self.device):
                logits = self.classifier(windows, sequence, positions)
            y = ytrain[torch.from_numpy(rows).to(self.device)]
            loss = self.task.loss(logits.float(), y, self.weights, self.task.step_weight(y, self.weights))
            (loss / s.accumulate).backward()
            total += loss.item()
            n_steps += 1
            if (step + 1) % s.accumulate == 0 or lo + s.sequences_per_step >= len(order):
                torch.nn.utils.clip_grad_norm_(self.classifier.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        return total / max(n_steps, 1)

    # ----------------------------------------------------------------- output
    def predictions(self) -> tuple:
        """(task, val predictions, test predictions) of the kept epoch, the task's state
        (thresholds) learnt from validation: one seed's entry of `toolkit.seed_spread`."""
        val_rows, test_rows = self.sets.rows("val"), self.sets.rows("test")
        val_pred, test_pred = self.evaluate(val_rows), self.evaluate(test_rows)
        self.task.finish(val_pred, self.sets.y[val_rows])  # e.g. thresholds chosen on validation
        self.last_predictions = (self.task, val_pred, test_pred)
        return self.last_predictions

    def save(self, encoder_dir: str, head_dir: str) -> dict:
        """The fine-tuned encoder folder and the head tied to it; returns the metrics."""
        s = self.settings
        _, val_pred, test_pred = self.predictions()
        model = self.encoder.model
        if s.lora_r > 0:
            model = model.merge_and_unload()
        save_model_folder(model, self.encoder.family.folder, encoder_dir, "dnalm_finetuned.json",
                          {"what": "encoder fine-tuned end to end by dnalm", "base_model": self.spec.model,
                           "head": s.head, "best_epoch": self.state["best_epoch"]})
        # The head reads vectors of the written encoder: its identity, hashed from the folder.
        written = identify(family_for(ModelFolder.open(encoder_dir), self.encoder.family.name), encoder_dir)
        space = self.encoder.space.with_encoder(model=written.model, model_revision=None,
                                                model_sha256=written.model_sha256,
                                                tokenizer_sha256=written.tokenizer_sha256)
        head = self.classifier.head.cpu()
        head.config.encoder = dataclasses.replace(space, precision=None).located().as_dict()
        head.config.task = self.task.config()
        save_head(head, head_dir)
        metrics = head_metrics("finetuned", s.pooling, self.sets, self.task, val_pred, test_pred,
                               self.state["best_epoch"],
                               self.state["history"], kind=s.head, selected_by=s.select_by,
                               encoder={"base": self.spec.model, "lora_r": s.lora_r, "strands": self.spec.strands})
        self.checkpoint.remove()
        return metrics


def adapt_encoder(model, settings: FinetuneSettings, log):
    """The encoder as fine-tuning trains it: wrapped in LoRA adapters of rank `lora_r`
    (peft) when set, with gradient checkpointing when asked and the model supports it."""
    if settings.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                                 lora_dropout=settings.lora_dropout, target_modules="all-linear"))
        print(f"LoRA rank {settings.lora_r}: {sum(p.numel() for p in model.parameters() if p.requires_grad)} "
              "trainable encoder weights", file=log)
    if settings.gradient_checkpointing and getattr(model, "supports_gradient_checkpointing", False):
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def finetune(shard_paths: list[str], regions_path: str, labels_path: str | None, spec: EncoderSpec,
             settings: FinetuneSettings, checkpoint_dir: str, encoder_dir: str, head_dir: str,
             engine: EngineSettings | None = None) -> dict:
    """Rule finetune: fine-tune `settings.seeds` times from seeds seed, seed + 1, ... on the
    same splits, keep the first seed's encoder and head, and return its metrics with the
    spread of every val and test metric over the seeds (`seeds`).

    The extra seeds run first, one at a time (one encoder in memory), each with its own
    checkpoint folder under `checkpoint_dir`, so a killed job resumes the seed it was in;
    a finished seed keeps only its predictions there, until the kept seed is saved.
    """
    extra = []
    for seed in range(settings.seed + 1, settings.seed + settings.seeds):
        tuner = Finetuner(shard_paths, regions_path, labels_path, spec, replace(settings, seed=seed),
                          f"{checkpoint_dir}/seed_{seed}", engine=engine)
        extra.append(_seed_predictions(tuner, settings))
        del tuner
    tuner = Finetuner(shard_paths, regions_path, labels_path, spec, settings, checkpoint_dir, engine=engine)
    tuner.run()
    metrics = tuner.save(encoder_dir, head_dir)
    if settings.seeds > 1:
        metrics["seeds"] = seed_spread(tuner.sets, [tuner.last_predictions] + extra,
                                       list(range(settings.seed, settings.seed + settings.seeds)))
    return metrics


def _seed_predictions(tuner: Finetuner, settings: FinetuneSettings) -> tuple:
    """One extra seed's (task, val, test predictions): read back where that seed finished
    before (same fingerprint), else trained now and kept in its checkpoint folder."""
    done = tuner.checkpoint.folder / "predictions.npz"
    if done.exists():
        with np.load(done, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            if meta["fingerprint"] == tuner.checkpoint.fingerprint:
                print(f"fine-tuning seed {tuner.settings.seed}: finished before, predictions read back",
                      file=tuner.log, flush=True)
                return task_for(settings.task, settings, meta["state"]), saved["val"], saved["test"]
    print(f"fine-tuning seed {tuner.settings.seed} of {settings.seed}..{settings.seed + settings.seeds - 1} "
          "(for the spread; the first seed's model is kept)", file=tuner.log, flush=True)
    tuner.run()
    task, val_pred, test_pred = tuner.predictions()
    tuner.checkpoint.remove()
    done.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"fingerprint": tuner.checkpoint.fingerprint, "state": task.state})
    with atomic_path(done) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, val=val_pred, test=test_pred, meta=np.array(meta))
    return task, val_pred, test_pred
