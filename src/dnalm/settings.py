"""Settings of the learning stages, as the package sees the config (no torch here:
the Snakefile checks them when it builds the DAG).

The defaults are those of config/schema.yaml (tests/test_config.py checks that they
agree), so a library user gets what a workflow user gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


def check_hierarchical_shape(d_model: int, attention_heads: int, key: str = "heads.hierarchical") -> None:
    if d_model % attention_heads:
        raise InputError(f"{key}.attention_heads ({attention_heads}) does not divide {key}.d_model ({d_model})",
                         fix="pick a number of attention heads that divides d_model (e.g. 4 for 128)")


def check_lora_rank(rank: int, hidden_size: int | None) -> None:
    """A LoRA rank above the encoder's hidden size adds no capacity, only memory (a rank of
    100,000 on a hidden size of 128 builds half a billion weights): refuse it before any job."""
    if hidden_size and rank > hidden_size:
        raise InputError(f"finetune.lora.r is {rank}, above the encoder's hidden size ({hidden_size}): a rank "
                         "above it adds weights and memory, not capacity",
                         fix=f"set finetune.lora.r to at most {hidden_size} (8-64 is usual), or 0 to train "
                             "every encoder weight")


@dataclass(frozen=True)
class HeadSettings:
    """What every learner of a run shares: the head's input and shape, and the splits."""

    pooling: str = "mean"  # which window vector the head reads: cls | mean
    max_n_fraction: float = 0.5
    d_model: int = 128
    layers: int = 2
    attention_heads: int = 4
    dropout: float = 0.1
    attention_block: int = 256
    val_fraction: float = 0.15
    class_weights: bool = True
    seed: int = 0

    def check(self) -> None:
        check_hierarchical_shape(self.d_model, self.attention_heads)


@dataclass(frozen=True)
class TrainSettings(HeadSettings):
    """Training a head on frozen window vectors (rule train_head)."""

    epochs: int = 100
    patience: int = 10
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32


@dataclass(frozen=True)
class FinetuneSettings(HeadSettings):
    """Training the encoder and a head together (rule finetune)."""

    head: str = "hierarchical"  # the seed's two models: hierarchical | mean
    epochs: int = 8
    patience: int = 2
    max_windows: int = 8  # windows of a sequence per training step (random); all when evaluating
    sequences_per_step: int = 8
    accumulate: int = 1  # steps whose gradients add up before one optimiser step
    encoder_learning_rate: float = 2e-4
    head_learning_rate: float = 1e-3
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    gradient_checkpointing: bool = True
    lora_r: int = 0  # > 0: train LoRA adapters of this rank instead of every encoder weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    precision: str = "auto"  # auto: bf16 autocast on a GPU, fp32 on the CPU | fp32 | bf16

    def check(self) -> None:
        super().check()
        if self.head not in ("hierarchical", "mean"):
            raise InputError(f"finetune.head is {self.head!r}", fix="use hierarchical or mean")


@dataclass(frozen=True)
class PretrainSettings:
    """Masked-language-model (continued) pretraining on reference FASTAs (rule pretrain)."""

    epochs: int = 1
    windows_per_epoch: int = 0  # 0: every window of the FASTAs
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    mask_fraction: float = 0.15
    heldout_fraction: float = 0.05  # windows kept out of training to score masked-token accuracy
    max_n_fraction: float = 0.1
    precision: str = "auto"
    seed: int = 0

