"""Training time per character against sequence length: registered cells against the fused LSTM, side by side.

For each sequence length T, one layer of each cell named by --cells (by default minGRU, whose layer
runs the parallel scan over time) and one ``torch.nn.LSTM`` of the same hidden size (torch's fused
kernel: oneDNN on CPU, cuDNN on GPU) each take training steps on the same (T, batch, hidden) input:
forward, backward of a loss on every output, and an Adam step. The two alternate, best of
--repeats each, so drift in the machine's speed hits both alike. Prints a Markdown table of
microseconds per character (T x batch characters a step), chars/s and the ratio, with the
machine and the command. Names that are not registered cells are skipped with a message, so
the same command runs on branches with and without them. Run it on an idle machine.

    python benchmarks/scan_speed.py                        # minGRU vs LSTM, hidden 256, T = 256 ... 4096
    python benchmarks/scan_speed.py --cells mingru minlstm --hidden 512 --seq-lens 1024
    python benchmarks/scan_speed.py --device cuda --cells mingru lnlstm --seq-lens 1024 --batch-size 16 --hidden 768
    python benchmarks/scan_speed.py --cells lnlstm --impl loop  # a cell's step loop instead of its fast path
    python benchmarks/scan_speed.py --smoke                # tiny sizes for a second: checks the script runs
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, sync, table  # noqa: E402

from rnnkit.nn.cells import cell_names  # noqa: E402
from rnnkit.nn.layers import make_layer  # noqa: E402


def training_step(layer: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    out, _ = layer(x)
    opt.zero_grad(set_to_none=True)
    out.sum().backward()
    opt.step()


def seconds_per_step(layer: nn.Module, x: torch.Tensor, device: str) -> Callable[[], float]:
    """A function timing one training step of ``layer`` on ``x`` (after one untimed warm-up step)."""
    opt = torch.optim.Adam(layer.parameters(), lr=1e-4)
    training_step(layer, x, opt)
    sync(device)

    def once() -> float:
        start = time.perf_counter()
        training_step(layer, x, opt)
        sync(device)
        return time.perf_counter() - start

    return once


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["mingru"], help="registered cells to time (default mingru)")
    p.add_argument("--seq-lens", nargs="+", type=int, default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--hidden", type=int, default=256, help="hidden size of every layer, and its input size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per layer and length (best is kept)")
    p.add_argument("--impl", choices=["auto", "loop"], default="auto",
                   help="the cells' fast path (default) or their step loop, the reference")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.seq_lens, args.hidden, args.batch_size, args.repeats = [16, 32], 8, 2, 1
    if min(args.seq_lens) <= 0 or args.hidden <= 0 or args.batch_size <= 0 or args.repeats <= 0:
        p.error("--seq-lens, --hidden, --batch-size and --repeats must be positive")
    known = cell_names()
    cells = []
    for name in args.cells:
        if name in known:
            cells.append(name)
        else:
            print(f"# skipped {name}: not a registered cell here (registered: {', '.join(known)})", flush=True)
    kernel = "cuDNN" if args.device.startswith("cuda") else "oneDNN"
    print(f"# scan speed: {machine()}")
    print(f"# command: python {shlex.join(sys.argv)}")
    print(f"# one layer, hidden {args.hidden} (input {args.hidden}), batch {args.batch_size}, fp32, device "
          f"{args.device}, impl {args.impl}; a training step is forward, backward and an Adam step; best of "
          f"{args.repeats}")
    if not cells:
        print("# no registered cell to time")
        return
    device = torch.device(args.device)
    rows = []
    for steps in args.seq_lens:
        torch.manual_seed(0)
        x = torch.randn(steps, args.batch_size, args.hidden, device=device, requires_grad=True)
        chars = steps * args.batch_size
        lstm = seconds_per_step(nn.LSTM(args.hidden, args.hidden).to(device), x, args.device)
        timers = {c: seconds_per_step(make_layer(c, args.hidden, args.hidden, impl=args.impl).to(device), x,
                                      args.device)
                  for c in cells}
        best = {c: float("inf") for c in ["lstm", *cells]}
        for _ in range(args.repeats):  # alternate, so that drift in the machine's speed hits all alike
            best["lstm"] = min(best["lstm"], lstm())
            for c in cells:
                best[c] = min(best[c], timers[c]())
        for c in cells:
            rows.append({"T": steps, "cell": c, "cell µs/char": 1e6 * best[c] / chars,
                         f"LSTM ({kernel}) µs/char": 1e6 * best["lstm"] / chars,
                         "cell chars/s": chars / best[c], "LSTM chars/s": chars / best["lstm"],
                         "cell speed / LSTM speed": best["lstm"] / best[c]})
        print(table(rows[-len(cells):]), flush=True)
        del x, lstm, timers
    print()
    print(table(rows, f"training time per character against T: {', '.join(cells)} vs the fused LSTM, "
                      f"hidden {args.hidden}, batch {args.batch_size}"))


if __name__ == "__main__":
    main()
