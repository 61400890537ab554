import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER" in os.environ:
    # one worker per core (``-n auto``): a worker's torch, and every command it starts, on one thread,
    # since OpenMP threads that wait for a busy core spin instead of sleeping
    os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAKESPEARE = SHARED / "text" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """About 60k characters of real text: tiny-shakespeare if present, else Python's own sources."""
    if SHAKESPEARE.exists():
        text = SHAKESPEARE.read_text(encoding="utf-8")[:60_000]
    else:
        from rnnkit.data.text import read_corpus
        text = read_corpus(None)[:60_000]
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(text, encoding="utf-8")
    return path


TINY = ["--hidden", "32", "--layers", "1", "--batch-size", "8", "--seq-len", "32",
        "--precision", "fp32", "--sample-length", "0"]


def rnnkit_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would."""
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_training(*args: object, running: list[Path], quiet: bool = False) -> subprocess.Popen:
    """``rnnkit train ARGS`` started in the background, returned once every file of ``running`` (what a run
    writes once it trains, such as its ``metrics.jsonl``) exists: the moment to interrupt or kill it."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "train", *map(str, args)], stdout=out, stderr=out,
                            text=True)
    deadline = time.time() + 120
    while not all(path.exists() for path in running):
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.05)
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A command that failed as rnnkit promises: non-zero exit, one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The message of a raised error, checked to be one non-empty line."""
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


@contextlib.contextmanager
def torch_steps(module):
    """Within it, ``module`` (a sequence kernel's, e.g. rnnkit.nn.gru_sequence) runs its steps as torch ops,
    as it does where the optional C extension is missing."""
    saved, module.kernels = module.kernels, None
    try:
        yield
    finally:
        module.kernels = saved
