"""Where a training run's time goes: forward, backward, optimizer, and everything else.

Profiles `rnnkit.train` (the recommended defaults, validation and checkpoints included) on
tiny-shakespeare with cProfile and attributes wall time to the training step's parts and to
the rest: data loading, validation, checkpointing and plotting, logging.

    python benchmarks/profile_train.py --max-time 60
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

import rnnkit  # noqa: E402

# (label, (file fragment, function name)) in the order they are reported
PARTS = [
    ("forward (model + loss)", ("tasks/charlm.py", "training_loss")),
    ("backward", ("torch/_tensor.py", "backward")),
    ("gradient clipping", ("clip_grad.py", "clip_grad_norm_")),
    ("optimizer step", ("torch/optim/optimizer.py", "wrapper")),
    ("data loading (inside forward)", ("rnnkit/data/text.py", "batch")),
    ("validation", ("tasks/charlm.py", "evaluate")),
    ("checkpoints", ("rnnkit/training/trainer.py", "save")),
    ("loss plot", ("rnnkit/training/trainer.py", "plot")),
    ("metrics log", ("rnnkit/training/monitor.py", "write")),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-time", type=float, default=60)
    p.add_argument("--corpus", default=str(SHAKESPEARE))
    args = p.parse_args()
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        profiler.enable()
        rnnkit.train(args.corpus, out=Path(tmp) / "run", max_time=args.max_time, progress=False)
        profiler.disable()
        wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    cumulative = {}
    for (filename, _, name), (_, _, _, ct, _) in stats.items():
        for label, (fragment, func) in PARTS:
            if name == func and filename.endswith(fragment) or (name == func and fragment in filename):
                cumulative[label] = max(cumulative.get(label, 0.0), ct)
    step = sum(cumulative.get(label, 0.0) for label, _ in PARTS[:4])
    rows = [{"part": label, "seconds": cumulative.get(label, 0.0), "share of wall": cumulative.get(label, 0.0) / wall}
            for label, _ in PARTS]
    rows.append({"part": "outside forward/backward/clip/optimizer", "seconds": wall - step,
                 "share of wall": (wall - step) / wall})
    print(f"# profile of `rnnkit.train(max_time={args.max_time:g})`: {machine()}; wall {wall:.1f} s")
    print(table(rows, "where the time goes"))


if __name__ == "__main__":
    main()
