"""Detector: batch and streaming scores agree and are causal, anomalies are found, the CLI, and NAB data."""

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED, assert_one_line_error, rnnkit_cli

from rnnkit import Detector, RnnkitError
from rnnkit.data import nab
from rnnkit.tasks.anomaly import ErrorScorer, telemanom_z

NAB_ROOT = SHARED / "timeseries" / "nab"


def series(n=1500, spike=1200, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 40) + 0.05 * rng.standard_normal(n)
    y[spike:spike + 5] += 2.5
    return pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min"), "value": y})


@pytest.fixture(scope="module")
def detector():
    return Detector(window=24, hidden=16, max_steps=150, seed=0).fit(series().iloc[:600])


def test_finds_the_injected_anomaly_and_little_else(detector):
    scores = detector.score(series())
    windows = detector.detect(scores=scores)
    assert any(w["first"] <= 1210 and w["last"] >= 1200 for _, w in windows.iterrows()), windows
    assert scores["anomaly"].mean() < 0.05
    assert scores["alarm"].sum() <= len(windows)
    assert scores.loc[1200:1205, "score"].max() > 0.9


def test_streaming_equals_batch(detector):
    y = series()["value"].to_numpy()[:900]
    batch = detector.score(y)["score"].to_numpy()
    detector.reset()
    stream = np.array([detector.update(v) for v in y])
    np.testing.assert_allclose(stream, batch, atol=1e-5)


def test_scores_are_causal(detector):
    """Changing the future leaves every earlier score unchanged."""
    y = series()["value"].to_numpy()
    a = detector.score(y)["score"].to_numpy()
    z = y.copy()
    z[1000:] += 10
    b = detector.score(z)["score"].to_numpy()
    np.testing.assert_array_equal(a[:1000], b[:1000])
    assert b[1000:1010].max() > a[1000:1010].max()


def test_reconstruction_autoencoder_scores_the_spike_high():
    det = Detector(method="reconstruction", window=16, hidden=16, max_steps=150, seed=0).fit(series().iloc[:600])
    s = det.score(series())["score"].to_numpy()
    assert s[1200:1206].max() > np.quantile(s[600:1150], 0.99)


def test_scorer_threshold_and_telemanom_choice():
    rng = np.random.default_rng(0)
    errors = np.abs(rng.standard_normal(500)) * 0.1
    errors[300:305] = 3.0
    z = telemanom_z(errors)
    assert 2.5 <= z <= 12
    assert (errors > errors.mean() + z * errors.std()).sum() == 5       # exactly the outlying run
    sc = ErrorScorer(smoothing=1, history=200, z=6.0, refresh=50, warmup=20, suppress=50)
    out = [sc.step(e) for e in errors]
    alarms = [i for i, o in enumerate(out) if o[3]]
    assert alarms == [300]                                              # one alarm per incident
    assert out[10][2] == 0.0 and 0 <= min(o[2] for o in out) and max(o[2] for o in out) <= 1


def test_bad_input():
    with pytest.raises(RnnkitError, match="not fitted"):
        Detector().score(np.zeros(10))
    with pytest.raises(RnnkitError, match="window"):
        Detector(window=50, max_steps=5).fit(np.zeros(20))
    with pytest.raises(RnnkitError, match="method"):
        Detector(method="magic")
    with pytest.raises(RnnkitError, match="one value column"):
        Detector(max_steps=5).fit(series().assign(other=1.0))
    with pytest.raises(RnnkitError, match="one series"):
        Detector(max_steps=5).fit(np.ones((50, 2)))  # was flattened into one series, interleaving both
    for bad in [{"smoothing": float("nan")}, {"refresh": float("nan")}, {"z": float("inf")},
                {"min_gap": float("nan")}]:  # NaN passed the old `v <= 0` checks and scored every row 0
        with pytest.raises(RnnkitError, match="must be"):
            Detector(**bad)
    for bad in [{"window": 2.5}, {"hidden": 8.0}, {"smoothing": 1.5}, {"min_gap": 2.5}, {"suppress": -1}]:
        with pytest.raises(RnnkitError, match=f"{next(iter(bad))} must be a whole number"):
            Detector(**bad)  # a float window failed in deque() or torch at fit, a float gap was taken as is
    assert Detector(window=np.int64(8), max_steps=2).fit(np.sin(np.arange(100) / 5)).window == 8


def test_cli_detect_writes_csv_and_plot(tmp_path):
    data = tmp_path / "s.csv"
    series().to_csv(data, index=False)
    proc = rnnkit_cli("detect", data, "--window", "24", "--hidden", "16", "--max-steps", "100",
                      "--train-fraction", "0.4", "--output", tmp_path / "out.csv", "--plot", tmp_path / "p.png",
                      "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["timestamp", "value", "score", "anomaly"] and len(out) == 1500
    assert out.loc[1195:1215, "anomaly"].any()
    assert "anomaly window" in proc.stdout and (tmp_path / "p.png").stat().st_size > 1000


def test_cli_detect_bad_input_one_line(tmp_path):
    data = tmp_path / "s.csv"
    series(300).to_csv(data, index=False)
    assert_one_line_error(rnnkit_cli("detect", data, "--value", "nope"), "no target column 'nope'")


@pytest.mark.skipif(not (NAB_ROOT / "labels" / "combined_windows.json").exists(), reason="NAB data absent")
def test_nab_corpus_null_and_perfect():
    corpus = nab.load_corpus(NAB_ROOT)
    assert len(corpus) == 58
    files = [f for _, _, f in corpus]
    assert sum(len(f.windows) for f in files) == 116
    for profile in nab.PROFILES:
        assert nab.corpus_score([np.zeros(f.n, bool) for f in files], files, profile) == pytest.approx(0)
        assert nab.corpus_score([nab.perfect_detections(f) for f in files], files, profile) == pytest.approx(100)

