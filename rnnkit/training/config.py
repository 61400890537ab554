"""How to train, whatever the task: :class:`TrainConfig`, its checks, and the hardware-aware ``auto`` choices.

Every field carries its help text and its check in its metadata. The checks run in
:meth:`TrainConfig.validate` (Python API) and in the command line's option types
(:mod:`rnnkit.cli.options`), so an option is declared once and refused the same way everywhere.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import torch

from .. import hardware
from ..errors import RnnkitError
from . import distributed

SEED_MAX = 2**63 - 1


def _check(value: Any, rule: str) -> str | None:
    """Why ``value`` breaks ``rule``, or None if it is fine."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if rule == "positive" and not value > 0:
        return f"must be positive, got {value}"
    if rule == "nonneg" and not value >= 0:
        return f"must be >= 0, got {value}"
    if rule == "fraction" and not 0 <= value < 1:
        return f"must be in [0, 1), got {value}"
    if rule == "unit" and not 0 <= value <= 1:
        return f"must be in [0, 1], got {value}"
    if rule == "seed" and not 0 <= value <= SEED_MAX:
        return f"must be in 0..{SEED_MAX}, got {value}"
    return None


def option(default: Any, help: str, check: str | None = None, choices: tuple[str, ...] | None = None,
           cli: bool = True) -> Any:
    """A config field with its help text and check (``positive``, ``nonneg``, ``fraction``, ``unit``, ``seed``)."""
    return field(default=default, metadata={"help": help, "check": check, "choices": choices, "cli": cli})


def validate_fields(config: Any) -> None:
    """Apply every field's check and choices; a one-line error naming the option."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        name = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise RnnkitError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        rule = f.metadata.get("check")
        if rule and isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = _check(value, rule)
            if problem:
                raise RnnkitError(f"{name} {problem}")


def field_default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default if f.default is not MISSING else None


@dataclass
class TrainConfig:
    """How to train, whatever the task. At least one of the three budgets must be set."""

    lr: float = option(2e-3, "peak learning rate (AdamW)", "positive")
    weight_decay: float = option(0.0, "AdamW weight decay (decoupled; the task says which parameters take it)",
                                 "nonneg")
    warmup_steps: int = option(50, "linear learning-rate warmup steps", "nonneg")
    min_lr_ratio: float = option(0.05, "the cosine decay ends at lr times this", "unit")
    grad_clip: float | None = option(1.0, "clip the global gradient norm to this", "positive")
    grad_clip_value: float | None = option(None, "clip each gradient element to ±this", "positive")
    ema: float | None = option(None, "evaluate and keep a moving average of the weights with this decay per step "
                                     "(e.g. 0.998; 0: off, as where the recommended settings turn it on)",
                               "fraction")
    grad_accum: int = option(1, "micro-batches whose gradients are summed into one optimizer step", "positive")
    max_time: float | None = option(None, "seconds of training (evaluation and saving not counted)", "positive")
    max_steps: int | None = option(None, "optimizer steps", "positive")
    epochs: float | None = option(None, "passes over the training data", "positive")
    eval_every: int | None = option(None, "validate every N steps (default: 4 evaluations a run)", "positive")
    patience: int | None = option(None, "stop after this many evaluations without a better validation metric",
                                  "positive")
    max_bad_steps: int = option(20, "stop after this many non-finite steps in a row", "positive", cli=False)
    precision: str = option("auto", "fp32, bf16 (autocast), or auto: bf16 where the hardware makes it fast",
                            choices=("auto", "fp32", "bf16"))
    device: str = option("auto", "auto (a GPU if there is one), cpu or cuda", choices=("auto", "cpu", "cuda"))
    seed: int = option(1337, "random seed", "seed")
    log_every: int = option(20, "steps between training-loss records", "positive", cli=False)

    def validate(self) -> None:
        if self.max_time is None and self.max_steps is None and self.epochs is None:
            raise RnnkitError("give a budget: --max-time, --max-steps or --epochs")
        validate_fields(self)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RnnkitError("--device cuda given but no CUDA GPU is available")

    @property
    def has_budget(self) -> bool:
        return any(v is not None for v in (self.max_time, self.max_steps, self.epochs))


BUDGETS = ("max_time", "max_steps", "epochs")
RESUMABLE = {"max_time", "max_steps", "epochs", "eval_every", "device", "log_every", "patience"}


# --- the hardware-aware choices ------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """One device policy for every task: ``auto`` is the GPU if there is one; under torchrun each
    process takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and distributed.active():
        return torch.device("cuda", distributed.local_rank())
    try:
        return torch.device(name)
    except RuntimeError:
        raise RnnkitError(f"unknown device {name!r}: auto, cpu, cuda or cuda:N") from None


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 where the hardware multiplies bf16 faster than fp32 (CUDA with bf16; CPUs with
    AMX tiles or AVX-512 BF16 instructions), else fp32.

    Without bf16 instructions (AVX2 only, or AVX-512 without BF16) a bf16 product is slower than
    fp32, so ``auto`` stays fp32 there (BENCHMARKS.md has both kinds side by side). bf16 here is
    autocast: weights, optimizer state and the loss stay fp32.
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if hardware.cpu_has_amx() or hardware.cpu_has_avx512_bf16() else "fp32"


__all__ = ["BUDGETS", "RESUMABLE", "TrainConfig", "field_default", "option", "resolve_device", "resolve_precision",
           "validate_fields"]
