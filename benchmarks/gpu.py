"""The GPU check, as one prepared script: training chars/s of rnnkit against plain cuDNN nn.LSTM
(fp32 and bf16) for 1x256, 2x512 and 3x1024 LSTMs and GRUs, then sampling chars/s, then one
layer's training step against cuDNN's LSTM at T = 1024, batch 16, hidden 768 for minGRU (the
parallel scan) and LN-LSTM (a cell name that is not registered is skipped with a message).

    python benchmarks/gpu.py              # on a machine with a CUDA GPU
    python benchmarks/gpu.py --smoke      # tiny sizes; runs on the CPU too (what the tests check)

Prints the tables for BENCHMARKS.md; exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--seconds", default="8", help="timing per measurement")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no CUDA GPU here; use --smoke to check the script on the CPU")
    smoke = ["--smoke"] if args.smoke else []
    runs = [("train_speed.py", [*smoke, "--device", device, "--seconds", args.seconds,
                                "--batch-size", "128", "--seq-len", "64"]),
            ("sample_speed.py", smoke),
            ("scan_speed.py", [*smoke, "--device", device, "--cells", "mingru", "lnlstm", "--seq-lens", "1024",
                               "--batch-size", "16", "--hidden", "768"])]
    for script, options in runs:
        print(f"\n## {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *options], check=True)


if __name__ == "__main__":
    main()
