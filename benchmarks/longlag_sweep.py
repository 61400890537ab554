"""Long-range memory sweep: every cell at every sequence length on the adding (or copy) problem.

Prints one line per run as it finishes, then the Markdown table recorded in BENCHMARKS.md, and
writes the plot (test metric against T per cell) into the sweep folder and, with --png, a copy
for the README. Each run has the same budget (--max-time seconds or --max-steps).

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/longlag_sweep.py --max-time 60 --png docs/img/longlag_sweep.png
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rnnkit.tasks.longlag import format_sweep, sweep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=["adding", "copy"], default="adding")
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    p.add_argument("--lengths", nargs="+", type=int, default=[50, 100, 200, 400])
    p.add_argument("--init", default="default")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-time", type=float, default=60.0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--out", default="/tmp/rnnkit-longlag-sweep")
    p.add_argument("--png", help="also copy the plot here")
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()

    def show(r) -> None:
        print(f"{r.cell:8s} T={r.length:<4d} {r.line()}  steps {r.steps}  train {r.train_time:.0f}s"
              f"  {'solved' if r.solved else 'not solved'}", flush=True)

    results = sweep(args.task, args.cells, args.lengths, out, on_result=show, hidden=args.hidden, init=args.init,
                    lr=args.lr, max_time=None if args.max_steps else args.max_time, max_steps=args.max_steps)
    print(format_sweep(results))
    for cell in args.cells:
        solved = [r.length for r in results if r.cell == cell and r.solved]
        broken = [r.length for r in results if r.cell == cell and not r.solved]
        print(f"{cell}: solved at T = {solved or 'none'}; not solved at T = {broken or 'none'}")
    print(f"total wall time {time.perf_counter() - start:.0f}s; plot {out / 'sweep.png'}")
    if args.png:
        shutil.copyfile(out / "sweep.png", args.png)


if __name__ == "__main__":
    main()
