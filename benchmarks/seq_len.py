"""Time unfolding: validation bits per character against the truncated-BPTT length, at equal training time.

Trains the same character model on tiny-shakespeare once per --seq-len for --max-time seconds
each (batch size fixed, so a longer window also means more characters per step), then prints
a table of the final validation bpc and writes a plot. By default the budget is CPU time
(see ``cpu_seconds_per_step``), which a shared machine does not distort; run it on one thread.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/seq_len.py --max-time 60 --png docs/img/seq_len.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(SHAKESPEARE))
    p.add_argument("--seq-lens", nargs="+", type=int, default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-time", type=float, default=60.0, help="seconds of training per run")
    p.add_argument("--budget", choices=["cpu", "wall"], default="cpu",
                   help="cpu (default): max-time seconds of this process's CPU time, turned into a step budget "
                   "by timing a few steps; wall: rnnkit train --max-time (only fair on an idle machine)")
    p.add_argument("--out", default="/tmp/rnnkit-seq-len")
    p.add_argument("--png", help="also copy the plot here")
    p.add_argument("--merge", nargs="+", metavar="SEQ_LEN_JSON",
                   help="train nothing: plot the rows of earlier runs' seq_len.json files (a later file's row "
                   "replaces an earlier one's for the same --seq-len, e.g. a rerun of a run starved of CPU)")
    args = p.parse_args()

    import rnnkit
    from rnnkit.io import atomic_write_text

    out = Path(args.out)
    if args.merge:
        merged = {}
        for path in args.merge:
            merged.update({row[0]: row for row in json.loads(Path(path).read_text())})
        plot_rows([tuple(r) for _, r in sorted(merged.items())], args, out)
        return
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for seq_len in args.seq_lens:
        start, cpu_start = time.perf_counter(), time.process_time()
        budget = {"max_time": args.max_time}
        if args.budget == "cpu":
            budget = {"max_steps": max(1, round(args.max_time / cpu_seconds_per_step(args, seq_len)))}
        _, result = rnnkit.train(args.corpus, out=out / f"seq{seq_len}", cell=args.cell, hidden=args.hidden,
                                 layers=args.layers, batch_size=args.batch_size, seq_len=seq_len,
                                 precision="fp32", progress=False, **budget,
                                 eval_every=10**9)  # validate once, at the end: full-text evaluations are slow
        chars = result.steps * args.batch_size * seq_len
        bpc = result.last_eval["val_bpc"]
        cpu = time.process_time() - cpu_start
        rows.append((seq_len, bpc, result.steps, chars, cpu))
        print(f"seq_len {seq_len:4d}  val_bpc {bpc:.3f}  steps {result.steps}  chars {chars:,.0f}  "
              f"cpu {cpu:.0f}s (calibration, training, final evaluation)  wall {time.perf_counter() - start:.0f}s",
              flush=True)
        atomic_write_text(out / "seq_len.json", json.dumps(rows))
    plot_rows(rows, args, out)


def cpu_seconds_per_step(args: argparse.Namespace, seq_len: int, steps: int = 8) -> float:
    """CPU time of one training step (forward, backward, AdamW) of this model at this ``seq_len``.

    Measured as process time, not wall time, so that other jobs on a shared machine do not
    shrink a run's budget: with one thread, ``max_time`` CPU seconds on a busy machine are the
    steps that ``max_time`` seconds of a dedicated core would give.
    """
    import torch
    import torch.nn.functional as F

    from rnnkit.tasks.charlm import CharLM, ModelConfig

    torch.manual_seed(0)
    model = CharLM(ModelConfig(cell=args.cell, hidden=args.hidden, layers=args.layers, vocab_size=65))
    opt = torch.optim.AdamW(model.parameters())
    ids = torch.randint(0, 65, (args.batch_size, seq_len + 1))

    def step() -> None:
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t) / steps


def plot_rows(rows: list[tuple], args: argparse.Namespace, out: Path) -> None:
    """Print the Markdown table and write the plot (val bpc against --seq-len)."""
    from rnnkit.io import atomic_write

    print("| --seq-len | val bpc | steps | chars seen | process CPU s |\n|---|---|---|---|---|")
    for seq_len, bpc, steps, chars, cpu in rows:
        print(f"| {seq_len} | {bpc:.3f} | {steps} | {chars:,.0f} | {cpu:.0f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xticks([r[0] for r in rows], [str(r[0]) for r in rows])
    ax.set_xlabel("--seq-len (steps of backpropagation through time)")
    ax.set_ylabel("validation bits per character")
    ax.set_title(f"tiny-shakespeare, {args.cell} {args.layers}x{args.hidden}, {args.max_time:.0f} s each")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out / "seq_len.png", lambda tmp: fig.savefig(tmp, format="png"))
    if args.png:
        shutil.copyfile(out / "seq_len.png", args.png)
    print(f"plot {out / 'seq_len.png'}")


if __name__ == "__main__":
    main()
