"""Anomaly detection with recurrent networks: :class:`Detector`, batch or streaming.

Two ways to turn a network into a per-timestamp error, both causal (the error at time t uses
values up to t only):

- ``method="prediction"`` (Telemanom, Hundman et al. 2018): an LSTM forecasts each value from
  the ``window`` values before it; the error is the absolute forecast residual.
- ``method="reconstruction"``: an LSTM autoencoder (Malhotra et al. 2016) compresses the window
  ending at t into its final hidden state and decodes it back; the error is that of the
  window's last value.

The errors are then scored as Telemanom does: smoothed with an exponentially weighted moving
average, and compared with a dynamic threshold ``mean + z * std`` of the smoothed errors of the
trailing ``history`` points (past only), with ``z`` chosen by Telemanom's criterion (the
threshold whose removal of the points above it most reduces the mean and spread, per
anomalous point and sequence) unless fixed. Each timestamp gets a score in [0, 1] that is 0.5
exactly at the threshold and approaches 1 far above it; runs of flagged points, merged
across short gaps, are the anomaly windows.

The network is trained by the shared :class:`rnnkit.training.trainer.Trainer`, on data assumed mostly
normal (for example the first part of a stream). :meth:`Detector.update` feeds one value at
a time and returns its score, the same number :meth:`Detector.score` gives for it in a batch.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..data import timeseries as ts
from ..errors import RnnkitError, is_whole
from ..hardware import torch_threads
from ..nn.cells import CELLS
from ..nn.layers import make_layer
from ..plotting import new_figure, save_figure
from ..training.config import TrainConfig
from ..training.fit import fit
from ..training.trainer import TrainResult
from .forecast import TRAIN_FIELDS, ForecastNet, ForecastTask, NetConfig, Windows

METHODS = ("prediction", "reconstruction")


class LSTMAutoencoder(nn.Module):
    """Encoder RNN -> final hidden state -> decoder RNN fed that state at every step -> the window.

    Same interface as :class:`~rnnkit.tasks.forecast.ForecastNet` (``forward``, ``loss``,
    ``point_and_interval``), so the forecasting task trains it unchanged.
    """

    def __init__(self, window: int, hidden: int, layers: int = 1, cell: str = "lstm") -> None:
        super().__init__()
        self.window = window
        self.encoder = make_layer(cell, 1, hidden, layers, batch_first=True)
        self.decoder = make_layer(cell, hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, future: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        """``x`` (B, W, 1) -> the reconstructed window (B, W, 1, 1)."""
        enc, _ = self.encoder(x)
        code = enc[:, -1:].expand(-1, x.shape[1], -1)
        dec, _ = self.decoder(code)
        return self.out(dec).unsqueeze(-1), None

    def loss(self, params: Tensor, y: Tensor) -> Tensor:
        return ((params[..., 0].float() - y) ** 2).mean()

    def point_and_interval(self, params: Tensor) -> tuple[Tensor, None, None]:
        return params[..., 0], None, None


class ErrorScorer:
    """Telemanom's smoothing and dynamic threshold, one error at a time (so batch equals streaming)."""

    def __init__(self, smoothing: int, history: int, z: float | None, refresh: int, warmup: int,
                 suppress: int = 0) -> None:
        self.alpha = 2.0 / (smoothing + 1)
        self.history, self.z_fixed, self.refresh, self.warmup = history, z, refresh, warmup
        self.suppress = suppress
        self.reset()

    def reset(self) -> None:
        self.smoothed: float | None = None
        self.buffer: deque[float] = deque(maxlen=self.history)
        self.total = self.total_sq = 0.0
        self.z = self.z_fixed if self.z_fixed is not None else 4.0
        self.seen = 0
        self.last_alarm = -(10**18)

    def step(self, error: float) -> tuple[float, float, float, bool]:
        """Add one error; return (smoothed error, threshold, score in [0, 1], alarm).

        An alarm is a flagged point (score above 0.5) with no alarm in the ``suppress`` points
        before it: one alert per incident instead of one per flagged point.
        """
        es = error if self.smoothed is None else self.alpha * error + (1 - self.alpha) * self.smoothed
        self.smoothed = es
        n = len(self.buffer)
        threshold, score = math.inf, 0.0
        if n >= self.warmup:
            if self.z_fixed is None and self.seen % self.refresh == 0:
                self.z = telemanom_z(np.fromiter(self.buffer, float, n))
            mean = self.total / n
            std = math.sqrt(max(self.total_sq / n - mean * mean, 0.0))
            std = max(std, 1e-6 * max(abs(mean), 1e-3))
            threshold = mean + self.z * std
            if es > mean:
                score = 1.0 - 0.5 ** ((es - mean) / (threshold - mean))
        if n == self.history:
            old = self.buffer[0]
            self.total -= old
            self.total_sq -= old * old
        self.buffer.append(es)
        self.total += es
        self.total_sq += es * es
        alarm = score > 0.5 and self.seen - self.last_alarm > self.suppress
        if alarm:
            self.last_alarm = self.seen
        self.seen += 1
        return es, threshold, score, alarm


Z_CANDIDATES = np.arange(2.5, 12.01, 0.5)


def telemanom_z(errors: np.ndarray) -> float:
    """Telemanom's threshold choice: the ``z`` maximising (dmean/mean + dstd/std) / (n_above + n_seq^2).

    dmean and dstd are how much the mean and standard deviation drop when the points above
    ``mean + z*std`` are removed; n_above counts those points and n_seq their contiguous runs.
    """
    mean, std = errors.mean(), errors.std()
    if std <= 0:
        return float(Z_CANDIDATES[-1])
    best, best_z = -math.inf, float(Z_CANDIDATES[-1])
    for z in Z_CANDIDATES:
        eps = mean + z * std
        above = errors > eps
        n_above = int(above.sum())
        if n_above == 0 or n_above == len(errors):
            continue
        below = errors[~above]
        n_seq = int(np.count_nonzero(np.diff(np.concatenate([[0], above.astype(np.int8)])) == 1))
        crit = ((mean - below.mean()) / mean + (std - below.std()) / std) / (n_above + n_seq ** 2)
        if crit > best:
            best, best_z = crit, float(z)
    return best_z


class Detector:
    """A recurrent anomaly detector with sklearn's fit/score shape and a streaming :meth:`update`.

    >>> det = Detector(window=32, max_steps=300).fit(train_df, value="cpu")
    >>> scores = det.score(df)       # time, value, error, smoothed, threshold, score, anomaly
    >>> det.detect(df)               # start, end, peak_score, points of each anomaly window
    >>> det.reset(); [det.update(v) for v in stream]

    ``window``: values the network sees; ``smoothing``: EWMA span of the errors; ``history``:
    trailing points the dynamic threshold is computed on; ``z``: fixed threshold in standard
    deviations (None: Telemanom's choice, refreshed every ``refresh`` points); ``min_gap``:
    flagged runs closer than this merge into one window; ``suppress``: after an alarm, no new alarm
    for this many points. Training options are those of
    :class:`rnnkit.training.trainer.TrainConfig` (default budget: 300 steps or 30 s).
    """

    def __init__(self, method: str = "prediction", window: int = 32, hidden: int = 32, layers: int = 1,
                 cell: str = "lstm", smoothing: int = 5, history: int = 1000, z: float | None = None,
                 refresh: int = 100, warmup: int = 30, min_gap: int = 5, suppress: int = 100, batch_size: int = 64,
                 num_threads: int | None = 1, progress: bool | None = False, **train_options: Any) -> None:
        if method not in METHODS:
            raise RnnkitError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if cell not in CELLS:
            raise RnnkitError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
        for name, v, least in (("window", window, 1), ("hidden", hidden, 1), ("layers", layers, 1),
                               ("smoothing", smoothing, 1), ("history", history, 1), ("refresh", refresh, 1),
                               ("warmup", warmup, 1), ("batch_size", batch_size, 1), ("min_gap", min_gap, 0),
                               ("suppress", suppress, 0)):
            if not is_whole(v) or v < least:
                raise RnnkitError(f"{name} must be a whole number >= {least}, got {v!r}")
        if z is not None and not 0 < z < math.inf:
            raise RnnkitError(f"z must be positive and finite, got {z}")
        unknown = set(train_options) - TRAIN_FIELDS
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        # numpy integers in, Python ints kept: deque and torch sizes take those only
        window, hidden, layers, min_gap, batch_size = (int(v) for v in (window, hidden, layers, min_gap, batch_size))
        self.method, self.window, self.hidden, self.layers, self.cell = method, window, hidden, layers, cell
        self.min_gap, self.batch_size, self.num_threads, self.progress = min_gap, batch_size, num_threads, progress
        self.scorer = ErrorScorer(int(smoothing), int(history), z, int(refresh), int(min(warmup, history)),
                                  int(suppress))
        self.train_config = TrainConfig(**{"precision": "fp32", "warmup_steps": 20, "lr": 3e-3,
                                           **{k: v for k, v in train_options.items() if v is not None}})
        if all(getattr(self.train_config, b) is None for b in ("max_time", "max_steps", "epochs")):
            self.train_config.max_time, self.train_config.max_steps = 30.0, 300
        if self.train_config.eval_every is None:
            self.train_config.eval_every = 10**9  # one evaluation, at the end: there is no held-out data to watch
        self.train_config.validate()
        self.net: nn.Module | None = None
        self.scaler: ts.Scaler | None = None
        self.result: TrainResult | None = None
        self.value_col = "value"
        self.time_col = "timestamp"
        self._stream: deque[float] = deque(maxlen=window + 1)
        self.alarm = False

    # --- data ------------------------------------------------------------------------------
    def _values(self, data: pd.DataFrame | str | Path | np.ndarray | pd.Series, value: str | None = None,
                time_col: str | None = None, fill: str = "interpolate") -> tuple[np.ndarray, pd.Index]:
        if isinstance(data, (np.ndarray, list, tuple)):
            arr = np.asarray(data, dtype=float)
            if arr.ndim > 1 and arr.size != max(arr.shape):  # flattening would interleave several series
                raise RnnkitError(f"expected one series of values, got an array of shape {arr.shape}")
            arr = arr.reshape(-1)
            if not np.isfinite(arr).all():
                raise RnnkitError("the values contain NaN or inf")
            return arr, pd.RangeIndex(len(arr))
        if isinstance(data, pd.Series):
            return self._values(data.to_numpy(float))[0], data.index
        s = ts.load_series(data, value, time_col=time_col, fill=fill, regular=False)
        if len(s.target_cols) != 1:
            raise RnnkitError(f"the detector takes one value column; the data has {', '.join(s.target_cols)}: "
                              "choose one with value= (--value)")
        self.value_col, self.time_col = s.target_cols[0], s.time_col
        return s.target[0][:, 0], s.index[0]

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame | str | Path | np.ndarray | pd.Series, value: str | None = None, *,
            time_col: str | None = None, fill: str = "interpolate") -> Detector:
        """Train the network on ``data`` (assumed mostly normal) and prime the threshold on its errors."""
        y, _ = self._values(data, value, time_col, fill)
        W = self.window
        if len(y) < W + 2:
            raise RnnkitError(f"the training data has {len(y)} values; the detector needs more than its "
                              f"window ({W}) plus 1")
        self.scaler = ts.Scaler.fit(y[:, None])
        z = self.scaler.transform(y[:, None])[:, 0]
        with torch_threads(self.num_threads):
            torch.manual_seed(self.train_config.seed)
            if self.method == "prediction":
                cfg = NetConfig(1, 0, 0, W, 1, "direct", self.cell, self.hidden, self.layers, 0.0, "mse")
                net: nn.Module = ForecastNet(cfg)
                win = ts.sliding_windows(z, W + 1)
                x = win[:, :W] - win[:, :W].mean(axis=1, keepdims=True)
                target = win[:, W:] - win[:, :W].mean(axis=1, keepdims=True)
                windows = Windows(_t(x[..., None]), torch.zeros(len(x), 1, 0), _t(target[..., None]))
            else:
                net = LSTMAutoencoder(W, self.hidden, self.layers, self.cell)
                win = ts.sliding_windows(z, W)
                x = win - win.mean(axis=1, keepdims=True)
                windows = Windows(_t(x[..., None]), torch.zeros(len(x), 0, 0), _t(x[..., None, None])[..., 0])
            task = ForecastTask(net, windows, None, self.batch_size, self.train_config.seed)
            run_dir = Path(tempfile.mkdtemp(prefix="rnnkit-detect-"))
            weakref.finalize(self, shutil.rmtree, str(run_dir), True)
            self.run_dir = run_dir
            # training is an inner step here: silent unless progress=True, and without a loss plot
            self.result = fit(task, self.train_config, run_dir, progress=bool(self.progress), plot=False,
                              new_folder=False)
            self.net = net.cpu().eval()  # scoring goes value by value in a stream: the CPU serves it best
        self.reset()
        return self

    def _require(self) -> nn.Module:
        if self.net is None or self.scaler is None:
            raise RnnkitError("the detector is not fitted: call fit() first")
        return self.net

    # --- scoring ---------------------------------------------------------------------------
    @torch.no_grad()
    def errors(self, values: np.ndarray) -> np.ndarray:
        """Absolute error (in the training data's standard deviations) of every value; 0 before a full window."""
        net = self._require()
        W = self.window
        z = self.scaler.transform(np.asarray(values, float)[:, None])[:, 0]
        err = np.zeros(len(z))
        if self.method == "prediction":
            if len(z) <= W:
                return err
            win = ts.sliding_windows(z, W + 1)
            hist, actual = win[:, :W], win[:, W]
        else:
            if len(z) < W:
                return err
            hist = ts.sliding_windows(z, W)
            actual = hist[:, -1]
        anchor = hist.mean(axis=1)
        x = hist - anchor[:, None]
        preds = []
        with torch_threads(self.num_threads):
            for start in range(0, len(x), 8192):
                out, _ = net(_t(x[start:start + 8192, :, None]))
                preds.append(out[:, -1, 0, 0].double().numpy())
        pred = np.concatenate(preds) + anchor
        err[len(z) - len(pred):] = np.abs(actual - pred)
        return err

    def score(self, data: pd.DataFrame | str | Path | np.ndarray | pd.Series, value: str | None = None, *,
              time_col: str | None = None, fill: str = "interpolate") -> pd.DataFrame:
        """Score every timestamp of ``data`` from a fresh start, causally.

        Columns: time, value, error (network error), smoothed (EWMA), threshold (dynamic),
        score (0.5 at the threshold), anomaly (score above 0.5) and alarm (the first anomaly
        after at least ``suppress`` points without an alarm: one alert per incident).
        """
        y, index = self._values(data, value, time_col, fill)
        err = self.errors(y)
        self.scorer.reset()
        first = self.window if self.method == "prediction" else self.window - 1
        out = np.zeros((len(y), 4))
        out[:, 1] = math.inf
        for i in range(first, len(y)):
            out[i] = self.scorer.step(err[i])
        self._stream.clear()
        self._stream.extend(y[-(self.window + 1):])
        return pd.DataFrame({self.time_col: index, self.value_col: y, "error": err, "smoothed": out[:, 0],
                             "threshold": out[:, 1], "score": out[:, 2], "anomaly": out[:, 2] > 0.5,
                             "alarm": out[:, 3] > 0})

    def detect(self, data: pd.DataFrame | str | Path | np.ndarray | pd.Series | None = None,
               scores: pd.DataFrame | None = None, **load_options: Any) -> pd.DataFrame:
        """Anomaly windows: runs of flagged timestamps, merged across gaps shorter than ``min_gap``.

        Give ``data`` (scored now) or the ``scores`` frame from :meth:`score`. Columns: start,
        end (times), first, last (positions), peak_score.
        """
        if scores is None:
            if data is None:
                raise RnnkitError("give the data (or its scores) to detect anomalies in")
            scores = self.score(data, **load_options)
        return anomaly_windows(scores, self.min_gap, self.time_col)

    def reset(self) -> None:
        """Forget the stream: the next :meth:`update` starts a new series (the network is kept)."""
        self.scorer.reset()
        self._stream.clear()
        self.alarm = False

    @torch.no_grad()
    def update(self, value: float) -> float:
        """Score one new value from the values before it (and it); return the score in [0, 1].

        ``self.alarm`` then tells whether this value raised an alarm (see :meth:`score`).
        """
        net = self._require()
        value = float(value)
        if not math.isfinite(value):
            raise RnnkitError(f"update() needs a finite value, got {value}")
        self._stream.append(value)
        W = self.window
        need = W + 1 if self.method == "prediction" else W
        if len(self._stream) < need:
            return 0.0
        z = self.scaler.transform(np.asarray(self._stream, float)[-need:, None])[:, 0]
        hist = z[:W]
        anchor = hist.mean()
        with torch_threads(self.num_threads):
            out, _ = net(_t((hist - anchor)[None, :, None]))
        pred = float(out[0, -1, 0, 0]) + anchor
        _, _, score, self.alarm = self.scorer.step(abs(z[-1] - pred))
        return score

    def plot(self, scores: pd.DataFrame, path: str | Path, title: str = "") -> None:
        """The series with its flagged windows shaded, and the score below it."""
        t = scores[self.time_col]
        fig, (a1, a2) = new_figure(2, 1, figsize=(10, 5), dpi=110, sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
        a1.plot(t, scores[self.value_col], lw=0.8, color="black")
        for _, w in anomaly_windows(scores, self.min_gap, self.time_col).iterrows():
            a1.axvspan(w["start"], w["end"], color="red", alpha=0.25)
        a1.set_ylabel(self.value_col)
        a1.set_title(title or "anomalies (shaded)")
        a2.plot(t, scores["score"], lw=0.8, color="tab:blue")
        a2.axhline(0.5, color="red", lw=0.8, ls="--")
        a2.set_ylabel("score")
        a2.set_ylim(0, 1.02)
        for a in (a1, a2):
            a.grid(alpha=0.3)
        save_figure(fig, path)

def anomaly_windows(scores: pd.DataFrame, min_gap: int = 5, time_col: str = "timestamp") -> pd.DataFrame:
    """Runs of ``anomaly`` rows, merged when fewer than ``min_gap`` rows apart."""
    flags = scores["anomaly"].to_numpy(bool)
    idx = np.flatnonzero(flags)
    runs: list[list[int]] = []
    for i in idx:
        if runs and i - runs[-1][1] <= min_gap:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    times = scores[time_col].to_numpy() if time_col in scores else np.arange(len(scores))
    score = scores["score"].to_numpy()
    return pd.DataFrame({"start": [times[a] for a, _ in runs], "end": [times[b] for _, b in runs],
                         "first": [a for a, _ in runs], "last": [b for _, b in runs],
                         "peak_score": [float(score[a:b + 1].max()) for a, b in runs]})


def _t(a: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


__all__ = ["Detector", "LSTMAutoencoder", "ErrorScorer", "telemanom_z", "anomaly_windows"]
