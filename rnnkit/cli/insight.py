"""``rnnkit gradflow``, ``rnnkit longlag``, ``rnnkit neurons``: seeing inside recurrent networks."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RnnkitError
from ..training.config import TrainConfig
from . import non_negative_int, png_file, positive_float, positive_int
from .options import TRAIN_OPTIONS, add_checkpoint_option, add_config_options, given, resume_options, seed_value

INITS = ["default", "orthogonal", "identity", "forget1", "chrono"]
LONGLAG_TRAIN = TRAIN_OPTIONS
LONGLAG_DEFAULTS = {"lr": 3e-3, "grad_clip": 1.0, "seed": 0, "precision": "fp32"}

ORDER = 20  # place in --help


def register(sub) -> None:
    g = sub.add_parser(
        "gradflow", help="gradient norm through time: vanishing and exploding gradients",
        description="Measure |dL_T/dh_t|, the norm of the gradient of the last step's loss with respect "
        "to the hidden state t steps earlier, averaged over windows of real text; print the decay per step, "
        "the horizon and the spectral radius of the recurrent matrix; plot all configurations on one log-scale "
        "figure. Untrained configurations are CELL[:INIT[:SCALE]] (e.g. rnn, lstm:chrono, rnn_relu:identity:1.05: "
        "SCALE multiplies the recurrent weights, a large init); a trained run reads its own validation text.")
    g.add_argument("runs", nargs="*", metavar="RUN_DIR", help="trained character-model run folders")
    g.add_argument("--cell", nargs="+", metavar="CELL[:INIT[:SCALE]]",
                   help="untrained configurations (default with no run: rnn lstm gru)")
    g.add_argument("--hidden", type=positive_int, default=128, help="hidden units of untrained models (default 128)")
    g.add_argument("--layers", type=positive_int, default=1, help="layers of untrained models (default 1)")
    g.add_argument("--init", choices=INITS, default="default", help="init for configurations that name none")
    g.add_argument("--init-scale", type=positive_float, default=1.0,
                   help="multiply recurrent weights of configurations that name no scale (default 1)")
    g.add_argument("--corpus", nargs="+", help="text to take windows from (default: the built-in corpus; "
                   "for a run, its validation text)")
    g.add_argument("--encoding", default="utf-8")
    g.add_argument("--length", type=positive_int, default=200, help="steps per window, T (default 200)")
    g.add_argument("--windows", type=positive_int, default=32, help="windows averaged over (default 32)")
    g.add_argument("--burn-in", type=non_negative_int, default=100,
                   help="characters run before each window to reach a realistic state (default 100)")
    g.add_argument("--seed", type=seed_value, default=0)
    g.add_argument("--out", type=png_file, default="gradflow.png", help="plot file (default gradflow.png)")
    g.set_defaults(handler=cmd_gradflow)

    m = sub.add_parser(
        "longlag", help="long-range memory: the adding problem and copy memory",
        description="Train a cell on a synthetic long-range task and report its test metric against the "
        "memoryless baseline. Adding: predict the sum of two marked numbers in a sequence of length T "
        "(baseline MSE 1/6). Copy: repeat 10 symbols after a delay of T (baseline cross-entropy "
        "10 log 8 / (T + 20)). With --sweep, every --cell at every --length.")
    m.add_argument("--task", choices=["adding", "copy"], default="adding")
    m.add_argument("--length", type=positive_int, nargs="+", default=[100], metavar="T",
                   help="sequence length / delay T (several with --sweep; default 100)")
    m.add_argument("--cell", nargs="+", default=None, metavar="CELL[:INIT]",
                   help="rnn, rnn_relu, lstm or gru, optionally with an init (lstm:chrono); several with "
                   "--sweep (default lstm, or rnn lstm gru with --sweep)")
    m.add_argument("--init", choices=INITS, default="default", help="initialisation (see rnnkit.nn.init)")
    m.add_argument("--hidden", type=positive_int, default=64, help="hidden units (default 64)")
    m.add_argument("--batch-size", type=positive_int, default=64)
    add_config_options(m, TrainConfig, LONGLAG_TRAIN, defaults=LONGLAG_DEFAULTS | {"max_time": "60 per run"})
    m.add_argument("--resume", metavar="RUN", help="continue an interrupted run in its folder (only the budget "
                   "and device may change)")
    m.add_argument("--eval-size", type=positive_int, default=1000,
                   help="validation sequences (the test set is twice this; default 1000)")
    m.add_argument("--sweep", action="store_true", help="run every cell at every length; write a table and a plot")
    m.add_argument("--out", help="run folder (default runs/longlag/<task>-<cell>-T<length>, "
                   "or runs/longlag-sweep with --sweep)")
    m.set_defaults(handler=cmd_longlag, parser=m)

    n = sub.add_parser(
        "neurons", help="what single hidden units of a trained character model track",
        description="Run a trained character model over a text, correlate every hidden unit (and LSTM cell "
        "state) with properties of the text (inside quotes, inside brackets, position in line, indentation, "
        "start of word, after a newline), print the best units, and render the text coloured by one unit "
        "and by the model's confidence as HTML and PNG.")
    n.add_argument("run", metavar="RUN_DIR", help="run folder or checkpoint file")
    n.add_argument("text", metavar="TEXT", help="text file to run over")
    n.add_argument("--unit", help="unit to render, e.g. h0:12 or c1:7 (default: the best-correlated one)")
    n.add_argument("--property", nargs="+", help="properties to correlate with (default all)")
    n.add_argument("--top", type=positive_int, default=3, help="units listed per property (default 3)")
    n.add_argument("--max-chars", type=positive_int, default=20000, help="read at most this many characters")
    n.add_argument("--png-chars", type=positive_int, default=1200, help="characters drawn in the PNG")
    n.add_argument("--encoding", default="utf-8")
    add_checkpoint_option(n)
    n.add_argument("--out", help="folder for neurons.html and neurons.png (default RUN_DIR/neurons)")
    n.set_defaults(handler=cmd_neurons)


def cmd_gradflow(args: argparse.Namespace) -> None:
    from ..inspect.gradflow import format_table, gradflow, plot_gradflow

    out = Path(args.out)
    configs = args.cell if args.cell is not None else ([] if args.runs else ["rnn", "lstm", "gru"])
    results = gradflow(configs, args.runs, corpus=args.corpus, hidden=args.hidden, layers=args.layers,
                       init=args.init, init_scale=args.init_scale, length=args.length, windows=args.windows,
                       burn_in=args.burn_in, seed=args.seed, encoding=args.encoding)
    print(format_table(results))
    plot_gradflow(results, out)
    print(f"plot: {out}")


def cmd_longlag(args: argparse.Namespace) -> None:
    from ..tasks.longlag import format_sweep, run, sweep

    if args.resume:
        from ..tasks.longlag import resume

        if args.sweep or args.out:
            raise RnnkitError("--resume continues one run in its own folder: no --sweep, no --out")
        result = resume(args.resume, **resume_options(args))
        print(f"{result.cell} T={result.length}: {result.steps} steps in {result.train_time:.0f}s, "
              f"{'solved' if result.solved else 'not solved'}")
        print(result.line())
        return
    cells = args.cell or (["rnn", "lstm", "gru"] if args.sweep else ["lstm"])
    options = {"hidden": args.hidden, "init": args.init, "batch_size": args.batch_size,
               "eval_size": args.eval_size, **LONGLAG_DEFAULTS, **given(args, LONGLAG_TRAIN)}
    if args.max_time is None and args.max_steps is None:
        options["max_time"] = 60.0
    if not args.sweep:
        if len(cells) > 1 or len(args.length) > 1:
            raise RnnkitError("several --cell or --length values need --sweep")
        cell, _, init = cells[0].partition(":")
        options["init"] = init or args.init
        result = run(args.task, args.length[0], cell, out=args.out, **options)
        print(f"{result.cell} T={result.length}: {result.steps} steps in {result.train_time:.0f}s, "
              f"{'solved' if result.solved else 'not solved'}")
        print(result.line())
        return
    out = Path(args.out or "runs/longlag-sweep")
    if out.exists() and any(out.iterdir()):
        raise RnnkitError(f"{out} is not empty; pick another --out for the sweep")

    def show(r) -> None:
        print(f"{r.cell:8s} T={r.length:<5d} {r.line()}  steps {r.steps}  {'solved' if r.solved else ''}", flush=True)

    results = sweep(args.task, cells, args.length, out, on_result=show, **options)
    print(format_sweep(results))
    print(f"table: {out / 'sweep.md'}  plot: {out / 'sweep.png'}")


def cmd_neurons(args: argparse.Namespace) -> None:
    from ..data.text import read_corpus
    from ..inspect.neurons import default_out, format_matches, neurons

    text = read_corpus([args.text], args.encoding)[: args.max_chars]
    rec, matches, unit = neurons(args.run, text, out=args.out, unit=args.unit, properties=args.property,
                                 top=args.top, which=args.checkpoint, png_chars=args.png_chars)
    print(format_matches(matches))
    out = Path(args.out) if args.out else default_out(args.run)
    print(f"{len(rec.text)} characters, {len(rec.names)} units; rendered {unit}: "
          f"{out / 'neurons.html'}  {out / 'neurons.png'}")
