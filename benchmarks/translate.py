"""Translation benchmark: Multi30k German -> English, recurrent encoder-decoders on a time budget.

Each attention variant (additive, multiplicative, none) trains for the same number of minutes
(training time only: validation and saving are not counted) with the same settings, picks its
best checkpoint by validation BLEU (greedy, cased sacreBLEU on val), then translates
``test_2016_flickr`` with greedy search and with beam 5. Reported per variant and beam: cased
sacreBLEU (13a, detokenised), lowercased sacreBLEU (the figure the public tutorials quote),
chrF, and translation speed in sentences per second. Also written: ``learning_curve.png``
(validation BLEU against training minutes, every variant) and ``results.json``.

    nice -n 19 python benchmarks/translate.py --minutes 60                 # the full table, 3 hours
    nice -n 19 python benchmarks/translate.py --minutes 60 --variants additive
    python benchmarks/translate.py --smoke                                 # a tiny run that checks the script

A variant whose run folder already holds a run is not trained again: its best checkpoint is
scored (delete the folder to retrain).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, machine, table  # noqa: E402
from rnnkit.data.parallel_text import find_split, read_lines  # noqa: E402
from rnnkit.io import write_json  # noqa: E402
from rnnkit.tasks.translate import Translator, plot_learning_curve  # noqa: E402

MULTI30K = SHARED / "translation" / "multi30k"
# the settings every variant shares (the command line's defaults, written out so the table says what ran)
SETTINGS = {"cell": "gru", "embed": 256, "hidden": 256, "layers": 1, "dropout": 0.3, "label_smoothing": 0.1,
            "batch_size": 64, "vocab_size": 8000, "lr": 2e-3, "warmup_steps": 200, "tie_embeddings": True,
            "input_feeding": False, "seed": 1}
SMOKE = {"embed": 32, "hidden": 32, "vocab_size": 600, "batch_size": 16, "max_tokens": 200, "max_steps": 10,
         "eval_every": 5}


def subset(data: Path, folder: Path, lines: int) -> Path:
    """The first ``lines`` lines of each split of Multi30k, for a smoke run."""
    for split in ("train", "val", "test_2016_flickr"):
        for lang, path in zip(("de", "en"), find_split(data, split, "de", "en"), strict=True):
            (folder / f"{split}.{lang}").write_text("".join(s + "\n" for s in read_lines(path)[:lines]),
                                                    encoding="utf-8")
    return folder


def parse_set(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs; values read as JSON where they can be (numbers, true/false), else as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--set takes KEY=VALUE, not {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_variant(attention: str, data: Path, out: Path, settings: dict, beams: list[int]) -> list[dict]:
    run = out / attention
    if (run / "config.json").exists():
        print(f"{attention}: {run} holds a run; scoring its best checkpoint", flush=True)
        t = Translator.load(run)
    else:
        train, val = find_split(data, "train", "de", "en"), find_split(data, "val", "de", "en")
        t = Translator(out=run, attention=attention, progress=None, **settings).fit(*train, *val)
    test_src, test_ref = find_split(data, "test_2016_flickr", "de", "en")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_bleu" in r]
    minutes = max((r["time"] for r in evals), default=0) / 60
    rows = []
    for beam in beams:
        s = t.evaluate(test_src, test_ref, beam=beam)
        rows.append({"attention": attention, "beam": beam, "bleu_lowercase": round(s.bleu_lowercase, 2),
                     "bleu": round(s.bleu, 2), "chrf": round(s.chrf, 2),
                     "sentences/s": round(s.sentences_per_second, 1), "train min": round(minutes, 1),
                     "steps": max((r["step"] for r in records), default=0),
                     "best val_bleu": round(max((r["val_bleu"] for r in evals), default=0.0), 2)})
        print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=MULTI30K, help="folder with {train,val,test_2016_flickr}.{de,en}[.gz]")
    p.add_argument("--minutes", type=float, default=60.0, help="training minutes per variant (default 60)")
    p.add_argument("--variants", nargs="+", default=["additive", "multiplicative", "none"],
                   choices=["additive", "multiplicative", "none"])
    p.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    p.add_argument("--eval-every", type=int, default=500, help="steps between validations (default 500)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change a shared setting, e.g. --set hidden=512 ema=0.999 input_feeding=true")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-translate"))
    p.add_argument("--smoke", action="store_true", help="300 pairs, 10 steps, a tiny model: checks the script runs")
    args = p.parse_args()
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    if not args.data.is_dir():
        sys.exit(f"no Multi30k at {args.data}: give --data")
    if args.smoke:  # a check that the script runs: everything it writes goes when it ends
        with tempfile.TemporaryDirectory(prefix="rnnkit-bench-translate-") as scratch:
            compare(args, subset(args.data, Path(scratch), 300), Path(scratch) / "runs",
                    {**SETTINGS, **SMOKE, **parse_set(args.set)})
    else:
        compare(args, args.data, args.out,
                {**SETTINGS, "max_time": args.minutes * 60, "eval_every": args.eval_every, **parse_set(args.set)})


def compare(args: argparse.Namespace, data: Path, out: Path, settings: dict) -> None:
    """Train and score every variant asked for, and print the table."""
    start = time.perf_counter()
    rows = [row for v in args.variants for row in run_variant(v, data, out, settings, args.beams)]
    plot_learning_curve({v: out / v for v in args.variants}, out / "learning_curve.png")
    write_json(out / "results.json", {"machine": machine(), "settings": settings, "rows": rows})
    print()
    print(machine())
    print(f"Multi30k de->en test_2016_flickr, {settings.get('max_time', 0) / 60:.0f} training minutes a variant; "
          f"settings {json.dumps({k: v for k, v in settings.items() if k not in ('max_time',)})}")
    print(table(rows, "Translation: attention variants and beam size"))
    print(f"\nlearning curve: {out / 'learning_curve.png'}  results: {out / 'results.json'}  "
          f"({time.perf_counter() - start:.0f}s in all)")


if __name__ == "__main__":
    main()
