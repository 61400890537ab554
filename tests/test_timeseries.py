"""Loading and validating time series, the gap policy, calendar features, scaling, metrics, baselines,
and the NAB scorer on hand-made cases."""

import numpy as np
import pandas as pd
import pytest

from rnnkit.data import nab
from rnnkit.data import timeseries as ts
from rnnkit.errors import RnnkitError


def frame(n=30, freq="D", **cols):
    t = pd.date_range("2024-01-01", periods=n, freq=freq)
    return pd.DataFrame({"timestamp": t, "y": np.arange(n, dtype=float), **cols})


# --- loading -----------------------------------------------------------------------------------

def test_loads_single_series_infers_frequency_and_sorts():
    df = frame(10).sample(frac=1, random_state=0)          # shuffled rows
    s = ts.load_series(df, "y")
    assert s.freq == "D" and len(s) == 1
    np.testing.assert_array_equal(s.target[0][:, 0], np.arange(10.0))
    assert s.index[0].is_monotonic_increasing


def test_loads_several_series_and_covariates_from_csv(tmp_path):
    a, b = frame(12, x=np.ones(12)), frame(12, x=np.zeros(12))
    a["store"], b["store"] = "a", "b"
    b["y"] *= 10
    path = tmp_path / "d.csv"
    pd.concat([a, b]).to_csv(path, index=False)
    s = ts.load_series(path, "y", series_id="store", past_covariates="x")
    assert s.ids == ["a", "b"] and s.past_cols == ["x"]
    assert s.target[1][-1, 0] == 110 and s.past[0].shape == (12, 1)


def test_loads_parquet_like_csv(tmp_path):
    a, b = frame(12, x=np.ones(12)), frame(12, x=np.zeros(12))
    a["store"], b["store"] = "a", "b"
    both = pd.concat([a, b])
    both.to_csv(tmp_path / "d.csv", index=False)
    both.to_parquet(tmp_path / "d.parquet", index=False)
    csv, pq = (ts.load_series(tmp_path / f"d.{ext}", "y", series_id="store", past_covariates="x")
               for ext in ("csv", "parquet"))
    assert pq.ids == csv.ids and pq.freq == csv.freq == "D"
    for i in range(2):
        np.testing.assert_array_equal(pq.target[i], csv.target[i])
        np.testing.assert_array_equal(pq.past[i], csv.past[i])
        assert (pq.index[i] == csv.index[i]).all()


def test_corrupt_parquet_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(RnnkitError) as e:
        ts.load_series(path, "y")
    assert "cannot read" in str(e.value) and "\n" not in str(e.value)


def test_target_defaults_to_numeric_columns():
    s = ts.load_series(frame(5, z=np.ones(5)))
    assert s.target_cols == ["y", "z"]


@pytest.mark.parametrize("df, kwargs, fragment", [
    (frame(10), {"target": "nope"}, "no target column 'nope'"),
    (frame(10).assign(y=["a"] * 10), {"target": "y"}, "is not numeric"),
    (frame(10).assign(timestamp=["2024-01-01"] * 9 + ["not a date"]), {"target": "y"}, "unparsable timestamp"),
    (pd.concat([frame(5), frame(5)]), {"target": "y"}, "duplicate timestamp"),
    (frame(10).drop(index=[3, 4]), {"target": "y"}, "--freq"),
    (frame(10).drop(index=[3, 4]), {"target": "y", "freq": "D"}, "missing value"),
    (frame(10).assign(y=[1.0] * 5 + [np.nan] + [1.0] * 4), {"target": "y"}, "fill="),
    (frame(10), {"target": "y", "freq": "7D"}, "off the"),
])
def test_bad_input_is_a_one_line_error(df, kwargs, fragment):
    with pytest.raises(RnnkitError) as e:
        ts.load_series(df, **kwargs)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_irregular_spacing_error_suggests_the_frequency():
    df = frame(20, freq="h").drop(index=[5])
    with pytest.raises(RnnkitError, match="--freq h"):
        ts.load_series(df, "y")


def test_gap_policies():
    df = frame(10).drop(index=[4, 5])
    filled = ts.load_series(df, "y", freq="D", fill="ffill").target[0][:, 0]
    interp = ts.load_series(df, "y", freq="D", fill="interpolate").target[0][:, 0]
    assert filled[4] == filled[5] == 3.0
    np.testing.assert_allclose(interp, np.arange(10.0))


def test_irregular_allowed_when_not_regular():
    df = frame(10).drop(index=[2, 7])
    assert len(ts.load_series(df, "y", regular=False).target[0]) == 8


def test_builtin_datasets_load_without_files():
    for name in ts.DATASETS:
        df, kw = ts.builtin_dataset(name)
        s = ts.load_series(df, **kw)
        assert len(s.target[0]) > 100 and np.isfinite(s.target[0]).all()
    s = ts.load_series(*ts.builtin_dataset("airline")[:1], **ts.builtin_dataset("airline")[1])
    assert s.freq == "MS" and s.target[0][0, 0] == 112 and s.target[0][-1, 0] == 432 and len(s.target[0]) == 144


# --- features, scaling, windows ----------------------------------------------------------------

def test_season_length_and_calendar_features():
    assert ts.season_length("MS") == 12 and ts.season_length("D") == 7 and ts.season_length("h") == 24
    assert ts.season_length("30min") == 48 and ts.season_length("W-SUN") == 52 and ts.season_length("YS") == 1
    idx = pd.date_range("2024-01-01", periods=24, freq="MS")
    f = ts.calendar_features(idx, "MS")
    assert f.shape == (24, 2)
    np.testing.assert_allclose(f[0], f[12])                 # same month, same features
    assert ts.calendar_features(pd.date_range("2024-01-01", periods=5, freq="h"), "h").shape == (5, 4)


def test_scaler_round_trip_and_log():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    for log in (False, True):
        s = ts.Scaler.fit(x, log)
        np.testing.assert_allclose(s.inverse(s.transform(x)), x)
        np.testing.assert_allclose(ts.Scaler.from_dict(s.to_dict()).transform(x), s.transform(x))
    with pytest.raises(RnnkitError, match="positive"):
        ts.Scaler.fit(np.array([[0.0], [1.0]]), log=True)


def test_sliding_windows_shapes():
    w = ts.sliding_windows(np.arange(10.0).reshape(5, 2), 3)
    assert w.shape == (3, 3, 2)
    np.testing.assert_array_equal(w[1, :, 0], [2, 4, 6])


# --- metrics and baselines ---------------------------------------------------------------------

def test_metrics_by_hand():
    a, p = np.array([100.0, 200.0]), np.array([110.0, 180.0])
    m = ts.all_metrics(a, p, insample=np.array([1.0, 3.0, 5.0]), m=1)
    assert m["MAE"] == 15 and m["RMSE"] == pytest.approx(np.sqrt(250))
    assert m["MAPE"] == pytest.approx(10.0)
    assert m["sMAPE"] == pytest.approx(100 * (20 / 210 + 40 / 380) / 2)
    assert m["MASE"] == pytest.approx(15 / 2)
    assert np.isnan(ts.mape(np.array([0.0]), np.array([1.0])))


def test_baselines():
    h = np.arange(24.0)[:, None] % 12
    np.testing.assert_array_equal(ts.naive_forecast(h, 3)[:, 0], [11, 11, 11])
    np.testing.assert_array_equal(ts.seasonal_naive_forecast(h, 14, 12)[:, 0], list(range(12)) + [0, 1])
    season = np.tile(np.sin(np.arange(12) / 12 * 2 * np.pi), 4)[:, None] + np.arange(48)[:, None] * 0.1
    ets = ts.exp_smoothing_forecast(season, 12, 12)
    truth = np.tile(np.sin(np.arange(12) / 12 * 2 * np.pi), 1) + np.arange(48, 60) * 0.1
    assert np.abs(ets[:, 0] - truth).max() < 0.05


# --- NAB scoring -------------------------------------------------------------------------------

def test_scaled_sigmoid_values():
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert nab.scaled_sigmoid(3.5) == -1.0
    assert nab.probation_length(1000) == 150 and nab.probation_length(10_000) == 750


LABELS = nab.FileLabels(1000, [(400, 499)])  # probation 150 rows; one window of 100 rows


def det(*rows, n=1000):
    d = np.zeros(n, bool)
    d[list(rows)] = True
    return d


def test_raw_scores_hand_made():
    w = nab.PROFILES["standard"]
    assert nab.raw_file_score(det(), LABELS) == -w["fn"]                        # a miss
    assert nab.raw_file_score(det(400), LABELS) == pytest.approx(1.0)           # earliest: full reward
    assert nab.raw_file_score(det(400, 450), LABELS) == pytest.approx(1.0)      # later ones in a window: nothing
    late = nab.raw_file_score(det(499), LABELS)
    assert 0 < late < 0.1                                                        # at the very end: almost nothing
    assert nab.raw_file_score(det(200), LABELS) == pytest.approx(-w["fp"] - w["fn"])  # FP before any window
    assert nab.raw_file_score(det(100), LABELS) == -w["fn"]                     # probation: ignored
    just_after = nab.raw_file_score(det(500), LABELS) + w["fn"]
    far_after = nab.raw_file_score(det(900), LABELS) + w["fn"]
    assert -w["fp"] < just_after < 0 and far_after == pytest.approx(-w["fp"])    # FP cost grows after a window
    assert nab.raw_file_score(det(200), LABELS, "reward_low_FP_rate") == pytest.approx(-0.22 - 1)
    assert nab.raw_file_score(det(), LABELS, "reward_low_FN_rate") == -2


def test_normalisation_null_zero_perfect_hundred():
    files = [LABELS, nab.FileLabels(500, [(200, 249), (300, 349)]), nab.FileLabels(300, [])]
    for profile in nab.PROFILES:
        assert nab.corpus_score([np.zeros(f.n, bool) for f in files], files, profile) == pytest.approx(0)
        perfect = [nab.perfect_detections(f) for f in files]
        assert nab.corpus_score(perfect, files, profile) == pytest.approx(100)
        half = [det(400), np.zeros(500, bool), np.zeros(300, bool)]
        assert 0 < nab.corpus_score(half, files, profile) < 100


def test_a_corpus_without_anomaly_windows_has_no_normalised_score():
    files = [nab.FileLabels(300, [])]
    with pytest.raises(RnnkitError, match="no anomaly window"):
        nab.optimize_threshold([np.zeros(300)], files)
    with pytest.raises(RnnkitError, match="no anomaly window"):
        nab.normalized_score(0.0, files)


def test_threshold_optimisation_finds_the_separating_threshold():
    files = [LABELS]
    scores = np.zeros(1000)
    scores[400] = 0.9      # true detection at the window start
    scores[700] = 0.5      # a false positive below it
    thr, best = nab.optimize_threshold([scores], files)
    assert 0.5 < thr <= 0.9 and best == pytest.approx(100)
    # the fast threshold path agrees with direct scoring
    raw = nab.raw_file_score(scores >= 0.4, LABELS)
    assert nab.normalized_score(raw, files) == pytest.approx(
        nab.optimize_threshold([scores], files, candidates=np.array([0.4]))[1])


def test_window_rows_from_timestamps():
    t = pd.date_range("2024-01-01", periods=10, freq="h")
    rows = nab.window_rows(t, [["2024-01-01 02:00:00.000000", "2024-01-01 04:30:00"]])
    assert rows == [(2, 4)]
