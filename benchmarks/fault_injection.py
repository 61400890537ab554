"""Kill training at random moments and check that no run is ever lost, mixed or left half-written.

Each trial trains a tiny character model with a step budget, stops it at a random moment with
SIGKILL, SIGTERM or SIGINT (some trials while a checkpoint is being written), resumes it to
the end, and compares the final weights with an uninterrupted run's, bit for bit. Other trials
start two writers in one folder at once, and fill a small tmpfs under a run. Every trial checks:
no traceback, a stop by signal exits 130/143, no temporary file left behind, resume bit-exact.

    python benchmarks/fault_injection.py --trials 20
    python benchmarks/fault_injection.py --smoke
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

TINY = ["--hidden", "24", "--layers", "2", "--batch-size", "8", "--seq-len", "32", "--dropout", "0.1",
        "--precision", "fp32", "--sample-length", "0", "--eval-every", "25"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def rnnkit(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=True)["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finish(run: Path, steps: int) -> tuple[int, str]:
    proc = rnnkit("train", "--resume", run, "--max-steps", steps)
    _, err = proc.communicate()
    return proc.returncode, err


def kill_trial(corpus: Path, work: Path, reference: dict, steps: int, sig: int, during_save: bool,
               rng: random.Random) -> dict:
    run = work / f"kill-{sig}-{rng.randrange(10**9)}"
    proc = rnnkit("train", corpus, *TINY, "--max-steps", steps, "--out", run)
    if during_save:  # wait for a temporary checkpoint file to appear, then strike
        deadline = time.monotonic() + 120
        while not list(run.glob(".*.pt.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
    else:  # a random moment of training (not of starting up, which the start-up trials below cover)
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 4.0))
    proc.send_signal(sig)
    _, err = proc.communicate()
    traceback = "Traceback" in err
    expected = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[sig]
    # 0: the run had already finished; -signal: it was still starting, before training took over the signal
    exit_ok = proc.returncode in (expected, 0, -sig)
    stopped_at = torch.load(run / "last.pt", weights_only=True)["trainer"]["step"] if (run / "last.pt").exists() else 0
    if (run / "last.pt").exists():
        code, err2 = finish(run, steps)
        traceback |= "Traceback" in err2
        exact = code == 0 and same(weights(run), reference)
    else:  # killed before its first checkpoint: the same command starts it afresh
        proc = rnnkit("train", corpus, *TINY, "--max-steps", steps, "--out", run)
        _, err2 = proc.communicate()
        traceback |= "Traceback" in err2
        exact = proc.returncode == 0 and same(weights(run), reference)
    return {"kind": f"{signal.Signals(sig).name}{' in save' if during_save else ''}", "stopped_at": stopped_at,
            "exit_ok": exit_ok, "traceback": traceback, "exact": exact, "temp_left": len(list(run.glob(".*.tmp")))}


def two_writers_trial(corpus: Path, work: Path, rng: random.Random) -> dict:
    run = work / f"two-{rng.randrange(10**9)}"
    a = rnnkit("train", corpus, *TINY, "--max-steps", 200, "--seed", 1, "--out", run)
    b = rnnkit("train", corpus, *TINY, "--max-steps", 200, "--seed", 2, "--out", run)
    (_, err_a), (_, err_b) = a.communicate(), b.communicate()
    one_ok = sorted([a.returncode == 0, b.returncode == 0]) == [False, True]
    loser_err = err_b if a.returncode == 0 else err_a
    return {"kind": "two writers", "stopped_at": "", "exit_ok": one_ok and len(loser_err.strip().splitlines()) == 1,
            "traceback": "Traceback" in err_a + err_b, "exact": one_ok, "temp_left": len(list(run.glob(".*.tmp")))}


def full_disk_trial(corpus: Path, work: Path) -> dict | None:
    mount = work / "tmpfs"
    mount.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        return None
    try:
        # checkpoints of a 96-unit model (weights, averaged weights, optimizer state) cannot fit in 1 MiB
        proc = rnnkit("train", corpus, *TINY, "--hidden", 96, "--max-steps", 100, "--out", mount / "r")
        _, err = proc.communicate()
        left = len(list((mount / "r").glob(".*.tmp"))) if (mount / "r").exists() else 0
        # progress lines may come first; the error is one line, and the last
        one_line = proc.returncode == 1 and err.strip().splitlines()[-1].startswith("rnnkit: error: cannot write")
        return {"kind": "full disk", "stopped_at": "", "exit_ok": one_line, "traceback": "Traceback" in err,
                "exact": True, "temp_left": left}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="kill trials (each signal in turn, every fourth in a save)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="three short trials: checks the script runs")
    args = p.parse_args()
    trials, steps = (3, 60) if args.smoke else (args.trials, args.steps)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rnnkit-faults-"))
    corpus = work / "corpus.txt"
    text = SHAKESPEARE.read_text(encoding="utf-8") if SHAKESPEARE.exists() else Path(os.__file__).read_text()
    corpus.write_text(text[:200_000], encoding="utf-8")
    print(f"# fault injection: {machine()}; {trials} kill trials of {steps} steps")
    try:
        ref = rnnkit("train", corpus, *TINY, "--max-steps", steps, "--out", work / "reference")
        _, err = ref.communicate()
        assert ref.returncode == 0, err
        reference = weights(work / "reference")
        rows = []
        sigs = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
        for i in range(trials):
            rows.append(kill_trial(corpus, work, reference, steps, sigs[i % 3], i % 4 == 3, rng))
            print(rows[-1], flush=True)
        if not args.smoke:
            rows.append(two_writers_trial(corpus, work, rng))
            disk = full_disk_trial(corpus, work)
            if disk:
                rows.append(disk)
        summary = {}
        for r in rows:
            s = summary.setdefault(r["kind"], {"kind": r["kind"], "trials": 0, "exit ok": 0, "tracebacks": 0,
                                               "bit-exact or refused": 0, "temp files left": 0})
            s["trials"] += 1
            s["exit ok"] += int(r["exit_ok"])
            s["tracebacks"] += int(r["traceback"])
            s["bit-exact or refused"] += int(r["exact"])
            s["temp files left"] += r["temp_left"]
        print(table(list(summary.values()), "fault injection"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
