"""Long-range memory: the adding problem and copy memory, the classic tests of how far back an RNN can remember.

- **Adding problem** (Hochreiter and Schmidhuber 1997; as in Le et al. 2015 and Arjovsky et
  al. 2016): a sequence of ``T`` pairs (value uniform in [0, 1], marker 0 or 1); exactly two
  markers are 1, one in each half. The target is the sum of the two marked values, read at
  the last step. Answering 1 whatever the input gives the baseline MSE Var(u1 + u2) = 1/6.
- **Copy memory** (Arjovsky et al. 2016): 10 symbols from an alphabet of 8, then ``T - 1``
  blanks, a delimiter and 10 more blanks; the output must be blank for ``T + 10`` steps and
  then repeat the 10 symbols. The memoryless baseline (blanks, then uniform guesses) has
  cross-entropy ``10 log 8 / (T + 20)`` per step.

The information that matters is ``T`` steps behind the answer, so these tasks measure the
reach of gradient-based learning through time directly: a cell whose gradients vanish over
``T`` steps stays at the baseline. Training uses the shared :class:`rnnkit.training.trainer.Trainer`
with fresh random sequences every step (no data set to overfit) and fixed validation and
test sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import shard
from ..errors import RnnkitError, TrainingDiverged
from ..io import atomic_write, write_json
from ..nn.cells import CELLS
from ..nn.init import init_recurrent
from ..nn.layers import make_layer
from ..plotting import new_figure, save_figure
from ..training.config import TrainConfig
from ..training.fit import fit
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult

PROBLEMS = ("adding", "copy")
COPY_SYMBOLS, COPY_LENGTH = 8, 10
BLANK, DELIMITER = COPY_SYMBOLS, COPY_SYMBOLS + 1  # ids 0..7 are data symbols


# --- data --------------------------------------------------------------------------------------

def adding_batch(batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Inputs ``(B, T, 2)`` (value, marker) and targets ``(B,)``, the sum of the two marked values."""
    if length < 2:
        raise RnnkitError(f"--length must be at least 2 for the adding problem, got {length}")
    values = torch.rand(batch, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=-1), values[rows, first] + values[rows, second]


def copy_batch(batch: int, delay: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Input and target ids, each ``(B, T + 20)``: symbols, ``T - 1`` blanks, delimiter, blanks -> blanks, symbols."""
    if delay < 1:
        raise RnnkitError(f"--length must be at least 1 for copy memory, got {delay}")
    n = COPY_LENGTH
    data = torch.randint(0, COPY_SYMBOLS, (batch, n), generator=generator)
    x = torch.full((batch, delay + 2 * n), BLANK, dtype=torch.long)
    x[:, :n] = data
    x[:, delay + n - 1] = DELIMITER
    y = torch.full_like(x, BLANK)
    y[:, -n:] = data
    return x, y


def baseline(problem: str, length: int) -> float:
    """The loss of the best answer that remembers nothing: 1/6 (adding, MSE), 10 log 8 / (T + 20) (copy, nats)."""
    if problem == "adding":
        return 1.0 / 6.0
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (length + 2 * COPY_LENGTH)


def make_batch(problem: str, batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    return (adding_batch if problem == "adding" else copy_batch)(batch, length, generator)


# --- model and task ----------------------------------------------------------------------------

class LongLagModel(nn.Module):
    """One recurrent layer and a linear read-out: at the last step (adding) or at every step (copy)."""

    def __init__(self, problem: str, cell: str = "lstm", hidden: int = 128, layers: int = 1,
                 init: str = "default", t_max: int = 100) -> None:
        super().__init__()
        self.problem = problem
        n_in, n_out = (2, 1) if problem == "adding" else (COPY_SYMBOLS + 2, COPY_SYMBOLS + 2)
        self.rnn = make_layer(cell, n_in, hidden, layers, batch_first=True)
        init_recurrent(self.rnn, init, t_max=t_max)  # the same schemes as every rnnkit model
        self.description = {"cell": cell, "hidden": hidden, "layers": layers, "init": init}
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor) -> Tensor:
        """Adding: ``(B, T, 2)`` -> predictions ``(B,)``. Copy: ids ``(B, L)`` -> logits ``(B, L, 10)``."""
        if self.problem == "adding":
            out, _ = self.rnn(x)
            return self.head(out[:, -1]).squeeze(-1)
        out, _ = self.rnn(F.one_hot(x, COPY_SYMBOLS + 2).float())
        return self.head(out)


def problem_loss(problem: str, output: Tensor, target: Tensor) -> Tensor:
    if problem == "adding":
        return F.mse_loss(output.float(), target)
    return F.cross_entropy(output.float().flatten(0, 1), target.flatten())


@register_task
class LongLagTask(Task):
    """Fresh random sequences every step, seeded by the step, so a resumed run sees the same data."""

    name, command, unit = "longlag", "rnnkit longlag", "seqs"
    EPOCH = 1000  # batches per nominal "epoch": the data are infinite

    def __init__(self, model: LongLagModel, problem: str, length: int, batch_size: int, seed: int,
                 eval_size: int = 1000) -> None:
        self.model, self.problem, self.length, self.batch_size = model, problem, length, batch_size
        self.seed, self.eval_size = seed, eval_size
        self.val = self._fixed_set(eval_size, seed + 1_000_001)

    def to(self, device: torch.device) -> LongLagTask:
        super().to(device)
        self.val = tuple(t.to(device) for t in self.val)
        return self

    def _fixed_set(self, size: int, seed: int) -> tuple[Tensor, Tensor]:
        x, y = make_batch(self.problem, size, self.length, torch.Generator().manual_seed(seed))
        return x.to(self.device), y.to(self.device)

    def batches_per_epoch(self) -> int:
        return self.EPOCH

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        g = torch.Generator().manual_seed(self.seed * 7_919 + epoch * self.EPOCH + index)
        x, y = make_batch(self.problem, self.batch_size, self.length, g)
        mine = shard(np.arange(self.batch_size), self.rank, self.world)  # this process's share of the batch
        x, y = x[mine].to(self.device), y[mine].to(self.device)
        return problem_loss(self.problem, self.model(x), y), len(mine)

    @torch.no_grad()
    def metrics(self, data: tuple[Tensor, Tensor], prefix: str) -> dict[str, float]:
        """Mean loss (MSE or cross-entropy per step), and for copy the accuracy on the 10 recalled symbols."""
        x, y = data
        losses, correct = [], 0.0
        for i in range(0, len(x), 250):
            out = self.model(x[i:i + 250])
            losses.append(problem_loss(self.problem, out, y[i:i + 250]).item() * len(out))
            if self.problem == "copy":
                correct += (out[:, -COPY_LENGTH:].argmax(-1) == y[i:i + 250, -COPY_LENGTH:]).float().sum().item()
        loss = sum(losses) / len(x)
        name = "mse" if self.problem == "adding" else "xent"
        result = {f"{prefix}_loss": loss, f"{prefix}_{name}": loss}
        if self.problem == "copy":
            result[f"{prefix}_recall_acc"] = correct / (len(x) * COPY_LENGTH)
        return result

    def evaluate(self) -> dict[str, float]:
        return self.metrics(self.val, "val")

    def test(self) -> dict[str, float]:
        """On a fixed test set never seen in training or model selection."""
        self.model.eval()
        return self.metrics(self._fixed_set(2 * self.eval_size, self.seed + 2_000_003), "test")

    def config(self) -> dict[str, Any]:
        return {"problem": self.problem, "length": self.length, "model": self.model.description,
                "batch_size": self.batch_size, "seed": self.seed, "eval_size": self.eval_size,
                "baseline": baseline(self.problem, self.length)}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> LongLagTask:
        m = config["model"]
        model = LongLagModel(config["problem"], m["cell"], m["hidden"], m["layers"])
        return cls(model, config["problem"], config["length"], config["batch_size"], config["seed"],
                   config["eval_size"])


# --- running -----------------------------------------------------------------------------------

def fmt_metric(value: float) -> str:
    """Four decimals, as in ``test_mse 0.0031``; a solved task's tiny values in scientific notation, not 0.0000."""
    return f"{value:.4f}" if value >= 1e-3 or value == 0 else f"{value:.1e}"


@dataclass
class LongLagResult:
    problem: str
    cell: str
    init: str
    length: int
    test_metric: float        # test MSE (adding) or cross-entropy per step (copy)
    baseline: float
    steps: int
    train_time: float
    stop_reason: str
    recall_acc: float | None = None

    @property
    def metric_name(self) -> str:
        return "test_mse" if self.problem == "adding" else "test_xent"

    @property
    def solved(self) -> bool:
        """Adding: test MSE below 0.01 (the usual threshold); copy: under a tenth of the baseline."""
        return self.test_metric < (0.01 if self.problem == "adding" else 0.1 * self.baseline)

    def line(self) -> str:
        """The last line of ``rnnkit longlag``: ``test_mse 0.0031 baseline 0.167``."""
        return f"{self.metric_name} {fmt_metric(self.test_metric)} baseline {self.baseline:.3g}"


def _check(problem: str, cell: str, length: int, hidden: int, init: str = "default", eval_size: int = 1) -> None:
    if problem not in PROBLEMS:
        raise RnnkitError(f"--task must be one of {', '.join(PROBLEMS)}, not {problem!r}")
    if cell not in CELLS:
        raise RnnkitError(f"--cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if length < (2 if problem == "adding" else 1):
        raise RnnkitError(f"--length must be at least {2 if problem == 'adding' else 1}, got {length}")
    if hidden <= 0:
        raise RnnkitError(f"--hidden must be positive, got {hidden}")
    if eval_size < 1:
        raise RnnkitError(f"--eval-size must be positive, got {eval_size}")
    LongLagModel(problem, cell, 2, init=init)  # an unknown or unfitting --init fails here, before any training


def run(problem: str = "adding", length: int = 100, cell: str = "lstm", out: str | Path | None = None,
        hidden: int = 64, layers: int = 1, init: str = "default", batch_size: int = 64,
        max_time: float | None = None, max_steps: int | None = None, lr: float = 3e-3,
        grad_clip: float | None = 1.0, seed: int = 0, eval_size: int = 1000,
        progress: bool | None = None, precision: str = "fp32", **train_options: Any) -> LongLagResult:
    """Train one cell on one problem and test it; the Python face of ``rnnkit longlag``.

    Defaults are the command's. The run folder (``out``) is an ordinary rnnkit run: metrics
    log, loss plot, checkpoints.
    The test metric is measured with the best-validation weights.
    """
    _check(problem, cell, length, hidden, init, eval_size)
    if max_time is None and max_steps is None:
        max_time = 60.0
    if out is None:
        out = Path("runs") / "longlag" / f"{problem}-{cell}-T{length}"
    torch.manual_seed(seed)
    model = LongLagModel(problem, cell, hidden, layers, init, t_max=length)
    task = LongLagTask(model, problem, length, batch_size, seed, eval_size)
    config = TrainConfig(**{"warmup_steps": 50, **train_options, "lr": lr, "grad_clip": grad_clip,
                            "max_time": max_time, "max_steps": max_steps, "seed": seed, "precision": precision})
    try:
        result = fit(task, config, out, progress=progress)
    except TrainingDiverged as e:  # here a cell that diverges is a finding, a row of the sweep, not an error
        result = e.result
    return _test(task, Path(out), result)


def resume(run: str | Path, progress: bool | None = None, **changes: Any) -> LongLagResult:
    """Continue an interrupted run (only the budget and device may change), then test it."""
    task, result = resume_run(run, progress, expect=LongLagTask, **changes)
    return _test(task, Path(run), result)


def _test(task: LongLagTask, out: Path, result: TrainResult) -> LongLagResult:
    """The test metric with the best-validation weights (fit leaves them in the model), saved as result.json."""
    test = task.test()
    name = "test_mse" if task.problem == "adding" else "test_xent"
    m = task.model.description
    outcome = LongLagResult(task.problem, m["cell"], m["init"], task.length, test[name],
                            baseline(task.problem, task.length), result.steps, result.train_time, result.stop_reason,
                            test.get("test_recall_acc"))
    write_json(out / "result.json", {**asdict(outcome), "solved": outcome.solved})
    return outcome


def sweep(problem: str = "adding", cells: Sequence[str] = ("rnn", "lstm", "gru"),
          lengths: Sequence[int] = (50, 100, 200, 400), out: str | Path = "runs/longlag-sweep",
          progress: bool | None = False, on_result=None, **options: Any) -> list[LongLagResult]:
    """Every cell at every length (same budget each); writes ``sweep.md`` (a table) and ``sweep.png`` into ``out``.

    A cell may name its initialisation, ``CELL[:INIT]`` (``lstm:chrono``); others use ``init``.

    ``on_result`` is called with each result as it comes (the CLI prints a row per run).
    """
    default_init = options.pop("init", "default")
    configs = []
    for spec in cells:
        cell, _, init = spec.partition(":")
        configs.append((cell, init or default_init))
        for length in lengths:
            _check(problem, cell, length, options.get("hidden", 128), init or default_init)
    out = Path(out)
    results = []
    for cell, init in configs:
        for length in lengths:
            name = f"{problem}-{cell}{'-' + init if init != 'default' else ''}-T{length}"
            r = run(problem, length, cell, out / name, progress=progress, init=init, **options)
            results.append(r)
            if on_result is not None:
                on_result(r)
    atomic_write(out / "sweep.md", lambda tmp: Path(tmp).write_text(format_sweep(results) + "\n", encoding="utf-8"))
    plot_sweep(results, out / "sweep.png")
    return results


def format_sweep(results: Sequence[LongLagResult]) -> str:
    """A Markdown table (also readable as plain text): one row per run."""
    name = results[0].metric_name if results else "test_metric"
    rows = [f"| cell | init | T | {name} | baseline | solved | steps | train s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.cell} | {r.init} | {r.length} | {fmt_metric(r.test_metric)} | {r.baseline:.3g} | "
                    f"{'yes' if r.solved else 'no'} | {r.steps} | {r.train_time:.0f} |")
    return "\n".join(rows)


def plot_sweep(results: Sequence[LongLagResult], path: str | Path) -> None:
    """Test metric against T, one line per cell, with the memoryless baseline dashed."""

    from matplotlib.ticker import NullFormatter

    fig, ax = new_figure(figsize=(6.5, 4.2), dpi=100)
    by_cell: dict[str, list[LongLagResult]] = {}
    for r in results:
        by_cell.setdefault(f"{r.cell}" + (f":{r.init}" if r.init != "default" else ""), []).append(r)
    for label, rs in by_cell.items():
        rs = sorted(rs, key=lambda r: r.length)
        ax.plot([r.length for r in rs], [r.test_metric for r in rs], marker="o", label=label)
    lengths = sorted({r.length for r in results})
    ax.plot(lengths, [baseline(results[0].problem, t) for t in lengths], "k--", lw=1, label="baseline (no memory)")
    if results and results[0].problem == "adding":
        ax.axhline(0.01, color="grey", ls=":", lw=1, label="solved (MSE 0.01)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("T (steps between the information and the answer)")
    ax.set_ylabel(results[0].metric_name if results else "test metric")
    ax.set_title(f"{results[0].problem if results else ''} problem: test metric vs T")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


__all__ = ["LongLagModel", "LongLagResult", "LongLagTask", "adding_batch", "baseline", "copy_batch",
           "format_sweep", "plot_sweep", "resume", "run", "sweep"]
