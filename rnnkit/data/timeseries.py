"""Time series plumbing shared by forecasting and anomaly detection.

Everything here is model-free: reading and validating a table of timestamped values
(:func:`load_series`), the gap policy, calendar features that are known into the future,
per-series scaling, sliding windows, forecast-accuracy metrics and the classical baselines
(naive, seasonal naive, exponential smoothing) that every neural forecast is compared with.

Validation is strict on purpose: a forecast silently trained on shuffled, duplicated or
irregular timestamps is wrong without any sign of it, so each such problem is an
:class:`~rnnkit.errors.RnnkitError` with one line saying what is wrong and how to fix it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RnnkitError

FILL_POLICIES = ("fail", "ffill", "interpolate")
TIME_NAMES = ("timestamp", "time", "date", "datetime", "ds", "month", "week", "year", "period")


# --- built-in data ---------------------------------------------------------------------------

# Monthly international airline passengers (thousands), January 1949 to December 1960:
# Box, G. E. P. and Jenkins, G. M. (1976), Time Series Analysis, Forecasting and Control,
# series G (public domain; the same values are R's AirPassengers).
AIRLINE_PASSENGERS = (
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149,
    170, 170, 158, 133, 114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166,
    171, 180, 193, 181, 183, 218, 230, 242, 209, 191, 172, 194, 196, 196, 236, 235, 229, 243,
    264, 272, 237, 211, 180, 201, 204, 188, 235, 227, 234, 264, 302, 293, 259, 229, 203, 229,
    242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278, 284, 277, 317, 313, 318, 374,
    413, 405, 355, 306, 271, 306, 315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336,
    340, 318, 362, 348, 363, 435, 491, 505, 404, 359, 310, 337, 360, 342, 406, 396, 420, 472,
    548, 559, 463, 407, 362, 405, 417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432,
)

DATASETS = ("airline", "co2", "sunspots")


def builtin_dataset(name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A real series that needs no download, and the options to read it.

    ``airline`` is embedded above; ``co2`` (weekly Mauna Loa CO2, 1958-2001, with gaps) and
    ``sunspots`` (yearly Wolf numbers, 1700-2008) ship with statsmodels, a dependency.
    Returns the frame and the keyword arguments for :func:`load_series` (target, fill).
    """
    if name == "airline":
        idx = pd.date_range("1949-01-01", periods=len(AIRLINE_PASSENGERS), freq="MS")
        df = pd.DataFrame({"month": idx, "passengers": np.asarray(AIRLINE_PASSENGERS, float)})
        return df, {"target": "passengers", "time_col": "month"}
    if name == "co2":
        from statsmodels.datasets import co2

        data = co2.load_pandas().data
        df = pd.DataFrame({"week": data.index, "co2": data["co2"].to_numpy()})
        return df, {"target": "co2", "time_col": "week", "fill": "interpolate"}
    if name == "sunspots":
        from statsmodels.datasets import sunspots

        data = sunspots.load_pandas().data
        years = data["YEAR"].astype(int)
        df = pd.DataFrame({"year": pd.to_datetime(years.astype(str) + "-01-01"),
                           "sunspots": data["SUNACTIVITY"].to_numpy(float)})
        return df, {"target": "sunspots", "time_col": "year"}
    raise RnnkitError(f"unknown built-in dataset {name!r}; choose one of {', '.join(DATASETS)}")


# --- reading and validating ------------------------------------------------------------------

def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (any delimiter pandas sniffs as ``,``) or Parquet file into a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"no such file: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                return pd.read_parquet(path)
            except ImportError:
                raise RnnkitError("reading Parquet needs pyarrow or fastparquet: pip install pyarrow") from None
        return pd.read_csv(path)
    except RnnkitError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnkitError(f"cannot read {path}: {first[:160]}") from None


@dataclass
class SeriesSet:
    """One or more validated series on a regular time grid (or in plain order if irregular).

    Arrays are float64, one row per timestamp: ``target`` (T, n_targets), ``past`` (T, n_past)
    for covariates observed only up to now, ``future`` (T, n_future) for covariates known
    ahead (calendar features are not stored; they are made from ``index`` when needed).
    """

    ids: list[Any]
    index: list[pd.DatetimeIndex]
    target: list[np.ndarray]
    past: list[np.ndarray]
    future: list[np.ndarray]
    freq: str | None
    target_cols: list[str]
    past_cols: list[str] = field(default_factory=list)
    future_cols: list[str] = field(default_factory=list)
    time_col: str = "timestamp"
    series_col: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def shortest(self) -> int:
        return min(len(t) for t in self.target)


def _as_list(cols: str | Sequence[str] | None) -> list[str]:
    if cols is None:
        return []
    return [cols] if isinstance(cols, str) else list(cols)


def _guess_time_col(df: pd.DataFrame) -> str:
    for c in df.columns:
        if str(c).lower() in TIME_NAMES:
            return c
    for c in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[c]):
            return c
    first = df.columns[0]
    if df[first].dtype == object:
        return first
    raise RnnkitError("cannot tell which column holds the timestamps; name it with time_col= (--time-col)")


def _parse_times(values: pd.Series, col: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(values):
        times = pd.DatetimeIndex(values)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times = pd.DatetimeIndex(pd.to_datetime(values, errors="coerce", format="mixed"))
        bad = np.flatnonzero(times.isna() & values.notna().to_numpy())
        if len(bad) or times.isna().any():
            where = bad[0] if len(bad) else int(np.flatnonzero(times.isna())[0])
            raise RnnkitError(f"unparsable timestamp {values.iloc[where]!r} in column {col!r} "
                              f"(row {where + 1}); use ISO dates such as 2024-01-31 or 2024-01-31 12:00")
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    return times


def season_length(freq: str | None) -> int:
    """The natural seasonal period of a frequency: 12 for monthly, 7 for daily, 24 hourly, ..."""
    if not freq:
        return 1
    off = pd.tseries.frequencies.to_offset(freq)
    name = off.rule_code.split("-")[0].upper()
    n = max(1, off.n)
    if name in ("M", "MS", "ME", "SM", "SMS", "BM", "BMS", "BME", "CBM", "CBMS"):
        return max(1, 12 // n)
    if name in ("Q", "QS", "QE", "BQ", "BQS", "BQE"):
        return max(1, 4 // n)
    if name == "W":
        return max(1, 52 // n)
    if name in ("B", "C"):
        return 5
    try:
        step = pd.Timedelta(off)
    except (ValueError, TypeError):
        return 1
    day = pd.Timedelta(days=1)
    if step < day and day % step == pd.Timedelta(0):
        return int(day / step)           # a day of sub-daily steps
    if step == day:
        return 7
    return 1


def _suggest_freq(times: pd.DatetimeIndex) -> str:
    diffs = pd.Series(times[1:] - times[:-1])
    common = diffs.mode().iloc[0] if len(diffs) else pd.Timedelta(days=1)
    try:
        return pd.tseries.frequencies.to_offset(common).freqstr
    except ValueError:
        return "D"


def _infer_freq(times: pd.DatetimeIndex) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 moves from a string to an offset; accept either
        f = pd.infer_freq(times)
    return None if f is None else pd.tseries.frequencies.to_offset(f).freqstr


def _apply_fill(values: pd.DataFrame, fill: str, what: str, times: pd.DatetimeIndex) -> pd.DataFrame:
    if not values.isna().to_numpy().any():
        return values
    if fill == "fail":
        col = values.columns[values.isna().any()].tolist()[0]
        n = int(values[col].isna().sum())
        first = times[np.flatnonzero(values[col].isna().to_numpy())[0]]
        raise RnnkitError(f"{n} missing value(s) in {what}column {col!r} (first at {first}); choose a gap "
                          "policy: fill='ffill' or 'interpolate' (--fill ffill|interpolate)")
    if fill == "ffill":
        return values.ffill().bfill()
    return values.interpolate(method="linear", limit_direction="both")


def load_series(data: pd.DataFrame | str | Path, target: str | Sequence[str] | None = None, *,
                time_col: str | None = None, series_id: str | None = None, freq: str | None = None,
                fill: str = "fail", past_covariates: str | Sequence[str] | None = None,
                future_covariates: str | Sequence[str] | None = None,
                regular: bool = True) -> SeriesSet:
    """Validate a table of timestamped values and cut it into series on a regular grid.

    ``data`` is a DataFrame or a CSV/Parquet path with a time column (``time_col``, guessed
    from common names when not given), one or more ``target`` columns (default: every other
    numeric column) and, with ``series_id``, several series stacked in long format.

    The grid: timestamps must be parseable, unique within a series, and regularly spaced. The
    spacing is inferred; if it cannot be (irregular spacing or missing timestamps), give
    ``freq`` (a pandas alias such as ``"D"``, ``"h"``, ``"5min"``, ``"MS"``): timestamps are then
    placed on that grid and the missing ones become gaps. ``regular=False`` skips the grid
    (anomaly detection works on the sequence as it comes).

    Gaps (missing timestamps or NaN values) follow ``fill``: ``"fail"`` (the default: refuse,
    naming the first gap), ``"ffill"`` (carry the last value forward, the first one back) or
    ``"interpolate"`` (linear in position; ends take the nearest value).
    """
    if fill not in FILL_POLICIES:
        raise RnnkitError(f"fill must be one of {', '.join(FILL_POLICIES)}, not {fill!r}")
    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    if len(df) == 0:
        raise RnnkitError("the data has no rows")
    time_col = time_col or _guess_time_col(df)
    past_cols, future_cols = _as_list(past_covariates), _as_list(future_covariates)
    for col in [time_col, series_id] if series_id else [time_col]:
        if col not in df.columns:
            raise RnnkitError(f"no column {col!r}; the columns are {', '.join(map(str, df.columns))}")
    if target is None:
        skip = {time_col, series_id, *past_cols, *future_cols}
        target_cols = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
        if not target_cols:
            raise RnnkitError("no numeric column to use as the target; name it with target= (--target)")
    else:
        target_cols = _as_list(target)
        if not target_cols:
            raise RnnkitError("no target column given: name one with target= (--target)")
    roles = target_cols + past_cols + future_cols
    twice = sorted({c for c in roles if roles.count(c) > 1})
    if twice:  # a target among its own covariates would hand the model the answer
        raise RnnkitError(f"column {twice[0]!r} is given twice (as a target or covariate); each column has one role")
    for col in roles:
        what = "target" if col in target_cols else "covariate"
        if col not in df.columns:
            raise RnnkitError(f"no {what} column {col!r}; the columns are {', '.join(map(str, df.columns))}")
        if not pd.api.types.is_numeric_dtype(df[col]):
            converted = pd.to_numeric(df[col], errors="coerce")
            bad = converted.isna() & df[col].notna()
            if bad.any():
                raise RnnkitError(f"{what} column {col!r} is not numeric (row {int(np.flatnonzero(bad)[0]) + 1}: "
                                  f"{df[col][bad].iloc[0]!r})")
            df = df.assign(**{col: converted})
    times = _parse_times(df[time_col], time_col)
    df = df.assign(**{time_col: times})
    groups = [(None, df)] if series_id is None else list(df.groupby(series_id, sort=True))
    out = SeriesSet([], [], [], [], [], None, target_cols, past_cols, future_cols, time_col, series_id)
    freqs = []
    for sid, g in groups:
        g = g.sort_values(time_col, kind="stable")
        t = pd.DatetimeIndex(g[time_col])
        label = f" in series {sid!r}" if series_id else ""
        dup = t.duplicated()
        if dup.any():
            raise RnnkitError(f"duplicate timestamp {t[dup][0]}{label}; each timestamp must appear once "
                              "per series (aggregate the rows first)")
        values = g[target_cols + past_cols + future_cols].astype(float).reset_index(drop=True)
        if regular:
            if len(t) < 3 and freq is None:
                raise RnnkitError(f"series{label} has {len(t)} timestamp(s); too short to infer a frequency")
            f = freq or _infer_freq(t)
            if f is None:
                raise RnnkitError(f"timestamps{label} are irregularly spaced or have gaps, so no frequency can be "
                                  f"inferred; give it with freq= (--freq), e.g. --freq {_suggest_freq(t)}, "
                                  "and a gap policy with --fill")
            try:
                grid = pd.date_range(t[0], t[-1], freq=f)
            except ValueError as e:
                raise RnnkitError(f"bad frequency {f!r}: {str(e).splitlines()[0]}") from None
            if not t.isin(grid).all():
                raise RnnkitError(f"timestamp {t[~t.isin(grid)][0]}{label} is off the {f!r} grid starting "
                                  f"{t[0]}; give the right --freq")
            values.index = t
            values = values.reindex(grid).reset_index(drop=True)
            t = grid
            freqs.append(pd.tseries.frequencies.to_offset(f).freqstr)
        values = _apply_fill(values, fill, "target " if values[target_cols].isna().any().any() else "", t)
        arr = values.to_numpy(np.float64)
        if not np.isfinite(arr).all():
            raise RnnkitError(f"non-finite value (inf){label}; clean the data first")
        k, p = len(target_cols), len(past_cols)
        out.ids.append(sid)
        out.index.append(t)
        out.target.append(arr[:, :k])
        out.past.append(arr[:, k:k + p])
        out.future.append(arr[:, k + p:])
    if freqs:
        if len(set(freqs)) > 1:
            raise RnnkitError(f"the series have different frequencies ({', '.join(sorted(set(freqs)))}); "
                              "give one with --freq")
        out.freq = freqs[0]
    return out


# --- calendar features -----------------------------------------------------------------------

def calendar_features(index: pd.DatetimeIndex, freq: str | None) -> np.ndarray:
    """Sine/cosine encodings of the calendar cycles a frequency can show (known for any future date).

    Sub-daily data gets hour-of-day and day-of-week; daily data day-of-week and day-of-year;
    weekly day-of-year; monthly month-of-year; quarterly quarter. Yearly data gets none.
    Shape (len(index), n_features), n_features fixed by ``freq``.
    """
    cycles = calendar_cycles(freq)
    cols = []
    for name in cycles:
        if name == "hour":
            phase, period = index.hour + index.minute / 60, 24
        elif name == "dow":
            phase, period = index.day_of_week, 7
        elif name == "doy":
            phase, period = index.day_of_year - 1, 365.25
        elif name == "month":
            phase, period = index.month - 1, 12
        else:  # quarter
            phase, period = index.quarter - 1, 4
        angle = 2 * math.pi * np.asarray(phase, dtype=np.float64) / period
        cols += [np.sin(angle), np.cos(angle)]
    if not cols:
        return np.zeros((len(index), 0))
    return np.stack(cols, axis=1)


def calendar_cycles(freq: str | None) -> list[str]:
    if not freq:
        return []
    off = pd.tseries.frequencies.to_offset(freq)
    name = off.rule_code.split("-")[0].upper()
    if name in ("M", "MS", "ME", "SM", "SMS", "BM", "BMS", "BME"):
        return ["month"]
    if name in ("Q", "QS", "QE", "BQ", "BQS", "BQE"):
        return ["quarter"]
    if name == "W":
        return ["doy"]
    if name in ("Y", "YS", "YE", "A", "AS", "BA", "BY"):
        return []
    try:
        step = pd.Timedelta(off)
    except (ValueError, TypeError):
        return []
    if step < pd.Timedelta(days=1):
        return ["hour", "dow"]
    if step < pd.Timedelta(days=7):
        return ["dow", "doy"]
    return ["doy"] if step < pd.Timedelta(days=300) else []


def future_index(last: pd.Timestamp, freq: str, steps: int) -> pd.DatetimeIndex:
    """The ``steps`` timestamps after ``last`` on the grid of ``freq``."""
    return pd.date_range(last, periods=steps + 1, freq=freq)[1:]


# --- scaling ---------------------------------------------------------------------------------

@dataclass
class Scaler:
    """Standardisation per column, optionally after a log: fitted on one series, undone on output.

    Each series gets its own scaler so that series of very different levels train together.
    """

    mean: np.ndarray
    std: np.ndarray
    log: bool = False

    @classmethod
    def fit(cls, values: np.ndarray, log: bool = False) -> Scaler:
        if log:
            if (values <= 0).any():
                raise RnnkitError("log=True (--log) needs strictly positive target values")
            values = np.log(values)
        std = values.std(axis=0)
        scale = np.maximum(std, 1e-8 * np.maximum(1.0, np.abs(values).max(axis=0)))
        scale = np.where(scale > 0, scale, 1.0)
        return cls(values.mean(axis=0), scale, log)

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.log:
            values = np.log(np.maximum(values, 1e-12))
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        out = values * self.std + self.mean
        return np.exp(out) if self.log else out

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "log": self.log}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        return cls(np.asarray(d["mean"], float), np.asarray(d["std"], float), bool(d["log"]))


def sliding_windows(values: np.ndarray, length: int) -> np.ndarray:
    """All windows of ``length`` consecutive rows: (T - length + 1, length, ...), a view."""
    return np.lib.stride_tricks.sliding_window_view(values, length, axis=0).swapaxes(1, -1) \
        if values.ndim == 2 else np.lib.stride_tricks.sliding_window_view(values, length)


# --- metrics ---------------------------------------------------------------------------------

def mae(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - pred)))


def rmse(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - pred) ** 2)))


def mape(actual: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute percentage error in percent; NaN if an actual value is 0 (it is undefined)."""
    if (actual == 0).any():
        return float("nan")
    return float(100 * np.mean(np.abs((actual - pred) / actual)))


def smape(actual: np.ndarray, pred: np.ndarray) -> float:
    """Symmetric MAPE in percent (0 to 200), as in the M4 competition; 0/0 counts as 0."""
    denom = np.abs(actual) + np.abs(pred)
    ratio = np.divide(2 * np.abs(actual - pred), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(100 * np.mean(ratio))


def mase(actual: np.ndarray, pred: np.ndarray, insample: np.ndarray, m: int = 1) -> float:
    """Mean absolute scaled error: MAE over the in-sample MAE of the seasonal naive forecast (lag ``m``).

    Below 1: better than the seasonal naive method was on the history (Hyndman and Koehler 2006).
    """
    insample = np.asarray(insample, float)
    m = m if len(insample) > m else 1
    scale = np.mean(np.abs(insample[m:] - insample[:-m])) if len(insample) > m else float("nan")
    if not scale > 0:
        return float("nan")
    return float(np.mean(np.abs(actual - pred)) / scale)


METRICS = ("MAE", "RMSE", "MAPE", "sMAPE", "MASE")


def all_metrics(actual: np.ndarray, pred: np.ndarray, insample: np.ndarray, m: int) -> dict[str, float]:
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    return {"MAE": mae(actual, pred), "RMSE": rmse(actual, pred), "MAPE": mape(actual, pred),
            "sMAPE": smape(actual, pred), "MASE": mase(actual, pred, insample, m)}


# --- baselines -------------------------------------------------------------------------------

def naive_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last value, repeated: the forecast to beat for a random walk."""
    return np.repeat(history[-1:], horizon, axis=0)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """The value one season before each forecast step (plain naive when ``m`` is 1 or too long)."""
    if m <= 1 or len(history) < m:
        return naive_forecast(history, horizon)
    idx = len(history) - m + (np.arange(horizon) % m)
    return history[idx]


def exp_smoothing_forecast(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Holt-Winters exponential smoothing (statsmodels), Darts' default configuration.

    Additive trend, and additive seasonality of period ``m`` when there are two full seasons;
    fitted by maximum likelihood on ``history``. Falls back to the naive forecast if the fit fails.
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    history = np.asarray(history, float)
    out = []
    for col in range(history.shape[1] if history.ndim == 2 else 1):
        y = history[:, col] if history.ndim == 2 else history
        seasonal = "add" if m > 1 and len(y) >= 2 * m else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ExponentialSmoothing(y, trend="add" if len(y) >= 4 else None, seasonal=seasonal,
                                           seasonal_periods=m if seasonal else None).fit()
                f = np.asarray(fit.forecast(horizon), float)
            if not np.isfinite(f).all():
                raise ValueError("non-finite forecast")
        except (ValueError, np.linalg.LinAlgError):
            f = np.repeat(y[-1], horizon)
        out.append(f)
    result = np.stack(out, axis=1)
    return result if history.ndim == 2 else result[:, 0]


BASELINES = ("naive", "seasonal_naive", "exp_smoothing")


def baseline_forecast(name: str, history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    if name == "naive":
        return naive_forecast(history, horizon)
    if name == "seasonal_naive":
        return seasonal_naive_forecast(history, horizon, m)
    if name == "exp_smoothing":
        return exp_smoothing_forecast(history, horizon, m)
    raise RnnkitError(f"unknown baseline {name!r}")


__all__ = ["SeriesSet", "Scaler", "load_series", "read_table", "builtin_dataset", "calendar_features",
           "season_length", "future_index", "sliding_windows", "mae", "rmse", "mape", "smape", "mase",
           "all_metrics", "naive_forecast", "seasonal_naive_forecast", "exp_smoothing_forecast",
           "baseline_forecast", "BASELINES", "METRICS", "DATASETS", "FILL_POLICIES"]
