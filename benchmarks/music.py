"""Polyphonic music benchmark: test NLL per frame on the four piano-roll sets, and a listening check.

The sets of Boulanger-Lewandowski et al. (2012), ``shared/data/music/<name>.mat``. For each
set and output (independent Bernoulli per key, RNN-NADE) one model is trained under a time
budget with the settings below (each printed as its ``rnnkit music train`` command), picked by
validation NLL, and scored on the test pieces: NLL per frame in nats, summed over the 88 keys
and averaged over all test frames, and frame-level accuracy.

The listening check (``--listen``) samples pieces from a JSB model and sets simple musical
statistics of them (notes per frame, pitch range, share of frames in the piece's key) against
the real test chorales, and writes generated MIDI files and piano-roll images (``--img``).

    nice -n 19 python benchmarks/music.py                                  # every set, both outputs
    nice -n 19 python benchmarks/music.py --datasets JSB_Chorales --outputs nade
    nice -n 19 python benchmarks/music.py --datasets JSB_Chorales --outputs nade --option augment=0 --out runs/b2
    nice -n 19 python benchmarks/music.py --listen runs/bench-music/JSB_Chorales-nade --img docs/img
    python benchmarks/music.py --smoke                                     # a few steps, to see it runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, machine, table  # noqa: E402
from rnnkit.data.music import MAT_DATASETS, corpus_stats, plot_piano_roll  # noqa: E402
from rnnkit.tasks.music import MusicModel, transpose  # noqa: E402

DATA = SHARED / "music"

# published test NLL per frame (nats): Bai et al. 2018 (RNN, LSTM, GRU, TCN), Boulanger-Lewandowski et al.
# 2012 (RNN-RBM, RNN-NADE, trained with Hessian-free optimisation)
REFERENCES = {
    "JSB_Chorales": {"RNN": 8.91, "LSTM": 8.45, "GRU": 8.43, "TCN": 8.10, "RNN-RBM": 6.27, "RNN-NADE": 5.56},
    "Nottingham": {"LSTM": 3.29, "TCN": 3.07, "RNN-RBM": 2.39, "RNN-NADE": 2.31},
    "MuseData": {"RNN-RBM": 6.01, "RNN-NADE": 5.60},
    "Piano_midi": {"RNN-RBM": 7.09, "RNN-NADE": 7.05},
}
TARGETS = {("JSB_Chorales", "independent"): 8.45, ("JSB_Chorales", "nade"): 5.5, ("Nottingham", "nade"): 2.3}

# the model and training settings per output; budgets: a few minutes for the baseline, 30 for NADE
SETTINGS = {
    "independent": {"output": "independent", "cell": "lstm", "hidden": 256, "dropout": 0.3, "lr": 2e-3,
                    "max_time": 300},
    "nade": {"output": "nade", "cell": "lstm", "hidden": 256, "nade_hidden": 150, "dropout": 0.3, "lr": 2e-3,
             "augment": 5, "max_time": 1800},
}
SMOKE = {"hidden": 16, "nade_hidden": 8, "max_time": None, "max_steps": 5, "eval_every": 5}


def command(dataset: str, options: dict, out: Path) -> str:
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v is not None)
    return f"rnnkit music train {DATA / (dataset + '.mat')} --out {out} {flags}"


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` settings (numbers where they parse as numbers) that replace the table's for every run."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            sys.exit(f"--option takes KEY=VALUE, got {item!r}")
        for cast in (int, float, str):
            try:
                out[key.replace("-", "_")] = cast(text)
                break
            except ValueError:
                continue
    return out


def train(dataset: str, output: str, out_root: Path, smoke: bool, seed: int, overrides: dict) -> dict:
    options = {**SETTINGS[output], **overrides, **(SMOKE if smoke else {}), "seed": seed}
    out = out_root / f"{dataset}-{output}"
    print(command(dataset, options, out), flush=True)
    t0 = time.perf_counter()
    m = MusicModel(out=out, progress=False, **{k: v for k, v in options.items() if v is not None})
    m.fit(DATA / f"{dataset}.mat")
    r = m.evaluate("test")
    row = {"set": dataset, "output": output, "test NLL": r["nll"], "frame acc": r["frame_accuracy"],
           "target": TARGETS.get((dataset, output), ""), "steps": m.result.steps,
           "train s": m.result.train_time, "total s": time.perf_counter() - t0, "run": str(out)}
    print(f"  test nll {r['nll']:.3f}  frame accuracy {r['frame_accuracy']:.3f}  ({m.result.steps} steps, "
          f"{m.result.train_time:.0f}s)", flush=True)
    return row


def listen(run: Path, pieces: int, temperature: float, img: Path | None, seed: int) -> str:
    """Statistics of generated pieces against the real test pieces (at sounding pitch); MIDI and PNGs into ``img``."""
    m = MusicModel.load(run)
    shift = m.grid.get("transpose", 0)
    real = [transpose(r, shift) for r in m.pieces("test")]
    length = int(np.median([len(r) for r in real]))
    generated = [m.generate(length, temperature, seed=seed + i) for i in range(pieces)]
    rows = []
    for name, rolls in (("real test pieces", real), (f"generated, T={temperature:g}", [g.sounding for g in generated])):
        s = corpus_stats(rolls)
        rows.append({"pieces": name, "n": s["pieces"], "notes per frame": s["mean_polyphony"],
                     "silent share": s["silent_share"], "lowest": s["lowest"], "highest": s["highest"],
                     "span (semitones)": s["mean_span"], "in key share": s["in_key_share"],
                     "major share": s["major_share"]})
    if img is not None:
        img.mkdir(parents=True, exist_ok=True)
        stem = run.name
        for i, g in enumerate(generated[:3]):
            g.write_midi(img / f"{stem}-sample{i + 1}.mid")
        plot_piano_roll(img / f"{stem}-samples.png", [real[0]] + [g.sounding for g in generated[:3]],
                        titles=["a real test chorale"] + [f"generated {i + 1}" for i in range(min(3, pieces))],
                        title=f"{stem}: {length} frames, temperature {temperature:g}")
        print(f"wrote {img}/{stem}-sample1..3.mid and {stem}-samples.png")
    return table(rows, f"listening check: {run.name}, {pieces} generated pieces of {length} frames")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(MAT_DATASETS), choices=list(MAT_DATASETS))
    p.add_argument("--outputs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--out", default="runs/bench-music", help="folder for the runs (default runs/bench-music)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--option", nargs="+", default=[], metavar="KEY=VALUE",
                   help="replace a setting in every run, e.g. augment=0 dropout=0.5 max_time=600")
    p.add_argument("--listen", metavar="RUN", help="only the listening check, on this trained JSB run")
    p.add_argument("--pieces", type=int, default=20, help="generated pieces for the listening check (default 20)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--img", help="write generated MIDI and piano-roll images here (e.g. docs/img)")
    p.add_argument("--smoke", action="store_true", help="tiny models, 5 steps, JSB only: check that it runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    if not DATA.is_dir():
        sys.exit(f"no data: {DATA} is missing")
    if args.listen:
        print(listen(Path(args.listen), args.pieces, args.temperature, Path(args.img) if args.img else None,
                     args.seed))
        return
    if args.smoke:  # a check that the script runs: everything it writes goes when it ends
        with tempfile.TemporaryDirectory(prefix="music-smoke-") as scratch:
            compare(args, Path(scratch))
    else:
        compare(args, Path(args.out))


def compare(args: argparse.Namespace, out: Path) -> None:
    """Train every output layer asked for on every set, and print the tables and a listening sample."""
    datasets = ["JSB_Chorales"] if args.smoke else args.datasets
    overrides = parse_overrides(args.option)
    rows = [train(d, o, out, args.smoke, args.seed, overrides) for d in datasets for o in args.outputs]
    print()
    print(table([{k: v for k, v in r.items() if k != "run"} for r in rows], "test NLL per frame (nats)"))
    print()
    print(table([{"set": d, **REFERENCES[d]} for d in datasets], "published test NLL per frame (nats)"))
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    jsb = next((r for r in rows if r["set"] == "JSB_Chorales" and r["output"] == "nade"), None)
    if jsb is not None:
        print()
        print(listen(Path(jsb["run"]), 4 if args.smoke else args.pieces, args.temperature,
                     Path(args.img) if args.img else None, args.seed))


if __name__ == "__main__":
    main()
