"""Every benchmark script runs (on tiny sizes), so the full runs and the GPU check are ready."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", [
    "train_speed.py", "sample_speed.py", "large_corpus.py", "gpu.py", "dropout_speed.py"])
def test_benchmark_script_runs(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "chars/s" in proc.stdout or "MB/s" in proc.stdout
    assert "| " in proc.stdout  # printed a table


def test_cell_probe_counts_the_rules_picks():
    proc = subprocess.run([sys.executable, str(BENCH / "cell_probe.py"), "--smoke", "--steps", "1", "3"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 1 |") or line.startswith("| 3 |")]
    assert len(rows) == 4  # each step count as measured, and again in the closing table
    for row in rows:  # the picks of each step count add up to its processes
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[-2]) + int(cells[-1]) == int(cells[1]) == 2


def test_scan_speed_times_cells_by_name_and_skips_unknown_ones():
    proc = subprocess.run([sys.executable, str(BENCH / "scan_speed.py"), "--smoke", "--cells", "mingru", "nosuchcell"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "# skipped nosuchcell: not a registered cell" in proc.stdout
    assert "| 16 | mingru |" in proc.stdout and "| 32 | mingru |" in proc.stdout
    assert "chars/s" in proc.stdout and "# command: python " in proc.stdout


@pytest.mark.parametrize("command", [
    ["classify.py", "--smoke", "--no-baselines", "--settings", "scratch"],
    ["translate.py", "--smoke"],
    ["speech.py", "all", "--smoke"],
    ["music.py", "--smoke"],
    ["fault_injection.py", "--smoke"],
    ["bad_inputs.py", "--smoke"],
], ids=lambda c: c[0])
def test_task_benchmark_script_runs(command, tmp_path):
    if command[0] in ("classify.py", "translate.py", "speech.py", "music.py") and not SHARED.exists():
        pytest.skip("the benchmark's data (../shared/data) is absent")
    proc = subprocess.run([sys.executable, str(BENCH / command[0]), *command[1:]], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| " in proc.stdout  # printed a table


def test_quality_compares_cells_and_reads_the_validation_text_dynamically(small_corpus):
    proc = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--budgets", "3", "--corpus", str(small_corpus),
                           "--cells", "mingru", "--dynamic", "--", "--hidden", "16", "--layers", "1",
                           "--batch-size", "4", "--precision", "fp32"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 3")]
    assert rows and all("mingru 1x16" in r for r in rows)  # each run as it ends, then the whole table
    assert "eval dynamic" in proc.stdout


def test_quality_replays_a_budget_as_a_step_count(small_corpus):
    """``--steps``: the 60 s recommended settings (a GRU, no EMA) trained a given number of steps."""
    base = [sys.executable, str(BENCH / "quality.py"), "--budgets", "60", "--corpus", str(small_corpus)]
    tiny = ["--", "--hidden", "16", "--layers", "1", "--batch-size", "4", "--precision", "fp32"]
    proc = subprocess.run([*base, "--steps", "2", *tiny], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| 60 as 2 steps"))
    assert "gru 1x16" in row and row.split("|")[6].strip() == "2"  # the recommended cell, the steps asked
    proc = subprocess.run([*base, "--steps", "2", "3", *tiny], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "one step count for each" in proc.stderr


def test_a_replayed_budget_trains_what_the_time_budget_would(small_corpus, tmp_path):
    """The settings ``--steps`` passes give the run the configuration ``--max-time`` gives it, budget aside."""
    sys.path.insert(0, str(BENCH))
    try:
        from quality import budget_options
    finally:
        sys.path.remove(str(BENCH))
    from rnnkit.cli import main

    tiny = ["--hidden", "16", "--batch-size", "4", "--precision", "fp32", "--sample-length", "0"]
    configs = []
    for name, budget in (("steps", budget_options(1, 2)), ("time", ["--max-time", "1"])):
        assert main(["train", str(small_corpus), "--out", str(tmp_path / name), *budget, *tiny]) == 0
        config = json.loads((tmp_path / name / "config.json").read_text())
        for key in ("max_time", "max_steps", "eval_every"):
            config["train"].pop(key, None)
        configs.append((config["model"], config["train"], config["data"]))
    assert configs[0] == configs[1]
    assert configs[0][0]["ar"] == 0 and configs[0][1]["min_lr_ratio"] == 0


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name != "common.py"))
def test_every_benchmark_script_imports_and_explains_itself(script):
    """A benchmark no test runs must still import: `--help` loads every module it names."""
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_nab_benchmark_scores_a_file():
    if not (SHARED / "timeseries" / "nab").exists():
        pytest.skip("NAB (../shared/data/timeseries/nab) is absent")
    proc = subprocess.run([sys.executable, str(BENCH / "nab.py"), "--limit", "6", "--max-steps", "3"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "standard" in proc.stdout
