"""The command line as a user runs it: the whole job, exact resume after Ctrl-C, and every bad input."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TINY, assert_one_line_error, rnnkit_cli, start_training


@pytest.fixture(scope="module")
def run_dir(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = rnnkit_cli("train", small_corpus, "--out", out, "--max-steps", "60", "--lr", "0.01", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "val bpc" in proc.stdout
    return out


def test_sample_streams_text(run_dir):
    proc = rnnkit_cli("sample", run_dir, "--length", "50", "--prime", "The", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.rstrip("\n")) >= 40
    again = rnnkit_cli("sample", run_dir, "--length", "50", "--prime", "The", "--seed", "1")
    assert again.stdout == proc.stdout


def test_eval_last_line_gives_bpc(run_dir, small_corpus):
    proc = rnnkit_cli("eval", run_dir, small_corpus)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[-2] == "bpc" and 0 < float(last[-1]) < 8


def test_interrupted_and_resumed_run_equals_uninterrupted(small_corpus, tmp_path):
    args = [small_corpus, *TINY, "--hidden", "16", "--batch-size", "4", "--seq-len", "16",
            "--max-steps", "800", "--dropout", "0.1", "--layers", "2", "--eval-every", "100"]
    whole = rnnkit_cli("train", *args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    cut = tmp_path / "cut"
    proc = start_training(*args, "--out", cut, running=[cut / "metrics.jsonl"])
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=120)
    steps = torch.load(cut / "last.pt", weights_only=True)["trainer"]["step"]
    assert 0 < steps < 800, "the interrupt came too late to test resume"
    assert proc.returncode == 130, err  # stopped, not finished: scripts must be able to tell
    assert f"interrupted at step {steps}" in err and f"rnnkit train --resume {cut}" in err
    assert "val bpc" not in out  # no result is printed for an unfinished run

    resumed = rnnkit_cli("train", "--resume", cut)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(cut / "last.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- bad input: one line, non-zero exit, never a traceback ---------------------------------

def test_missing_corpus(tmp_path):
    assert_one_line_error(rnnkit_cli("train", tmp_path / "nope.txt", "--out", tmp_path / "r"), "no such file")


def test_empty_corpus(tmp_path):
    (tmp_path / "e.txt").write_text("")
    assert_one_line_error(rnnkit_cli("train", tmp_path / "e.txt", "--out", tmp_path / "r"), "empty")


def test_binary_corpus(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"hello" + bytes(range(256)))
    assert_one_line_error(rnnkit_cli("train", tmp_path / "b.bin", "--out", tmp_path / "r"),
                          "binary", "offset 5")


def test_undecodable_corpus(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"caf\xe9 au lait" * 10)
    assert_one_line_error(rnnkit_cli("train", tmp_path / "l.txt", "--out", tmp_path / "r"),
                          "byte offset 3", "--encoding")


def test_corpus_too_short(tmp_path):
    (tmp_path / "s.txt").write_text("a short text, far too short\n" * 3)
    assert_one_line_error(rnnkit_cli("train", tmp_path / "s.txt", "--out", tmp_path / "r"), "too short")


@pytest.mark.parametrize("option,value", [("--hidden", "-3"), ("--seq-len", "0"), ("--cell", "tree"),
                                          ("--batch-size", "x"), ("--lr", "0"), ("--dropout", "1.5")])
def test_bad_option_values(small_corpus, tmp_path, option, value):
    assert_one_line_error(rnnkit_cli("train", small_corpus, "--out", tmp_path / "r", option, value), option)


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "nothing"), "no checkpoint")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "c.pt").write_bytes(os.urandom(2000))
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "c.pt"), "not a readable checkpoint")
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "c.pt", "--length", "-1"), "must be non-negative")
    assert_one_line_error(rnnkit_cli("train", "--sample-length", "-1"), "must be non-negative")


def test_truncated_checkpoint(run_dir, tmp_path):
    data = (run_dir / "best.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "t.pt"), "corrupt or truncated")


def test_foreign_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "f.pt")
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "f.pt"), "not an rnnkit checkpoint")


class RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        torch.save({"format": "rnnkit-checkpoint-1", "x": RunsCode(str(marker))}, f, pickle_protocol=2)
    assert_one_line_error(rnnkit_cli("sample", tmp_path / "evil.pt"), "refused")
    assert not marker.exists()


def test_resume_with_conflicting_options(run_dir):
    assert_one_line_error(rnnkit_cli("train", "--resume", run_dir, "--hidden", "64"), "drop --hidden")
    assert_one_line_error(rnnkit_cli("train", "--resume", run_dir, "--lr", "0.5"), "--lr 0.5 conflicts with the run's")


def test_unknown_prime_characters(run_dir):
    assert_one_line_error(rnnkit_cli("sample", run_dir, "--prime", "Ω€"), "'Ω'", "'€'")


def test_existing_run_is_not_overwritten(run_dir, small_corpus):
    assert_one_line_error(rnnkit_cli("train", small_corpus, "--out", run_dir, *TINY), "--resume")


def test_options_are_checked_before_the_speed_measurement(small_corpus, tmp_path):
    """The width is measured only for a run that can start: a bad device or batch is still a one-line error."""
    assert_one_line_error(rnnkit_cli("train", small_corpus, "--device", "cuda", "--out", tmp_path / "a"), "cuda")
    assert_one_line_error(rnnkit_cli("train", small_corpus, "--batch-size", "100000", "--out", tmp_path / "b"),
                          "--batch-size")


def test_an_error_names_its_cause_on_one_line_cut_at_a_word():
    from rnnkit.errors import cause

    assert cause(EOFError()) == "EOFError"
    assert cause(ValueError("bad\n  header")) == "bad header"
    long = cause(ValueError("word " * 40), 50)
    assert len(long) <= 50 and long.endswith("word...")


def test_music_takes_val_fraction_as_the_other_commands_do():
    from rnnkit.cli import build_parser

    for flag in ("--val-fraction", "--valid-share"):  # the name every command shares, and music's first one
        args = build_parser().parse_args(["music", "train", "x.mid", flag, "0.2"])
        assert args.valid_share == 0.2


def test_a_glob_names_its_run_folder_after_the_folder_it_searches(small_corpus, tmp_path):
    """`rnnkit train 'logs/*.txt'` trained into a folder literally called runs/*"""
    from rnnkit.cli.options import default_run_folder

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.txt").write_text(small_corpus.read_text(encoding="utf-8"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "train", "logs/*.txt", "--max-steps", "2",
                           "--sample-length", "0", *TINY], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "logs" / "last.pt").exists() and not (tmp_path / "runs" / "*").exists()
    for source, folder in [("train.de.gz", "train"), ("books/", "books"), ("../*.txt", "corpus"), ("..", "corpus"),
                           ("/*.txt", "corpus")]:
        assert default_run_folder(source) == os.path.join("runs", folder)  # never outside runs/
