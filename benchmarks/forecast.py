"""Forecasting benchmark: rnnkit's Forecaster against naive, seasonal naive and exponential smoothing.

Three real series that ship with rnnkit or its dependencies (no download):

- airline: monthly passengers 1949-1960. Darts' RNN tutorial protocol: train on data before
  January 1959, then 6-month-ahead historical forecasts whose first step is January 1959 or
  later (origins Jan 1959 to Jul 1960), no retraining; MAPE on the 6th step of each forecast
  (Darts' ``last_points_only``; 19 points, June 1959 to December 1960).
- co2: weekly Mauna Loa CO2 1958-2001 (statsmodels; 59 missing weeks interpolated). Train on
  weeks before 1990; 52-week forecasts from origins every 13 weeks from 1990 on; all steps.
- sunspots: yearly Wolf numbers 1700-2008 (statsmodels). Train on years before 1950; 11-year
  forecasts from every year 1950-1998; all steps; the seasonal baselines and MASE use the
  11-year solar cycle as the season.

Exponential smoothing is refitted at every origin on all data before it; the network is fitted
once. Every run is seeded; step budgets (not time) make the numbers repeatable.

    nice -n 19 python benchmarks/forecast.py                       # all three, seeds 1 2 3
    nice -n 19 python benchmarks/forecast.py --datasets airline --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnkit.cli.timeseries import MODEL_KEYS, PRESETS, TRAIN_KEYS  # noqa: E402
from rnnkit.data import timeseries as ts  # noqa: E402
from rnnkit.tasks.forecast import Forecaster  # noqa: E402

# the settings `rnnkit forecast backtest --dataset NAME` uses, split as the CLI splits them: the
# Forecaster's options, and the rest for the backtest
SETUPS = {name: {"model": {k: v for k, v in preset.items() if k in MODEL_KEYS + TRAIN_KEYS},
                 "backtest": {k: v for k, v in preset.items() if k not in MODEL_KEYS + TRAIN_KEYS}}
          for name, preset in PRESETS.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--max-steps", type=int, help="override the training steps")
    p.add_argument("--plot-dir", help="save a backtest plot per dataset (first seed) here")
    args = p.parse_args()

    for name in args.datasets:
        setup = SETUPS[name]
        df, load = ts.builtin_dataset(name)
        model_opts = dict(setup["model"])
        if args.max_steps:
            model_opts["max_steps"] = args.max_steps
        print(f"\n== {name}: model {model_opts}, backtest {setup['backtest']}")
        tables = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            f = Forecaster(seed=seed, **model_opts)
            r = f.backtest(df, **setup["backtest"], **load)
            tables.append(r.metrics)
            m = r.metrics
            print(f"seed {seed}: model MAPE {m.loc['model', 'MAPE']:.2f}%  MASE {m.loc['model', 'MASE']:.3f}  "
                  f"({f.result.steps} steps, {f.result.train_time:.0f}s training, "
                  f"{time.perf_counter() - t0:.0f}s in all; {r.forecasts['origin'].nunique()} origins)")
            if args.plot_dir and seed == args.seeds[0]:
                Path(args.plot_dir).mkdir(parents=True, exist_ok=True)
                r.plot(Path(args.plot_dir) / f"{name}.png", title=f"{name}, seed {seed}")
        mean = sum(tables) / len(tables)
        models = pd.DataFrame([t.loc["model"] for t in tables], index=[f"model seed {s}" for s in args.seeds])
        print(f"-- {name}: per seed, then the mean over seeds {args.seeds} (baselines are deterministic)")
        out = pd.concat([models, mean.rename(index={"model": "model (mean)"})])
        print(out.to_string(float_format=lambda v: f"{v:.3f}"))
        beaten = [b for b in ts.BASELINES if mean.loc["model", "MASE"] < mean.loc[b, "MASE"]]
        print(f"model mean MASE {mean.loc['model', 'MASE']:.3f} beats: {', '.join(beaten) or 'none'}; "
              f"MAPE per seed {np.round([t.loc['model', 'MAPE'] for t in tables], 2).tolist()}")


if __name__ == "__main__":
    main()
