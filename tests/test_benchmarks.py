"""Every benchmark script runs (on tiny sizes), so the full runs and the GPU check are ready."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["train_speed.py", "sample_speed.py", "large_corpus.py", "gpu.py"])
def test_benchmark_script_runs(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "chars/s" in proc.stdout or "MB/s" in proc.stdout
    assert "| " in proc.stdout  # printed a table
