"""``rnnkit translate train|predict|eval``: sequence-to-sequence translation with attention."""

from __future__ import annotations

import argparse
import sys

from ..errors import RnnkitError
from ..nn.cells import cell_names
from ..training.config import TrainConfig
from . import _number, fraction, output_file, png_file, positive_float, positive_int
from .options import TRAIN_OPTIONS, add_checkpoint_option, add_config_options, default_run_folder, given, resume_options

ORDER = 50  # place in --help

MODEL_KEYS = ("cell", "embed", "hidden", "layers", "attention", "input_feeding", "tie_embeddings", "dropout",
              "label_smoothing", "scheduled_sampling", "batch_size")
DATA_KEYS = ("vocab_size", "joint_vocab", "subword", "max_tokens", "max_chars", "drop_empty", "drop_long", "encoding")


def probability(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "in [0, 1]")


def register(sub) -> None:
    tr = sub.add_parser("translate", help="translate sentences: encoder-decoder with attention (train, predict, eval)",
                        description="Machine translation with a recurrent encoder-decoder and attention.")
    tsub = tr.add_subparsers(dest="translate_command", required=True, parser_class=type(tr))

    t = tsub.add_parser("train", help="train a subword tokeniser and a translation model on a parallel corpus",
                        description="Train on sentence pairs: two line-aligned text files (--src, --tgt; gzip "
                        "accepted) or one TSV/JSONL/Parquet file with two columns (--src alone). Validation BLEU "
                        "picks the best checkpoint.")
    t.add_argument("--src", help="source sentences, one a line (or a two-column TSV/JSONL/Parquet file)")
    t.add_argument("--tgt", help="target sentences, one a line, aligned with --src")
    t.add_argument("--val-src", help="validation source (default: hold out min(1000, 5%%) training pairs)")
    t.add_argument("--val-tgt", help="validation target, aligned with --val-src")
    t.add_argument("--out", help="run folder (default runs/translate-<source file name>)")
    t.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run (only the budget and device may change)")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=cell_names(), help="recurrent cell of encoder and decoder (default gru)")
    g.add_argument("--embed", type=positive_int, help="embedding and attentional-vector size (default 256)")
    g.add_argument("--hidden", type=positive_int, help="hidden units per direction and layer (default 256)")
    g.add_argument("--layers", type=positive_int, help="encoder and decoder layers (default 1)")
    g.add_argument("--attention", choices=["additive", "multiplicative", "none"],
                   help="Bahdanau additive, Luong multiplicative, or none (default additive)")
    g.add_argument("--input-feeding", action=argparse.BooleanOptionalAction, default=None,
                   help="feed the previous attentional vector to the decoder (Luong; default off)")
    g.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="output layer shares the target embeddings (default on)")
    g.add_argument("--dropout", type=fraction, help="default 0.3")
    g.add_argument("--label-smoothing", type=fraction, help="default 0.1")
    g.add_argument("--scheduled-sampling", type=probability,
                   help="largest probability of feeding the model's own prediction, ramped up over the first "
                   "epoch (default 0: teacher forcing)")
    g.add_argument("--batch-size", type=positive_int, help="sentence pairs a batch (default 64)")
    g = t.add_argument_group("data")
    g.add_argument("--vocab-size", type=positive_int, help="subword vocabulary (default 8000)")
    g.add_argument("--joint-vocab", action=argparse.BooleanOptionalAction, default=None,
                   help="one SentencePiece model for both languages (default on)")
    g.add_argument("--subword", choices=["bpe", "unigram"], help="SentencePiece model type (default bpe)")
    g.add_argument("--max-tokens", type=positive_int, help="longest sentence in subwords (default 100)")
    g.add_argument("--max-chars", type=positive_int, help="longest sentence in characters (default: no cap)")
    g.add_argument("--drop-empty", action="store_true", default=None, help="leave out pairs with an empty side")
    g.add_argument("--drop-long", action="store_true", default=None,
                   help="leave out pairs over --max-chars or --max-tokens instead of stopping")
    g.add_argument("--encoding", help="text encoding (default utf-8)")
    g.add_argument("--src-column", help="source column of a TSV/JSONL/Parquet file (default src, else the first)")
    g.add_argument("--tgt-column", help="target column of a TSV/JSONL/Parquet file (default tgt, else the second)")
    add_config_options(t.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                       defaults={"max_time": "600 if no budget is given", "warmup_steps": 200})
    t.set_defaults(handler=cmd_train, parser=t)

    p = tsub.add_parser("predict", help="translate sentences with a trained run",
                        description="Translate the sentences given, or standard input one sentence a line "
                        "(printed as they are translated).")
    p.add_argument("run", help="run folder from `rnnkit translate train`")
    p.add_argument("text", nargs="*", help="sentences to translate (default: read standard input)")
    _decoding_options(p)
    p.add_argument("--n-best", type=positive_int, default=1,
                   help="print the N best translations of each sentence as `number<TAB>score<TAB>text`, the "
                   "sentence's number counted from 0 (N <= --beam)")
    p.add_argument("--input", help="translate this file (one sentence a line, gzip accepted) instead")
    p.add_argument("--output", type=output_file,
                   help="write the translations here (written whole at the end) instead of stdout")
    p.add_argument("--attention", metavar="PNG", type=png_file, help="draw the source-target alignment of one sentence")
    p.set_defaults(handler=cmd_predict)

    e = tsub.add_parser("eval", help="sacreBLEU and chrF of a trained run on a test set",
                        description="Translate --src and score against --ref with sacreBLEU: cased BLEU (13a "
                        "tokenisation, detokenised output), lowercased BLEU and chrF.")
    e.add_argument("run", help="run folder from `rnnkit translate train`")
    e.add_argument("--src", required=True, help="source sentences, one a line (gzip accepted)")
    e.add_argument("--ref", required=True, help="reference translations, aligned with --src")
    _decoding_options(e)
    e.add_argument("--output", type=output_file, help="also write the translations to this file")
    e.set_defaults(handler=cmd_eval)


def _decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=positive_int, default=1, help="beam size; 1 is greedy search (default 1)")
    p.add_argument("--length-penalty", type=positive_float, default=1.0,
                   help="alpha in score / length^alpha for beam search (default 1)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences decoded together (default 64)")
    add_checkpoint_option(p)
    p.add_argument("--encoding", default="utf-8", help="encoding of the input files (default utf-8)")


def cmd_train(args: argparse.Namespace) -> None:
    from ..tasks.translate import Translator

    if args.resume:
        if args.out or args.src or args.tgt or args.val_src or args.val_tgt:
            raise RnnkitError("--resume continues a run from its own folder: give no data files and no --out")
        t = Translator.resume(args.resume, progress=None, **resume_options(args))
        _report(args.resume, t)
        return
    if not args.src:
        raise RnnkitError("give the training data: --src FILE --tgt FILE, or --src TABLE (TSV/JSONL/Parquet)")
    if (args.src_column is None) != (args.tgt_column is None):
        raise RnnkitError("give both --src-column and --tgt-column, or neither")
    if args.val_tgt and not args.val_src:
        raise RnnkitError("--val-tgt needs --val-src")
    options = {k: getattr(args, k) for k in MODEL_KEYS + DATA_KEYS}
    if args.src_column:
        options["columns"] = (args.src_column, args.tgt_column)
    out = args.out or default_run_folder(args.src, "translate-")
    t = Translator(out=out, progress=None, **options, **given(args))
    t.fit(args.src, args.tgt, args.val_src, args.val_tgt)
    _report(out, t)


def _report(run: str, t) -> None:
    r = t.result
    best = f"  best val_bleu {r.best_metric:.2f}" if r.best_metric is not None else ""
    print(f"run folder: {run}  steps {r.steps}  train time {r.train_time:.0f}s  "
          f"{r.items_per_second:,.1f} sentences/s{best}")
    print(f"translate: rnnkit translate predict {run} \"...\"   score: rnnkit translate eval {run} --src F --ref F")


def cmd_predict(args: argparse.Namespace) -> None:
    from ..data.parallel_text import read_lines
    from ..io import atomic_write_text
    from ..tasks.translate import Translator

    if args.n_best > args.beam:
        raise RnnkitError(f"--n-best {args.n_best} is more than --beam {args.beam}: raise --beam")
    if args.input and args.text:
        raise RnnkitError("give sentences or --input FILE, not both")
    if args.attention and len(args.text) != 1:
        raise RnnkitError("--attention draws one sentence: give exactly one sentence as an argument")
    t = Translator.load(args.run, args.checkpoint)
    if args.attention:
        text = t.plot_attention(args.text[0], args.attention, args.beam)
        print(text)
        print(f"attention: {args.attention}", file=sys.stderr)
        return
    if args.text or args.input:
        lines = args.text or read_lines(args.input, args.encoding)
        batch = args.batch_size
    else:
        lines = sys.stdin
        batch = 1 if sys.stdin.isatty() else args.batch_size  # typed by hand: answer each line at once
    rows = t.stream(lines, args.beam, args.n_best, batch, args.length_penalty)
    if args.output:
        atomic_write_text(args.output, "".join(f"{line}\n" for r in enumerate(rows) for line in _format(*r, args)))
        return
    for i, result in enumerate(rows):
        for line in _format(i, result, args):
            print(line, flush=True)


def _format(i: int, result, args: argparse.Namespace) -> list[str]:
    if args.n_best == 1:
        return [result[0][0]]
    return [f"{i}\t{h.score:.4f}\t{text}" for text, h in result]


def cmd_eval(args: argparse.Namespace) -> None:
    from ..io import atomic_write_text
    from ..tasks.translate import Translator

    t = Translator.load(args.run, args.checkpoint)
    hyps: list[str] = []
    s = t.evaluate(args.src, args.ref, args.beam, args.length_penalty, args.batch_size, args.encoding, hyps)
    print(f"bleu {s.bleu:.2f}")
    print(f"bleu_lowercase {s.bleu_lowercase:.2f}")
    print(f"chrf {s.chrf:.2f}")
    print(f"signature bleu {s.signatures['bleu']}")
    print(f"signature bleu_lowercase {s.signatures['bleu_lc']}")
    print(f"signature chrf {s.signatures['chrf']}")
    print(f"{s.sentences} sentences in {s.seconds:.1f}s ({s.sentences_per_second:.1f} sentences/s, beam {args.beam})")
    if args.output:
        atomic_write_text(args.output, "".join(h + "\n" for h in hyps))
