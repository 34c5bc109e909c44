"""What every learner shares (frozen heads, fine-tuning, pretraining, the baselines):
which windows may be read, class weights, the loss, the learning-rate schedule, a head
built from the settings, and the metrics.json of a trained head. One definition each, so
the learners cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch

from ..inputs.splits import LabelledSplits
from ..settings import HeadSettings
from .heads import HeadConfig, build_head
from .metrics import classification_metrics


def usable_windows(n_fraction: np.ndarray, max_n_fraction: float, tokens: np.ndarray | None = None) -> np.ndarray:
    """Per window: whether a learner reads it. Few enough N (`heads.max_n_fraction`), and,
    where the encoder's token counts are known, at least one sequence token (a window
    shorter than k has none). The baselines read bases, not tokens: for them the N
    threshold alone decides."""
    usable = np.asarray(n_fraction) <= max_n_fraction
    return usable if tokens is None else usable & (np.asarray(tokens) > 0)


def class_weights(y_train: np.ndarray, n_classes: int, balanced: bool) -> torch.Tensor:
    """Inverse-frequency class weights (ones when not balanced)."""
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weights = counts.sum() / (n_classes * counts) if balanced else np.ones_like(counts)
    return torch.from_numpy(weights)


def weighted_loss(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, total_weight: float) -> torch.Tensor:
    """Class-weighted cross-entropy summed over these rows and divided by the whole step's
    weight: micro-batches of one step add up to the step's weighted mean."""
    nll = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return (nll * weights[y]).sum() / total_weight


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    """Learning rates rising linearly over the first `warmup_fraction` of the steps, then
    falling linearly to 0 at `total_steps` (fine-tuning and pretraining)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validation_score(proba: np.ndarray, y: np.ndarray, weights: np.ndarray, select_by: str) -> tuple[dict, tuple]:
    """What the kept epoch is chosen by: ({loss, mcc, accuracy}, a score where higher is better).

    `loss`: the class-weighted negative log-likelihood; `mcc`: Matthews correlation of the
    predicted classes, 0 for a model predicting one class whatever its probabilities, so
    (select_by mcc, ties to the lower loss) such a model is never kept over one that
    separates the classes."""
    from sklearn.metrics import matthews_corrcoef

    if len(y) == 0:
        return {"loss": float("nan"), "mcc": float("nan"), "accuracy": float("nan")}, (-np.inf,)
    w = weights[y]
    loss = float(-(w * np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))).sum() / w.sum())
    calls = proba.argmax(1)
    measured = {"loss": loss, "mcc": float(matthews_corrcoef(y, calls)), "accuracy": float((calls == y).mean())}
    return measured, ((measured["mcc"], -loss) if select_by == "mcc" else (-loss,))


def better(score: tuple, best: tuple | None) -> bool:
    """Whether an epoch's validation score beats the best so far (by more than rounding)."""
    if best is None:
        return True
    for now, was in zip(score, best):
        if abs(now - was) > 1e-6:
            return now > was
    return False


def one_class_warnings(proba_by_split: dict[str, np.ndarray], y_by_split: dict[str, np.ndarray],
                       class_names: list[str]) -> list[str]:
    """A warning for each split where the kept model predicts one class for every sequence
    although the split holds several: a constant predictor, whatever its accuracy."""
    warnings = []
    for name, proba in proba_by_split.items():
        y = y_by_split[name]
        if len(y) and len(np.unique(y)) > 1 and len(np.unique(proba.argmax(1))) == 1:
            warnings.append(f"the kept model predicts {class_names[int(proba.argmax(1)[0])]!r} for every one of the "
                            f"{len(y)} {name} sequences, which hold {len(np.unique(y))} classes: it separates nothing "
                            "there")
    return warnings


SPREAD_METRICS = ("accuracy", "macro_f1", "mcc", "auroc")


def seed_spread(sets: LabelledSplits, probas: list[tuple[np.ndarray, np.ndarray]], seeds: list[int]) -> dict:
    """The spread of every val and test metric over models trained from several seeds on the
    same splits ((val, test) probabilities per seed): mean, standard deviation, min, max and
    each seed's value, so a difference between models can be told from noise."""
    spread = {"seeds": seeds}
    for index, name in enumerate(("val", "test")):
        rows = sets.rows(name)
        if not len(rows):
            continue
        per_seed = [classification_metrics(sets.y[rows], proba[index], sets.class_names) for proba in probas]
        spread[name] = {}
        for key in SPREAD_METRICS:
            values = [m.get(key) for m in per_seed]
            if any(v is None for v in values):
                continue
            spread[name][key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                                 "min": float(min(values)), "max": float(max(values)), "values": values}
    return spread


def new_head(kind: str, settings: HeadSettings, class_names: list[str], embed_dim: int,
             training_vectors: np.ndarray, strands: str, encoder: dict | None = None) -> torch.nn.Module:
    """A head of `kind` shaped by the settings, its input normaliser set from the training
    windows' vectors (n_windows, embed_dim); `strands`: how the vectors were embedded (an
    order-aware head reads both window orders when `both`, so its result does not depend on
    the strand); `encoder`: the embedding space it reads (flat, `EmbeddingSpace.as_dict`)."""
    config = HeadConfig(kind=kind, class_names=class_names, embed_dim=embed_dim, pooling=settings.pooling,
                        d_model=settings.d_model, layers=settings.layers, attention_heads=settings.attention_heads,
                        dropout=settings.dropout, attention_block=settings.attention_block, encoder=encoder or {},
                        both_orders=kind == "hierarchical" and strands == "both")
    head = build_head(config)
    head.normalise.mean.copy_(torch.from_numpy(training_vectors.mean(0)))
    head.normalise.std.copy_(torch.from_numpy(training_vectors.std(0) + 1e-6))
    return head


def head_metrics(head: str, pooling: str, sets: LabelledSplits, val_proba: np.ndarray, test_proba: np.ndarray,
                 best_epoch: int, history: list[dict], **extra) -> dict:
    """The metrics.json of a trained head: its splits, validation and test metrics, training
    history, and what was left out (notes)."""
    val_rows, test_rows = sets.rows("val"), sets.rows("test")
    names = sets.class_names
    warnings = one_class_warnings({"val": val_proba, "test": test_proba},
                                  {"val": sets.y[val_rows], "test": sets.y[test_rows]}, names)
    metrics = {
        "head": head,
        "pooling": pooling,
        "class_names": names,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "sequences": sets.counts(),
        "validation_source": sets.validation_source,
        "val": classification_metrics(sets.y[val_rows], val_proba, names),
        "test": classification_metrics(sets.y[test_rows], test_proba, names),
        "history": history,
        **extra,
    }
    if sets.notes:
        metrics["notes"] = sets.notes
    if warnings:
        metrics["warnings"] = warnings
    if len(test_rows) == 0:
        metrics["test_note"] = "no sequence is in the test split: test metrics are empty"
    return metrics
