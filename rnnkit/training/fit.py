"""One ``fit()`` for every task: the run folder, devices and precision, resume, reloading the best weights.

::

    task = MyTask(...)                                    # a rnnkit.training.task.Task
    result = fit(task, TrainConfig(max_steps=500), "runs/mine")
    task, result = resume("runs/mine", max_steps=1000)    # any task, found by the name in the run folder

A run folder holds ``config.json`` (the task, its configuration, the training configuration,
device and precision), ``metrics.jsonl``, ``loss.png``, ``last.pt`` and ``best.pt``, and
whatever the task keeps beside them (a token file, a tokeniser). :func:`fit` refuses a folder
that already holds a run (resume it instead) and a non-empty folder that is not a run, so
nothing of the user's is overwritten.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import RnnkitError, RunFinished, TrainingDiverged, TrainingStopped
from ..io import write_json
from . import distributed
from .checkpoint import load_checkpoint
from .config import RESUMABLE, TrainConfig, resolve_device, resolve_precision
from .task import Task, find_task
from .trainer import Trainer, TrainResult, checkpoint_meta, load_trainer_config

CONFIG = "config.json"
RUN_FILES = (CONFIG, "last.pt", "best.pt", "metrics.jsonl", "loss.png")


LOCK = ".lock"
_held: dict[Path, int] = {}  # run folders this process holds the lock of, and their lock files' descriptors
_readied: dict[Path, set[str] | None] = {}  # folders readied for a new run here: the names they held (None: made here)


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds an rnnkit run that can be continued: it has a checkpoint, or it is a run
    made of member runs (an ensemble) one of which has."""
    if (folder / "last.pt").is_file():
        return True
    members = (read_run_config(folder) or {}).get("members")
    return isinstance(members, list) and any(is_run(folder / str(m)) for m in members)


def read_run_config(folder: Path) -> dict[str, Any] | None:
    """``folder``'s ``config.json`` if rnnkit wrote it, else None."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and "rnnkit" in config else None


def _ours(folder: Path) -> bool:
    """Whether ``folder``'s ``config.json`` was written by rnnkit."""
    return read_run_config(folder) is not None


def lock_run_folder(folder: Path) -> None:
    """Take the run folder's exclusive lock for this process (again: nothing), or refuse in one line.

    The lock is an ``flock`` on ``.lock``: the system drops it when the process ends in any way,
    kill -9 included, so a dead run never leaves a stale lock behind. Only the first process of a
    data-parallel run takes it. Holding it, any temporary file left in the folder is a dead
    writer's, and is removed.
    """
    key = folder.resolve()
    if key in _held or distributed.rank() != 0:
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock
        return
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RnnkitError(f"cannot write into the run folder {folder}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RnnkitError(f"{folder} is in use by another rnnkit process (pid {owner}); wait for it to end "
                          "or pick another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd
    for stale in folder.glob(".*.tmp"):  # half-written files of a writer that died (kill -9 during a save)
        stale.unlink(missing_ok=True)


def unlock_run_folder(folder: Path) -> None:
    fd = _held.pop(folder.resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def prepare_run_folder(out: str | Path, hint: str = "--resume") -> Path:
    """Create and lock ``out`` for a new run, or refuse in one line: it holds a run, is a file, holds other
    files, or another process is using it."""
    distributed.setup()  # under torchrun, only the first process creates and locks the folder
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RnnkitError(f"--out {out} is a file, not a folder")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise RnnkitError(f"--out {out}: {parent} is a file, not a folder")
    if out.is_dir():
        if is_run(out):
            raise RnnkitError(f"{out} already holds a run; continue it with {hint} {out} or pick another --out")
        leftover = [p for p in out.iterdir() if p.name != LOCK and not (p.name.startswith(".") and
                                                                           p.name.endswith(".tmp"))]
        if leftover and not _ours(out):
            raise RnnkitError(f"{out} is not empty and is not an rnnkit run folder; pick an empty or new --out")
        started_by = (read_run_config(out) or {}).get("started_by", hint)
        if leftover and started_by != hint:
            raise RnnkitError(f"{out} holds the start of another command's run ({started_by.split(' --')[0]}); "
                              "pick another --out")
    if distributed.rank() == 0:
        held_before = {p.name for p in out.iterdir()} if out.is_dir() else None
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RnnkitError(f"cannot create the run folder {out}: {e.strerror}") from None
        lock_run_folder(out)
        _readied.setdefault(out.resolve(), held_before)  # only once it is ours alone
        if _ours(out):  # a run that died before its first checkpoint: start afresh, without its records
            for name in ("metrics.jsonl", "loss.png"):
                (out / name).unlink(missing_ok=True)
        else:  # mark the folder as a run at once, so a start that dies before fit() can be started again
            write_json(out / CONFIG, {"rnnkit": __version__, "started_by": hint})
    distributed.barrier()
    return out


@contextmanager
def failed_starts_removed() -> Iterator[Callable[[], None]]:
    """Within it, a failure (an exception, or a call of the function it gives) removes what was written into the
    folders readied for new runs within it that never saved a checkpoint (the folder itself where it was made
    then), so that a command that fails leaves nothing half-made behind. Folders another process holds are
    left alone."""
    known = set(_readied)

    def abandon() -> None:
        for folder in set(_readied) - known:
            _abandon(folder, _readied.pop(folder))

    try:
        yield abandon
    except BaseException:
        abandon()
        raise
    finally:
        for folder in set(_readied) - known:
            del _readied[folder]


def removes_failed_start(train: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates a task's Python training entry (``rnnkit.train``, ``Classifier.fit``, ...) so that, as the
    CLI does, a failure leaves no half-made run folder behind (:func:`failed_starts_removed`)."""
    @functools.wraps(train)
    def train_or_clean_up(*args: Any, **kwargs: Any) -> Any:
        with failed_starts_removed():
            return train(*args, **kwargs)
    return train_or_clean_up


def _abandon(folder: Path, held_before: set[str] | None) -> None:
    if is_run(folder) or not folder.is_dir():
        return
    try:
        lock_run_folder(folder)  # again, if it was let go: nothing is removed under another process's feet
    except RnnkitError:
        return
    try:
        for path in folder.iterdir():
            if held_before is None or path.name not in held_before:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if held_before is None:
            folder.rmdir()
    except OSError:
        pass  # a file someone else put there meanwhile: what is left stays
    finally:
        unlock_run_folder(folder)


def fit(task: Task, config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool | None = None,
        plot: bool = True, new_folder: bool = True) -> TrainResult:
    """Train ``task`` under ``config`` in the run folder ``out``; the best checkpoint's weights end in the model.

    ``resume`` continues the run in ``out`` from ``last.pt`` (use :func:`resume` to rebuild the task
    from the folder). Ctrl-C or SIGTERM saves ``last.pt`` and raises
    :class:`rnnkit.errors.TrainingStopped`, whose message names the command that continues the run.
    A run whose loss, gradients or validation metrics stay non-finite raises
    :class:`rnnkit.errors.TrainingDiverged` (an :class:`RnnkitError` holding the ``result``).
    ``new_folder=False`` is for tasks that prepared ``out`` themselves before building their data
    (the character model writes its token file there first).
    """
    distributed.setup()  # joins the process group when started by torchrun; else nothing
    config.validate()
    out = Path(out)
    if not resume:
        torch.manual_seed(config.seed + distributed.rank())  # processes draw different dropout masks
    if not resume and new_folder:
        prepare_run_folder(out, _hint(task))
    lock_run_folder(out)
    try:
        return _fit_locked(task, config, out, resume, progress, plot)
    finally:
        unlock_run_folder(out)


def _hint(task: Task) -> str:
    return f"{task.command or 'rnnkit train'} --resume"


def _fit_locked(task: Task, config: TrainConfig, out: Path, resume: bool, progress: bool | None,
                plot: bool) -> TrainResult:
    device = resolve_device(config.device)
    task.to(device)
    description = task_config(task)
    meta = {"task": task.name, **description}
    trainer = Trainer(task, config, out, meta, progress, plot)
    if resume:
        if task.select_best and (out / "best.pt").exists():
            try:  # read after training: a damaged one is refused before the run changes
                load_checkpoint(out / "best.pt")
            except RnnkitError as e:
                raise RnnkitError(f"{e}; remove it to resume without the best weights so far") from None
        trainer.resume(out / "last.pt")
        if trainer.fraction_done() >= 1.0:
            raise RunFinished.of(out)
    if distributed.rank() == 0:
        write_json(out / CONFIG, {"rnnkit": __version__, **meta, "train": asdict(config), "device": str(device),
                                  "precision": resolve_precision(config.precision, device), "started_by": _hint(task)})
    result = trainer.run()
    if result.stop_reason in ("interrupted", "terminated"):
        how = (f"continue with: {task.resume_hint(out)}" if description else
               "this task trains afresh each time: run it again")
        raise TrainingStopped(f"{result.stop_reason} at step {result.steps}: saved {out / 'last.pt'}; {how}",
                              result.stop_reason)
    if result.stop_reason == "nonfinite":  # the trainer said why and which checkpoint is the last good one
        raise TrainingDiverged("training stopped: the loss, gradients or validation metrics became non-finite; "
                               "try a lower --lr or --grad-clip", result)
    if task.select_best and (out / "best.pt").exists():
        best = load_checkpoint(out / "best.pt")
        task.model.load_state_dict(best["model"])
    return result


def task_config(task: Task) -> dict[str, Any]:
    """The task's own description for the run folder; tasks that cannot resume store none."""
    try:
        return task.config()
    except RnnkitError:
        return {}


def run_task(run: Path, meta: dict[str, Any], expect: type[Task] | None) -> type[Task]:
    """The task class a run folder's checkpoint ``meta`` names, refused (one line) if it is not ``expect``."""
    cls = find_task(meta.get("task", ""))
    if expect is not None and not issubclass(cls, expect):
        raise RnnkitError(f"{run} is a {cls.name} run, not a {expect.name} one; continue it with "
                          f"{cls.command} --resume {run}")
    return cls


def resume(run: str | Path, progress: bool | None = None, expect: type[Task] | None = None,
           **changes: Any) -> tuple[Task, TrainResult]:
    """Continue any task's run exactly where it stopped; only the budget (and device) may change.

    The task is found by the name its run folder records and rebuilt from the folder alone; with
    ``expect``, a run of another task is refused before anything trains.
    """
    run = Path(run)
    if not run.is_dir():
        raise RnnkitError(f"--resume {run}: no such run folder")
    members = (read_run_config(run) or {}).get("members")
    if members and not (run / "last.pt").exists():
        raise RnnkitError(f"{run} holds {len(members)} runs trained side by side; continue them with "
                          f"{read_run_config(run).get('started_by', 'rnnkit train --resume')} {run}")
    state = load_checkpoint(run / "last.pt")
    meta = checkpoint_meta(state)
    cls = run_task(run, meta, expect)
    config = load_trainer_config(state)
    known = {f.name for f in fields(TrainConfig)}
    for k, v in changes.items():
        if v is None:
            continue
        if k not in known:
            raise TypeError(f"unknown option: {k}")
        if k not in RESUMABLE and getattr(config, k) != v:
            raise RnnkitError(f"--resume: --{k.replace('_', '-')} {v} conflicts with the run's {getattr(config, k)}; "
                              "only the budget and device may change")
        setattr(config, k, v)
    task = cls.from_config({k: v for k, v in meta.items() if k != "task"}, run)
    return task, fit(task, config, run, resume=True, progress=progress)


__all__ = ["failed_starts_removed", "fit", "is_run", "lock_run_folder", "prepare_run_folder", "removes_failed_start",
           "resume", "unlock_run_folder"]
