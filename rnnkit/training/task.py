"""The task protocol: what an application supplies to be trained, resumed and evaluated by :func:`rnnkit.fit`.

A task owns its model, its data, its loss and its evaluation; everything else (the run folder,
devices and precision, the optimizer and schedule, budgets, checkpoints, resume, data
parallelism, progress and plots) is :func:`rnnkit.training.fit.fit`'s. Subclass :class:`Task`
and fill in the hooks::

    class Parity(Task):
        name, command, unit = "parity", "python parity.py", "sequences"
        metric, higher_is_better = "val_acc", True

        def batches_per_epoch(self): ...
        def training_loss(self, epoch, index): ...   # (mean loss of one batch, items in it)
        def evaluate(self): ...                      # {"val_loss": ..., "val_acc": ...}
        def config(self): ...                        # JSON: what from_config needs to rebuild it
        @classmethod
        def from_config(cls, config, run_dir): ...

``docs/adding-a-task.md`` walks through a complete example that the test suite runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import RnnkitError
from . import distributed

# parameters of these modules take no weight decay: shrinking a norm's gain or an embedding's
# rare rows towards zero is not regularisation, and biases only shift
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)


class Task:
    """Base class of every task; the class attributes describe it to the trainer and the command line."""

    name: ClassVar[str] = ""                # registry key, stored in the run folder
    command: ClassVar[str] = ""             # the command that trains it, for the resume hint
    unit: ClassVar[str] = "examples"        # what training counts, for rates ("chars", "sentences")
    metric: ClassVar[str] = "val_loss"      # the evaluation result that picks best.pt (and early stopping)
    higher_is_better: ClassVar[bool] = False
    headline: ClassVar[str | None] = None   # the result shown on the progress bar (default: metric)
    loss_label: ClassVar[str] = "loss"      # the loss plot's axis label
    decay_everything: ClassVar[bool] = False  # weight decay on every parameter (biases, norms, embeddings too)
    select_best: bool = True                # end with best.pt's weights (False: the last ones)

    model: nn.Module
    device: torch.device = torch.device("cpu")

    # --- the hooks ------------------------------------------------------------------------------
    def batches_per_epoch(self) -> int:
        raise NotImplementedError

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        """Mean loss of batch ``index`` of ``epoch`` and the number of items in it.

        Under data parallelism ``self.model`` is the model's ``DistributedDataParallel`` wrapper
        here (so gradients are averaged across processes): call it, and keep a reference of your
        own for its other methods.
        """
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation results; must hold ``val_loss`` and :attr:`metric`."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Task state to carry across a resume (for example a carried hidden state)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        """A JSON description from which :meth:`from_config` rebuilds the task (model and data) to resume it."""
        raise RnnkitError(f"the {self.name or type(self).__name__} task cannot be resumed")

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> Task:
        raise RnnkitError(f"the {cls.name or cls.__name__} task cannot be resumed")

    # --- defaults the trainer uses --------------------------------------------------------------
    def to(self, device: torch.device) -> Task:
        """Move the model (and anything else the task keeps on a device) to ``device``."""
        self.device = device
        self.model.to(device)
        return self

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: weight decay on weight matrices, none on biases, norms and embeddings."""
        if self.decay_everything or not weight_decay:
            return [{"params": [p for p in self.model.parameters() if p.requires_grad],
                     "weight_decay": weight_decay}]
        no_decay = set()
        for module in self.model.modules():
            if isinstance(module, NO_DECAY_MODULES):
                no_decay |= {id(p) for p in module.parameters(recurse=False)}
        decay, rest = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (rest if p.dim() < 2 or id(p) in no_decay else decay).append(p)
        return [g for g in ({"params": decay, "weight_decay": weight_decay},
                            {"params": rest, "weight_decay": 0.0}) if g["params"]]

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best

    @property
    def rank(self) -> int:
        return distributed.rank()

    @property
    def world(self) -> int:
        return distributed.world_size()

    def resume_hint(self, run_dir: Path) -> str:
        return f"{self.command or 'rnnkit train'} --resume {run_dir}"


# --- the registry: run folders name their task; resuming finds its class here --------------------

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task resumable by name."""
    if not cls.name:
        raise ValueError("a task needs a name")
    TASKS[cls.name] = cls
    return cls


def find_task(name: str) -> type[Task]:
    """The task class called ``name``; rnnkit's own task modules are imported on first need."""
    if name not in TASKS:
        import importlib
        import pkgutil

        from .. import tasks

        for module in pkgutil.iter_modules(tasks.__path__):
            importlib.import_module(f"{tasks.__name__}.{module.name}")
    try:
        return TASKS[name]
    except KeyError:
        raise RnnkitError(f"unknown task {name!r} in the run folder (known: {', '.join(sorted(TASKS))})") from None


__all__ = ["NO_DECAY_MODULES", "TASKS", "Task", "find_task", "register_task"]
