"""Run folders that never lose or mix work: each case first failed as a user ran it (issue 12)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, rnnkit_cli

from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import run_checkpoint

STEPS = ["--max-steps", "30", "--eval-every", "10"]


@pytest.fixture(scope="module")
def finished(small_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "done"
    proc = rnnkit_cli("train", small_corpus, *TINY, *STEPS, "--out", run)
    assert proc.returncode == 0, proc.stderr
    return run


def lock_holder(run: Path) -> str:
    try:
        return (run / ".lock").read_text().strip()
    except OSError:
        return ""


def copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (to / f.name).write_bytes(f.read_bytes())
    return to


def test_a_folder_that_is_not_a_run_is_refused_untouched(small_corpus, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text('{"mine": 1}')
    (d / "metrics.jsonl").write_text("notes\n")
    assert_one_line_error(rnnkit_cli("train", small_corpus, *TINY, *STEPS, "--out", d), "not an rnnkit run folder")
    assert (d / "config.json").read_text() == '{"mine": 1}' and (d / "metrics.jsonl").read_text() == "notes\n"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.jsonl"]


@pytest.mark.parametrize("resume", [False, True], ids=["new", "resume"])
def test_a_second_writer_is_refused_while_the_first_runs(small_corpus, tmp_path, finished, resume):
    run = copy_run(finished, tmp_path / "v") if resume else tmp_path / "v"
    first_args = ["--resume", run, "--max-steps", "100000"] if resume else [small_corpus, *TINY, "--max-steps",
                                                                             "100000", "--out", run]
    first = subprocess.Popen([sys.executable, "-m", "rnnkit", "train", *map(str, first_args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock_holder(run) == str(first.pid) and (run / "metrics.jsonl").exists()):  # it holds the lock
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()[1]
            time.sleep(0.05)
        second = ["--resume", run, "--max-steps", "200000"] if resume else [small_corpus, *TINY, "--seed", "2",
                                                                            *STEPS, "--out", run]
        proc = rnnkit_cli("train", *second)
        assert_one_line_error(proc, "in use by another rnnkit process" if resume else "")
        assert "in use by another rnnkit process" in proc.stderr or "already holds a run" in proc.stderr
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert first.returncode == 143
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line and '"grad_norm"' in line]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one writer's records, once each


def test_stale_temp_files_of_dead_writers_are_removed(finished, tmp_path):
    run = copy_run(finished, tmp_path / "r")
    stale = run / ".last.pt.abc123.tmp"
    stale.write_bytes(os.urandom(1000))
    proc = rnnkit_cli("train", "--resume", run, "--max-steps", "40")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and not list(run.glob(".*.tmp"))


def test_damaged_token_file_is_refused_or_rebuilt_from_the_named_corpus(finished, small_corpus, tmp_path):
    for damage in ("truncate", "random", "empty", "delete"):
        run = copy_run(finished, tmp_path / damage)
        tokens = run / "tokens.bin"
        data = tokens.read_bytes()
        if damage == "delete":
            tokens.unlink()
        else:
            tokens.write_bytes({"truncate": data[:30_000], "random": os.urandom(len(data)), "empty": b""}[damage])
        assert_one_line_error(rnnkit_cli("train", "--resume", run, "--max-steps", "40"),
                              f"give the corpus again to rebuild it: rnnkit train CORPUS --resume {run}")
    proc = rnnkit_cli("train", small_corpus, "--resume", tmp_path / "delete", "--max-steps", "40")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "delete" / "tokens.bin").read_bytes() == (finished / "tokens.bin").read_bytes()


def test_a_checkpoint_naming_a_corpus_never_gets_it_read(finished, tmp_path):
    run = copy_run(finished, tmp_path / "r")
    state = torch.load(run / "last.pt", weights_only=True)
    meta = json.loads(state["meta"])
    meta["data"]["corpus"], meta["tokens"]["files"] = ["/etc/passwd"], ["/etc/passwd"]
    state["meta"] = json.dumps(meta)
    torch.save(state, run / "last.pt")
    (run / "tokens.bin").unlink()
    proc = rnnkit_cli("train", "--resume", run, "--max-steps", "40")
    assert_one_line_error(proc, "give the corpus again")
    assert not (run / "tokens.bin").exists()


def test_mismatched_averaged_weights_are_a_one_line_error(finished, tmp_path):
    run = copy_run(finished, tmp_path / "r")
    state = torch.load(run / "last.pt", weights_only=True)
    for k in state["model"]:
        state["model"][k] = torch.zeros(3)
    torch.save(state, run / "last.pt")
    assert_one_line_error(rnnkit_cli("train", "--resume", run, "--max-steps", "40"), "does not fit")


def test_a_damaged_metrics_line_does_not_stop_training_and_nothing_is_logged_twice(finished, tmp_path):
    run = copy_run(finished, tmp_path / "r")
    with (run / "metrics.jsonl").open("a") as f:
        f.write("this is not json\n")
        f.write(json.dumps({"step": 35, "loss": 9.0, "grad_norm": 1.0, "clipped": 0}) + "\n")  # a replayed step
    proc = rnnkit_cli("train", "--resume", run, "--max-steps", "40")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    per_step = [r["step"] for r in records if "grad_norm" in r and "loss" in r]
    assert per_step == list(range(1, 41))
    evals = [r["step"] for r in records if "val_loss" in r]
    assert len(evals) == len(set(evals))


def test_full_disk_keeps_the_last_good_checkpoint_and_stops_in_one_line(finished, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        run = copy_run(finished, mount / "r")
        before = (run / "last.pt").read_bytes()
        with open(mount / "filler", "wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (2 << 20))
        proc = rnnkit_cli("train", "--resume", run, "--max-steps", "40")
        assert_one_line_error(proc)
        assert (run / "last.pt").read_bytes() == before
        assert not list(run.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("args,message", [
    (["detect", "{data}", "--output", "{dir}"], "is a folder"),
    (["detect", "{data}", "--plot", "{file}/x.png"], "is a file, not a folder"),
    (["detect", "{data}", "--plot", "{dir}/p.txt"], "must be a .png file, got"),
    (["forecast", "backtest", "--plot", "{dir}/p.jpg"], "must be a .png file, got"),
    (["translate", "predict", "{run}", "Ein Hund.", "--attention", "{dir}/a.txt"], "must be a .png file, got"),
    (["gradflow", "--out", "{dir}/g.txt"], "must be a .png file, got"),
    (["detect", "{data}", "--grad-clip", "-1"], "argument --grad-clip"),
    (["forecast", "predict", "{run}", "--output", "{dir}"], "is a folder"),
    (["train", "{data}", "--out", "{file}"], "is a file, not a folder"),
    (["train", "{data}", "--out", "{file}/sub"], "is a file, not a folder"),
    (["train", "--resume", "{run}", "--out", "{dir}"], "not both"),
    (["translate", "eval", "{run}", "--src", "{data}", "--ref", "{data}", "--output", "{dir}"], "is a folder"),
    (["speech", "eval", "{run}", "{dir}", "--output", "{dir}"], "is a folder"),
    (["sample", "{run}", "--seed", "99999999999999999999999"], "argument --seed: must be in 0.."),
    (["music", "generate", "{run}", "--out", "{dir}/m.mid", "--seed", "-1"], "argument --seed: must be in 0.."),
    (["classify", "cv", "{data}", "--fold-seed", "-1"], "argument --fold-seed: must be in 0.."),
    (["detect", "{data}", "--z", "inf"], "argument --z: must be positive and finite"),
    (["gradflow", "--cell", "rnn:orthogonal:1e39", "--corpus", "{data}", "--hidden", "8", "--out", "{dir}/g.png"],
     "overflows the recurrent weights")])
def test_output_paths_are_checked_before_any_work(args, message, tmp_path, small_corpus, finished):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    fill = {"data": small_corpus, "dir": tmp_path / "dir", "file": tmp_path / "file", "run": finished}
    start = time.time()
    assert_one_line_error(rnnkit_cli(*[a.format(**fill) for a in args]), message)
    assert time.time() - start < 60


def test_eval_checks_every_file_before_reporting_any(finished, small_corpus, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    proc = rnnkit_cli("eval", finished, small_corpus, tmp_path / "empty.txt")
    assert_one_line_error(proc, "empty.txt")
    assert proc.stdout == ""


def test_a_damaged_best_checkpoint_is_refused_before_a_resume_changes_the_run(finished, tmp_path):
    run = copy_run(finished, tmp_path / "r")
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:300])  # fit reads it only after training
    last = (run / "last.pt").read_bytes()
    assert_one_line_error(rnnkit_cli("train", "--resume", run, "--max-steps", "40"), "best.pt", "remove it")
    assert (run / "last.pt").read_bytes() == last


def test_written_outputs_keep_links_and_special_files_and_failures_leave_no_folder(tmp_path):
    from rnnkit.io import atomic_write_text, output_folder

    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old")
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"

    fifo = tmp_path / "fifo"  # like /dev/stdout: written in place, never replaced by a regular file
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomic_write_text(fifo, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)

    for made_here in (True, False):
        folder = tmp_path / f"out{made_here}"
        if not made_here:
            folder.mkdir()
        with pytest.raises(OSError), output_folder(folder) as out:
            (out / "half.html").write_text("<html>")
            raise OSError(28, "No space left on device")
        assert folder.exists() != made_here


def test_eval_leaves_out_characters_the_model_cannot_score(finished, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("First Citizen: ΩΩ ok\n" * 20, encoding="utf-8")
    proc = rnnkit_cli("eval", finished, text)
    assert proc.returncode == 0, proc.stderr
    assert "40 characters outside the vocabulary left out" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].split()[-2] == "bpc"


def tmpfs(path: Path, *options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_read_only_and_full_folders_are_one_line_errors(small_corpus, tmp_path):
    ro, full = tmp_path / "ro", tmp_path / "full"
    if not (tmpfs(ro, "ro") and tmpfs(full)):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        assert_one_line_error(rnnkit_cli("train", small_corpus, *TINY, *STEPS, "--out", ro / "r"),
                              "Read-only file system")
        big = tmp_path / "big.txt"  # its token file cannot fit in 1 MiB
        big.write_text(small_corpus.read_text(encoding="utf-8") * 30, encoding="utf-8")
        assert_one_line_error(rnnkit_cli("train", big, *TINY, *STEPS, "--out", full / "r"), "No space left")
        assert not list((full / "r").glob(".*.tmp"))
    finally:
        for m in (ro, full):
            subprocess.run(["umount", str(m)], capture_output=True)


def test_a_checkpoint_describing_a_huge_model_is_refused_before_allocating(finished, tmp_path):
    state = torch.load(finished / "best.pt", weights_only=True)
    meta = json.loads(state["meta"])
    meta["model"]["hidden"] = 10**9
    state["meta"] = json.dumps(meta)
    torch.save(state, tmp_path / "huge.pt")
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "huge.pt"), "choose a smaller model")


def test_a_task_that_cannot_resume_says_so_when_interrupted(tmp_path):
    import signal as signals

    from rnnkit.errors import TrainingStopped
    from rnnkit.tasks.forecast import ForecastNet, ForecastTask, NetConfig, Windows
    from rnnkit.training.config import TrainConfig
    from rnnkit.training.fit import fit

    class Inner(ForecastTask):  # the detector's inner training: no description, so no resume
        def training_loss(self, epoch, index):
            signals.raise_signal(signals.SIGINT)
            return super().training_loss(epoch, index)

    w = Windows(torch.randn(16, 8, 1), torch.zeros(16, 1, 0), torch.randn(16, 1, 1))
    task = Inner(ForecastNet(NetConfig(input_len=8, horizon=1, hidden=4, likelihood="mse")), w, None, 8, seed=0)
    with pytest.raises(TrainingStopped, match="this task trains afresh each time: run it again"):
        fit(task, TrainConfig(max_steps=5, precision="fp32"), tmp_path / "inner", progress=False)


def test_a_failed_start_leaves_nothing_behind(small_corpus, tmp_path):
    """An error after the run folder was readied (here: a batch larger than the text) removes what the
    command wrote: the folder it made, or its own files in a folder that was there (empty) before."""
    made = tmp_path / "made"
    assert_one_line_error(rnnkit_cli("train", small_corpus, *TINY, "--batch-size", "100000", "--out", made),
                          "text too short")
    assert not made.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(rnnkit_cli("train", small_corpus, *TINY, "--batch-size", "100000", "--out", empty),
                          "text too short")
    assert list(empty.iterdir()) == []


def test_a_failed_start_through_the_python_api_leaves_nothing_behind(small_corpus, tmp_path):
    """The Python API cleans up as the CLI does: the folder it made, or its own files in an empty one."""
    import rnnkit

    made, empty = tmp_path / "made", tmp_path / "empty"
    empty.mkdir()
    for out in (made, empty):
        with pytest.raises(RnnkitError, match="text too short"):
            rnnkit.train(str(small_corpus), out=out, hidden=8, batch_size=100000, max_steps=1, progress=False)
    assert not made.exists()
    assert list(empty.iterdir()) == []


def test_a_start_of_another_commands_run_is_refused(small_corpus, tmp_path, finished):
    """A folder a start died in (kill -9 before the first checkpoint: only its marker and data) may be started
    again by the same command, not taken over by another task's."""
    from rnnkit.training.fit import prepare_run_folder, unlock_run_folder

    dead = prepare_run_folder(tmp_path / "dead", "rnnkit train --resume")
    (dead / "tokens.bin").write_bytes(b"\0" * 64)
    unlock_run_folder(dead)
    assert_one_line_error(rnnkit_cli("longlag", "--out", dead, "--max-steps", "1"),
                          "holds the start of another command's run (rnnkit train)")
    assert (dead / "tokens.bin").read_bytes() == b"\0" * 64
    assert rnnkit_cli("train", small_corpus, *TINY, *STEPS, "--out", dead).returncode == 0
    killed = copy_run(finished, tmp_path / "killed")  # killed in training, before its first checkpoint
    for name in ("last.pt", "best.pt"):
        (killed / name).unlink()
    assert_one_line_error(rnnkit_cli("longlag", "--out", killed, "--max-steps", "1"),
                          "holds the start of another command's run (rnnkit train)")


def test_a_run_that_diverges_fails_and_keeps_no_non_finite_checkpoint(small_corpus, tmp_path):
    """A learning rate that overflows the weights at once: the validation loss is NaN; the command fails and
    leaves no run (it had no good checkpoint), rather than a NaN best.pt and a success."""
    run = tmp_path / "nan"
    proc = rnnkit_cli("train", small_corpus, *TINY, "--max-steps", "5", "--lr", "1e30", "--out", run)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stopped: the validation metrics are not finite; none was saved" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("rnnkit: error: training stopped: the loss, gradients")
    assert not run.exists()


def test_a_failing_command_leaves_folders_readied_before_it_alone(tmp_path):
    """Only what the failing command itself readied is removed: not a folder the Python API readied earlier
    in the same process (no checkpoint yet, the user's notes in it)."""
    from rnnkit.cli import main
    from rnnkit.training.fit import prepare_run_folder, unlock_run_folder

    earlier = prepare_run_folder(tmp_path / "api_run", "rnnkit train --resume")
    (earlier / "notes.txt").write_text("mine")
    unlock_run_folder(earlier)
    assert main(["sample", str(tmp_path / "absent")]) == 1
    assert (earlier / "notes.txt").read_text() == "mine"


def test_a_diverging_cell_is_a_row_of_the_longlag_sweep_not_an_error(tmp_path):
    from rnnkit.tasks.longlag import sweep

    (r,) = sweep("adding", ["rnn"], [10], tmp_path / "sweep", hidden=8, lr=1e30, max_steps=4, eval_size=20)
    assert r.stop_reason == "nonfinite" and not r.solved
    assert "rnn" in (tmp_path / "sweep" / "sweep.md").read_text()


def test_every_task_finds_a_runs_checkpoint_one_way(finished, tmp_path):
    """best.pt, else last.pt while the run has no best; a file as itself; one-line errors otherwise"""
    assert run_checkpoint(finished) == finished / "best.pt"
    assert run_checkpoint(finished, "last") == finished / "last.pt"
    assert run_checkpoint(finished / "last.pt", "best") == finished / "last.pt"
    young = tmp_path / "young"
    young.mkdir()
    (young / "last.pt").write_bytes((finished / "last.pt").read_bytes())
    assert run_checkpoint(young) == young / "last.pt"
    for run, which, message in [(young, "middle", "'best' or 'last'"), (tmp_path / "none", "best", "no checkpoint at"),
                                (tmp_path, "last", "expected last.pt")]:
        with pytest.raises(RnnkitError, match=message):
            run_checkpoint(run, which)

