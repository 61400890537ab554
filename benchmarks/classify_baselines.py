"""Classic text-classification baselines under stratified k-fold cross-validation.

By default: NBSVM with word uni- and bigrams (Wang and Manning 2012, C=1, beta=0.25) and
logistic regression on TF-IDF uni- and bigrams, 10 folds with seed 0, on the sentence polarity
data set v1.0 (rt-polarity, 5331 positive and 5331 negative snippets, Windows-1252 encoded).
Every fold's features and model come from its training part alone. Prints a Markdown table of
accuracy (mean and sample standard deviation over folds), the machine and the command.

    nice -n 19 python benchmarks/classify_baselines.py
    nice -n 19 python benchmarks/classify_baselines.py --models nbsvm "nbsvm:classifier=logistic" "tfidf-lr:C=10"
    nice -n 19 python benchmarks/classify_baselines.py --data reviews.csv --encoding utf-8 --folds 5

A model is a baseline name with optional ``key=value`` options after a colon, comma-separated.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, table  # noqa: E402

from rnnkit.data.labelled_text import load_labelled  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.tasks.classify_baselines import cross_validate, make_baseline  # noqa: E402

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"
RT_POLARITY = [f"pos={SENTIMENT / 'rt-polarity.pos'}", f"neg={SENTIMENT / 'rt-polarity.neg'}"]



def parse_options(rest: str, spec: str) -> dict[str, Any]:
    """``"C=10,ngram=1"`` as ``{"C": 10.0, "ngram": 1}``: numbers and booleans typed, other values as text."""
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise RnnkitError(f"option {item!r} in {spec!r} is not key=value")
        for cast in (int, float):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return options


def parse_model(spec: str) -> tuple[str, dict[str, Any]]:
    """``"tfidf-lr:C=10,ngram=1"`` as ``("tfidf-lr", {"C": 10.0, "ngram": 1})``; numbers and booleans typed."""
    name, _, rest = spec.partition(":")
    options = parse_options(rest, spec)
    make_baseline(name, **options)  # refuse a bad name or option before any fold runs
    return name, options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=RT_POLARITY,
                   help="a table file, a folder or LABEL=FILE pairs (default: rt-polarity)")
    p.add_argument("--encoding", default=None, help="text encoding (default: cp1252 for rt-polarity, else UTF-8)")
    p.add_argument("--models", nargs="+", default=["nbsvm", "tfidf-lr"], help="name[:key=value,...] each")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    encoding = args.encoding or ("cp1252" if args.data == RT_POLARITY else None)
    try:
        models = [parse_model(m) for m in args.models]
        data = load_labelled(args.data, encoding=encoding)
    except RnnkitError as e:
        sys.exit(f"error: {e}")
    counts = ", ".join(f"{c} {n}" for c, n in data.counts().items())
    rows = []
    for name, options in models:
        t0 = time.perf_counter()
        acc = cross_validate(lambda name=name, options=options: make_baseline(name, **options), data,
                             k=args.folds, seed=args.seed)
        seconds = time.perf_counter() - t0
        rows.append({"model": name, "options": ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults",
                     "accuracy %": f"{100 * acc.mean():.1f} ± {100 * acc.std(ddof=1):.1f}",
                     "min–max %": f"{100 * acc.min():.1f}–{100 * acc.max():.1f}",
                     "seconds": f"{seconds:.0f}"})
        print(f"{name} {options or ''}: folds {np.round(100 * acc, 1).tolist()}", file=sys.stderr)
    source = "rt-polarity" if args.data == RT_POLARITY else " ".join(args.data)
    print(table(rows, f"{args.folds}-fold stratified cross-validation (seed {args.seed}) on {source}: "
                      f"{len(data):,} examples ({counts})"))
    print()
    print("accuracy: mean ± sample standard deviation over the folds")
    print(f"machine: {machine()}")
    print(f"command: python {shlex.join([sys.argv[0], *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
