"""``rnnkit classify train|eval|predict|explain|cv``: text classification (sentiment or any labels).

DATA is a CSV, TSV, JSON Lines or Parquet file with text and label columns, ``LABEL=FILE``
pairs with one example a line, or a folder with one sub-folder or file per label
(:func:`rnnkit.data.labelled_text.load_labelled`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import RnnkitError
from ..io import output_folder
from ..nn.cells import cell_names
from ..nn.regularisation import LAYER_REGULARISATION, LayerRegularisation
from ..training.config import TrainConfig
from . import fraction, non_negative_int, positive_int
from .options import TRAIN_OPTIONS, add_config_options, resume_options, seed_value

ORDER = 40  # place in --help

MODEL_KEYS = ["cell", "level", "embed", "hidden", "layers", "bidirectional", "pooling", "dropout",
              *LAYER_REGULARISATION, "max_vocab",
              "min_count", "max_len", "subword_size", "lower", "vectors", "lm", "batch_size", "val_fraction", "nbsvm"]


def _data_options(p: argparse.ArgumentParser, what: str = "examples") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--text-column", default="text", help="text column of a table file (default text)")
    g.add_argument("--label-column", default="label", help="label column of a table file (default label)")
    g.add_argument("--encoding", help=f"encoding of the {what} (default UTF-8; rt-polarity needs cp1252)")
    g.add_argument("--max-chars", type=positive_int, default=100_000,
                   help="refuse a text longer than this many characters (default 100000)")


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=cell_names(), help="recurrent cell (default lstm)")
    g.add_argument("--level", choices=["word", "subword", "char"],
                   help="word tokens, subword pieces (SentencePiece) or characters (default word)")
    g.add_argument("--subword-size", type=positive_int, help="subword pieces to learn with --level subword "
                   "(default 8000)")
    g.add_argument("--embed", type=positive_int, help="embedding size (default 128; a --vectors file sets it)")
    g.add_argument("--hidden", type=positive_int, help="hidden units per direction (default 128)")
    g.add_argument("--layers", type=positive_int, help="stacked layers (default 1)")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="read the text both ways (default on)")
    g.add_argument("--pooling", choices=["max", "mean", "attention", "last"], help="default max")
    g.add_argument("--dropout", type=fraction, help="on embeddings and the pooled vector (default 0.5)")
    add_config_options(g, LayerRegularisation, LAYER_REGULARISATION)
    g.add_argument("--max-vocab", type=positive_int, help="vocabulary size, <pad> and <unk> included (default 30000)")
    g.add_argument("--min-count", type=positive_int, help="keep tokens seen this often in training (default 1)")
    g.add_argument("--max-len", type=positive_int, help="tokens kept of each text (default 400)")
    g.add_argument("--lower", action=argparse.BooleanOptionalAction, default=None, help="lower-case (default on)")
    g.add_argument("--vectors", help="GloVe or word2vec text file to initialise the word embeddings from")
    g.add_argument("--lm", metavar="RUN", help="start from a character language model's run folder (`rnnkit train` "
                   "on unlabelled text; Dai and Le 2015): needs --level char; takes its cell, size and layers")
    g.add_argument("--nbsvm", type=non_negative_int, metavar="N",
                   help="also fit an NBSVM on word 1..N-grams (Wang and Manning 2012) and let it decide with the "
                   "network, each scaled on the validation texts (default 0: none)")
    g.add_argument("--batch-size", type=positive_int, help="default 32")
    g.add_argument("--val-fraction", type=fraction, help="held out of each class when no --val is given "
                   "(default 0.1)")
    add_config_options(p.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                       defaults={"epochs": "10, with --patience 3, when no budget is given", "precision": "fp32"})


def register(sub) -> None:
    cl = sub.add_parser("classify", help="classify texts: sentiment or any labels (train, eval, predict, ...)",
                        description="Text classification with a recurrent network: train, evaluate, predict, "
                        "explain, and cross-validate against classic baselines.")
    csub = cl.add_subparsers(dest="classify_command", required=True, parser_class=type(cl))

    tr = csub.add_parser("train", help="train a classifier into a run folder",
                         description="Train a classifier; early stopping on validation accuracy.")
    tr.add_argument("data", nargs="*", metavar="DATA", help="a table file, a folder, or LABEL=FILE pairs")
    tr.add_argument("--val", nargs="+", metavar="DATA", help="validation data (default: --val-fraction of DATA)")
    tr.add_argument("--out", help="run folder (default runs/classify)")
    tr.add_argument("--resume", metavar="RUN", help="continue an interrupted run (only the budget and device "
                    "may change)")
    _data_options(tr)
    _model_options(tr)
    tr.set_defaults(handler=cmd_train, parser=tr)

    ev = csub.add_parser("eval", help="accuracy, macro F1, per-class scores and confusion matrix on labelled data",
                         description="Evaluate a trained classifier; the last line is `accuracy X`.")
    ev.add_argument("run", help="run folder from `rnnkit classify train`")
    ev.add_argument("data", nargs="+", metavar="DATA", help="a table file, a folder, or LABEL=FILE pairs")
    ev.add_argument("--json", action="store_true", help="print the results as one JSON object")
    _data_options(ev)
    ev.set_defaults(handler=cmd_eval)

    pr = csub.add_parser("predict", help="label texts given as arguments or as lines on stdin",
                         description="One line per text: the label and its probability, tab-separated.")
    pr.add_argument("run", help="run folder from `rnnkit classify train`")
    pr.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label (default: lines on stdin)")
    pr.add_argument("--json", action="store_true", help="one JSON object a line, with every class's probability")
    pr.set_defaults(handler=cmd_predict)

    ex = csub.add_parser("explain", help="which tokens decided a text's label (HTML and PNG)",
                         description="Each token's contribution to the predicted label: gradient x input, or the "
                         "attention weights of a model with --pooling attention.")
    ex.add_argument("run", help="run folder from `rnnkit classify train`")
    ex.add_argument("text", help="the text to explain")
    ex.add_argument("--method", choices=["gradient", "attention"],
                    help="default: attention for attention pooling, else gradient")
    ex.add_argument("--out", help="folder for explain.html and explain.png (default RUN/explain)")
    ex.set_defaults(handler=cmd_explain)

    cv = csub.add_parser("cv", help="stratified k-fold cross-validation (recurrent model and baselines)",
                         description="Seeded, stratified k-fold cross-validation; each fold's vocabulary and "
                         "model come from its training part only. The last line is `accuracy MEAN +- STD over "
                         "K folds`.")
    cv.add_argument("data", nargs="+", metavar="DATA", help="a table file, a folder, or LABEL=FILE pairs")
    cv.add_argument("--folds", type=int, default=10, help="default 10")
    cv.add_argument("--fold-seed", type=seed_value, default=0, help="seed of the fold assignment (default 0)")
    cv.add_argument("--model", choices=["rnn", "nbsvm", "tfidf-lr"], default="rnn",
                    help="rnn (default), or a classic baseline: NBSVM uni+bigrams or TF-IDF logistic regression")
    cv.add_argument("--baselines", action="store_true", help="also run both baselines on the same folds")
    _data_options(cv)
    _model_options(cv)
    cv.set_defaults(handler=cmd_cv)


def _load(args: argparse.Namespace, sources: list[str], min_classes: int = 2):
    from ..data.labelled_text import load_labelled

    return load_labelled(sources, text_col=args.text_column, label_col=args.label_column, encoding=args.encoding,
                         max_chars=args.max_chars, min_classes=min_classes)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in MODEL_KEYS + list(TRAIN_OPTIONS) if getattr(args, k, None) is not None}


def cmd_train(args: argparse.Namespace) -> None:
    from ..tasks.classify import Classifier

    if args.resume:
        if args.data or args.out or args.val:
            raise RnnkitError("--resume continues a run from its own folder: give no DATA, --val or --out")
        clf = Classifier.resume(args.resume, progress=None, **resume_options(args))
        out = args.resume
    else:
        if not args.data:
            raise RnnkitError("no data given: name a table file, a folder, or LABEL=FILE pairs")
        data = _load(args, args.data)
        val = _load(args, args.val, min_classes=1) if args.val else None
        out = args.out or str(Path("runs") / "classify")
        clf = Classifier(out=out, progress=None, **_options(args))
        clf.fit(data, val)
        if clf.vectors_found:
            print(f"pretrained: {clf.vectors_found:,} of {len(clf.vocab):,} vocabulary tokens from "
                  f"{args.vectors or args.lm}")
    r = clf.result
    print(f"run folder: {out}  steps {r.steps}  train time {r.train_time:.0f}s  classes {', '.join(clf.classes)}  "
          f"best val_acc {r.best_metric:.4f}")
    if clf.ensemble is not None:
        print(f"with NBSVM (word 1-{clf.nbsvm_ngram}-grams): val_acc {clf.ensemble.val_accuracy:.4f}")
    print(f"evaluate: rnnkit classify eval {out} DATA   predict: rnnkit classify predict {out} TEXT")


def cmd_eval(args: argparse.Namespace) -> None:
    from ..tasks.classify import Classifier

    clf = Classifier.load(args.run)
    result = clf.evaluate(_load(args, args.data, min_classes=1))
    if args.json:
        print(json.dumps(result))
        return
    width = max(9, *(len(c) for c in clf.classes))
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for c, m in result["per_class"].items():
        print(f"{c:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    print(f"\nconfusion matrix (rows: true label, columns: predicted, in the order {', '.join(clf.classes)}):")
    for c, row in zip(clf.classes, result["confusion"], strict=True):
        print(f"{c:<{width}}  " + " ".join(f"{n:7d}" for n in row))
    print(f"\nexamples {result['examples']}")
    print(f"macro_f1 {result['macro_f1']:.4f}")
    print(f"accuracy {result['accuracy']:.4f}")


def cmd_predict(args: argparse.Namespace) -> None:
    from ..tasks.classify import Classifier

    clf = Classifier.load(args.run)
    texts = args.texts or [line.rstrip("\r\n") for line in sys.stdin]
    if not texts:
        raise RnnkitError("no texts: give them as arguments or as lines on stdin")
    probs = clf.predict_proba(texts)
    for text, p in zip(texts, probs, strict=True):
        i = int(p.argmax())
        if args.json:
            print(json.dumps({"text": text, "label": clf.classes[i], "probability": float(p[i]),
                              "probabilities": dict(zip(clf.classes, map(float, p), strict=True))},
                             ensure_ascii=False))
        else:
            print(f"{clf.classes[i]}\t{p[i]:.4f}")


def cmd_explain(args: argparse.Namespace) -> None:
    from ..tasks.classify import Classifier

    clf = Classifier.load(args.run)
    e = clf.explain(args.text, args.method)
    out = Path(args.out) if args.out else Path(args.run) / "explain"
    if out.exists() and not out.is_dir():
        raise RnnkitError(f"--out {out} is a file, not a folder")
    with output_folder(out):
        e.save_html(out / "explain.html")
        e.save_png(out / "explain.png")
    print(f"{e.label} {e.probability:.4f} ({e.method}; positive: for the label)")
    for token, s in zip(e.tokens, e.scores, strict=True):
        print(f"{s:+.4f}  {token}")
    print(f"wrote {out / 'explain.html'} and {out / 'explain.png'}")


def cmd_cv(args: argparse.Namespace) -> None:
    import numpy as np

    from ..data.labelled_text import folds as make_folds
    from ..tasks.classify import Classifier, cross_validate
    from ..tasks.classify_baselines import cross_validate as baseline_cv

    data = _load(args, args.data)
    if args.folds < 2:
        raise RnnkitError(f"--folds must be at least 2, not {args.folds}")
    make_folds(data.labels, args.folds, args.fold_seed)  # too few examples of a class: refused before any training
    options = _options(args)
    Classifier(**options)  # bad options: refused before any fold runs
    counts = ", ".join(f"{c} {n}" for c, n in data.counts().items())
    print(f"{len(data):,} examples ({counts}), {args.folds} stratified folds, seed {args.fold_seed}")

    def summary(scores: np.ndarray) -> str:
        std = scores.std(ddof=1) if len(scores) > 1 else 0.0
        return f"accuracy {scores.mean():.4f} +- {std:.4f} over {len(scores)} folds"  # fractions, as eval prints

    # the baselines first, on the same folds; the chosen model last, so the last line is its result
    models = [m for m in ("nbsvm", "tfidf-lr") if args.baselines and m != args.model] + [args.model]
    for name in models:
        if name == "rnn":
            scores = cross_validate(data, args.folds, args.fold_seed,
                                    report=lambda f, a, _: print(f"  fold {f + 1}: {a:.4f}", flush=True),
                                    **options)
        else:
            scores = baseline_cv(name, data, args.folds, args.fold_seed)
        print(f"{name}: folds {' '.join(f'{s:.4f}' for s in scores)}")
        if name != args.model:
            print(f"{name}: {summary(scores)}")
    print(summary(scores))
