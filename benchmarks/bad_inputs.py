"""Bad inputs across every command group: each must give one line on stderr and a non-zero exit.

Builds a set of damaged files (empty, binary, undecodable, truncated, random bytes, pickles that
would run code, wrong columns, wrong types) and a small trained run of each task it needs, then
runs every case through the real command line and reports any traceback, multi-line error or
zero exit.

    python benchmarks/bad_inputs.py            # every case
    python benchmarks/bad_inputs.py --smoke    # the first few: checks the script runs
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import SHAKESPEARE, machine, table  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--precision", "fp32",
        "--sample-length", "0"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/rnnkit-pwned",))


def files(d: Path) -> dict[str, Path]:
    """Damaged inputs of every kind, written once into ``d``."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[:30_000] if SHAKESPEARE.exists() else "hello world\n" * 3000
    f = {"text": d / "ok.txt", "empty": d / "empty.txt", "binary": d / "bin.dat", "latin": d / "latin.txt",
         "tiny": d / "tiny.txt", "csv": d / "series.csv", "badcsv": d / "bad.csv", "nancsv": d / "nan.csv",
         "dupcsv": d / "dup.csv", "textcsv": d / "text.csv", "random_pt": d / "random.pt", "evil_pt": d / "evil.pt",
         "foreign_pt": d / "foreign.pt", "dir": d / "folder", "file": d / "plain.txt", "mid": d / "bad.mid",
         "wav": d / "bad.wav", "emptywav": d / "empty.wav", "mat": d / "bad.mat", "labelled": d / "lab.csv",
         "nolabel": d / "nolabel.csv", "oneclass": d / "one.csv", "src": d / "src.txt", "tgt": d / "tgt.txt",
         "tgt_short": d / "tgt_short.txt", "gaps": d / "gaps.txt", "speechdir": d / "speech",
         "badtsv": d / "speech2"}
    f["text"].write_text(text, encoding="utf-8")
    f["empty"].write_bytes(b"")
    f["binary"].write_bytes(bytes(range(256)) * 40)
    f["latin"].write_bytes("caf\xe9 au lait\n".encode("latin-1") * 100)
    f["tiny"].write_text("ab", encoding="utf-8")
    t = pd.date_range("2020-01-01", periods=200, freq="D")
    pd.DataFrame({"date": t, "y": np.sin(np.arange(200) / 5)}).to_csv(f["csv"], index=False)
    f["badcsv"].write_text("date,y\nyesterday,1\ntoday,2\n")
    pd.DataFrame({"date": t, "y": [np.nan] * 200}).to_csv(f["nancsv"], index=False)
    pd.DataFrame({"date": [t[0]] * 50, "y": range(50)}).to_csv(f["dupcsv"], index=False)
    pd.DataFrame({"date": t, "y": ["x"] * 200}).to_csv(f["textcsv"], index=False)
    f["random_pt"].write_bytes(os.urandom(4000))
    with open(f["evil_pt"], "wb") as fh:
        pickle.dump({"format": "rnnkit-checkpoint-1", "model": Evil()}, fh)
    torch.save({"weights": torch.zeros(3)}, f["foreign_pt"])
    f["dir"].mkdir()
    f["file"].write_text("x")
    f["mid"].write_bytes(b"MThd\x00\x00\x00\x06garbage" + os.urandom(100))
    f["wav"].write_bytes(b"RIFF" + os.urandom(200))
    f["emptywav"].write_bytes(b"")
    f["mat"].write_bytes(os.urandom(300))
    pd.DataFrame({"text": ["good film", "bad film"] * 20, "label": ["pos", "neg"] * 20}).to_csv(f["labelled"],
                                                                                            index=False)
    pd.DataFrame({"text": ["good film"] * 10, "stars": [5] * 10}).to_csv(f["nolabel"], index=False)
    pd.DataFrame({"text": ["good film"] * 10, "label": ["pos"] * 10}).to_csv(f["oneclass"], index=False)
    f["src"].write_text("ein hund\n" * 20, encoding="utf-8")
    f["tgt"].write_text("a dog\n" * 20, encoding="utf-8")
    f["tgt_short"].write_text("a dog\n" * 19, encoding="utf-8")
    f["gaps"].write_text("a dog\n\n" * 10, encoding="utf-8")
    f["speechdir"].mkdir()
    (f["speechdir"] / "transcripts.tsv").write_text("missing.wav\tseven\n", encoding="utf-8")
    f["badtsv"].mkdir()
    (f["badtsv"] / "a.wav").write_bytes(b"not audio at all")
    (f["badtsv"] / "transcripts.tsv").write_text("a.wav\tseven\n", encoding="utf-8")
    return f


def cases(f: dict[str, Path], run: Path, fc: Path, d: Path) -> list[list[str]]:
    """Every bad command line: (arguments...)."""
    out = str(d / "out-{i}")
    t = ["train"]
    c = [
        # rnnkit train: files, options, budgets
        [*t, f["empty"], "--out", out], [*t, f["binary"], "--out", out], [*t, f["latin"], "--out", out],
        [*t, d / "missing.txt", "--out", out], [*t, str(d / "*.nothing"), "--out", out], [*t, f["tiny"], "--out", out],
        [*t, f["dir"], "--out", out], [*t, f["text"], "--encoding", "klingon", "--out", out],
        [*t, f["text"], "--out", f["file"]], [*t, f["text"], "--out", f["file"] / "sub"],
        [*t, f["text"], "--out", run], [*t, f["text"], "--hidden", "0", "--out", out],
        [*t, f["text"], "--hidden", "-3", "--out", out], [*t, f["text"], "--hidden", "1e9", "--out", out],
        [*t, f["text"], "--hidden", "100000000", "--out", out], [*t, f["text"], "--layers", "0", "--out", out],
        [*t, f["text"], "--dropout", "1", "--out", out], [*t, f["text"], "--dropout", "-0.1", "--out", out],
        [*t, f["text"], "--seq-len", "0", "--out", out], [*t, f["text"], "--batch-size", "0", "--out", out],
        [*t, f["text"], "--batch-size", "100000", "--out", out], [*t, f["text"], "--val-fraction", "1", "--out", out],
        [*t, f["text"], "--max-vocab", "1", "--out", out], [*t, f["text"], "--lr", "0", "--out", out],
        [*t, f["text"], "--lr", "inf", "--out", out], [*t, f["text"], "--lr", "nan", "--out", out],
        [*t, f["text"], "--lr", "abc", "--out", out], [*t, f["text"], "--weight-decay", "-1", "--out", out],
        [*t, f["text"], "--weight-decay", "nan", "--out", out], [*t, f["text"], "--warmup-steps", "-5", "--out", out],
        [*t, f["text"], "--seed", str(2**64), "--out", out], [*t, f["text"], "--seed", "-1", "--out", out],
        [*t, f["text"], "--grad-clip", "0", "--out", out], [*t, f["text"], "--grad-clip-value", "-1", "--out", out],
        [*t, f["text"], "--ema", "1", "--out", out], [*t, f["text"], "--ema", "0", "--out", out],
        [*t, f["text"], "--grad-accum", "0", "--out", out], [*t, f["text"], "--max-time", "0", "--out", out],
        [*t, f["text"], "--max-time", "-1", "--out", out], [*t, f["text"], "--max-steps", "0", "--out", out],
        [*t, f["text"], "--max-steps", "1.5", "--out", out], [*t, f["text"], "--epochs", "0", "--out", out],
        [*t, f["text"], "--eval-every", "0", "--out", out], [*t, f["text"], "--patience", "0", "--out", out],
        [*t, f["text"], "--precision", "fp16", "--out", out], [*t, f["text"], "--device", "tpu", "--out", out],
        [*t, f["text"], "--device", "cuda", "--out", out] if not torch.cuda.is_available() else [*t, "--nope"],
        [*t, f["text"], "--cell", "transformer", "--out", out], [*t, f["text"], "--init", "magic", "--out", out],
        [*t, f["text"], "--cell", "lstm", "--init", "identity", "--out", out],
        [*t, "--resume", d / "no-run"], [*t, "--resume", f["dir"]], [*t, "--resume", run, "--hidden", "64"],
        [*t, "--resume", run, "--lr", "0.5"], [*t, "--resume", run, "--out", out], [*t, f["csv"], "--resume", run],
        [*t, "--resume", run, "--max-steps", "1"],
        # sample and eval
        ["sample", d / "no-run"], ["sample", f["random_pt"]], ["sample", f["evil_pt"]], ["sample", f["foreign_pt"]],
        ["sample", f["empty"]], ["sample", run, "--length", "-1"], ["sample", run, "--temperature", "0"],
        ["sample", run, "--top-k", "0"], ["sample", run, "--top-p", "1.5"], ["sample", run, "--prime", "ΩΩΩ"],
        ["sample", run, "--num-samples", "0"], ["sample", run, "--precision", "fp8"], ["sample", fc],
        ["eval", run, d / "missing.txt"], ["eval", run, f["empty"]], ["eval", run, f["binary"]],
        ["eval", f["evil_pt"], f["text"]], ["eval", run, f["tiny"], "--encoding", "nope"], ["eval", fc, f["text"]],
        ["eval", run, f["text"], "--dynamic", "--lr", "-1"], ["eval", run, f["text"], "--dynamic", "--segment", "0"],
        ["eval", run, f["text"], "--dynamic", "--decay", "2"], ["eval", run, f["text"], "--dynamic", "--method", "x"],
        ["eval", run, f["text"], "--lr", "0.1"], ["eval", run, f["empty"], "--dynamic"],
        ["eval", run, f["binary"], "--dynamic", "--stats-chars", "2000"],
        # gradflow, neurons, longlag
        ["gradflow", "--cell", "lstmx"], ["gradflow", "--cell", "rnn:nope"], ["gradflow", "--cell", "rnn:default:-1"],
        ["gradflow", "--cell", "lstm:identity"], ["gradflow", "--hidden", "0"], ["gradflow", "--out", "g.txt"],
        ["gradflow", "--out", f["dir"]], ["gradflow", d / "no-run"], ["gradflow", "--corpus", f["empty"]],
        ["gradflow", "--length", "0"], ["gradflow", run, "--length", "100000"],
        ["neurons", run, d / "missing.txt"], ["neurons", run, f["tiny"], "--unit", "zz"],
        ["neurons", run, f["text"], "--property", "nope"], ["neurons", f["evil_pt"], f["text"]],
        ["neurons", run, f["binary"]], ["neurons", fc, f["text"]],
        ["longlag", "--task", "sorting"], ["longlag", "--length", "1"], ["longlag", "--cell", "lstmx"],
        ["longlag", "--cell", "gru:chrono"], ["longlag", "--cell", "rnn", "lstm"], ["longlag", "--hidden", "0"],
        ["longlag", "--lr", "-1"], ["longlag", "--resume", d / "no-run"], ["longlag", "--resume", run],
        ["longlag", "--out", f["file"]],
        # forecast and detect
        ["forecast", "fit", d / "missing.csv"], ["forecast", "fit", f["empty"], "--horizon", "3"],
        ["forecast", "fit", f["badcsv"], "--horizon", "3"], ["forecast", "fit", f["nancsv"], "--horizon", "3"],
        ["forecast", "fit", f["dupcsv"], "--horizon", "3"], ["forecast", "fit", f["textcsv"], "--horizon", "3"],
        ["forecast", "fit", f["csv"]], ["forecast", "fit", f["csv"], "--horizon", "0"],
        ["forecast", "fit", f["csv"], "--horizon", "3", "--target", "nope"],
        ["forecast", "fit", f["csv"], "--horizon", "500"], ["forecast", "fit", f["csv"], "--dataset", "co2"],
        ["forecast", "fit", f["csv"], "--horizon", "3", "--mode", "sideways"],
        ["forecast", "fit", f["csv"], "--horizon", "3", "--cell", "lstmx"],
        ["forecast", "fit", f["csv"], "--horizon", "3", "--out", f["file"]],
        ["forecast", "fit", "--resume", run], ["forecast", "fit", "--resume", d / "no-run"],
        ["forecast", "predict", d / "no-run"], ["forecast", "predict", run], ["forecast", "predict", f["evil_pt"]],
        ["forecast", "predict", fc, "--output", f["dir"]], ["forecast", "predict", fc, "--horizon", "0"],
        ["forecast", "predict", fc, "--data", f["badcsv"]],
        ["forecast", "backtest", f["csv"], "--horizon", "3", "--start", "2030-01-01"],
        ["forecast", "backtest", f["csv"], "--horizon", "3", "--start", "1.5"],
        ["forecast", "backtest", f["csv"], "--horizon", "3", "--plot", f["dir"]],
        ["detect", d / "missing.csv"], ["detect", f["empty"]], ["detect", f["badcsv"]], ["detect", f["textcsv"]],
        ["detect", f["csv"], "--value", "nope"], ["detect", f["csv"], "--window", "0"],
        ["detect", f["csv"], "--train-fraction", "1"], ["detect", f["csv"], "--train-fraction", "0.01"],
        ["detect", f["csv"], "--output", f["dir"]], ["detect", f["csv"], "--plot", f["file"] / "p.png"],
        ["detect", f["csv"], "--method", "vibes"], ["detect", f["csv"], "--z", "-1"],
        # music
        ["music", "train", f["mid"], "--out", out], ["music", "train", f["mat"], "--out", out],
        ["music", "train", d / "missing.mid", "--out", out], ["music", "generate", d / "no-run", "--out", "x.mid"],
        ["music", "eval", run],
        # text classification
        ["classify", "train", f["empty"], "--out", out], ["classify", "train", f["nolabel"], "--out", out],
        ["classify", "train", f["oneclass"], "--out", out], ["classify", "train", f["labelled"], "--max-chars", "3",
                                                           "--out", out],
        ["classify", "train", f"pos={f['latin']}", f"neg={f['text']}", "--out", out],
        ["classify", "train", d / "missing.csv", "--out", out], ["classify", "train", f["labelled"], "--lr", "-1"],
        ["classify", "predict", d / "no-run", "good"], ["classify", "eval", run, f["labelled"]],
        ["classify", "cv", f["labelled"], "--folds", "1"], ["classify", "cv", f["oneclass"]],
        # translation
        ["translate", "train", "--src", f["empty"], "--tgt", f["empty"], "--out", out],
        ["translate", "train", "--src", f["src"], "--tgt", f["tgt_short"], "--out", out],
        ["translate", "train", "--src", f["src"], "--tgt", f["gaps"], "--out", out],
        ["translate", "train", "--src", d / "missing.de", "--tgt", f["tgt"], "--out", out],
        ["translate", "train", "--src", f["src"], "--tgt", f["tgt"], "--max-chars", "3", "--out", out],
        ["translate", "predict", d / "no-run", "ein hund"], ["translate", "predict", run, "ein hund"],
        ["translate", "eval", d / "no-run", "--src", f["src"], "--ref", f["tgt"]],
        # speech
        ["speech", "train", f["speechdir"], "--out", out], ["speech", "train", f["badtsv"], "--out", out],
        ["speech", "train", d / "nowhere", "--out", out], ["speech", "train", f["dir"], "--format", "fsdd",
                                                          "--out", out],
        ["speech", "transcribe", d / "no-run", f["wav"]], ["speech", "transcribe", run, f["wav"]],
        ["speech", "eval", d / "no-run", f["speechdir"]],
    ]
    return [[str(a).replace("{i}", str(i)) for a in args] for i, args in enumerate(c)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="the first few cases only")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rnnkit-bad-") as tmp:
        d = Path(tmp)
        f = files(d)
        run, fc = d / "run", d / "fc"
        for cmd in (["train", f["text"], *TINY, "--max-steps", "20", "--out", run],
                    ["forecast", "fit", f["csv"], "--horizon", "3", "--max-steps", "10", "--hidden", "8", "--out", fc]):
            proc = subprocess.run([sys.executable, "-m", "rnnkit", *map(str, cmd)], capture_output=True, text=True,
                                  env=ENV)
            assert proc.returncode == 0, proc.stderr
        all_cases = cases(f, run, fc, d)
        all_cases = all_cases[:5] if args.smoke else all_cases
        print(f"# bad inputs: {machine()}; {len(all_cases)} command lines")
        failures, groups = [], {}
        for argv in all_cases:
            proc = subprocess.run([sys.executable, "-m", "rnnkit", *argv], capture_output=True, text=True, env=ENV,
                                  stdin=subprocess.DEVNULL, timeout=600)
            err = proc.stderr.strip()
            ok = proc.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1
            grouped = ("forecast", "music", "classify", "translate", "speech")
            group = " ".join(argv[:2]) if argv[0] in grouped else argv[0]
            g = groups.setdefault(group, {"command": group, "cases": 0, "one-line error, non-zero exit": 0})
            g["cases"] += 1
            g["one-line error, non-zero exit"] += int(ok)
            if not ok:
                failures.append((argv, proc.returncode, err[-300:]))
        print(table(list(groups.values()), "bad inputs"))
        print(f"{sum(g['cases'] for g in groups.values())} cases, {len(failures)} failed")
        for argv, code, err in failures:
            print(f"FAILED (exit {code}): rnnkit {' '.join(argv)}\n  {err}")
        if Path("/tmp/rnnkit-pwned").exists():
            print("A PICKLED PAYLOAD RAN")
        if failures:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
