"""Forecaster: fit/predict/backtest/save/load on small real and synthetic series, and the CLI."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_one_line_error, rnnkit_cli

from rnnkit import Forecaster, RnnkitError
from rnnkit.data import timeseries as ts
from rnnkit.tasks.forecast import ForecastNet, ForecastTask, NetConfig, build_windows

TINY = {"hidden": 16, "max_steps": 150, "seed": 0, "progress": False}


def seasonal(n=120, level=10.0, freq="MS", start="2000-01-01", noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = level + 0.02 * level * t / 12 + level * 0.2 * np.sin(2 * np.pi * t / 12) + noise * rng.standard_normal(n)
    return pd.DataFrame({"date": pd.date_range(start, periods=n, freq=freq), "y": y})


@pytest.fixture(scope="module")
def fitted():
    return Forecaster(input_len=24, **TINY).fit(seasonal(), target="y", horizon=6)


def test_predict_frame_has_timestamps_point_and_ordered_interval(fitted):
    p = fitted.predict()
    assert list(p.columns) == ["date", "y", "y_lower", "y_upper"]
    assert list(p["date"]) == list(pd.date_range("2010-01-01", periods=6, freq="MS"))
    assert (p["y_lower"] <= p["y"]).all() and (p["y"] <= p["y_upper"]).all()
    assert fitted.predict(3).shape[0] == 3


def test_model_learns_the_season(fitted):
    df = seasonal()
    r = fitted.backtest(df, start=96, horizon=6)    # the fitted model saw these; checks it learnt, not leakage
    assert r.metrics.loc["model", "MAE"] < r.metrics.loc["naive", "MAE"]


def test_direct_model_refuses_longer_horizon_autoregressive_does_not(fitted):
    with pytest.raises(RnnkitError, match="autoregressive"):
        fitted.predict(12)
    ar = Forecaster(input_len=24, mode="autoregressive", likelihood="gaussian", **TINY)
    p = ar.fit(seasonal(), target="y", horizon=3).predict(12)
    assert len(p) == 12 and p["y"].notna().all()
    assert (p["y_lower"] < p["y"]).all() and (p["y"] < p["y_upper"]).all()   # quantiles of sampled paths


@pytest.mark.parametrize("likelihood", ["gaussian", "mse"])
def test_other_likelihoods(likelihood):
    f = Forecaster(input_len=24, likelihood=likelihood, hidden=8, max_steps=30, progress=False)
    p = f.fit(seasonal(60), target="y", horizon=2).predict()
    assert p["y"].notna().all()
    assert p["y_lower"].isna().all() if likelihood == "mse" else (p["y_lower"] < p["y_upper"]).all()


def test_several_series_are_scaled_each_on_its_own():
    a, b = seasonal(80, level=10.0), seasonal(80, level=1000.0, seed=1)
    a["shop"], b["shop"] = "a", "b"
    f = Forecaster(input_len=24, **TINY).fit(pd.concat([a, b]), target="y", horizon=3, series_id="shop")
    p = f.predict()
    assert list(p.columns[:2]) == ["shop", "date"]
    lvl = p.groupby("shop")["y"].mean()
    assert 5 < lvl["a"] < 20 and 500 < lvl["b"] < 2000


def test_covariates_past_and_future(tmp_path):
    df = seasonal(72)
    df["temp"] = np.cos(np.arange(72))
    df["promo"] = (np.arange(72) % 5 == 0).astype(float)
    f = Forecaster(input_len=12, hidden=8, max_steps=20, progress=False)
    f.fit(df, target="y", horizon=2, past_covariates="temp", future_covariates="promo")
    with pytest.raises(RnnkitError, match="future="):
        f.predict()
    fut = pd.DataFrame({"date": pd.date_range("2006-01-01", periods=2, freq="MS"), "promo": [1.0, 0.0]})
    assert len(f.predict(future=fut)) == 2
    with pytest.raises(RnnkitError, match="do not cover"):
        f.predict(future=fut.iloc[:1])
    with pytest.raises(RnnkitError, match="past covariates"):
        Forecaster(mode="autoregressive", max_steps=5).fit(df, target="y", horizon=2, past_covariates="temp")
    plain = Forecaster(input_len=12, hidden=8, max_steps=5, progress=False).fit(df, target="y", horizon=2)
    with pytest.raises(RnnkitError, match="no known-ahead covariates"):
        plain.predict(future=fut)


def test_save_load_round_trip(fitted, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RnnkitError, match="is a file"):
        fitted.save(tmp_path / "file")
    fitted.save(tmp_path / "run")
    again = Forecaster.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.predict(), fitted.predict())
    new_history = seasonal(60, start="2001-01-01")
    pd.testing.assert_frame_equal(again.predict(data=new_history), fitted.predict(data=new_history))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"horizon": 0}, "horizon must be a positive"),
    ({"horizon": 100}, "fewer than the input window"),
    ({"horizon": 2, "target": "missing"}, "no target column"),
    ({"horizon": 2, "target": []}, "no target column given"),  # was a "non-finite loss" after training
    ({"horizon": 2, "future_covariates": "y"}, "given twice"),  # the target as its own covariate: a leak
])
def test_bad_fit_input(kwargs, fragment):
    kwargs = {"target": "y", **kwargs}
    with pytest.raises(RnnkitError, match=fragment):
        Forecaster(input_len=24, max_steps=5).fit(seasonal(60), **kwargs)


@pytest.mark.parametrize("option, value", [("input_len", 2.5), ("hidden", 8.0), ("layers", True),
                                           ("batch_size", 0), ("val_size", -1), ("dropout", 1.5)])
def test_constructor_options_are_checked_before_fit(option, value):
    """floats for sizes failed deep in numpy or torch at fit; a dropout of 1.5 only at the first step"""
    with pytest.raises(RnnkitError, match=f"{option} must be"):
        Forecaster(**{option: value})


def test_numpy_integers_are_taken_as_sizes(tmp_path):
    f = Forecaster(input_len=np.int64(12), hidden=np.int32(4), max_steps=2).fit(seasonal(60), "y", horizon=2)
    f.save(tmp_path / "m")  # the options go into JSON
    assert Forecaster.load(tmp_path / "m").input_len == 12


def test_task_batches_depend_only_on_the_step():
    cfg = NetConfig(input_len=8, horizon=2, hidden=4)
    z = np.random.default_rng(0).standard_normal((40, 1))
    w = build_windows(z, np.zeros((40, 0)), np.zeros((40, 0)), cfg, True)
    assert w.x.shape == (31, 8, 1) and w.y.shape == (31, 2, 1)
    torch.manual_seed(0)
    net = ForecastNet(cfg)
    a = ForecastTask(net, w, None, 8, seed=3)
    b = ForecastTask(net, w, None, 8, seed=3)
    assert a.training_loss(2, 1)[0].item() == b.training_loss(2, 1)[0].item()
    np.testing.assert_allclose(w.x[:, :, 0].mean(1), 0, atol=1e-6)   # windows are re-centred


def test_backtest_unfitted_fits_before_start_and_reports_baselines(tmp_path):
    df, kw = ts.builtin_dataset("airline")
    f = Forecaster(log=True, hidden=8, max_steps=40, progress=False)
    r = f.backtest(df, start="1959-01-01", horizon=6, last_points_only=True, **kw)
    assert f.data.index[0][-1] == pd.Timestamp("1958-12-01")          # trained on history before start only
    assert list(r.metrics.index) == ["model", "naive", "seasonal_naive", "exp_smoothing"]
    assert list(r.metrics.columns) == ["MAE", "RMSE", "MAPE", "sMAPE", "MASE"]
    assert r.forecasts["origin"].min() == pd.Timestamp("1959-01-01") and r.forecasts["step"].max() == 6
    assert r.metrics.loc["seasonal_naive", "MAPE"] > r.metrics.loc["exp_smoothing", "MAPE"]
    shown, history = r.first_series()
    assert len(shown) == len(r.forecasts) and len(history) == 144
    r.plot(tmp_path / "bt.png")
    assert (tmp_path / "bt.png").stat().st_size > 1000


def test_backtest_with_no_origin_is_refused_before_training():
    df, kw = ts.builtin_dataset("airline")
    f = Forecaster(hidden=8, max_steps=40, progress=False)
    with pytest.raises(RnnkitError, match="no forecast origin") as e:
        f.backtest(df, start=len(df) - 2, horizon=3, **kw)
    assert "\n" not in str(e.value) and f.net is None


def test_backtest_refuses_a_season_longer_than_the_history_before_training():
    """the seasonal baselines and MASE fell back to lag 1 without a word"""
    df, kw = ts.builtin_dataset("airline")
    f = Forecaster(hidden=8, max_steps=40, progress=False)
    with pytest.raises(RnnkitError, match=r"season length \(200\) is not shorter than the history") as e:
        f.backtest(df, start=100, horizon=3, season_length=200, **kw)
    assert "\n" not in str(e.value) and f.net is None
    with pytest.raises(RnnkitError, match="season length must be a whole number"):
        f.backtest(df, start=100, horizon=3, season_length=1.5, **kw)


# --- the command line ------------------------------------------------------------------------

def test_cli_backtest_builtin_default_runs_anywhere(tmp_path):
    proc = rnnkit_cli("forecast", "backtest", "--max-steps", "20", "--hidden", "8", "--seed", "1",
                      "--plot", tmp_path / "p.png", "--output", tmp_path / "f.csv")
    assert proc.returncode == 0, proc.stderr
    assert "airline" in proc.stdout and "exp_smoothing" in proc.stdout and "MAPE" in proc.stdout
    f = pd.read_csv(tmp_path / "f.csv")
    assert (tmp_path / "p.png").exists() and f["origin"].nunique() == 19 and len(f) == 19 * 6


def test_cli_fit_then_predict(tmp_path):
    data = tmp_path / "sales.csv"
    seasonal(60).to_csv(data, index=False)
    run = tmp_path / "run"
    proc = rnnkit_cli("forecast", "fit", data, "--target", "y", "--horizon", "3", "--max-time", "20",
                      "--max-steps", "20", "--hidden", "8", "--out", run)
    assert proc.returncode == 0, proc.stderr
    pred = rnnkit_cli("forecast", "predict", run)
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.strip().splitlines()
    assert lines[0] == "date,y,y_lower,y_upper" and len(lines) == 4


@pytest.mark.parametrize("make, args, fragment", [
    (lambda: seasonal(30), ["--target", "nope", "--horizon", "2"], "no target column"),
    (lambda: pd.concat([seasonal(30), seasonal(30)]), ["--target", "y", "--horizon", "2"], "duplicate timestamp"),
    (lambda: seasonal(30).drop(index=[4]), ["--target", "y", "--horizon", "2"], "--freq"),
    (lambda: seasonal(30), ["--target", "y", "--horizon", "0"], "positive"),
])
def test_cli_bad_input_one_line(tmp_path, make, args, fragment):
    """A sample through the real command line; every message is also checked through the API."""
    path = tmp_path / "d.csv"
    make().to_csv(path, index=False)
    proc = rnnkit_cli("forecast", "fit", path, *args, "--max-steps", "5", "--out", tmp_path / "r")
    assert_one_line_error(proc, fragment)


def test_cli_predict_missing_run(tmp_path):
    assert_one_line_error(rnnkit_cli("forecast", "predict", tmp_path / "none"), "no model")
