"""Data-parallel training with torchrun and gloo: two processes equal one with the same total batch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import rnnkit_cli

ARGS = ["--hidden", "24", "--layers", "1", "--dropout", "0", "--batch-size", "8", "--seq-len", "16",
        "--max-steps", "25", "--precision", "fp32", "--sample-length", "0", "--eval-every", "25", "--lr", "0.01"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("torchrun")
    if not exe.exists():
        exe = shutil.which("torchrun")
    if exe is None:
        pytest.skip("torchrun not found")
    return subprocess.run([str(exe), "--nproc-per-node", "2", "--master-port", "29531", "-m", "rnnkit",
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)})


def final_records(run: Path) -> tuple[list[float], float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    val = [r["val_loss"] for r in records if "val_loss" in r][-1]
    return losses, val


def test_two_processes_match_one_with_the_same_total_batch(small_corpus, tmp_path):
    single = rnnkit_cli("train", small_corpus, "--out", tmp_path / "one", *ARGS)
    assert single.returncode == 0, single.stderr
    double = torchrun("train", small_corpus, "--out", tmp_path / "two", *ARGS)
    assert double.returncode == 0, double.stderr[-2000:]
    assert double.stdout.count("run folder:") == 1  # only the first process reports

    one_losses, one_val = final_records(tmp_path / "one")
    two_losses, two_val = final_records(tmp_path / "two")
    assert len(one_losses) == len(two_losses) == 25
    # rank 0 logs the loss of its own half of the streams; the mean gradient is the same as one
    # process's, so the weights, and with them the validation loss, agree
    assert two_val == pytest.approx(one_val, abs=2e-4)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for k in a:  # Adam turns tiny summation-order differences in near-zero gradients into lr-sized steps,
        # so single elements (rare characters' embeddings) may differ; each tensor as a whole agrees
        assert (a[k] - b[k]).norm() <= 1e-2 * a[k].norm(), k


def test_resume_needs_the_same_number_of_processes(small_corpus, tmp_path):
    double = torchrun("train", small_corpus, "--out", tmp_path / "two", *ARGS)
    assert double.returncode == 0, double.stderr[-2000:]
    proc = rnnkit_cli("train", "--resume", tmp_path / "two", "--max-steps", "30")
    assert proc.returncode != 0 and "same number" in proc.stderr


@pytest.mark.parametrize("command", [
    ["longlag", "--task", "adding", "--length", "20", "--cell", "gru", "--hidden", "16", "--batch-size", "32",
     "--max-steps", "15", "--eval-size", "100", "--precision", "fp32"],
    ["forecast", "fit", "--hidden", "8", "--max-steps", "15", "--eval-every", "15", "--batch-size", "32"]],
    ids=["longlag", "forecast"])
def test_other_tasks_train_data_parallel_too(command, tmp_path):
    """Every task trains under torchrun through the same fit(): each process takes its share of the batch."""
    single = rnnkit_cli(*command, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    double = torchrun(*command, "--out", tmp_path / "two")
    assert double.returncode == 0, double.stderr[-2000:]
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    assert torch.load(tmp_path / "two" / "last.pt", weights_only=True)["trainer"]["world_size"] == 2
    for k in a:
        assert (a[k] - b[k]).norm() <= 1e-2 * a[k].norm() + 1e-6, k
