"""How steady the speed rule's pick between LSTM and GRU is: the probe repeated in fresh processes.

Before a time-budgeted run ``rnnkit train`` times training steps of a 2x256 LSTM and GRU
(``rnnkit.tasks.charlm.training_speed``) and takes the LSTM where it trains at least
``LSTM_OVER_GRU_SPEED`` times as fast. Each repeat here is a fresh process, as each ``rnnkit
train`` is, measuring both cells with the probe's median of ``--steps`` timed steps; the table gives
the spread of their ratio and how often each cell would be picked.

    python benchmarks/cell_probe.py                        # 10 processes, 5 steps (the rule's)
    python benchmarks/cell_probe.py --steps 2 5 --repeats 10
    python benchmarks/cell_probe.py --smoke                # a quick check that it runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402

PROBE = """
import json, sys
from rnnkit.tasks.charlm import training_speed
hidden, steps, options = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
lstm = training_speed({**options, "cell": "lstm"}, hidden, steps)
gru = training_speed({**options, "cell": "gru"}, hidden, steps)
print(lstm / gru)
"""


def ratio(hidden: int, steps: int, options: dict) -> float:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(hidden), str(steps), json.dumps(options)],
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", nargs="+", type=int, default=[5], help="timed steps per probe (default: the rule's 5)")
    p.add_argument("--repeats", type=int, default=10, help="fresh processes per step count")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--smoke", action="store_true", help="tiny models, two repeats: check that it runs")
    args = p.parse_args()
    from rnnkit.tasks.charlm import LSTM_OVER_GRU_SPEED

    options = {"layers": 1, "embed": 4, "batch_size": 4, "seq_len": 8, "precision": "fp32"} if args.smoke else {}
    hidden, repeats = (16, 2) if args.smoke else (args.hidden, args.repeats)
    print(f"# the speed rule's LSTM/GRU probe: {machine()}")
    rows = []
    for steps in args.steps:
        ratios = [ratio(hidden, steps, options) for _ in range(repeats)]
        picks = sum(r >= LSTM_OVER_GRU_SPEED for r in ratios)
        rows.append({"timed steps": steps, "processes": repeats, "median ratio": statistics.median(ratios),
                     "lowest": min(ratios), "highest": max(ratios),
                     "LSTM picked": picks, "GRU picked": repeats - picks})
        print(table(rows[-1:]), flush=True)
    print()
    print(table(rows, f"LSTM/GRU training speed at 2x{hidden}, threshold {LSTM_OVER_GRU_SPEED}"))


if __name__ == "__main__":
    main()
