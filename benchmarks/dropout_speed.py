"""Dropout on CPU: rnnkit's mask (16 random bits per element) against torch's Bernoulli draw.

First the operation alone, forward and backward, on the wide character model's tensor (one
window of 32 steps, batch 64, 512 units) in fp32 and bf16; then what dropout still costs a
training run: `rnnkit train`'s wide model (2x512 LSTM, its recommended settings) for a fixed
number of steps with its dropout of 0.2 and with none, alternated. Prints milliseconds and chars/s.

    python benchmarks/dropout_speed.py
    python benchmarks/dropout_speed.py --steps 100 --repeats 1    # shorter
    python benchmarks/dropout_speed.py --smoke                     # tiny sizes, fp32: checks the script runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.nn.dropout import dropout  # noqa: E402


def forward_backward_ms(drop, x: torch.Tensor, p: float, repeats: int = 30) -> float:
    """Milliseconds for one dropout of ``x`` and the backward pass through it."""
    def once() -> None:
        x.grad = None
        drop(x, p).backward(torch.ones_like(x))

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats * 1e3


def training_rate(corpus: list[str] | None, steps: int, dropout_rate: float, **options) -> float:
    with tempfile.TemporaryDirectory() as out:
        _, result = rnnkit.train(corpus, out=Path(out) / "run", dropout=dropout_rate, max_steps=steps,
                                 eval_every=10**9, progress=False, **options)
    return result.items_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting, alternated")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes in fp32: checks the script runs")
    args = parser.parse_args()
    print(machine())
    shape, hidden = ((8, 4, 32), 32) if args.smoke else ((32, 64, 512), 512)
    options = {"hidden": hidden, **({"precision": "fp32", "seq_len": 8, "batch_size": 4} if args.smoke else {})}
    steps, repeats = (3, 1) if args.smoke else (args.steps, args.repeats)
    rows = []
    for dtype in (torch.float32,) if args.smoke else (torch.float32, torch.bfloat16):
        x = torch.randn(*shape, dtype=dtype, requires_grad=True)
        theirs = forward_backward_ms(lambda t, p: F.dropout(t, p, True), x, 0.2)
        ours = forward_backward_ms(dropout, x, 0.2)
        rows.append({"dtype": str(dtype).removeprefix("torch."), "torch F.dropout (ms)": theirs,
                     "rnnkit dropout (ms)": ours, "speed-up": theirs / ours})
    print(table(rows, f"dropout of a {shape} tensor, forward and backward, p = 0.2"))
    corpus = [str(SHAKESPEARE)] if SHAKESPEARE.exists() else None  # else the built-in corpus
    rates: dict[float, list[float]] = {0.2: [], 0.0: []}
    for _ in range(repeats):
        for rate in rates:
            rates[rate].append(training_rate(corpus, steps, rate, **options))
    print()
    print(table([{"dropout": rate, "chars/s": max(r), "runs": ", ".join(f"{v:,.0f}" for v in r)}
                 for rate, r in rates.items()], f"rnnkit train, 2x{hidden} LSTM, {steps} steps (best of the runs)"))


if __name__ == "__main__":
    main()
