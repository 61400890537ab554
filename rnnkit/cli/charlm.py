"""``rnnkit train``, ``rnnkit sample``, ``rnnkit eval``: character-level language models."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import RnnkitError
from ..nn.cells import cell_names
from ..nn.regularisation import AWD_OPTIONS, AWDRegularisation
from ..training.config import TrainConfig
from . import fraction, non_negative_float, non_negative_int, positive_float, positive_int, unit_interval
from .options import (
    TRAIN_OPTIONS,
    add_checkpoint_option,
    add_config_options,
    default_run_folder,
    resume_options,
    seed_value,
)

ORDER = 10  # place in --help


def register(sub) -> None:
    t = sub.add_parser("train", help="train a character model on text",
                       description="Train a character-level language model. With no corpus, trains on "
                       "the Python standard library's source files.")
    t.add_argument("corpus", nargs="*", help="text files, directories or glob patterns")
    t.add_argument("--out", help="run folder (default: runs/<corpus name>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly where it stopped")
    g = t.add_argument_group("model")
    g.add_argument("--cell", choices=cell_names(),
                   help="recurrent cell (default: lstm at 512 units and up; below, gru, or lstm where this "
                        "machine trains it at least as fast as the gru)")
    g.add_argument("--hidden", type=positive_int,
                   help="hidden units per layer (default: 512, 256 or 128, by the compute the budget buys)")
    g.add_argument("--layers", type=positive_int, help="stacked layers (default 2)")
    g.add_argument("--embed", type=positive_int, help="embedding width (default: --hidden)")
    g.add_argument("--init", choices=["default", "orthogonal", "identity", "forget1", "chrono"],
                   help="initialisation of the recurrent layers (see rnnkit.nn.init)")
    g.add_argument("--dropout", type=fraction,
                   help="dropout between layers and before the output (default by budget: 0 or 0.2)")
    g.add_argument("--members", type=positive_int,
                   help="train this many models side by side, each on a share of the CPU's threads, and "
                        "average their predictions (default: 2 where each could read the text 7 times in the "
                        "budget on half the threads, else 1)")
    g = t.add_argument_group("regularisation", "AWD-LSTM's regularisers (Merity et al. 2017, arXiv:1708.02182), "
                             "off by default but for AR and TAR on an lstm and the wide model")
    add_config_options(g, AWDRegularisation, AWD_OPTIONS,
                       defaults={"ar": "2 for an lstm and the 512-unit model, else 0",
                                 "tar": "1 for an lstm and the 512-unit model, else 0"})
    g = t.add_argument_group("data")
    g.add_argument("--seq-len", type=positive_int, help="characters per truncated-BPTT window (default 32)")
    g.add_argument("--batch-size", type=positive_int, help="parallel streams (default 64)")
    g.add_argument("--val-fraction", type=positive_float, help="last share of the text held out (default 0.1)")
    g.add_argument("--encoding", help="text encoding (default utf-8, BOM allowed)")
    g.add_argument("--max-vocab", type=positive_int, help="keep the N most frequent characters; others map to U+FFFD")
    add_config_options(t.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                       defaults={"lr": "by width: 1e-2, or 6e-3 from 512 units (mlstm: half)",
                                 "weight_decay": "by width: 0.3, or 0.2 from 512 units",
                                 "min_lr_ratio": 0, "ema": "by width: off, or 0.998 from 512 units",
                                 "max_time": "120 if no budget is given"})
    g = t.add_argument_group("output")
    g.add_argument("--sample-length", type=non_negative_int, default=300,
                   help="characters to sample at the end (0: none)")

    s = sub.add_parser("sample", help="generate text from a trained run")
    s.add_argument("run", help="run folder or checkpoint file")
    s.add_argument("--length", type=non_negative_int, default=500, help="characters to generate (default 500)")
    s.add_argument("--prime", default="", help="text to start from")
    s.add_argument("--temperature", type=positive_float, default=1.0)
    s.add_argument("--top-k", type=positive_int)
    s.add_argument("--top-p", type=positive_float)
    s.add_argument("--greedy", action="store_true", help="always take the most likely character")
    s.add_argument("--stop", help="stop after this text appears")
    s.add_argument("--seed", type=seed_value)
    s.add_argument("--num-samples", type=positive_int, default=1)
    add_checkpoint_option(s)
    s.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto",
                   help="weights while stepping: auto (by batch: int8 on AVX2/AVX-512, then bf16 on AVX-512 BF16, "
                        "else fp32), fp32, bf16, int8")

    e = sub.add_parser("eval", help="bits per character of a trained run on text")
    e.add_argument("run", help="run folder or checkpoint file")
    e.add_argument("files", nargs="+", help="text files, directories or glob patterns")
    e.add_argument("--encoding", default="utf-8")
    add_checkpoint_option(e)
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    g = e.add_argument_group("dynamic evaluation (Krause et al. 2017): the weights adapt to the text as it is read")
    g.add_argument("--dynamic", action="store_true",
                   help="also report the loss with dynamic evaluation, on its own line before the last")
    g.add_argument("--method", choices=["auto", "rms", "sgd"],
                   help="rms: steps divided by the RMS of training gradients, decay scaled by it (the paper's "
                        "best); sgd: plain steps; auto (default): rms when the run's training text is there")
    g.add_argument("--lr", type=non_negative_float, help="step size (default 1e-4 for rms, 0.05 for sgd)")
    g.add_argument("--decay", type=unit_interval,
                   help="pull towards the trained weights per step (default 0.01 for rms, 0.002 for sgd)")
    g.add_argument("--segment", type=positive_int, help="characters scored between steps (default 50)")
    g.add_argument("--stats-chars", type=positive_int,
                   help="training characters read for the rms gradient statistics (default 200000)")
    t.set_defaults(handler=cmd_train, parser=t)
    s.set_defaults(handler=cmd_sample)
    e.set_defaults(handler=cmd_eval)


CHARLM_OPTIONS = ("cell", "hidden", "embed", "layers", "dropout", "init", *AWD_OPTIONS, "seq_len", "batch_size",
                  "val_fraction", "encoding", "max_vocab")


def cmd_train(args: argparse.Namespace) -> None:
    from ..tasks.charlm import sample_to_stdout, train

    if args.resume and args.out:
        raise RnnkitError("--resume continues a run in its own folder; give --resume RUN or --out DIR, not both")
    if args.resume:  # the corpus may be given again, to rebuild a lost token file
        options = resume_options(args, reports=("sample_length",))
    else:
        options = {k: getattr(args, k) for k in CHARLM_OPTIONS + TRAIN_OPTIONS}
    out = args.out
    if out is None and args.resume is None:
        out = default_run_folder(args.corpus[0]) if args.corpus else str(Path("runs") / "stdlib")
    from ..training import distributed

    model, result = train(args.corpus or None, out=out, resume=args.resume, members=args.members, **options)
    if distributed.rank() != 0:  # under torchrun the first process reports for all
        distributed.shutdown()
        return
    distributed.shutdown()
    run_dir = args.resume or out
    for name, member in getattr(result, "members", {}).items():  # an ensemble's models, each on its own line
        print(f"{name}: steps {member.steps}  {member.items_per_second:,.0f} chars/s  "
              f"val loss {member.last_eval.get('val_loss', math.nan):.4f}")
    print(f"run folder: {run_dir}  steps {result.steps}  train time {result.train_time:.0f}s  "
          f"{result.items_per_second:,.0f} chars/s")
    if args.sample_length > 0:
        print("--- sample ---")
        sample_to_stdout(model, length=args.sample_length, seed=0, temperature=0.8)
        print("\n---")
    if result.last_eval:
        print(f"val bpc {result.last_eval['val_bpc']:.3f}  (loss {result.last_eval['val_loss']:.4f} nats/char)")


def cmd_sample(args: argparse.Namespace) -> None:
    from ..tasks.charlm import CharModel, sample_to_stdout

    model = CharModel.load(args.run, args.checkpoint, device="cpu")
    texts = sample_to_stdout(model, length=args.length, prime=args.prime,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             greedy=args.greedy, stop=args.stop, seed=args.seed,
                             num_samples=args.num_samples, precision=args.precision)
    print()
    for i, text in enumerate(texts[1:], start=2):
        print(f"--- sample {i} ---")
        print(args.prime + text)


DYNAMIC_OPTIONS = ("method", "lr", "decay", "segment", "stats_chars")


def cmd_eval(args: argparse.Namespace) -> None:
    from ..data.text import read_text, resolve_corpus
    from ..tasks.charlm import LN2, CharModel

    dynamic = None
    if args.dynamic:
        from ..tasks.dynamic_eval import DynamicEval

        dynamic = DynamicEval(**{k: getattr(args, k) for k in DYNAMIC_OPTIONS if getattr(args, k) is not None})
        dynamic.validate()
    else:
        given = [k for k in DYNAMIC_OPTIONS if getattr(args, k) is not None]
        if given:
            raise RnnkitError(f"--{given[0].replace('_', '-')} is a setting of dynamic evaluation: add --dynamic")
    texts = [(f, read_text(f, args.encoding)) for f in resolve_corpus(args.files)]  # every file's errors first
    model = CharModel.load(args.run, args.checkpoint, device=args.device)
    if dynamic is not None:
        dynamic = dynamic.resolve(model, progress=None)  # gradient statistics once, for every file
        print(dynamic.describe())
    total_loss = total_dynamic = total_chars = 0.0
    for f, text in texts:
        m = model.evaluate(text, dynamic=dynamic, progress=None)
        skipped = f"  ({m['skipped']:.0f} characters outside the vocabulary left out)" if m["skipped"] else ""
        adapted = f"  dynamic loss {m['dynamic_loss']:.4f}  bpc {m['dynamic_bpc']:.3f}" if dynamic else ""
        print(f"{f}: {m['chars']:.0f} chars  loss {m['loss']:.4f}  bpc {m['bpc']:.3f}{adapted}{skipped}", flush=True)
        total_loss += m["loss"] * m["chars"]
        total_dynamic += m.get("dynamic_loss", 0.0) * m["chars"]
        total_chars += m["chars"]
    loss = total_loss / total_chars
    if dynamic is not None:
        dynamic_loss = total_dynamic / total_chars
        print(f"dynamic loss {dynamic_loss:.4f} nats/char  bpc {dynamic_loss / LN2:.3f}")
    print(f"loss {loss:.4f} nats/char  bpc {loss / LN2:.3f}")


