import subprocess
import sys
from pathlib import Path

import pytest

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
