"""Numenta Anomaly Benchmark (NAB) scoring, from the paper and the NAB repository's README.

Lavin and Ahmad (2015), "Evaluating Real-time Anomaly Detection Algorithms -- the Numenta
Anomaly Benchmark". A detector emits a score per timestamp; a detection is a score at or
above a threshold. Each labelled anomaly window rewards its *earliest* detection with a
scaled sigmoid of the detection's position (full reward A_TP at the window's start, falling
towards 0 at its end; later detections in the same window count for nothing); a window with
no detection costs A_FN. A detection outside every window costs A_FP times a scaled sigmoid
of its distance after the preceding window (so a late detection just after a window is
penalised less; one far from any window costs the full A_FP). Detections in the
probationary period (the first 15% of a file, at most 750 rows) are ignored.

The raw score of a corpus is summed over files and normalised so that the null detector
(no detections) scores 0 and the perfect detector (one detection at the start of every
window) scores 100. As in NAB, the threshold is one per profile for the whole corpus, chosen
to maximise that profile's score (:func:`optimize_threshold`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RnnkitError

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION_PERCENT = 0.15


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """NAB's reward curve: 2 / (1 + e^(5x)) - 1, and -1 beyond x = 3 (far after a window)."""
    x = np.asarray(x, dtype=float)
    out = np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.clip(5.0 * x, -700, 700))) - 1.0)
    return out if out.ndim else float(out)


def probation_length(n: int) -> int:
    """Rows at the start of a file where detections are ignored: 15%, at most 750."""
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


@dataclass
class FileLabels:
    """One data file's row positions and anomaly windows, as row ranges ``[first, last]``."""

    n: int
    windows: list[tuple[int, int]]


def window_rows(timestamps: Sequence | pd.DatetimeIndex, windows: Iterable[Sequence[str]]) -> list[tuple[int, int]]:
    """Map ``[start, end]`` time windows onto row ranges of ``timestamps`` (inclusive)."""
    t = pd.DatetimeIndex(pd.to_datetime(timestamps))
    rows = []
    for start, end in windows:
        a = int(t.searchsorted(pd.Timestamp(start), side="left"))
        b = int(t.searchsorted(pd.Timestamp(end), side="right")) - 1
        if a <= b:
            rows.append((a, b))
    return rows


def point_weights(labels: FileLabels) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the unweighted sigmoid value of a detection there, and its window id (-1: outside).

    Inside a window of width w whose last row is R, a detection at row i sits at relative
    position -(R - i + 1)/w (from -1 at the first row to -1/w at the last) and earns
    sigmoid(position) / sigmoid(-1) of A_TP (1 at the first row). After a window, a detection
    at row i costs sigmoid((i - R)/(w - 1)) of A_FP (near 0 just after, -1 from 3 window widths
    on); before any window it costs the full -1.
    """
    n = labels.n
    value = np.full(n, -1.0)
    window_id = np.full(n, -1, dtype=int)
    max_tp = scaled_sigmoid(-1.0)
    bounds = sorted(labels.windows)
    for k, (a, b) in enumerate(bounds):
        width = b - a + 1
        i = np.arange(a, b + 1)
        value[a:b + 1] = scaled_sigmoid(-(b - i + 1) / width) / max_tp
        window_id[a:b + 1] = k
        nxt = bounds[k + 1][0] if k + 1 < len(bounds) else n
        j = np.arange(b + 1, nxt)
        if len(j):
            value[b + 1:nxt] = scaled_sigmoid(np.abs(b - j) / max(width - 1, 1))
    return value, window_id


def raw_file_score(detections: np.ndarray, labels: FileLabels, profile: str = "standard") -> float:
    """NAB's raw score of one file: the earliest detection per window, every false positive, every miss."""
    w = PROFILES[profile]
    value, window_id = point_weights(labels)
    det = np.asarray(detections, bool).copy()
    det[:probation_length(labels.n)] = False
    fp = det & (window_id < 0)
    score = float((value[fp] * w["fp"]).sum())
    for k in range(len(labels.windows)):
        hits = np.flatnonzero(det & (window_id == k))
        score += value[hits[0]] * w["tp"] if len(hits) else -w["fn"]
    return score


def score_bounds(files: Sequence[FileLabels], profile: str = "standard") -> tuple[float, float]:
    """The raw corpus scores of the null detector (never fires) and the perfect one (each window's first row)."""
    null = sum(raw_file_score(np.zeros(f.n, bool), f, profile) for f in files)
    perfect = sum(raw_file_score(perfect_detections(f), f, profile) for f in files)
    if perfect == null:
        raise RnnkitError("these files hold no anomaly window: NAB's normalised score needs at least one")
    return null, perfect


def normalized_score(raw: float, files: Sequence[FileLabels], profile: str = "standard") -> float:
    """100 * (raw - null) / (perfect - null), over a corpus of files."""
    null, perfect = score_bounds(files, profile)
    return 100.0 * (raw - null) / (perfect - null)


def perfect_detections(labels: FileLabels) -> np.ndarray:
    det = np.zeros(labels.n, bool)
    for a, _ in labels.windows:
        det[a] = True
    return det


def corpus_score(detections: Sequence[np.ndarray], files: Sequence[FileLabels], profile: str = "standard") -> float:
    """Normalised NAB score of binary detections, one array per file."""
    raw = sum(raw_file_score(d, f, profile) for d, f in zip(detections, files, strict=True))
    return normalized_score(raw, files, profile)


class _Prepared:
    """A file's per-row weights, for scoring many thresholds fast."""

    def __init__(self, scores: np.ndarray, labels: FileLabels) -> None:
        self.value, self.window_id = point_weights(labels)
        start = probation_length(labels.n)
        self.scores = np.asarray(scores, float)[start:]
        self.value, self.window_id = self.value[start:], self.window_id[start:]
        self.n_windows = len(labels.windows)
        # windows that begin in the probation period still count (as misses if undetectable), as in NAB
        self.fp_order = np.argsort(-self.scores[self.window_id < 0])
        self.fp_scores = self.scores[self.window_id < 0][self.fp_order]
        self.fp_cum = np.cumsum(self.value[self.window_id < 0][self.fp_order])

    def raw(self, threshold: float, w: dict[str, float]) -> float:
        k = int(np.searchsorted(-self.fp_scores, -threshold, side="right"))
        score = float(self.fp_cum[k - 1]) * w["fp"] if k else 0.0
        det = self.scores >= threshold
        for win in range(self.n_windows):
            hits = np.flatnonzero(det & (self.window_id == win))
            score += self.value[hits[0]] * w["tp"] if len(hits) else -w["fn"]
        return score


def optimize_threshold(scores: Sequence[np.ndarray], files: Sequence[FileLabels], profile: str = "standard",
                       candidates: np.ndarray | None = None) -> tuple[float, float]:
    """The threshold maximising a profile's normalised score over the corpus, and that score.

    NAB chooses one threshold per profile for the whole corpus (its ``optimize`` step); here the
    candidates are 0..1 in steps of 0.0025 plus the tail quantiles of all scores.
    """
    w = PROFILES[profile]
    prepared = [_Prepared(s, f) for s, f in zip(scores, files, strict=True)]
    if candidates is None:
        everything = np.concatenate([np.asarray(s, float) for s in scores])
        q = np.quantile(everything, 1 - np.logspace(-5, -0.3, 200))
        candidates = np.unique(np.concatenate([np.linspace(0, 1, 401), q]))
    null, perfect = score_bounds(files, profile)
    best_t, best = float(candidates[0]), -math.inf
    for t in candidates:
        raw = sum(p.raw(float(t), w) for p in prepared)
        s = 100.0 * (raw - null) / (perfect - null)
        if s > best:
            best, best_t = s, float(t)
    return best_t, best


# --- the NAB corpus on disk --------------------------------------------------------------------

def load_corpus(root: str | Path) -> list[tuple[str, pd.DataFrame, FileLabels]]:
    """Every NAB data file under ``root/data`` with its windows from ``root/labels/combined_windows.json``."""
    root = Path(root)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    out = []
    for name in sorted(windows):
        df = pd.read_csv(root / "data" / name)
        df["timestamp"] = pd.to_datetime(df["timestamp"])
        out.append((name, df, FileLabels(len(df), window_rows(df["timestamp"], windows[name]))))
    return out


__all__ = ["PROFILES", "scaled_sigmoid", "probation_length", "FileLabels", "window_rows", "point_weights",
           "raw_file_score", "normalized_score", "corpus_score", "optimize_threshold", "load_corpus"]
