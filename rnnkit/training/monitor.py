"""What a run shows and keeps: the progress bar, the metrics log (JSON Lines) and the loss plot."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..io import atomic_write_text


class Progress:
    """A live bar (loss, last validation metric, rate, ETA) on a terminal; one line per evaluation otherwise."""

    def __init__(self, unit: str = "chars", enabled: bool | None = None) -> None:
        """``enabled``: None shows a bar on a terminal and plain lines elsewhere; True a bar; False nothing."""
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.silent = enabled is False
        self.unit = unit
        self.bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
                        disable=not self.tty, file=sys.stderr, dynamic_ncols=True, leave=True)
        self._shown = 0

    def update(self, fraction: float, fields: dict[str, Any]) -> None:
        """Move the bar to ``fraction`` of the whole run, showing ``fields`` after it."""
        target = min(1000, int(fraction * 1000))
        if target > self._shown:
            self.bar.update(target - self._shown)
            self._shown = target
        self.bar.set_postfix_str(format_fields(fields), refresh=False)

    def message(self, text: str) -> None:
        """A line that stays: above the bar on a terminal, plain on stderr otherwise."""
        if self.silent:
            return
        if self.tty:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        if isinstance(v, float):
            v = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}"
        parts.append(f"{k} {v}")
    return "  ".join(parts)


class MetricsLog:
    """Appends one JSON object per line; read back with :func:`read_metrics`."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` (a resumed run replays them from its checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The log's records; a damaged line (the log is for people, who may edit it) is skipped, not fatal."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Stopwatch:
    """Time that counts toward a budget: pause it around work that should not (evaluation, saving)."""

    def __init__(self, elapsed: float = 0.0) -> None:
        self.elapsed_before = elapsed
        self.started: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def pause(self) -> None:
        if self.started is not None:
            self.elapsed_before += time.perf_counter() - self.started
            self.started = None

    @property
    def elapsed(self) -> float:
        running = time.perf_counter() - self.started if self.started is not None else 0.0
        return self.elapsed_before + running
