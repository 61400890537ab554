"""NAB benchmark: rnnkit's Detector on all 58 files of the Numenta Anomaly Benchmark.

Protocol (NAB's rules): unsupervised and causal. For each file, a fresh detector is trained
on the probationary period only (the first 15% of rows, at most 750), then scores every row
causally (the score at row t uses rows up to t; the threshold statistics keep updating
online). What is submitted is the detector's alarms (the first flagged point after at least --suppress
points without an alarm), each carrying its score, 0 elsewhere (--raw: every point's score).
Scores are NAB-scored (rnnkit.data.nab) with one threshold per profile for the whole
corpus, chosen to maximise that profile's score, as NAB's optimiser does.

    nice -n 19 python benchmarks/nab.py                      # data in ../shared/data/timeseries/nab
    nice -n 19 python benchmarks/nab.py --method reconstruction --max-steps 300

Prints the normalised score per profile (null detector 0, perfect 100), the time taken, and
writes per-row scores to --scores-out if given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnkit.data import nab  # noqa: E402
from rnnkit.tasks.anomaly import Detector  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "timeseries" / "nab"


def score_file(df, args) -> np.ndarray:
    y = df["value"].to_numpy(float)
    probation = nab.probation_length(len(y))
    det = Detector(method=args.method, window=args.window, hidden=args.hidden, smoothing=args.smoothing,
                   history=args.history, z=args.z or None, max_steps=args.max_steps, max_time=args.max_time,
                   seed=args.seed, lr=args.lr, suppress=args.suppress)
    det.fit(y[:probation])
    scores = det.score(y)
    if args.raw:
        return scores["score"].to_numpy()
    return (scores["score"] * scores["alarm"]).to_numpy()  # the detector's alarms, each with its score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="NAB folder (data/ and labels/)")
    p.add_argument("--method", choices=["prediction", "reconstruction"], default="prediction")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--smoothing", type=int, default=10)
    p.add_argument("--history", type=int, default=3000)
    p.add_argument("--z", type=float, default=6.0, help="threshold in std devs (0: Telemanom's dynamic choice)")
    p.add_argument("--suppress", type=int, default=100, help="points after an alarm without a new one")
    p.add_argument("--raw", action="store_true", help="submit every point's score, not only alarms")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--max-time", type=float, default=60.0, help="training seconds per file (a cap; steps end first)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N files (for a quick check)")
    p.add_argument("--scores-out", help="write every file's scores here (.npz)")
    args = p.parse_args()

    root = Path(args.root)
    if not (root / "labels" / "combined_windows.json").exists():
        sys.exit(f"NAB data not found at {root}")
    corpus = nab.load_corpus(root)[: args.limit]
    if not any(f.windows for _, _, f in corpus):
        sys.exit("error: these files hold no anomaly window (NAB's first five have none): give a larger --limit")
    t0 = time.perf_counter()
    scores = []
    for k, (name, df, _) in enumerate(corpus, 1):
        scores.append(score_file(df, args))
        print(f"[{k}/{len(corpus)}] {name} rows {len(df)}  {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    files = [f for _, _, f in corpus]
    print(f"NAB, {len(corpus)} files, {sum(f.n for f in files)} rows, {sum(len(f.windows) for f in files)} windows; "
          f"method {args.method}, window {args.window}, hidden {args.hidden}, {args.max_steps} steps/file, "
          f"seed {args.seed}; scoring took {elapsed:.0f}s")
    print(f"{'profile':<22}{'threshold':>10}{'score':>8}")
    for profile in nab.PROFILES:
        thr, s = nab.optimize_threshold(scores, files, profile)
        print(f"{profile:<22}{thr:>10.4f}{s:>8.1f}")
    if args.scores_out:
        np.savez_compressed(args.scores_out, **{name: s for (name, _, _), s in zip(corpus, scores, strict=True)})


if __name__ == "__main__":
    main()
