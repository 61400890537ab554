"""Quality per CPU time: validation loss of `rnnkit train` with its recommended defaults after 60 s and 300 s.

tiny-shakespeare, nanoGPT's split (first 90% train, last 10% validation), loss in nats/char and
bits/char. The references were measured on a machine of this kind (see BENCHMARKS.md).

    python benchmarks/quality.py                 # 60 s and 300 s
    python benchmarks/quality.py --budgets 60    # one budget
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
TARGETS = {60: 1.50, 300: 1.40}


def run(budget: float, extra: list[str], corpus: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rnnkit", "train", str(corpus), "--out", str(out),
                               "--max-time", str(budget), "--sample-length", "0", *extra],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stderr)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((out / "config.json").read_text())
    val = [r for r in records if "val_loss" in r][-1]
    rates = [r["chars_per_s"] for r in records if "chars_per_s" in r]
    m, t = config["model"], config["data"]
    return {"budget s": budget, "model": f"{m['cell']} {m['layers']}x{m['hidden']}, batch {t['batch_size']} "
            f"x seq {t['seq_len']}, {config['precision']}", "val loss (nats)": val["val_loss"],
            "val bpc": val["val_loss"] / math.log(2), "target": TARGETS.get(int(budget), float("nan")),
            "steps": val["step"], "chars/s": sum(rates) / len(rates), "wall s": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", nargs="+", type=float, default=[60, 300])
    p.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    p.add_argument("extra", nargs="*", help="extra rnnkit train options, after --")
    args = p.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"corpus {args.corpus} not found")
    print(f"# quality per CPU time: {machine()}")
    rows = []
    for budget in args.budgets:
        rows.append(run(budget, args.extra, args.corpus))
        print(table(rows[-1:]), flush=True)
        for name, loss in REFERENCES.get(int(budget), {}).items():
            print(f"  reference: {name}: {loss:.3f}")
    print()
    print(table(rows, "validation loss after a training-time budget (tiny-shakespeare)"))


if __name__ == "__main__":
    main()
