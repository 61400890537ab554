"""``rnnkit music train | generate | eval``: polyphonic music models on piano rolls, MIDI in and out."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RnnkitError
from ..nn.cells import cell_names
from ..nn.regularisation import LAYER_REGULARISATION, LayerRegularisation
from ..training.config import TrainConfig
from . import fraction, png_file, positive_float, positive_int
from .options import (
    TRAIN_OPTIONS,
    add_checkpoint_option,
    add_config_options,
    default_run_folder,
    given,
    resume_options,
    seed_value,
)

ORDER = 70  # place in --help

MODEL_KEYS = ("output", "cell", "hidden", "layers", "nade_hidden", "dropout", *LAYER_REGULARISATION, "batch_size",
              "seq_len", "augment")


def semitones(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 12:
        raise argparse.ArgumentTypeError(f"must be from 0 to 11 semitones, got {value}")
    return value


def register(sub) -> None:
    mu = sub.add_parser("music", help="polyphonic music: train on MIDI or piano rolls, generate, evaluate",
                        description="Model polyphonic music as piano rolls (88 keys per frame) with a recurrent "
                        "network: independent Bernoulli outputs per key, or RNN-NADE outputs that model the notes "
                        "of a frame jointly.")
    msub = mu.add_subparsers(dest="music_command", required=True, parser_class=type(mu))

    t = msub.add_parser("train", help="train a music model in a run folder",
                        description="Train on MIDI files or folders of them (quantised to --steps-per-beat frames "
                        "per quarter note, drums left out), or on one classic .mat piano-roll set (JSB_Chorales, "
                        "Nottingham, MuseData, Piano_midi).")
    t.add_argument("data", nargs="*", metavar="DATA", help=".mid/.midi files, folders of them, or one .mat set")
    t.add_argument("--out", help="run folder (default runs/music-<name>)")
    t.add_argument("--resume", metavar="RUN", help="continue an interrupted run in its folder (only the budget "
                   "and device may change)")
    g = t.add_argument_group("data")
    g.add_argument("--steps-per-beat", type=positive_int, default=4,
                   help="MIDI grid: frames per quarter note (default 4, 16th notes; 12 for triplets)")
    g.add_argument("--frame-rate", type=positive_float,
                   help="MIDI grid in real time instead: frames per second (follows tempo changes)")
    g.add_argument("--val-fraction", "--valid-share", dest="valid_share", type=fraction, default=0.1,
                   help="share of MIDI pieces held out for validation, as in the other commands (default 0.1)")
    g = t.add_argument_group("model")
    g.add_argument("--output", choices=["independent", "nade"], default="nade",
                   help="independent Bernoulli per key, or RNN-NADE over the keys of a frame (default nade)")
    g.add_argument("--cell", choices=cell_names(), default="lstm", help="recurrent cell (default lstm)")
    g.add_argument("--hidden", type=positive_int, default=256, help="recurrent units (default 256)")
    g.add_argument("--layers", type=positive_int, default=1, help="stacked recurrent layers (default 1)")
    g.add_argument("--nade-hidden", type=positive_int, default=150, help="NADE hidden units (default 150)")
    g.add_argument("--dropout", type=fraction, default=0.0, help="dropout on the recurrent output (default 0)")
    add_config_options(g, LayerRegularisation, LAYER_REGULARISATION)
    g = t.add_argument_group("training")
    g.add_argument("--batch-size", type=positive_int, default=16, help="chunks per batch (default 16)")
    g.add_argument("--seq-len", type=positive_int, default=100, help="frames per training chunk (default 100)")
    g.add_argument("--augment", type=semitones, default=0,
                   help="move each training chunk by a random number of semitones up to this, either way (default 0)")
    add_config_options(g, TrainConfig, TRAIN_OPTIONS, defaults={"max_time": 300, "precision": "fp32"})
    t.set_defaults(handler=cmd_train, parser=t)

    gen = msub.add_parser("generate", help="sample a piece from a trained run: MIDI, piano-roll PNG, audio",
                          description="Sample frames from a trained run and write them as a MIDI file (held notes "
                          "as notes), a piano-roll PNG beside it, and optionally a WAV file.")
    gen.add_argument("run", metavar="RUN", help="run folder from `rnnkit music train`")
    gen.add_argument("--out", required=True, help="MIDI file to write (.mid)")
    gen.add_argument("--wav", help="also render audio to this WAV file (FluidSynth if present, else built-in synth)")
    gen.add_argument("--png", type=png_file, help="piano-roll image (default: the MIDI path with .png)")
    gen.add_argument("--length", type=positive_int, default=64, help="frames to generate (default 64)")
    gen.add_argument("--temperature", type=positive_float, default=1.0,
                     help="divide every key's logit by this: below 1 safer, above 1 wilder (default 1)")
    gen.add_argument("--prime", help="MIDI file whose frames start the piece (kept in the output)")
    gen.add_argument("--seed", type=seed_value, help="random seed (default: a fresh one)")
    gen.set_defaults(handler=cmd_generate)

    ev = msub.add_parser("eval", help="NLL per frame and frame accuracy of a trained run",
                         description="Negative log-likelihood per frame in nats (summed over the 88 keys, averaged "
                         "over frames) and frame-level accuracy, on a split of the run's data or on FILES (MIDI "
                         "files or folders, or a .mat set whose --split is used). The last line is `nll X`.")
    ev.add_argument("run", metavar="RUN", help="run folder from `rnnkit music train`")
    ev.add_argument("files", nargs="*", metavar="FILES", help="MIDI files or folders, or one .mat set")
    ev.add_argument("--split", choices=["train", "valid", "test"], help="which pieces (default test)")
    add_checkpoint_option(ev)
    ev.set_defaults(handler=cmd_eval)


def cmd_train(args: argparse.Namespace) -> None:
    from ..tasks.music import MusicModel

    if args.resume:
        if args.out or args.data:
            raise RnnkitError("--resume continues a run from its own folder: give no DATA and no --out")
        m = MusicModel.resume(args.resume, progress=None, **resume_options(args))
        _report(m, args.resume)
        return
    if not args.data:
        raise RnnkitError("give DATA: MIDI files or folders, or a .mat piano-roll set")
    out = args.out or default_run_folder(args.data[0] if len(args.data) == 1 else None, "music-", "midi")
    m = MusicModel(**{k: getattr(args, k) for k in MODEL_KEYS}, out=out, progress=None, **given(args))
    m.fit(args.data, steps_per_beat=args.steps_per_beat, frame_rate=args.frame_rate, valid_share=args.valid_share)
    _report(m, out)


def _report(m, out: str) -> None:
    r = m.result
    last = r.last_eval or {}
    scores = "  ".join(f"{k} {v:.4f}" for k, v in last.items() if k.endswith(("_nll", "_frame_acc")))
    print(f"run folder: {out}  steps {r.steps}  train time {r.train_time:.0f}s  {scores}")
    print(f"generate: rnnkit music generate {out} --out song.mid   evaluate: rnnkit music eval {out}")


def cmd_generate(args: argparse.Namespace) -> None:
    from ..tasks.music import MusicModel

    out = Path(args.out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise RnnkitError(f"--out must be a .mid or .midi file, got {out}")
    if args.wav and Path(args.wav).suffix.lower() != ".wav":
        raise RnnkitError(f"--wav must be a .wav file, got {args.wav}")
    png = Path(args.png) if args.png else out.with_suffix(".png")
    m = MusicModel.load(args.run)
    piece = m.generate(args.length, args.temperature, prime=args.prime, seed=args.seed)
    piece.write_midi(out)
    what = f"{args.length} frames" + (f" after a {piece.primer_frames}-frame primer" if piece.primer_frames else "")
    print(f"wrote {out} ({what}, {piece.sounding.sum(1).mean():.2f} notes per frame)")
    piece.plot(png, title=f"{Path(args.run).name}: temperature {args.temperature:g}")
    print(f"piano roll: {png}")
    if args.wav:
        engine = piece.write_wav(args.wav)
        print(f"audio: {args.wav} ({'FluidSynth' if engine == 'fluidsynth' else 'built-in synthesiser'})")


def cmd_eval(args: argparse.Namespace) -> None:
    from ..tasks.music import MusicModel

    m = MusicModel.load(args.run, args.checkpoint)
    if args.files:
        mat = any(Path(f).suffix.lower() == ".mat" for f in args.files)
        if args.split and not mat:
            raise RnnkitError("--split picks the run's own pieces or a .mat set's; MIDI FILES are evaluated whole")
        r = m.evaluate(args.files, split=args.split or "test")
        where = ", ".join(args.files) + (f" ({args.split or 'test'})" if mat else "")
    else:
        split = args.split or "test"
        r = m.evaluate(split)
        where = f"the run's {split} pieces"
    print(f"{r['pieces']} pieces, {r['frames']} frames of {where}")
    print(f"frame_accuracy {r['frame_accuracy']:.4f}")
    print(f"nll {r['nll']:.4f}")
