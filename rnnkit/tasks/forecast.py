"""Forecasting with recurrent networks: :class:`Forecaster`, its network, and its training task.

The network reads an input window of ``input_len`` steps (scaled targets, past-observed
covariates, and covariates known ahead: calendar features and the user's own) with an LSTM,
GRU or RNN encoder, then either

- ``mode="direct"``: one head emits all ``horizon`` steps at once from the final hidden state
  and the known-ahead covariates of the horizon (no error feedback; the usual winner for short
  horizons), or
- ``mode="autoregressive"``: a one-step head, trained with teacher forcing on every step of the
  window, fed back its own forecasts to reach any horizon (Gaussian likelihood: sampled paths,
  so intervals widen with the horizon as they should).

Outputs are a point forecast plus a prediction interval: ``likelihood="quantile"`` (pinball loss
on the interval's two quantiles and the median), ``"gaussian"`` (negative log-likelihood of a
mean and a standard deviation) or ``"mse"`` (point only). Every series is standardised on its
own (optionally after a log), and each window is also re-centred on its own mean
(``window_norm``), so levels never seen in training (a trend) are still in range; both are
undone on output.

Training runs on the shared :class:`rnnkit.training.trainer.Trainer` through :class:`ForecastTask`, so
budgets, schedule, clipping, the metrics log, the loss plot and checkpoints are the same as for
every rnnkit task.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .. import __version__
from ..data import timeseries as ts
from ..data.batching import shard
from ..errors import RnnkitError, is_whole
from ..hardware import torch_threads
from ..io import load_tensors, save_tensors, write_json
from ..nn.cells import CELLS
from ..nn.dropout import Dropout
from ..nn.layers import make_layer
from ..nn.regularisation import LayerRegularisation
from ..plotting import new_figure, save_figure
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.config import TrainConfig
from ..training.fit import fit, prepare_run_folder, removes_failed_start
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult, checkpoint_meta

MODES = ("direct", "autoregressive")
LIKELIHOODS = ("quantile", "gaussian", "mse")


@dataclass
class NetConfig(LayerRegularisation):
    """The shape of a forecasting network (everything needed to rebuild it from a checkpoint), and
    the recurrent layer's regularisers (:class:`rnnkit.nn.regularisation.LayerRegularisation`)."""

    n_targets: int = 1
    n_past: int = 0
    n_future: int = 0
    input_len: int = 24
    horizon: int = 1
    mode: str = "direct"
    cell: str = "lstm"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    likelihood: str = "quantile"
    interval: float = 0.9

    @property
    def n_params(self) -> int:
        return {"mse": 1, "gaussian": 2, "quantile": 3}[self.likelihood]

    @property
    def quantiles(self) -> list[float]:
        lo = (1 - self.interval) / 2
        return [lo, 0.5, 1 - lo]


class ForecastNet(nn.Module):
    """Recurrent encoder with a direct multi-horizon head or a one-step autoregressive head."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        in_size = cfg.n_targets + cfg.n_past + cfg.n_future
        self.rnn = make_layer(cfg.cell, in_size, cfg.hidden, cfg.layers, batch_first=True,
                              **cfg.layer_kwargs(cfg.dropout, cfg.layers))
        out = cfg.n_targets * cfg.n_params
        if cfg.mode == "direct":
            self.head = nn.Sequential(
                nn.Linear(cfg.hidden + cfg.horizon * cfg.n_future, cfg.hidden), nn.ReLU(),
                Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.horizon * out))
        else:
            self.head = nn.Linear(cfg.hidden, out)

    def forward(self, x: Tensor, future: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        """Direct: ``x`` (B, L, in), ``future`` (B, H, n_future) -> params (B, H, n_targets, n_params).

        Autoregressive: ``x`` (B, T, in) -> params for the step after each input (B, T, n_targets,
        n_params), and the recurrent state to continue from.
        """
        c = self.cfg
        out, state = self.rnn(x, state)
        if c.mode == "direct":
            z = out[:, -1]
            if c.n_future:
                z = torch.cat([z, future.flatten(1)], dim=1)
            return self.head(z).view(len(x), c.horizon, c.n_targets, c.n_params), state
        return self.head(out).view(*out.shape[:2], c.n_targets, c.n_params), state

    # --- the likelihood ------------------------------------------------------------------
    def loss(self, params: Tensor, y: Tensor) -> Tensor:
        c = self.cfg
        params = params.float()
        if c.likelihood == "mse":
            return ((params[..., 0] - y) ** 2).mean()
        if c.likelihood == "gaussian":
            mu, sigma = params[..., 0], nn.functional.softplus(params[..., 1]) + 1e-3
            return (torch.log(sigma) + 0.5 * ((y - mu) / sigma) ** 2).mean() + 0.5 * math.log(2 * math.pi)
        q = torch.tensor(c.quantiles, device=params.device)
        diff = y.unsqueeze(-1) - params
        return torch.maximum(q * diff, (q - 1) * diff).sum(-1).mean()

    def point_and_interval(self, params: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        c = self.cfg
        params = params.float()
        if c.likelihood == "mse":
            return params[..., 0], None, None
        if c.likelihood == "gaussian":
            mu, sigma = params[..., 0], nn.functional.softplus(params[..., 1]) + 1e-3
            z = _normal_quantile(0.5 + c.interval / 2)
            return mu, mu - z * sigma, mu + z * sigma
        ordered = torch.sort(params, dim=-1).values  # quantiles must not cross
        return ordered[..., 1], ordered[..., 0], ordered[..., 2]


def _normal_quantile(p: float) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p)))


# --- windows -------------------------------------------------------------------------------------

@dataclass
class Windows:
    """Training examples as tensors (direct: x, future, y; autoregressive: x, y over the whole window)."""

    x: Tensor
    future: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: Tensor | slice) -> Windows:
        return Windows(self.x[idx], self.future[idx], self.y[idx])

    def to(self, device: torch.device) -> Windows:
        return Windows(self.x.to(device), self.future.to(device), self.y.to(device))


def _features(z: np.ndarray, past: np.ndarray, fut: np.ndarray) -> np.ndarray:
    return np.concatenate([z, past, fut], axis=1)


def build_windows(z: np.ndarray, past: np.ndarray, fut: np.ndarray, cfg: NetConfig,
                  window_norm: bool) -> Windows:
    """Every (input, horizon) window of one scaled series, re-centred on the input's mean."""
    L, H, k = cfg.input_len, cfg.horizon, cfg.n_targets
    n = len(z) - L - H + 1
    if n <= 0:
        return Windows(torch.empty(0), torch.empty(0), torch.empty(0))
    starts = np.arange(n)
    if cfg.mode == "direct":
        feats = _features(z, past, fut)
        x = ts.sliding_windows(feats, L)[:n].copy()
        anchor = x[:, :, :k].mean(axis=1, keepdims=True) if window_norm else np.zeros((n, 1, k))
        x[:, :, :k] -= anchor
        fw = ts.sliding_windows(fut, H)[L:L + n] if cfg.n_future else np.zeros((n, H, 0))
        y = ts.sliding_windows(z, H)[L:L + n] - anchor
    else:
        seq = np.concatenate([z[:-1], fut[1:]], axis=1)          # input at t: y_t and covariates of t+1
        x = ts.sliding_windows(seq, L + H - 1)[starts].copy()
        anchor = x[:, :L, :k].mean(axis=1, keepdims=True) if window_norm else np.zeros((n, 1, k))
        x[:, :, :k] -= anchor
        y = ts.sliding_windows(z[1:], L + H - 1)[starts] - anchor
        fw = np.zeros((n, 0, 0))
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
    return Windows(as_t(x), as_t(fw), as_t(y))


def _cat_windows(parts: list[Windows]) -> Windows:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Windows(torch.empty(0), torch.empty(0), torch.empty(0))
    return Windows(torch.cat([p.x for p in parts]), torch.cat([p.future for p in parts]),
                   torch.cat([p.y for p in parts]))


WINDOWS = "windows.safetensors"  # the training (and validation) windows, so a run resumes from its folder alone


@register_task
class ForecastTask(Task):
    """Minibatches of forecast windows for :func:`rnnkit.training.fit.fit`.

    Each epoch visits every training window once in an order drawn from ``seed`` and the epoch
    number, so the batch at any step is known from the step alone: exact resume needs no state.
    Without validation windows the evaluation is the loss over the training windows, logged as
    ``fit_loss`` (not passed off as a validation loss), and the last weights are kept.
    ``description`` is what the run folder records to rebuild the task (the Forecaster's
    configuration); without it the task cannot be resumed (the detector's inner training).
    """

    name, command, unit = "forecast", "rnnkit forecast fit", "windows"
    decay_everything = True  # the built-in presets were tuned with weight decay on every parameter

    def __init__(self, model: nn.Module, train: Windows, val: Windows | None, batch_size: int,
                 seed: int, description: dict[str, Any] | None = None) -> None:
        self.model, self.seed, self.description = model, seed, description
        self.net = model  # the model itself: under data parallelism self.model is its wrapper while training
        self.train = train
        self.val = None if val is None or not len(val) else val
        self.metric = "val_loss" if self.val is not None else "fit_loss"
        self.select_best = self.val is not None
        self.batch_size = min(batch_size, len(train))
        self._order: tuple[int, Tensor] | None = None

    def to(self, device: torch.device) -> ForecastTask:
        super().to(device)
        self.train = self.train.to(device)
        self.val = self.val.to(device) if self.val is not None else None
        self._order = None
        return self

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.batch_size)

    def _permutation(self, epoch: int) -> Tensor:
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.train), generator=g).to(self.device))
        return self._order[1]

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        idx = self._permutation(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        idx = idx[shard(np.arange(len(idx)), self.rank, self.world)]
        batch = self.train.take(idx)
        params, _ = self.model(batch.x, batch.future)
        return self.net.loss(params, batch.y), len(idx)

    def evaluate(self) -> dict[str, float]:
        """Loss and MAE (in scaled units) on the validation windows, or on the training windows if none."""
        data, prefix = (self.val, "val") if self.val is not None else (self.train, "fit")
        total = mae = 0.0
        for start in range(0, len(data), 1024):
            b = data.take(slice(start, start + 1024))
            params, _ = self.model(b.x, b.future)
            total += self.model.loss(params, b.y).item() * len(b)
            point = self.model.point_and_interval(params)[0]
            mae += (point - b.y).abs().mean().item() * len(b)
        return {f"{prefix}_loss": total / len(data), f"{prefix}_mae_scaled": mae / len(data)}

    def save_windows(self, run_dir: Path) -> None:
        tensors = {f"train_{k}": v for k, v in asdict(self.train).items()}
        if self.val is not None:
            tensors.update({f"val_{k}": v for k, v in asdict(self.val).items()})
        save_tensors(run_dir / WINDOWS, tensors)

    def config(self) -> dict[str, Any]:
        if self.description is None:
            return super().config()
        return {**self.description, "windows": WINDOWS}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> ForecastTask:
        t, _ = load_tensors(run_dir / WINDOWS, "the run's training windows")
        train = Windows(t["train_x"], t["train_future"], t["train_y"])
        val = Windows(t["val_x"], t["val_future"], t["val_y"]) if "val_x" in t else None
        options = config["options"]
        return cls(ForecastNet(NetConfig(**config["model"])), train, val, options["batch_size"], options["seed"],
                   description={"task": cls.name, **{k: v for k, v in config.items() if k != "windows"}})


# --- the Forecaster ------------------------------------------------------------------------------

@dataclass
class _Spec:
    """How the data is read and fed to the network (saved with the model)."""

    target_cols: list[str]
    past_cols: list[str]
    future_cols: list[str]
    time_col: str
    series_col: str | None
    freq: str
    fill: str
    calendar: bool
    log: bool
    window_norm: bool
    season_length: int


@dataclass
class BacktestResult:
    """Historical forecasts of the model and the baselines, their accuracy, and a plot.

    ``forecasts``: one row per (series, target, origin, step) with the actual value, the model's
    point forecast and interval, and each baseline. ``metrics``: one row per method (the model
    first), columns MAE, RMSE, MAPE, sMAPE, MASE, averaged over series and targets.
    """

    forecasts: pd.DataFrame
    metrics: pd.DataFrame
    history: pd.DataFrame
    horizon: int
    last_points_only: bool

    def first_series(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The forecasts and the history of the first series and target (a single series has id None)."""
        first = self.forecasts.iloc[0]

        def match(df: pd.DataFrame) -> pd.Series:
            same = df["series"].isna() if pd.isna(first["series"]) else df["series"] == first["series"]
            return same & (df["target"] == first["target"])

        return self.forecasts[match(self.forecasts)], self.history[match(self.history)]

    def plot(self, path: str | Path, title: str = "") -> None:
        """History, the model's forecasts with their interval, and the baselines (first series, target)."""
        f, h = self.first_series()
        f = f[f["step"] == self.horizon]  # one line: the horizon-th step of every forecast
        fig, ax = new_figure(figsize=(9, 4.5), dpi=110)
        ax.plot(h["time"], h["actual"], color="black", lw=1.2, label="actual")
        if "model_lower" in f and f["model_lower"].notna().any():
            ax.fill_between(f["time"], f["model_lower"], f["model_upper"], color="tab:blue", alpha=0.2,
                            label="model interval")
        ax.plot(f["time"], f["model"], color="tab:blue", lw=1.5, label="model")
        for name, color in zip(ts.BASELINES, ("tab:gray", "tab:orange", "tab:green"), strict=True):
            ax.plot(f["time"], f[name], color=color, lw=1, ls="--", label=name)
        ax.set_title(title or f"{self.horizon}-step-ahead historical forecasts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.autofmt_xdate()
        save_figure(fig, path)

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


class Forecaster:
    """A recurrent forecaster with the fit/predict/backtest shape of Darts and sktime.

    >>> f = Forecaster(input_len=24, max_steps=500).fit(df, target="sales", horizon=6)
    >>> f.predict()            # next 6 steps per series: time, sales, sales_lower, sales_upper
    >>> f.backtest(df, start="2023-01-01").metrics

    ``mode``: ``"direct"`` or ``"autoregressive"``; ``likelihood``: ``"quantile"``, ``"gaussian"``
    or ``"mse"``; ``interval``: coverage of the prediction interval (default 0.9). ``log``: model
    log(values), for multiplicative seasonality. ``calendar``: add calendar features of the
    data's frequency as known-ahead covariates. Training options (``lr``, ``max_time``,
    ``max_steps``, ``epochs``, ``seed``, ...) are those of :class:`rnnkit.training.trainer.TrainConfig`;
    with no budget, 60 s or 3000 steps, whichever comes first. ``out``: run folder (metrics,
    loss plot, checkpoints); a temporary one if not given (use :meth:`save` to keep it).
    """

    def __init__(self, input_len: int | None = None, mode: str = "direct", cell: str = "lstm",
                 hidden: int = 64, layers: int = 1, dropout: float = 0.0, likelihood: str = "quantile",
                 interval: float = 0.9, log: bool = False, calendar: bool = True, window_norm: bool = True,
                 batch_size: int = 32, val_size: int = 0, out: str | Path | None = None,
                 progress: bool | None = False, num_threads: int | None = 1, weight_drop: float = 0.0,
                 variational_dropout: float = 0.0, **train_options: Any) -> None:
        if mode not in MODES:
            raise RnnkitError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if likelihood not in LIKELIHOODS:
            raise RnnkitError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, not {likelihood!r}")
        if cell not in CELLS:
            raise RnnkitError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
        if not 0 < interval < 1:
            raise RnnkitError(f"interval must be in (0, 1), got {interval}")
        for name, v, least in (("input_len", input_len, 1), ("hidden", hidden, 1), ("layers", layers, 1),
                               ("batch_size", batch_size, 1), ("val_size", val_size, 0)):
            if v is not None and (not is_whole(v) or v < least):
                raise RnnkitError(f"{name} must be a whole number >= {least}, got {v!r}")
        if not 0 <= dropout < 1:
            raise RnnkitError(f"dropout must be in [0, 1), got {dropout}")
        # numpy integers in, Python ints kept (sizes for torch, values for the run's JSON)
        hidden, layers, batch_size, val_size = (int(v) for v in (hidden, layers, batch_size, val_size))
        input_len = None if input_len is None else int(input_len)
        unknown = set(train_options) - TRAIN_FIELDS
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        self.regularisation = LayerRegularisation.checked(cell, weight_drop=weight_drop,
                                                          variational_dropout=variational_dropout)
        self.options = {"input_len": input_len, "mode": mode, "cell": cell, "hidden": hidden, "layers": layers,
                        "dropout": dropout, "likelihood": likelihood, "interval": interval}
        self.log, self.calendar, self.window_norm = log, calendar, window_norm
        self.batch_size, self.val_size, self.out, self.progress = batch_size, val_size, out, progress
        self.num_threads = num_threads
        self.train_config = TrainConfig(**{"precision": "fp32", "warmup_steps": 20,
                                           **{k: v for k, v in train_options.items() if v is not None}})
        if all(getattr(self.train_config, b) is None for b in ("max_time", "max_steps", "epochs")):
            self.train_config.max_time, self.train_config.max_steps = 60.0, 3000
        self.train_config.validate()
        self.net: ForecastNet | None = None
        self.spec: _Spec | None = None
        self.scalers: list[tuple[ts.Scaler, ts.Scaler]] = []
        self.data: ts.SeriesSet | None = None
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None
        self.ids: list[Any] = []

    # --- fitting ---------------------------------------------------------------------------
    @property
    def horizon(self) -> int:
        return self._require().cfg.horizon

    @property
    def input_len(self) -> int:
        return self._require().cfg.input_len

    def fit(self, data: pd.DataFrame | str | Path, target: str | list[str] | None = None, horizon: int = 1, *,
            time_col: str | None = None, series_id: str | None = None, freq: str | None = None,
            fill: str = "fail", past_covariates: str | list[str] | None = None,
            future_covariates: str | list[str] | None = None, season_length: int | None = None) -> Forecaster:
        """Train on every window of every series in ``data`` (see :func:`rnnkit.timeseries.load_series`)."""
        _check_horizon(horizon)
        series = ts.load_series(data, target, time_col=time_col, series_id=series_id, freq=freq, fill=fill,
                                past_covariates=past_covariates, future_covariates=future_covariates)
        return self._fit_series(series, horizon, fill, season_length)

    @removes_failed_start
    def _fit_series(self, series: ts.SeriesSet, horizon: int, fill: str, m: int | None) -> Forecaster:
        with torch_threads(self.num_threads):
            return self._fit_series_inner(series, horizon, fill, m)

    def _fit_series_inner(self, series: ts.SeriesSet, horizon: int, fill: str, m: int | None) -> Forecaster:
        o = self.options
        if o["mode"] == "autoregressive" and series.past_cols:
            raise RnnkitError("the autoregressive mode cannot use past covariates (their future values are "
                              "unknown when its forecasts are fed back); use mode='direct' (--mode direct)")
        m = m or ts.season_length(series.freq)
        self.spec = _Spec(series.target_cols, series.past_cols, series.future_cols, series.time_col,
                          series.series_col, series.freq, fill, self.calendar, self.log, self.window_norm, m)
        input_len = o["input_len"] or max(2 * m, 2 * horizon, 8)
        shortest = series.shortest()
        if shortest < input_len + horizon + (self.val_size or 0):
            raise RnnkitError(f"a series has {shortest} steps, fewer than the input window ({input_len}) plus the "
                              f"horizon ({horizon})" + (f" plus --val-size ({self.val_size})" if self.val_size else "")
                              + "; use a shorter --input-len or horizon, or more data")
        n_cal = ts.calendar_features(series.index[0][:1], series.freq).shape[1] if self.calendar else 0
        cfg = NetConfig(len(series.target_cols), len(series.past_cols), n_cal + len(series.future_cols),
                        input_len, horizon, o["mode"], o["cell"], o["hidden"], o["layers"], o["dropout"],
                        o["likelihood"], o["interval"], **self.regularisation.layer_options())
        self.scalers = [(ts.Scaler.fit(t, self.log),
                         ts.Scaler.fit(np.concatenate([p, f], axis=1)) if p.shape[1] + f.shape[1] else
                         ts.Scaler(np.zeros(0), np.ones(0)))
                        for t, p, f in zip(series.target, series.past, series.future, strict=True)]
        train_parts, val_parts = [], []
        for i in range(len(series)):
            z, past, fut = self._scaled(series, i)
            cut = len(z) - self.val_size
            train_parts.append(build_windows(z[:cut], past[:cut], fut[:cut], cfg, self.window_norm))
            if self.val_size:
                lo = max(0, cut - input_len - horizon + 1)
                val_parts.append(build_windows(z[lo:], past[lo:], fut[lo:], cfg, self.window_norm))
        train, val = _cat_windows(train_parts), _cat_windows(val_parts) if val_parts else None
        if not len(train):
            raise RnnkitError("no training windows: the series are too short for --input-len plus the horizon")
        tc = self.train_config
        torch.manual_seed(tc.seed)
        net = ForecastNet(cfg)
        self.net, self.data, self.ids = net, series, list(series.ids)
        task = ForecastTask(net, train, val, self.batch_size, tc.seed, description=self._meta())
        if self.out is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="rnnkit-forecast-"))
            weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
        else:
            self.run_dir = prepare_run_folder(self.out, "rnnkit forecast fit --resume")
        task.save_windows(self.run_dir)
        self.result = fit(task, tc, self.run_dir, progress=self.progress, new_folder=False)
        net.eval()
        return self

    @classmethod
    def resume(cls, run: str | Path, progress: bool | None = None, **changes: Any) -> Forecaster:
        """Continue an interrupted ``fit`` in its run folder (only the budget and device may change)."""
        task, result = resume_run(run, progress, expect=ForecastTask, **changes)
        state = {"model": task.model.state_dict(), "meta": json.dumps(task.description)}
        save_checkpoint(Path(run) / "model.pt", state)
        forecaster = cls.load(run)
        forecaster.result = result
        return forecaster

    def _scaled(self, series: ts.SeriesSet, i: int, scalers: tuple[ts.Scaler, ts.Scaler] | None = None,
                index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scaled target, past covariates, and known-ahead covariates (calendar first) of series ``i``."""
        ys, xs = scalers or self.scalers[i]
        covs = np.concatenate([series.past[i], series.future[i]], axis=1)
        covs = xs.transform(covs) if covs.shape[1] else covs
        n_past = len(series.past_cols)
        return (ys.transform(series.target[i]), covs[:, :n_past],
                self._future_features(index if index is not None else series.index[i], covs[:, n_past:]))

    def _future_features(self, index: pd.DatetimeIndex, user: np.ndarray) -> np.ndarray:
        cal = ts.calendar_features(index, self.spec.freq) if self.spec.calendar else np.zeros((len(index), 0))
        return np.concatenate([cal, user], axis=1)

    def _require(self) -> ForecastNet:
        if self.net is None:
            raise RnnkitError("the forecaster is not fitted: call fit() or Forecaster.load(run)")
        return self.net

    # --- forecasting -----------------------------------------------------------------------
    @torch.no_grad()
    def _forecast(self, z_hist: np.ndarray, past_hist: np.ndarray, fut_hist: np.ndarray, fut_ahead: np.ndarray,
                  horizon: int, samples: int = 200, seed: int = 0) -> tuple[np.ndarray, ...]:
        """Scaled forecasts for a batch of histories: (B, L, k) etc. -> point, lower, upper (B, horizon, k).

        Lower and upper are NaN for ``likelihood="mse"``.
        """
        net = self._require()
        with torch_threads(self.num_threads):
            return self._forecast_inner(net, z_hist, past_hist, fut_hist, fut_ahead, horizon, samples, seed)

    def _forecast_inner(self, net: ForecastNet, z_hist: np.ndarray, past_hist: np.ndarray, fut_hist: np.ndarray,
                        fut_ahead: np.ndarray, horizon: int, samples: int, seed: int) -> tuple[np.ndarray, ...]:
        c = net.cfg
        dev = next(net.parameters()).device
        B, k = len(z_hist), c.n_targets
        anchor = z_hist[:, -c.input_len:].mean(axis=1, keepdims=True) if self.spec.window_norm else np.zeros((B, 1, k))
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)
        nan = np.full((B, horizon, k), np.nan)
        if c.mode == "direct":
            if horizon > c.horizon:
                raise RnnkitError(f"this direct model forecasts {c.horizon} steps; refit with horizon={horizon} "
                                  "or use mode='autoregressive'")
            x = np.concatenate([z_hist - anchor, past_hist, fut_hist], axis=2)[:, -c.input_len:]
            params, _ = net(t(x), t(fut_ahead[:, :c.horizon]))
            point, lo, hi = net.point_and_interval(params[:, :horizon])
            to_np = lambda v: v.cpu().double().numpy() + anchor if v is not None else nan
            return to_np(point), to_np(lo), to_np(hi)
        # autoregressive: inputs y_t with covariates of t+1
        fut_all = np.concatenate([fut_hist, fut_ahead], axis=1)
        L = c.input_len
        x = np.concatenate([z_hist[:, -L:] - anchor, fut_all[:, fut_hist.shape[1] - L + 1: fut_hist.shape[1] + 1]],
                           axis=2)
        sampling = c.likelihood == "gaussian"
        reps = samples if sampling else 1
        xt = t(x).repeat_interleave(reps, dim=0)
        fa = t(fut_ahead).repeat_interleave(reps, dim=0)
        g = torch.Generator(device="cpu").manual_seed(seed)
        params, state = net(xt)
        steps, los, his = [], [], []
        for h in range(horizon):
            p = params[:, -1]
            point, lo, hi = net.point_and_interval(p)
            if sampling:
                mu, sigma = p[..., 0].float(), nn.functional.softplus(p[..., 1].float()) + 1e-3
                value = mu + sigma * torch.randn(mu.shape, generator=g).to(dev)
            else:
                value = point
            steps.append(value)
            los.append(lo)
            his.append(hi)
            if h + 1 < horizon:
                nxt = torch.cat([value, fa[:, h + 1]], dim=1).unsqueeze(1)
                params, state = net(nxt, state=state)
        paths = torch.stack(steps, dim=1).cpu().double().numpy()      # (B*reps, H, k)
        if sampling:
            paths = paths.reshape(B, reps, horizon, k)
            qs = np.quantile(paths, [c.quantiles[0], c.quantiles[2]], axis=1)
            return paths.mean(axis=1) + anchor, qs[0] + anchor, qs[1] + anchor
        if c.likelihood == "mse":
            return paths + anchor, nan, nan
        lo = torch.stack(los, dim=1).cpu().double().numpy() + anchor
        hi = torch.stack(his, dim=1).cpu().double().numpy() + anchor
        return paths + anchor, lo, hi

    def predict(self, horizon: int | None = None, data: pd.DataFrame | str | Path | None = None,
                future: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """Forecast the ``horizon`` steps after the end of each series.

        The history is the fitted data, or ``data`` (same columns) to forecast from new
        observations. ``future`` gives the user's known-ahead covariates for the horizon (time,
        series id and covariate columns); calendar features need nothing. Returns one row per
        series and step: the time column (and series id), then per target ``<target>``,
        ``<target>_lower`` and ``<target>_upper`` (the ``interval`` prediction interval).
        """
        net = self._require()
        horizon = net.cfg.horizon if horizon is None else horizon
        _check_horizon(horizon)
        series = self._history(data)
        spec = self.spec
        # a direct model reads the known-ahead covariates of its whole horizon, even to forecast fewer steps
        steps = max(horizon, net.cfg.horizon) if net.cfg.mode == "direct" else horizon
        fut_user = self._user_future(series, future, steps)
        rows = []
        for i in range(len(series)):
            scalers = self._scalers_for(series, i)
            z, past, fut = self._scaled(series, i, scalers)
            if len(z) < net.cfg.input_len:
                raise RnnkitError(f"the history has {len(z)} steps; the model needs its input window of "
                                  f"{net.cfg.input_len}")
            ahead_index = ts.future_index(series.index[i][-1], spec.freq, steps)
            index = ahead_index[:horizon]
            user = scalers[1].transform(np.concatenate([np.zeros((steps, len(spec.past_cols))), fut_user[i]],
                                                       axis=1))[:, len(spec.past_cols):] if spec.future_cols \
                else np.zeros((steps, 0))
            ahead = self._future_features(ahead_index, user)
            point, lo, hi = self._forecast(z[None], past[None], fut[None], ahead[None], horizon)
            frame = {spec.time_col: index}
            if spec.series_col:
                frame = {spec.series_col: [series.ids[i]] * horizon, **frame}
            ys = scalers[0]
            p, lo_, hi_ = ys.inverse(point[0]), ys.inverse(lo[0]), ys.inverse(hi[0])
            for j, col in enumerate(spec.target_cols):
                frame[col] = p[:, j]
                frame[f"{col}_lower"] = lo_[:, j]
                frame[f"{col}_upper"] = hi_[:, j]
            rows.append(pd.DataFrame(frame))
        return pd.concat(rows, ignore_index=True)

    def _scalers_for(self, series: ts.SeriesSet, i: int) -> tuple[ts.Scaler, ts.Scaler]:
        """The fitted scalers of a series by id; a series never seen gets scalers fitted on its history."""
        if series.ids[i] in self.ids:
            return self.scalers[self.ids.index(series.ids[i])]
        covs = np.concatenate([series.past[i], series.future[i]], axis=1)
        return (ts.Scaler.fit(series.target[i], self.spec.log),
                ts.Scaler.fit(covs) if covs.shape[1] else ts.Scaler(np.zeros(0), np.ones(0)))

    def _history(self, data: pd.DataFrame | str | Path | None) -> ts.SeriesSet:
        if data is None:
            if self.data is None:
                raise RnnkitError("this model was loaded without its data; give the history to forecast from")
            return self.data
        s = self.spec
        return ts.load_series(data, s.target_cols, time_col=s.time_col, series_id=s.series_col, freq=s.freq,
                              fill=s.fill, past_covariates=s.past_cols, future_covariates=s.future_cols)

    def _user_future(self, series: ts.SeriesSet, future: Any, horizon: int) -> list[np.ndarray]:
        s = self.spec
        if not s.future_cols:
            if future is not None:  # silently ignored, a user would believe the covariates were used
                raise RnnkitError("the model uses no known-ahead covariates: leave out future= (--future); "
                                  "fit with --future-covariates to use them")
            return [np.zeros((horizon, 0))] * len(series)
        if future is None:
            raise RnnkitError(f"the model uses known-ahead covariates ({', '.join(s.future_cols)}); give their "
                              f"values for the next {horizon} steps with future= (--future FILE)")
        df = future if isinstance(future, pd.DataFrame) else ts.read_table(future)
        missing = [c for c in [s.time_col, *s.future_cols] + ([s.series_col] if s.series_col else [])
                   if c not in df.columns]
        if missing:
            raise RnnkitError(f"the future covariates lack column(s) {', '.join(missing)}")
        times = ts._parse_times(df[s.time_col], s.time_col)
        out = []
        for i in range(len(series)):
            rows = df if not s.series_col else df[df[s.series_col] == series.ids[i]]
            t = times[rows.index] if s.series_col else times
            want = ts.future_index(series.index[i][-1], s.freq, horizon)
            vals = pd.DataFrame(rows[s.future_cols].to_numpy(float), index=t).reindex(want)
            if vals.isna().to_numpy().any():
                raise RnnkitError(f"the future covariates do not cover {want[0]} to {want[-1]}")
            out.append(vals.to_numpy())
        return out

    # --- backtesting -----------------------------------------------------------------------
    def backtest(self, data: pd.DataFrame | str | Path | None = None, start: float | int | str | pd.Timestamp = 0.8,
                 horizon: int | None = None, stride: int = 1, last_points_only: bool = False,
                 season_length: int | None = None, **load_options: Any) -> BacktestResult:
        """Rolling-origin historical forecasts from ``start`` on, beside the three baselines.

        ``start`` is the time of the first forecast step (a timestamp, a row position, or a
        fraction of each series). An unfitted forecaster is first fitted on each series' data
        before ``start`` only (``load_options`` and ``horizon`` as for :meth:`fit`), so nothing
        after an origin leaks into its forecast; a fitted one is used as it is. Every origin
        from ``start`` to the last full horizon, ``stride`` apart, gets a forecast from the model
        (its input window), the naive and seasonal-naive methods and exponential smoothing
        (refitted on the whole history up to the origin). Metrics cover every step, or only
        the ``horizon``-th step of each forecast with ``last_points_only`` (Darts' default).
        MASE scales by the seasonal naive error on the history before ``start``.
        """
        if stride <= 0:
            raise RnnkitError(f"stride must be positive, got {stride}")
        if data is None:
            if self.data is None:
                raise RnnkitError("give the data to backtest on")
            series = self.data
        elif self.spec is not None:
            series = self._history(data)
        else:
            series = ts.load_series(data, load_options.pop("target", None),
                                    **{k: load_options[k] for k in ("time_col", "series_id", "freq", "fill",
                                                                    "past_covariates", "future_covariates")
                                       if k in load_options})
        starts = [_start_position(start, idx) for idx in series.index]
        if season_length is not None:
            _check_season_length(season_length, min(starts))
        if self.net is None:
            h = horizon if horizon is not None else 1
            _check_horizon(h)
            for target, s in zip(series.target, starts, strict=True):  # before training, not after
                if s > len(target) - h:
                    raise _no_origin(len(target), s, h)
            train = ts.SeriesSet(series.ids, [ix[:s] for ix, s in zip(series.index, starts, strict=True)],
                                 [a[:s] for a, s in zip(series.target, starts, strict=True)],
                                 [a[:s] for a, s in zip(series.past, starts, strict=True)],
                                 [a[:s] for a, s in zip(series.future, starts, strict=True)],
                                 series.freq, series.target_cols, series.past_cols, series.future_cols,
                                 series.time_col, series.series_col)
            self._fit_series(train, h, load_options.get("fill", "fail"), season_length)
        net = self._require()
        H = horizon or net.cfg.horizon
        _check_horizon(H)
        m = season_length or self.spec.season_length
        L = net.cfg.input_len
        rows, hist_rows, per_series = [], [], []
        for i in range(len(series)):
            scalers = self._scalers_for(series, i)
            z, past, fut = self._scaled(series, i, scalers)
            T = len(z)
            first = max(starts[i], L)
            origins = np.arange(first, T - H + 1, stride)
            if not len(origins):
                raise _no_origin(T, starts[i], H)
            zh = np.stack([z[o - L:o] for o in origins])
            ph = np.stack([past[o - L:o] for o in origins])
            fh = np.stack([fut[o - L:o] for o in origins])
            fa = np.stack([fut[o:o + max(H, net.cfg.horizon)] if o + net.cfg.horizon <= T else
                           self._pad_future(series, i, o, max(H, net.cfg.horizon), scalers) for o in origins])
            point, lo, hi = self._forecast(zh, ph, fh, fa, H)
            ys = scalers[0]
            y = series.target[i]
            for o, pt, l_, h_ in zip(origins, point, lo, hi, strict=True):
                base = {b: ts.baseline_forecast(b, y[:o], H, m) for b in ts.BASELINES}
                p, lo_, hi_ = ys.inverse(pt), ys.inverse(l_), ys.inverse(h_)
                for step in range(H):
                    for k, col in enumerate(self.spec.target_cols):
                        rows.append({"series": series.ids[i], "target": col, "origin": series.index[i][o],
                                     "time": series.index[i][o + step], "step": step + 1,
                                     "actual": y[o + step, k], "model": p[step, k], "model_lower": lo_[step, k],
                                     "model_upper": hi_[step, k], **{b: base[b][step, k] for b in ts.BASELINES}})
            for k, col in enumerate(self.spec.target_cols):
                hist_rows.append(pd.DataFrame({"series": series.ids[i], "target": col, "time": series.index[i],
                                               "actual": y[:, k]}))
                per_series.append((series.ids[i], col, y[:starts[i], k]))
        forecasts = pd.DataFrame(rows)
        scored = forecasts[forecasts["step"] == H] if last_points_only else forecasts
        table = {}
        for method in ("model", *ts.BASELINES):
            vals = []
            for sid, col, insample in per_series:
                sel = scored[(scored["series"] == sid) & (scored["target"] == col)] if len(per_series) > 1 else scored
                vals.append(ts.all_metrics(sel["actual"].to_numpy(), sel[method].to_numpy(), insample, m))
            table[method] = {name: float(np.mean([v[name] for v in vals])) for name in ts.METRICS}
        metrics = pd.DataFrame(table).T[list(ts.METRICS)]
        return BacktestResult(forecasts, metrics, pd.concat(hist_rows, ignore_index=True), H, last_points_only)

    def _pad_future(self, series: ts.SeriesSet, i: int, o: int, n: int,
                    scalers: tuple[ts.Scaler, ts.Scaler]) -> np.ndarray:
        """Known-ahead features for ``n`` steps from position ``o`` when they run past the data's end.

        Only the steps inside the data are ever scored; calendar features are exact, and user
        covariates past the end are held at their last value (those steps are never used).
        """
        idx = ts.future_index(series.index[i][o - 1], self.spec.freq, n)
        fut = self._scaled(series, i, scalers)[2]
        have = fut[o:]
        user_cols = len(self.spec.future_cols)
        user = np.concatenate([have[:, have.shape[1] - user_cols:],
                               np.repeat(have[-1:, have.shape[1] - user_cols:], n - len(have), axis=0)])
        return self._future_features(idx, user)

    # --- saving and loading ----------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        net = self._require()
        s = self.spec
        tails = []
        L = net.cfg.input_len
        if self.data is not None:
            d = self.data
            for i in range(len(d)):
                tails.append({"id": _jsonable(d.ids[i]), "time": [str(t) for t in d.index[i][-L:]],
                              "target": d.target[i][-L:].tolist(), "past": d.past[i][-L:].tolist(),
                              "future": d.future[i][-L:].tolist()})
        return {"task": "forecast", "model": asdict(net.cfg), "spec": asdict(s),
                "scalers": [[a.to_dict(), b.to_dict()] for a, b in self.scalers], "tails": tails,
                "options": {"batch_size": self.batch_size, "val_size": self.val_size, "seed": self.train_config.seed}}

    def save(self, path: str | Path) -> Path:
        """Write the model into the run folder ``path`` (``model.pt``, ``config.json``, and the
        training log and loss plot when they exist); :meth:`load` reads it back."""
        net = self._require()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RnnkitError(f"{path} is a file: save() writes a run folder")
        path.mkdir(parents=True, exist_ok=True)
        meta = self._meta()
        save_checkpoint(path / "model.pt", {"model": net.state_dict(), "meta": json.dumps(meta)})
        if self.run_dir is not None and self.run_dir.resolve() != path.resolve():
            for name in ("metrics.jsonl", "loss.png"):
                if (self.run_dir / name).exists():
                    shutil.copyfile(self.run_dir / name, path / name)
            write_json(path / "config.json", {"rnnkit": __version__, **meta, "train": asdict(self.train_config)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """A fitted forecaster from a run folder (or a checkpoint file), with the end of its history,
        so :meth:`predict` works at once."""
        path = Path(path)
        if not path.exists():
            raise RnnkitError(f"no model at {path}: give a run folder from `rnnkit forecast fit` (or its model.pt)")
        if path.is_dir():
            for name in ("model.pt", "best.pt", "last.pt"):
                if (path / name).exists():
                    path = path / name
                    break
            else:
                raise RnnkitError(f"no model in {path} (expected model.pt, best.pt or last.pt)")
        state = load_checkpoint(path)
        meta = checkpoint_meta(state)
        if meta.get("task") != "forecast":
            raise RnnkitError(f"{path} holds a {meta.get('task')!r} model, not a forecaster")
        cfg = NetConfig(**meta["model"])
        self = cls(input_len=cfg.input_len, mode=cfg.mode, cell=cfg.cell, hidden=cfg.hidden, layers=cfg.layers,
                   dropout=cfg.dropout, likelihood=cfg.likelihood, interval=cfg.interval, **cfg.layer_options(),
                   log=meta["spec"]["log"], calendar=meta["spec"]["calendar"],
                   window_norm=meta["spec"]["window_norm"], **meta.get("options", {}))
        self.spec = _Spec(**meta["spec"])
        self.scalers = [(ts.Scaler.from_dict(a), ts.Scaler.from_dict(b)) for a, b in meta["scalers"]]
        self.ids = [t["id"] for t in meta["tails"]]
        self.net = ForecastNet(cfg)
        try:
            self.net.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise RnnkitError(f"checkpoint weights do not fit its model: {str(e).splitlines()[0]}") from None
        self.net.eval()
        self.run_dir = path.parent
        s = self.spec
        tails = meta["tails"]
        if tails:
            self.data = ts.SeriesSet(
                [t["id"] for t in tails], [pd.DatetimeIndex(pd.to_datetime(t["time"])) for t in tails],
                [np.asarray(t["target"], float).reshape(len(t["time"]), len(s.target_cols)) for t in tails],
                [np.asarray(t["past"], float).reshape(len(t["time"]), len(s.past_cols)) for t in tails],
                [np.asarray(t["future"], float).reshape(len(t["time"]), len(s.future_cols)) for t in tails],
                s.freq, s.target_cols, s.past_cols, s.future_cols, s.time_col, s.series_col)
        return self


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _check_season_length(m: Any, history: int) -> None:
    """A season length the user gave must fit in the history before the first origin: else the seasonal
    baselines and MASE would fall back to lag 1 without a word."""
    if not is_whole(m) or m < 1:
        raise RnnkitError(f"the season length must be a whole number >= 1, got {m!r}")
    if m >= history:
        raise RnnkitError(f"the season length ({m}) is not shorter than the history before the first forecast "
                          f"({history} steps): the seasonal baselines and MASE need a full season; give a later "
                          "start or a shorter season length")


def _check_horizon(horizon: int) -> None:
    if not is_whole(horizon) or horizon <= 0:
        raise RnnkitError(f"the horizon must be a positive number of steps, got {horizon}")


def _no_origin(steps: int, start: int, horizon: int) -> RnnkitError:
    return RnnkitError(f"no forecast origin: the series has {steps} steps, start is at {start} and the "
                       f"horizon is {horizon}; start earlier or use a shorter horizon")


def _start_position(start: float | int | str | pd.Timestamp, index: pd.DatetimeIndex) -> int:
    if isinstance(start, float):
        if not 0 < start < 1:
            raise RnnkitError(f"a fractional start must be in (0, 1), got {start}")
        return int(len(index) * start)
    if isinstance(start, (int, np.integer)):
        if not 0 < start < len(index):
            raise RnnkitError(f"start position {start} is outside the series (length {len(index)})")
        return int(start)
    try:
        ts_ = pd.Timestamp(start)
    except (ValueError, TypeError):
        raise RnnkitError(f"cannot read the start {start!r} as a time") from None
    pos = int(index.searchsorted(ts_))
    if not 0 < pos < len(index):
        raise RnnkitError(f"start {ts_} is not inside the series ({index[0]} to {index[-1]})")
    return pos


def parse_start(text: str) -> float | int | str:
    """A CLI ``--start``: a fraction (0.8), a row position (120) or a timestamp (1959-01)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


__all__ = ["Forecaster", "ForecastNet", "ForecastTask", "NetConfig", "BacktestResult", "build_windows",
           "parse_start"]
