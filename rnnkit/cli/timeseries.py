"""``rnnkit forecast fit|predict|backtest`` and ``rnnkit detect``: time series forecasting and anomalies.

With no data file, the forecast commands run on a real built-in series (``--dataset``, default
the airline passengers), so they work anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import RnnkitError
from ..io import atomic_write
from ..nn.cells import cell_names
from ..nn.regularisation import LAYER_REGULARISATION, LayerRegularisation
from ..training.config import TrainConfig
from . import fraction, output_file, png_file, positive_float, positive_int
from .options import TRAIN_OPTIONS, add_config_options, given, resume_options

# per built-in dataset: the options a user gets unless given (the benchmark's settings)
PRESETS: dict[str, dict[str, Any]] = {
    "airline": {"horizon": 6, "cell": "gru", "log": True, "mode": "autoregressive", "likelihood": "gaussian",
                "weight_decay": 0.01, "start": "1959-01-01", "last_points_only": True, "max_steps": 1500},
    "co2": {"horizon": 52, "input_len": 104, "start": "1990-01-01", "stride": 13, "max_steps": 1500},
    "sunspots": {"horizon": 11, "input_len": 33, "season_length": 11, "start": "1950-01-01", "max_steps": 500},
}

ORDER = 30  # place in --help


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", nargs="?", help="CSV or Parquet file (default: the built-in --dataset)")
    g.add_argument("--dataset", choices=["airline", "co2", "sunspots"],
                   help="built-in real series when no file is given (default airline)")
    g.add_argument("--target", help="target column(s), comma-separated (default: every numeric column)")
    g.add_argument("--time-col", help="time column (default: guessed: timestamp, date, time, ...)")
    g.add_argument("--series-id", help="column naming the series, for several series in one file")
    g.add_argument("--freq", help="pandas frequency (D, h, 5min, W, MS, ...) when it cannot be inferred")
    g.add_argument("--fill", choices=["fail", "ffill", "interpolate"],
                   help="gap policy for missing timestamps and NaNs (default fail)")
    g.add_argument("--past-covariates", help="columns observed up to now only, comma-separated")
    g.add_argument("--future-covariates", help="columns known ahead (their future values go in --future)")


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--horizon", type=int, help="steps to forecast (default: the dataset's, else required)")
    g.add_argument("--input-len", type=positive_int, help="input window (default: 2 seasons or 2 horizons)")
    g.add_argument("--mode", choices=["direct", "autoregressive"], help="default direct")
    g.add_argument("--cell", choices=cell_names(), help="default lstm (gru for the built-in airline)")
    g.add_argument("--hidden", type=positive_int, help="hidden units (default 64)")
    g.add_argument("--layers", type=positive_int, help="stacked layers (default 1)")
    g.add_argument("--dropout", type=fraction, help="default 0")
    add_config_options(g, LayerRegularisation, LAYER_REGULARISATION)
    g.add_argument("--likelihood", choices=["quantile", "gaussian", "mse"], help="default quantile")
    g.add_argument("--interval", type=fraction, help="prediction interval coverage (default 0.9)")
    g.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                   help="model log(values) (multiplicative seasonality)")
    g.add_argument("--calendar", action=argparse.BooleanOptionalAction, default=None,
                   help="calendar features as known-ahead covariates (default on)")
    g.add_argument("--val-size", type=int, help="last steps of each series held out to pick the best checkpoint")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=positive_int, help="default 32")
    add_config_options(g, TrainConfig, TRAIN_OPTIONS, defaults={"max_time": "60 s or 3000 steps", "precision": "fp32"})


def register(sub) -> None:
    fc = sub.add_parser("forecast", help="forecast time series (fit, predict, backtest)",
                        description="Forecast time series with a recurrent network.")
    fsub = fc.add_subparsers(dest="forecast_command", required=True, parser_class=type(fc))

    fit = fsub.add_parser("fit", help="train a forecaster and save it in a run folder",
                          description="Train a forecaster. With no file, on the built-in --dataset.")
    _data_options(fit)
    _model_options(fit)
    fit.add_argument("--out", help="run folder (default runs/forecast-<name>)")
    fit.add_argument("--resume", metavar="RUN", help="continue an interrupted fit in its run folder (only the budget "
                     "and device may change)")
    fit.set_defaults(handler=cmd_fit, parser=fit)

    pr = fsub.add_parser("predict", help="forecast the steps after the data with a fitted run",
                         description="Forecast with a fitted run: from the end of its training data, or of --data.")
    pr.add_argument("run", help="run folder from `rnnkit forecast fit`")
    pr.add_argument("--horizon", type=int, help="steps (default: the model's)")
    pr.add_argument("--data", help="new history to forecast from (same columns as the training data)")
    pr.add_argument("--future", help="file with the known-ahead covariates of the forecast steps")
    pr.add_argument("--output", type=output_file, help="write the forecast CSV here (default: stdout)")
    pr.set_defaults(handler=cmd_predict)

    bt = fsub.add_parser("backtest", help="rolling-origin historical forecasts against baselines",
                         description="Fit on the data before --start, forecast from every origin after it, and "
                         "compare with naive, seasonal naive and exponential smoothing forecasts.")
    _data_options(bt)
    _model_options(bt)
    bt.add_argument("--start", help="first forecast time: a date, a row number or a fraction (default 0.8)")
    bt.add_argument("--stride", type=positive_int, help="steps between origins (default 1)")
    bt.add_argument("--last-points-only", action=argparse.BooleanOptionalAction, default=None,
                    help="score only the horizon-th step of each forecast (Darts' default)")
    bt.add_argument("--season-length", type=positive_int, help="seasonal period for the baselines and MASE")
    bt.add_argument("--output", type=output_file, help="write every forecast (model and baselines) to this CSV")
    bt.add_argument("--plot", type=png_file, help="save a plot of history, forecasts and intervals (PNG)")
    bt.add_argument("--out", help="run folder for the fitted model (default: a temporary one)")
    bt.set_defaults(handler=cmd_backtest)

    d = sub.add_parser("detect", help="find anomalies in a time series",
                       description="Score every timestamp of a series for anomalies (causally), flag anomaly "
                       "windows, write a CSV and optionally a plot. The detector trains on the first "
                       "--train-fraction of the file.")
    d.add_argument("data", help="CSV or Parquet file")
    d.add_argument("--value", help="value column (default: the only numeric column)")
    d.add_argument("--time-col", help="time column (default: guessed)")
    d.add_argument("--fill", choices=["fail", "ffill", "interpolate"], default="interpolate",
                   help="policy for NaN values (default interpolate)")
    d.add_argument("--method", choices=["prediction", "reconstruction"], default="prediction",
                   help="forecast residuals (Telemanom) or LSTM-autoencoder reconstruction error")
    d.add_argument("--train-fraction", type=fraction, default=0.15,
                   help="leading share of the data to train on (default 0.15, NAB's probationary period)")
    d.add_argument("--window", type=positive_int, default=32)
    d.add_argument("--hidden", type=positive_int, default=32)
    d.add_argument("--z", type=positive_float, help="fixed threshold in standard deviations (default: dynamic)")
    d.add_argument("--output", type=output_file,
                   help="write time, value, score, anomaly per row to this CSV (default: stdout)")
    d.add_argument("--plot", type=png_file, help="save a plot of the series, scores and flags (PNG)")
    add_config_options(d.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                       defaults={"max_time": "30 s or 300 steps", "lr": 3e-3, "warmup_steps": 20, "precision": "fp32"})
    d.set_defaults(handler=cmd_detect)


MODEL_KEYS = ["input_len", "mode", "cell", "hidden", "layers", "dropout", *LAYER_REGULARISATION, "likelihood",
              "interval", "log", "calendar", "val_size", "batch_size"]
TRAIN_KEYS = list(TRAIN_OPTIONS)


def _resolve(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
    """The data, the loading options, the preset for a built-in dataset, and a name for the run."""
    from ..data import timeseries as ts

    if args.data and args.dataset:
        raise RnnkitError("give a data file or --dataset, not both")
    preset: dict[str, Any] = {}
    if args.data:
        if not Path(args.data).is_file():
            raise RnnkitError(f"no such file: {args.data}")
        data, load, name = args.data, {}, Path(args.data).stem
    else:
        name = args.dataset or "airline"
        data, load = ts.builtin_dataset(name)
        preset = PRESETS[name]
    for key in ("target", "time_col", "series_id", "freq", "fill"):
        if getattr(args, key) is not None:
            load[key] = getattr(args, key)
    if args.target:
        load["target"] = _columns(args.target)
    load["past_covariates"] = _columns(args.past_covariates)
    load["future_covariates"] = _columns(args.future_covariates)
    return data, load, preset, name


def _forecaster(args: argparse.Namespace, preset: dict[str, Any], out: str | None):
    from ..tasks.forecast import Forecaster

    opts = {k: getattr(args, k) for k in MODEL_KEYS + TRAIN_KEYS if getattr(args, k, None) is not None}
    budget_given = any(k in opts for k in ("max_time", "max_steps", "epochs"))
    for k, v in preset.items():
        if k in MODEL_KEYS + TRAIN_KEYS and k not in opts and not (budget_given and k in ("max_steps",)):
            opts[k] = v
    return Forecaster(out=out, progress=None, **opts)


def _horizon(args: argparse.Namespace, preset: dict[str, Any]) -> int:
    h = args.horizon if args.horizon is not None else preset.get("horizon")
    if h is None:
        raise RnnkitError("give the forecast horizon with --horizon N")
    if h <= 0:
        raise RnnkitError(f"--horizon must be a positive number of steps, got {h}")
    return h


def cmd_fit(args: argparse.Namespace) -> None:
    if args.resume:
        from ..tasks.forecast import Forecaster

        if args.out or args.data:
            raise RnnkitError("--resume continues a run from its own folder: give no data file and no --out")
        f = Forecaster.resume(args.resume, progress=None, **resume_options(args))
        print(f"run folder: {args.resume}  steps {f.result.steps}  train time {f.result.train_time:.0f}s")
        print(f"forecast: rnnkit forecast predict {args.resume}")
        return
    data, load, preset, name = _resolve(args)
    horizon = _horizon(args, preset)
    out = args.out or str(Path("runs") / f"forecast-{name}")
    f = _forecaster(args, preset, out)
    season = preset.get("season_length")
    f.fit(data, load.pop("target", None), horizon, season_length=season, **load)
    f.save(out)
    r = f.result
    print(f"run folder: {out}  steps {r.steps}  train time {r.train_time:.0f}s  "
          f"{len(f.data)} series, horizon {horizon}, input window {f.input_len}")
    print(f"forecast: rnnkit forecast predict {out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from ..tasks.forecast import Forecaster

    f = Forecaster.load(args.run)
    if args.horizon is not None and args.horizon <= 0:
        raise RnnkitError(f"--horizon must be a positive number of steps, got {args.horizon}")
    df = f.predict(args.horizon, data=args.data, future=args.future)
    _write_csv(df, args.output)


def cmd_backtest(args: argparse.Namespace) -> None:
    from ..tasks.forecast import parse_start

    data, load, preset, name = _resolve(args)
    horizon = _horizon(args, preset)
    f = _forecaster(args, preset, args.out)
    start = parse_start(args.start) if args.start else preset.get("start", 0.8)
    last_only = args.last_points_only if args.last_points_only is not None else preset.get("last_points_only", False)
    result = f.backtest(data, start=start, horizon=horizon, stride=args.stride or preset.get("stride", 1),
                        last_points_only=last_only,
                        season_length=args.season_length or preset.get("season_length"), **load)
    origins = result.forecasts["origin"]
    scope = f"step {horizon} of each forecast" if last_only else f"all {horizon} steps of each forecast"
    print(f"{name}: {origins.nunique()} origins from {origins.min():%Y-%m-%d} to {origins.max():%Y-%m-%d}, "
          f"horizon {horizon}, scored on {scope}; model trained {f.result.steps} steps "
          f"({f.result.train_time:.0f}s), seed {f.train_config.seed}")
    print(result.metrics.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.output:
        _write_csv(result.forecasts, args.output)
    if args.plot:
        result.plot(args.plot, title=f"{name}: {horizon}-step historical forecasts")
        print(f"plot: {args.plot}")


def cmd_detect(args: argparse.Namespace) -> None:
    from ..data import timeseries as ts
    from ..tasks.anomaly import Detector

    series = ts.load_series(args.data, args.value, time_col=args.time_col, fill=args.fill, regular=False)
    if len(series.target_cols) != 1:
        raise RnnkitError(f"the file has several value columns ({', '.join(series.target_cols)}); "
                          "choose one with --value")
    import pandas as pd

    df = pd.DataFrame({series.time_col: series.index[0], series.target_cols[0]: series.target[0][:, 0]})
    n_train = int(len(df) * args.train_fraction)
    det = Detector(method=args.method, window=args.window, hidden=args.hidden, z=args.z, **given(args))
    if n_train < args.window + 2:
        raise RnnkitError(f"--train-fraction {args.train_fraction} gives {n_train} rows, fewer than --window "
                          f"({args.window}) + 2; use a larger fraction or a smaller window")
    det.fit(df.iloc[:n_train])
    scores = det.score(df)
    windows = det.detect(scores=scores)
    cols = [series.time_col, series.target_cols[0], "score", "anomaly"]
    _write_csv(scores[cols], args.output)
    where = sys.stderr if not args.output else sys.stdout
    print(f"{len(windows)} anomaly window(s) in {len(df)} rows (trained on the first {n_train}):", file=where)
    for _, w in windows.iterrows():
        print(f"  {w['start']} to {w['end']}  peak score {w['peak_score']:.3f}", file=where)
    if args.plot:
        det.plot(scores, args.plot, title=Path(args.data).name)
        print(f"plot: {args.plot}", file=where)


def _write_csv(df, path: str | None) -> None:
    if path:
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
        print(f"wrote {path} ({len(df)} rows)")
    else:
        df.to_csv(sys.stdout, index=False)
