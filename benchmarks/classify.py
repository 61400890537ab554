"""Recurrent text classifiers against the classic baselines, by 10-fold cross-validation on sentence polarity.

The sentence polarity data set v1.0 (rt-polarity: 5331 positive and 5331 negative snippets,
Windows-1252). Every setting and both baselines (NBSVM uni+bigrams, TF-IDF logistic
regression) run on the same seeded, stratified folds; each fold's vocabulary, validation split
(early stopping) and model come from its training part alone, and each fold trains at most
``--fold-seconds`` (the issue's budget: 2 minutes on this CPU). Prints a Markdown table (mean and
sample standard deviation of accuracy over folds), the machine and the command.

    nice -n 19 python benchmarks/classify.py                                   # scratch setting + baselines
    nice -n 19 python benchmarks/classify.py --settings scratch scratch-gru attention
    nice -n 19 python benchmarks/classify.py --settings vectors --vectors glove.840B.300d.txt
    nice -n 19 python benchmarks/classify.py --smoke                           # a few seconds: does it run?

A setting is a name from SETTINGS, optionally with ``key=value`` overrides after a colon
(``scratch:hidden=256,dropout=0.4``): the options of :class:`rnnkit.tasks.classify.Classifier`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classify_baselines import parse_options  # noqa: E402
from common import machine, table  # noqa: E402

from rnnkit.data.labelled_text import LabelledText, load_labelled  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.tasks.classify import Classifier, cross_validate  # noqa: E402
from rnnkit.tasks.classify_baselines import cross_validate as baseline_cv  # noqa: E402

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"
RT_POLARITY = [f"pos={SENTIMENT / 'rt-polarity.pos'}", f"neg={SENTIMENT / 'rt-polarity.neg'}"]

# named settings; every one gets --fold-seconds as its time budget per fold
SETTINGS: dict[str, dict[str, Any]] = {
    # no pretrained vectors, no outside data
    "scratch": {"cell": "lstm", "embed": 128, "hidden": 128, "pooling": "max", "dropout": 0.5, "lr": 2e-3,
                "epochs": 10, "patience": 3},
    # the scratch network and an NBSVM on word uni+bigrams deciding together (Classifier(nbsvm=2))
    "ensemble": {"cell": "lstm", "embed": 128, "hidden": 128, "pooling": "max", "dropout": 0.5, "lr": 2e-3,
                 "epochs": 10, "patience": 3, "nbsvm": 2},
    "scratch-gru": {"cell": "gru", "embed": 128, "hidden": 128, "pooling": "max", "dropout": 0.5, "lr": 2e-3,
                    "epochs": 10, "patience": 3},
    "attention": {"cell": "lstm", "embed": 128, "hidden": 128, "pooling": "attention", "dropout": 0.5, "lr": 2e-3,
                  "epochs": 10, "patience": 3},
    "subword": {"cell": "lstm", "level": "subword", "subword_size": 8000, "embed": 128, "hidden": 128,
                "pooling": "max", "dropout": 0.5, "lr": 2e-3, "epochs": 10, "patience": 3},
    "char": {"cell": "gru", "level": "char", "embed": 32, "hidden": 128, "pooling": "max", "dropout": 0.3,
             "lr": 2e-3, "epochs": 10, "patience": 3, "max_len": 300},
    # pretrained word vectors (give the file with --vectors; embed follows its dimension)
    "vectors": {"cell": "lstm", "hidden": 128, "pooling": "max", "dropout": 0.5, "lr": 1e-3, "epochs": 10,
                "patience": 3, "lower": False},
}


def parse_setting(spec: str, vectors: str | None) -> tuple[str, dict[str, Any]]:
    """``"scratch:hidden=256"`` as its name and options, numbers and booleans typed; refused before any fold runs."""
    name, _, rest = spec.partition(":")
    if name not in SETTINGS:
        raise RnnkitError(f"unknown setting {name!r}; choose one of {', '.join(SETTINGS)}")
    options = {**SETTINGS[name], **parse_options(rest, spec)}
    if name == "vectors":
        if not vectors:
            raise RnnkitError("the vectors setting needs --vectors FILE (GloVe or word2vec text format)")
        options["vectors"] = vectors
    Classifier(**options)
    return spec, options


def smoke_subset(data: LabelledText, per_class: int = 60) -> LabelledText:
    keep = [i for c in data.classes for i in [j for j, lab in enumerate(data.labels) if lab == c][:per_class]]
    return data.subset(keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=RT_POLARITY, help="a table, a folder or LABEL=FILE pairs "
                   "(default: rt-polarity)")
    p.add_argument("--encoding", help="text encoding (default: cp1252 for rt-polarity, else UTF-8)")
    p.add_argument("--settings", nargs="+", default=["scratch"], help="name[:key=value,...] each")
    p.add_argument("--vectors", help="word-vector file for the vectors setting")
    p.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                   help="also NBSVM and TF-IDF logistic regression on the same folds (default on)")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the folds")
    p.add_argument("--fold-seconds", type=float, default=120.0, help="training budget per fold (default 120)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--smoke", action="store_true", help="60 texts a class, 2 folds, 5 steps: checks the script runs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    encoding = args.encoding or ("cp1252" if args.data == RT_POLARITY else None)
    try:
        settings = [parse_setting(s, args.vectors) for s in args.settings]
        data = load_labelled(args.data, encoding=encoding)
    except RnnkitError as e:
        sys.exit(f"error: {e}")
    k = args.folds
    if args.smoke:
        data, k = smoke_subset(data), 2
        settings = [(s, {**o, "max_steps": 5, "epochs": None, "hidden": 16, "embed": o.get("embed") and 16})
                    for s, o in settings]
    counts = ", ".join(f"{c} {n}" for c, n in data.counts().items())
    rows = []

    def add(name: str, options: str, acc: np.ndarray, seconds: float) -> None:
        rows.append({"model": name, "options": options, "accuracy %": f"{100 * acc.mean():.1f} ± "
                     f"{100 * acc.std(ddof=1):.1f}", "min–max %": f"{100 * acc.min():.1f}–{100 * acc.max():.1f}",
                     "seconds": f"{seconds:.0f}"})
        print(f"{name}: folds {np.round(100 * acc, 1).tolist()}", file=sys.stderr, flush=True)

    if args.baselines:
        for name in ("nbsvm", "tfidf-lr"):
            t0 = time.perf_counter()
            add(name, "defaults", baseline_cv(name, data, k=k, seed=args.seed), time.perf_counter() - t0)
    for spec, options in settings:
        options = {k_: v for k_, v in options.items() if v is not None}
        options.setdefault("max_time", args.fold_seconds)
        t0 = time.perf_counter()
        acc = cross_validate(data, k=k, seed=args.seed, progress=False,
                             report=lambda f, a, _, s=spec: print(f"{s} fold {f + 1}: {100 * a:.2f}",
                                                                  file=sys.stderr, flush=True), **options)
        add(f"rnnkit {spec}", ", ".join(f"{k_}={v}" for k_, v in options.items() if k_ != "vectors"), acc,
            time.perf_counter() - t0)
    source = "rt-polarity" if args.data == RT_POLARITY else " ".join(args.data)
    print(table(rows, f"{k}-fold stratified cross-validation (seed {args.seed}) on {source}: "
                      f"{len(data):,} examples ({counts})" + (" [SMOKE: not a measurement]" if args.smoke else "")))
    print()
    print(f"accuracy: mean ± sample standard deviation over the folds; rnnkit at most {args.fold_seconds:.0f} s of "
          f"training per fold on {args.threads} thread(s)")
    print(f"machine: {machine()}")
    print(f"command: python {shlex.join([sys.argv[0], *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
