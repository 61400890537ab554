"""Run the character model's headline benchmarks (training and sampling speed, large corpora, quality):
`--quick` for a few minutes in all, or full size; each prints its own table. The task benchmarks
(forecast.py, nab.py, longlag_sweep.py, classify_baselines.py, ...) run on their own.

    python benchmarks/run_all.py --quick
    python benchmarks/run_all.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, quick arguments, full arguments)
SUITE = [
    ("train_speed.py", ["--quick"], []),
    ("sample_speed.py", ["--quick"], []),
    ("large_corpus.py", ["--quick"], []),
    ("quality.py", ["--budgets", "60"], []),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--smoke", action="store_true", help="seconds each: checks every script runs")
    args = p.parse_args()
    failed = []
    for script, quick, full in SUITE:
        if args.smoke and script == "quality.py":
            continue
        extra = ["--smoke"] if args.smoke else quick if args.quick else full
        print(f"\n## {script} {' '.join(extra)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *extra]).returncode:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
