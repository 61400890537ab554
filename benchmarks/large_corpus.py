"""Corpora larger than memory: tokenisation speed, and resident memory while training on a 1 GB corpus.

Builds a corpus from real text (tiny-shakespeare and Python's own sources, repeated) of the
given size, tokenises it into a memory-mapped token file (``rnnkit.data.text.tokenize_to_file``,
the path ``rnnkit train`` takes), then trains on it in a child process and reports the child's
peak resident memory.

    python benchmarks/large_corpus.py --size-mb 1024     # the issue's 1 GB
    python benchmarks/large_corpus.py --quick            # 100 MB
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

from rnnkit.data.text import read_corpus, tokenize_to_file  # noqa: E402


def build_corpus(path: Path, size: int) -> None:
    """Real text repeated to ``size`` bytes, written in large blocks."""
    text = (SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.exists() else "") + read_corpus(None)
    block = text.encode("utf-8")
    with path.open("wb") as f:
        written = 0
        while written < size:
            piece = block[: size - written]
            f.write(piece)
            written += len(piece)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--quick", action="store_true", help="100 MB")
    p.add_argument("--smoke", action="store_true", help="5 MB: checks the script runs")
    p.add_argument("--train-steps", type=int, default=200)
    args = p.parse_args()
    size_mb = 5 if args.smoke else 100 if args.quick else args.size_mb
    print(f"# large corpus: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="rnnkit-large-"))
    try:
        corpus = tmp / "corpus.txt"
        build_corpus(corpus, size_mb * 2**20)
        start = time.perf_counter()
        vocab, tokens = tokenize_to_file([corpus], tmp / "tokens.bin")
        seconds = time.perf_counter() - start
        rate = corpus.stat().st_size / seconds / 1e6
        del tokens
        run = tmp / "run"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rnnkit", "train", str(corpus), "--out", str(run),
                               "--max-steps", str(5 if args.smoke else args.train_steps),
                               "--eval-every", "1000000", "--sample-length", "0", "--val-fraction", "0.001"],
                              capture_output=True, text=True)
        train_wall = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stderr)
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kB -> GB
        rows = [{"corpus MB": float(size_mb), "vocabulary": len(vocab), "tokenise s": seconds,
                 "tokenise MB/s": rate, "train steps": 5 if args.smoke else args.train_steps,
                 "train wall s": train_wall,
                 "peak RSS GB (tokenise + train)": peak_rss}]
        print(table(rows, "tokenisation and memory"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
