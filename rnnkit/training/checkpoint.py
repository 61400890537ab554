"""Checkpoints: written atomically, read without ever executing code from the file.

A checkpoint is one ``torch.save`` file of tensors, numbers, strings, lists and dicts, read
back with ``torch.load(weights_only=True)``: a file holding a pickled object that would run
code is refused, not run.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import RnnkitError, cause
from ..io import atomic_write

FORMAT = "rnnkit-checkpoint-1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors moved to CPU, so any device can load it) atomically."""
    state = {"format": FORMAT, **_to_cpu(state)}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint made by :func:`save_checkpoint`; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # random bytes can look like an odd pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise RnnkitError(f"{path} is not a readable checkpoint (corrupt or truncated)") from None
        raise RnnkitError(f"{path} was refused: it holds a pickled object ({found.group(1)}) that could "
                          "run code, and rnnkit loads weights only") from None
    except Exception as e:  # noqa: BLE001 - damaged bytes fail inside the unpickler in many ways
        raise RnnkitError(f"{path} is not a readable checkpoint (corrupt or truncated): "
                          f"{cause(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RnnkitError(f"{path} is not an rnnkit checkpoint")
    return state


def run_checkpoint(run: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint file that a run folder's ``which`` (``best`` or ``last``) names, or ``run`` itself
    when it is a file.

    ``best`` is the best by the task's validation metric; a run that has none (stopped before
    its first evaluation, or with nothing to validate on) has only ``last.pt``, and then ``best``
    means that one, for every task alike.
    """
    if which not in ("best", "last"):
        raise RnnkitError(f"the checkpoint must be 'best' or 'last', not {which!r}")
    path = Path(run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RnnkitError(f"no checkpoint at {run}: expected a run folder or a checkpoint file")
    for name in dict.fromkeys((which, "last")):
        if (path / f"{name}.pt").is_file():
            return path / f"{name}.pt"
    raise RnnkitError(f"no checkpoint in {run} (expected {which}.pt)")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
