"""Quality per CPU time: validation loss of `rnnkit train` with its recommended defaults after 60 s and 300 s.

tiny-shakespeare, nanoGPT's split (first 90% train, last 10% validation), loss in nats/char and
bits/char. The references were measured on a machine of this kind (see BENCHMARKS.md).

    python benchmarks/quality.py                 # 60 s and 300 s
    python benchmarks/quality.py --budgets 60    # one budget
    python benchmarks/quality.py --cells lstm lnlstm mlstm gru mingru minlstm --seeds 1337 1338
    python benchmarks/quality.py --dynamic       # also the validation text under dynamic evaluation
    python benchmarks/quality.py -- --hidden 384 --lr 3e-3     # any rnnkit train option, after --
    python benchmarks/quality.py -- --members 2                # an ensemble: its loss, its members' steps
    python benchmarks/quality.py --budgets 60 300 --steps 2982 3481   # a faster machine's runs, step for step

``--steps`` trains the settings recommended for each budget for that many steps instead of for
the time: the step counts another machine made in those budgets, so that a slower machine
reproduces its runs (the reference machine's are in BENCHMARKS.md).

With ``--cells`` every cell trains with the recommended settings otherwise (its own options
after ``--``), each budget and seed in turn; the last table gives every run and the spread over
seeds shows in its rows.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

REFERENCES = {60: {"nanoGPT baby GPT (CPU config), 63 s": 1.886, "plain nn.LSTM 2x512 bf16, 63 s": 1.535},
              300: {"nanoGPT baby GPT, 304 s": 1.578, "plain nn.LSTM 2x512 bf16, 300 s": 1.430}}
TARGETS = {60: 1.43, 300: 1.36}  # issue 17, on the reference AMX machine (BENCHMARKS.md)


def rnnkit(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return proc.stdout


def budget_options(budget: float, steps: int | None) -> list[str]:
    """``rnnkit train`` options for a time budget, or for the settings it recommends run ``steps`` steps."""
    if steps is None:
        return ["--max-time", str(budget)]
    from rnnkit.tasks.charlm import recommended

    # the width these settings name brings its own settings for the rest, as under the time budget
    settings = recommended(budget)
    return ["--max-steps", str(steps), *(f"--{k.replace('_', '-')}={v}" for k, v in settings.items())]


def run(budget: float, extra: list[str], corpus: Path, dynamic: bool = False, steps: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        rnnkit("train", str(corpus), "--out", str(out), "--sample-length", "0", *budget_options(budget, steps),
               *extra)
        wall = time.perf_counter() - start
        members = json.loads((out / "config.json").read_text()).get("members")  # an ensemble's run folders
        # an ensemble: its validation loss in its own log; the model, steps and speed are its members'
        runs = [out / name for name in members] if members else [out]
        records = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((runs[0] / "config.json").read_text())
        m, t = config["model"], config["data"]
        budget_text = budget if steps is None else f"{budget:g} as {steps} steps"
        row = {"budget s": budget_text, "model": f"{m['cell']} {m['layers']}x{m['hidden']}, batch {t['batch_size']} "
               f"x seq {t['seq_len']}, {config['precision']}, seed {config['train']['seed']}"
               + (f", {len(members)} members" if members else "")}
        if dynamic:  # the validation split (the text's last 10%) read again, statically and adapting
            text = corpus.read_text(encoding="utf-8")
            val_text = Path(tmp) / "val.txt"
            val_text.write_text(text[int(len(text) * (1 - t["val_fraction"])):], encoding="utf-8")
            lines = rnnkit("eval", str(out), str(val_text), "--dynamic").splitlines()
            row["eval static"] = float(lines[-1].split()[1])
            row["eval dynamic"] = float(next(x for x in lines if x.startswith("dynamic loss")).split()[2])
        val = [r for r in records if "val_loss" in r][-1]
        speed = 0.0
        for folder in runs:
            rates = [r["chars_per_s"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
                     if "chars_per_s" in r]
            speed += sum(rates) / len(rates) if rates else math.nan
        loss = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"] if members else \
            val["val_loss"]
    return {**row, "val loss (nats)": loss, "val bpc": loss / math.log(2),
            "target": TARGETS.get(int(budget), float("nan")), "steps": val["step"],
            "chars/s": speed, "wall s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", nargs="+", type=float, default=[60, 300])
    p.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    p.add_argument("--cells", nargs="+", help="train each of these cells (default: the recommended one)")
    p.add_argument("--seeds", nargs="+", type=int, help="one run per seed (default: rnnkit train's)")
    p.add_argument("--dynamic", action="store_true", help="also evaluate the validation text with --dynamic")
    p.add_argument("--steps", nargs="+", type=int,
                   help="for each budget, train its recommended settings this many steps instead of for the time")
    p.add_argument("extra", nargs="*", help="extra rnnkit train options, after --")
    args = p.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"corpus {args.corpus} not found")
    if args.steps and len(args.steps) != len(args.budgets):
        raise SystemExit("give --steps one step count for each of --budgets")
    steps = dict(zip(args.budgets, args.steps or [None] * len(args.budgets), strict=True))
    print(f"# quality per CPU time: {machine()}")
    rows = []
    for budget in args.budgets:
        for cell in args.cells or [None]:
            for seed in args.seeds or [None]:
                chosen = (["--cell", cell] if cell else []) + (["--seed", str(seed)] if seed is not None else [])
                rows.append(run(budget, [*chosen, *args.extra], args.corpus, args.dynamic, steps[budget]))
                print(table(rows[-1:]), flush=True)
        for name, loss in REFERENCES.get(int(budget), {}).items():
            print(f"  reference: {name}: {loss:.3f}")
    print()
    print(table(rows, "validation loss after a training-time budget (tiny-shakespeare)"))


if __name__ == "__main__":
    main()
