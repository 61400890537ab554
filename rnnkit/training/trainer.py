"""The training loop, written once for every task.

A *task* (:class:`rnnkit.training.task.Task`) owns its model's data, loss and evaluation; the
:class:`Trainer` owns everything else: optimizer and parameter groups, learning-rate schedule,
mixed precision, gradient accumulation and clipping, the non-finite guard, time/step/epoch
budgets, periodic evaluation and early stopping on the task's metric, the metrics log, plot,
``last.pt`` and ``best.pt``, progress display, Ctrl-C and SIGTERM, and exact resume. The run
folder itself (creating, refusing, configuration, devices) is :func:`rnnkit.training.fit.fit`'s.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import RnnkitError
from ..plotting import plot_curves
from . import distributed
from .allocator import keep_freed_memory
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, resolve_device, resolve_precision  # noqa: F401 - re-exported
from .monitor import MetricsLog, Progress, Stopwatch, read_metrics
from .task import Task

EVALS_PER_RUN = 4
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class TrainResult:
    steps: int
    train_time: float
    items_per_second: float
    stop_reason: str
    last_eval: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None    # the best value of the task's metric
    clipped_share: float = 0.0     # share of this session's steps whose gradient norm was clipped
    skipped_steps: int = 0         # non-finite steps skipped


class Trainer:
    """Trains ``task.model`` under ``config``, keeping the run in ``run_dir``.

    ``meta`` is stored in every checkpoint (for example the model's configuration and
    vocabulary), so a checkpoint alone is enough to rebuild and use the model.
    """

    def __init__(self, task: Task, config: TrainConfig, run_dir: str | Path,
                 meta: dict[str, Any] | None = None, progress: bool | None = None, plot: bool = True) -> None:
        config.validate()
        self.task, self.config, self.meta = task, config, meta or {}
        self.model = task.model  # the plain module, also when training wraps it for data parallelism
        self.run_dir = Path(run_dir)
        self.device = next(task.model.parameters()).device
        self.precision = resolve_precision(config.precision, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on each step's fresh activations (rnnkit/training/allocator.py)
        # fused: the whole update in one kernel per parameter group instead of several passes
        # over the weights, several times faster than torch's default loop (BENCHMARKS.md,
        # "Every CPU, not one": the step's parts)
        self.optimizer = torch.optim.AdamW(task.param_groups(config.weight_decay), lr=config.lr, fused=True,
                                           betas=(0.9, 0.99))
        # the weights' exponential moving average (Polyak averaging): less noisy than the last
        # step's weights, it is what evaluation sees and what checkpoints ship as "model"
        self.param_names = [name for name, _ in task.model.named_parameters()]
        self.params = [p for _, p in task.model.named_parameters()]
        self.ema = [p.detach().clone() for p in self.params] if config.ema else None
        self._raw_weights: list[Tensor] | None = None  # set while run() has left the average in the model
        self.step = 0
        self.bad_steps = 0
        self.skipped_steps = 0
        self.diverged = False          # an evaluation gave a non-finite metric: the weights are lost
        self.clipped_steps = 0
        self.best: float | None = None  # best value of task.metric so far
        self.evals_since_best = 0
        self.clock = Stopwatch()
        self.items_seen = 0
        self.progress_enabled = progress
        self.plot_enabled = plot  # off for inner training runs repeated many times (a detector per file)
        self._stop_requested: str | None = None  # "interrupted" (SIGINT) or "terminated" (SIGTERM)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0  # only the first process writes logs and checkpoints

    # --- schedule and budget -------------------------------------------------------------
    def fraction_done(self) -> float:
        """How far through its budget the run is, 0 to 1: the first budget to run out wins."""
        c, done = self.config, 0.0
        if c.max_steps:
            done = max(done, self.step / c.max_steps)
        if c.epochs:
            done = max(done, self.step / (c.epochs * self.steps_per_epoch()))
        if c.max_time:
            done = max(done, self.clock.elapsed / c.max_time)
        return done

    def steps_per_epoch(self) -> int:
        """Optimizer steps per pass over the data: batches, grouped ``grad_accum`` at a time."""
        return max(1, self.task.batches_per_epoch() // self.config.grad_accum)

    def lr_at(self, fraction: float) -> float:
        """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at the end."""
        c = self.config
        warm = min(1.0, (self.step + 1) / max(1, c.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))
        return c.lr * warm * (c.min_lr_ratio + (1 - c.min_lr_ratio) * cosine)

    def _eval_due(self, fraction: float) -> bool:
        c = self.config
        if c.eval_every:
            return self.step % c.eval_every == 0
        # evenly spaced by budget fraction: validation stays a small share of the run's time
        return int(fraction * EVALS_PER_RUN) > int(self._fraction_at_last_eval * EVALS_PER_RUN)

    # --- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue; in data-parallel runs, every process's task state and RNG.

        A collective: with torchrun every process must call it.
        """
        ranks = distributed.gather({"task": self.task.state_dict(), "rng": rng_state(self.device)})
        weights = {"model": self.model.state_dict()}
        if self.ema is not None:  # "model" holds the weights to use; training goes on from the raw ones
            weights = {"model": {**weights["model"], **dict(zip(self.param_names, self.ema, strict=True))},
                       "training_model": weights["model"]}
        return {
            **weights,
            "optimizer": self.optimizer.state_dict(),
            "task": ranks[0]["task"] if self.world == 1 else {"ranks": [r["task"] for r in ranks]},
            "trainer": {"step": self.step, "elapsed": self.clock.elapsed, "best": self.best,
                        "evals_since_best": self.evals_since_best,
                        "items_seen": self.items_seen, "world_size": self.world,
                        "rng": ranks[0]["rng"] if self.world == 1 else {"ranks": [r["rng"] for r in ranks]},
                        "config": json.dumps(asdict(self.config))},
            "meta": json.dumps(self.meta),
        }

    def save(self, name: str) -> None:
        state = self.state_dict()
        if self.is_main:
            try:
                save_checkpoint(self.run_dir / f"{name}.pt", state)
            except (OSError, RuntimeError) as e:  # a full disk surfaces as either, from torch's writer
                import shutil

                free = shutil.disk_usage(self.run_dir).free
                reason = (f"{free:,} bytes left on its disk" if free < 64 << 20 else
                          getattr(e, "strerror", None) or "the write failed")
                raise RnnkitError(f"cannot write {self.run_dir / f'{name}.pt'} ({reason}); training stopped and "
                                  f"the last good checkpoint is kept") from None

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, data position, state carried by the task, and RNG."""
        state = load_checkpoint(path)
        t = state["trainer"]
        if t.get("world_size", 1) != self.world:
            raise RnnkitError(f"{path} was saved by {t.get('world_size', 1)} processes; resume it with "
                              f"the same number (now {self.world})")
        try:
            self.model.load_state_dict(state.get("training_model", state["model"]))
            if self.ema is not None:
                # on the parameters' device and dtype: checkpoints hold CPU tensors
                ema = [state["model"][n] for n in self.param_names]
                if any(e.shape != p.shape for e, p in zip(ema, self.params, strict=True)):
                    raise ValueError("averaged weights of other shapes")
                self.ema = [e.to(p, copy=True) for e, p in zip(ema, self.params, strict=True)]
            self.optimizer.load_state_dict(state["optimizer"])
            task_state, rng = state["task"], t["rng"]
            if self.world > 1:
                task_state, rng = task_state["ranks"][self.rank], rng["ranks"][self.rank]
            self.task.load_state_dict(task_state)
            self.step, self.items_seen = int(t["step"]), t["items_seen"]
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
            raise RnnkitError(f"{path} does not fit this run's model and optimizer "
                              f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
        self._raw_weights = None
        self.best, self.evals_since_best = t.get("best"), t.get("evals_since_best", 0)
        self.clock = Stopwatch(t["elapsed"])
        set_rng_state(rng, self.device)

    # --- the loop ------------------------------------------------------------------------
    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:  # a second signal stops at once
            raise KeyboardInterrupt
        self._stop_requested = STOP_SIGNALS.get(signum, "interrupted")

    def run(self) -> TrainResult:
        if self._raw_weights is not None:  # an earlier run() left the average in the model
            with torch.no_grad():
                torch._foreach_copy_(self.params, self._raw_weights)
            self._raw_weights = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.is_main)
        if self.is_main:
            log.truncate_after(self.step)  # steps after the checkpoint are replayed now: no record twice
        bar = Progress(self.task.unit, self.progress_enabled if self.is_main else False)
        in_main = threading.current_thread() is threading.main_thread()
        old_handlers = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS} if in_main else {}
        c, bpe, first_step = self.config, self.task.batches_per_epoch(), self.step
        if self.world > 1:  # gradients are averaged across processes inside backward()
            from torch.nn.parallel import DistributedDataParallel

            self.task.model = DistributedDataParallel(self.model)
        self._fraction_at_last_eval = self.fraction_done()
        self._step_at_last_eval = -1
        last_eval: dict[str, float] = {}
        self.diverged = False
        window = self._new_window()
        stop_reason = "budget"
        try:
            self.model.train()
            self.clock.start()
            while True:
                # every process takes the same decisions: the furthest clock and any signal count
                fraction, stop = distributed.all_max(self.fraction_done(), float(bool(self._stop_requested)))
                if stop:
                    stop_reason = self._stop_requested or "interrupted"
                    break
                if fraction >= 1.0:
                    break
                lr = self.lr_at(fraction)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss_value, items = self._accumulate_gradients(bpe)
                if c.grad_clip_value:
                    torch.nn.utils.clip_grad_value_(self.model.parameters(), c.grad_clip_value)
                grads = [p.grad for p in self.params if p.grad is not None]
                norm_value = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item() if grads else 0.0
                self.step += 1
                clipped = c.grad_clip is not None and norm_value > c.grad_clip
                if clipped and math.isfinite(norm_value):  # scaling only when clipping saves a pass over the grads
                    torch._foreach_mul_(grads, c.grad_clip / (norm_value + 1e-6))
                log.write({"step": self.step, "loss": loss_value, "grad_norm": norm_value, "clipped": int(clipped)})
                (bad,) = distributed.all_max(float(not (math.isfinite(loss_value) and math.isfinite(norm_value))))
                if bad:
                    self.bad_steps += 1  # skip the update: a non-finite step must not corrupt the weights
                    self.skipped_steps += 1
                    if self.bad_steps >= c.max_bad_steps:
                        stop_reason = "nonfinite"
                        break
                    continue
                self.bad_steps = 0
                self.optimizer.step()
                if self.ema is not None:
                    with torch.no_grad():  # a short average early on, as the weights move fast
                        decay = min(c.ema, (1 + self.step) / (10 + self.step))
                        torch._foreach_lerp_(self.ema, self.params, 1 - decay)
                self.items_seen += items * self.world
                window["loss"] += loss_value * items
                window["items"] += items * self.world
                window["steps"] += 1
                window["grad_norm"] += norm_value
                window["clipped"] += int(clipped)
                self.clipped_steps += int(clipped)
                eval_due = self._eval_due(fraction)
                if self.step % c.log_every == 0 or eval_due:
                    self._log_window(window, lr, log, bar, last_eval)
                    window = self._new_window()
                if eval_due:
                    last_eval = self._evaluate(log, bar, fraction)
                    if self.diverged:
                        stop_reason = "nonfinite"
                        break
                    if c.patience and self.evals_since_best >= c.patience:
                        stop_reason = "patience"
                        bar.message(f"stopped early: {self.task.metric} has not improved in {c.patience} evaluations")
                        break
            self.clock.pause()
            if (self.step > first_step and stop_reason == "budget" and self._fraction_at_last_eval < 1.0
                    and self._step_at_last_eval != self.step):
                last_eval = self._evaluate(log, bar, 1.0)
                stop_reason = "nonfinite" if self.diverged else stop_reason
            if stop_reason == "nonfinite":
                why = ("the validation metrics are not finite" if self.diverged else
                       f"{self.bad_steps} non-finite steps in a row")
                kept = self.run_dir / "last.pt"
                bar.message(f"stopped: {why}; " + (f"the last good checkpoint is {kept}" if kept.is_file() else
                                                   "none was saved"))
            else:
                self.save("last")
        finally:
            self.clock.pause()
            self.task.model = self.model
            bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        if self.is_main:
            self.plot()
        if self.ema is not None:  # leave the model as the checkpoints ship it; a later run() goes on raw
            with torch.no_grad():
                self._raw_weights = [p.detach().clone() for p in self.params]
                torch._foreach_copy_(self.params, self.ema)
        elapsed = self.clock.elapsed
        steps_run = max(1, self.step - first_step)
        return TrainResult(self.step, elapsed, self.items_seen / max(elapsed, 1e-9), stop_reason,
                           last_eval, self.best, self.clipped_steps / steps_run, self.skipped_steps)

    def _accumulate_gradients(self, batches_per_epoch: int) -> tuple[float, int]:
        """Forward and backward over this step's ``grad_accum`` micro-batches; their mean loss and item count."""
        accum = self.config.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        total, items = 0.0, 0
        losses = []
        for micro in range(accum):
            epoch, index = divmod(self.step * accum + micro, batches_per_epoch)
            # under data parallelism, gradients are averaged across processes only on the last micro-batch
            sync = nullcontext() if micro == accum - 1 or self.world == 1 else self.task.model.no_sync()
            with sync:
                with autocast(self.device, self.precision):
                    loss, n = self.task.training_loss(epoch, index)
                (loss / accum if accum > 1 else loss).backward()
            losses.append(loss.detach())
            items += n
        total = (torch.stack(losses).mean() if accum > 1 else losses[0]).item()
        return total, items

    @staticmethod
    def _new_window() -> dict[str, float]:
        return {"loss": 0.0, "items": 0, "steps": 0, "clipped": 0, "grad_norm": 0.0, "t": time.perf_counter()}

    def _log_window(self, window: dict[str, float], lr: float, log: MetricsLog, bar: Progress,
                    last_eval: dict[str, float]) -> None:
        rate = window["items"] / max(1e-9, time.perf_counter() - window["t"])
        steps = max(1, window["steps"])
        record = {"step": self.step, "time": round(self.clock.elapsed, 3), "lr": lr,
                  "train_loss": window["loss"] / max(1, window["items"] / self.world),
                  "grad_norm": window["grad_norm"] / steps, "clipped_share": window["clipped"] / steps,
                  f"{self.task.unit}_per_s": rate}
        log.write(record)
        headline = self.task.headline or self.task.metric
        shown = {headline: last_eval[headline]} if headline in last_eval else {}
        bar.update(self.fraction_done(), {"loss": record["train_loss"], **shown, f"{self.task.unit}/s": rate})

    def _evaluate(self, log: MetricsLog, bar: Progress, fraction: float) -> dict[str, float]:
        """Validate (on the first process), log, and save ``best``/``last``; a collective under torchrun."""
        self.clock.pause()
        metrics: dict[str, float] = {}
        if self.is_main:
            training_model, self.task.model = self.task.model, self.model
            self.model.eval()
            with self.averaged_weights(), torch.inference_mode(), autocast(self.device, self.precision):
                metrics = self.task.evaluate()
            self.model.train()
            self.task.model = training_model
            log.write({"step": self.step, "time": round(self.clock.elapsed, 3), **metrics})
            bar.message(f"step {self.step}  time {self.clock.elapsed:.0f}s  "
                        + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self._fraction_at_last_eval, self._step_at_last_eval = fraction, self.step
        if self.is_main and self.task.metric not in metrics:
            raise RnnkitError(f"the task's evaluation gave {', '.join(metrics)}, not its metric {self.task.metric}")
        # accuracy, BLEU or WER stay finite when the outputs are not: the validation loss shows it
        watched = [v for k, v in metrics.items() if k in (self.task.metric, "val_loss")]
        (diverged,) = distributed.all_max(float(self.is_main and not all(math.isfinite(v) for v in watched)))
        if diverged:  # weights that give a non-finite metric are never saved: the last good checkpoint stays
            self.diverged = True
            self.clock.start()
            return metrics
        better = self.is_main and self.task.better(metrics[self.task.metric], self.best)
        (improved,) = distributed.all_max(float(better))
        if improved:
            if self.is_main:
                self.best = metrics[self.task.metric]
            self.evals_since_best = 0
            self.save("best")
        else:
            self.evals_since_best += 1
        self.save("last")
        if self.is_main:
            self.plot()
        self.clock.start()
        return metrics

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """The moving average of the weights in the model for the duration (nothing without ``ema``)."""
        if self.ema is None:
            yield
            return
        params = self.params
        with torch.no_grad():
            raw = [p.detach().clone() for p in params]
            torch._foreach_copy_(params, self.ema)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, raw)

    def plot(self) -> None:
        """``loss.png``: train and validation loss, the task's metric, and the pre-clip gradient norm per step."""
        if not self.plot_enabled:
            return
        records = read_metrics(self.run_dir / "metrics.jsonl")
        panels = [(("train_loss", "val_loss"), self.task.loss_label, False)]
        if self.task.metric != "val_loss":
            panels.append(((self.task.metric,), self.task.metric, False))
        if any("val_loss" in r or "train_loss" in r for r in records):
            plot_curves(records, self.run_dir / "loss.png", title=self.run_dir.name,
                        panels=[*panels, (("grad_norm",), "gradient norm", True)])


def load_trainer_config(state: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**json.loads(state["trainer"]["config"]))


def checkpoint_meta(state: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(state["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise RnnkitError("checkpoint has no model description (meta); is it an rnnkit run?") from None
