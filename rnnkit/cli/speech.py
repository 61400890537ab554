"""``rnnkit speech train|transcribe|eval``: speech recognition with a CTC-trained recurrent acoustic model."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import RnnkitError
from ..nn.cells import cell_names
from ..nn.regularisation import LAYER_REGULARISATION, LayerRegularisation
from ..training.config import TrainConfig
from . import fraction, output_file, png_file, positive_float, positive_int
from .options import TRAIN_OPTIONS, add_checkpoint_option, add_config_options, given, resume_options

ORDER = 60  # place in --help

DEFAULTS = {"lr": 3e-3, "warmup_steps": 100, "precision": "fp32", "max_time": 600}


def _data_options(p: argparse.ArgumentParser, split_default: str, optional: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", metavar="DATA", nargs="?" if optional else None,
                   help="folder with transcripts.tsv (path<TAB>text) or .csv, or with --format fsdd a folder of "
                   "{digit}_{speaker}_{take}.wav")
    g.add_argument("--format", choices=["transcripts", "fsdd"], default="transcripts", help="default transcripts")
    g.add_argument("--split", choices=["train", "test", "all"], default=split_default,
                   help=f"FSDD takes: train 5-49, test 0-4 (default {split_default})")
    g.add_argument("--speakers", help="FSDD: only these speakers, comma-separated")
    g.add_argument("--exclude-speakers", help="FSDD: leave these speakers out, comma-separated")
    g.add_argument("--transcript", choices=["words", "digits"], default="words",
                   help="FSDD transcripts as digit words (three) or digits (3) (default words)")


def _decoding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--beam", type=positive_int, default=1, help="beam width; 1 is greedy decoding (default 1)")
    g.add_argument("--lm", nargs="+", metavar="TEXT", help="text file(s) to build a character n-gram language "
                   "model from (one sentence a line); used in the beam search")
    g.add_argument("--lm-order", type=positive_int, default=4, help="n-gram order (default 4)")
    g.add_argument("--lexicon", nargs="+", metavar="FILE", help="words the transcripts may hold (white-space "
                   "separated): the beam search spells only these (a closed vocabulary; use with --beam 8)")
    g.add_argument("--lm-weight", type=positive_float, default=0.5, help="language model weight (default 0.5)")
    g.add_argument("--length-bonus", type=float, default=0.0, help="score added per character (default 0)")
    g.add_argument("--ensemble", nargs="+", metavar="RUN", default=[], help="more run folders whose models decide "
                   "with RUN's: each proposes its beam's hypotheses, all of them score every proposal (sequence-level "
                   "combination; the same output characters)")
    add_checkpoint_option(g)


def register(sub) -> None:
    sp = sub.add_parser("speech", help="speech recognition: train, transcribe, eval",
                        description="Speech recognition from audio files: log-mel or MFCC features, a "
                        "bidirectional (or streaming) recurrent network trained with CTC, greedy or beam decoding.")
    ssub = sp.add_subparsers(dest="speech_command", required=True, parser_class=type(sp))

    t = ssub.add_parser("train", help="train a recogniser in a run folder",
                        description="Train a CTC speech recogniser on DATA (WAV or FLAC at any rate, mono or "
                        "stereo). The output characters are those of the transcripts unless --labels names them.")
    _data_options(t, "train", optional=True)
    g = t.add_argument_group("features")
    g.add_argument("--features", choices=["logmel", "mfcc"], default="logmel", help="default logmel")
    g.add_argument("--n-mels", type=positive_int, default=40, help="mel bands (default 40)")
    g.add_argument("--n-mfcc", type=positive_int, default=13, help="cepstral coefficients for mfcc (default 13)")
    g.add_argument("--deltas", type=int, choices=[0, 1, 2], default=0, help="append delta features (default 0)")
    g.add_argument("--sample-rate", type=positive_int, default=8000,
                   help="audio is resampled to this rate (default 8000, FSDD's)")
    g.add_argument("--trim-db", type=float, metavar="DB",
                   help="drop the silence at both ends of every clip, in training and recognition alike: the frames "
                   "more than DB decibels below the loudest (default: keep it)")
    g.add_argument("--spec-augment", action=argparse.BooleanOptionalAction, default=True,
                   help="SpecAugment time and frequency masks while training (default on)")
    g.add_argument("--speed-perturb", type=fraction, default=0.0, metavar="X",
                   help="stretch each training utterance in time by a factor in 1 +- X (default 0: off)")
    g.add_argument("--vtlp", type=fraction, default=0.0, metavar="X",
                   help="warp each training utterance's mel bands by a factor in 1 +- X, as a longer or shorter "
                   "vocal tract would (Jaitly & Hinton 2013; default 0: off)")
    g.add_argument("--pad-silence", type=float, default=0.0, metavar="MS",
                   help="add up to MS milliseconds of silence (the utterance's quietest frame) at the start and at "
                   "the end of each training utterance (default 0: off)")
    g.add_argument("--sortagrad", action="store_true",
                   help="run the first epoch from the shortest utterances to the longest (Amodei et al. 2016)")
    g = t.add_argument_group("model")
    g.add_argument("--labels", help="the output characters, e.g. ' abcdefghijklmnopqrstuvwxyz' (default: those of "
                   "the training transcripts)")
    g.add_argument("--cell", choices=cell_names(), default="lstm", help="default lstm")
    g.add_argument("--hidden", type=positive_int, default=128, help="hidden units per direction (default 128)")
    g.add_argument("--layers", type=positive_int, default=2, help="stacked layers (default 2)")
    g.add_argument("--dropout", type=fraction, default=0.1, help="default 0.1")
    add_config_options(g, LayerRegularisation, LAYER_REGULARISATION)
    g.add_argument("--stride", type=positive_int, default=2, help="feature frames joined per step (default 2)")
    g.add_argument("--conv-channels", type=int, default=0, metavar="C", help="two 3x3 convolutions of C channels "
                   "over time and mel bands before the recurrent layers (Deep Speech 2; default 0: none)")
    g.add_argument("--streaming", action="store_true", help="one direction and causal features: a model that "
                   "transcribes while audio arrives (transcribe --stream)")
    g = t.add_argument_group("training")
    g.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    g.add_argument("--val-fraction", type=fraction, default=0.1,
                   help="share of DATA held out to pick the best checkpoint (default 0.1)")
    add_config_options(g, TrainConfig, TRAIN_OPTIONS, defaults=DEFAULTS)
    t.add_argument("--out", help="run folder (required unless --resume)")
    t.add_argument("--resume", metavar="RUN", help="continue an interrupted run in its folder (only the budget and "
                   "device may change)")
    t.set_defaults(handler=cmd_train, parser=t)

    tr = ssub.add_parser("transcribe", help="transcribe audio files with a trained run",
                         description="Print each FILE's transcript and the time it took (tab-separated).")
    tr.add_argument("run", metavar="RUN", help="run folder from `rnnkit speech train`")
    tr.add_argument("files", nargs="+", metavar="FILE", help="WAV or FLAC files")
    _decoding_options(tr)
    tr.add_argument("--plot", metavar="PNG", type=png_file,
                    help="save the spectrogram, CTC posteriors and best path (one FILE)")
    tr.add_argument("--stream", action="store_true", help="feed the audio in chunks as if it were arriving "
                    "(a --streaming model), printing the text after each chunk")
    tr.add_argument("--chunk-ms", type=positive_float, default=100.0, help="chunk length for --stream (default 100)")
    tr.set_defaults(handler=cmd_transcribe)

    ev = ssub.add_parser("eval", help="word and character error rates on labelled data",
                         description="Transcribe DATA and score it against its transcripts (jiwer). Prints the "
                         "utterance count, character and utterance error rates, and last `wer X`.")
    ev.add_argument("run", metavar="RUN", help="run folder from `rnnkit speech train`")
    _data_options(ev, "test")
    _decoding_options(ev)
    ev.add_argument("--output", type=output_file,
                    help="write path<TAB>reference<TAB>hypothesis per utterance to this TSV")
    ev.set_defaults(handler=cmd_eval)


def _speakers(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    fsdd_only = {"--speakers": args.speakers, "--exclude-speakers": args.exclude_speakers}
    if args.format != "fsdd":
        named = [k for k, v in fsdd_only.items() if v]
        if named:
            raise RnnkitError(f"{named[0]} is for --format fsdd")
    return {"format": args.format, "split": args.split, "speakers": _speakers(args.speakers),
            "exclude_speakers": _speakers(args.exclude_speakers), "transcript": args.transcript}


def _decoding(args: argparse.Namespace) -> dict[str, Any]:
    from ..tasks.speech import SpeechRecognizer

    return {"beam": args.beam, "lm": args.lm, "lm_order": args.lm_order, "lm_weight": args.lm_weight,
            "length_bonus": args.length_bonus, "lexicon": args.lexicon,
            "ensemble": [SpeechRecognizer.load(run, args.checkpoint) for run in args.ensemble]}


def _report(rec) -> None:
    r = rec.result
    if r is not None:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in r.last_eval.items())
        print(f"trained {r.steps} steps in {r.train_time:.0f} s ({r.stop_reason}): {shown}")
    print(f"run: {rec.run_dir}")


def cmd_train(args: argparse.Namespace) -> None:
    from ..tasks.speech import SpeechRecognizer

    options = given(args)
    if args.resume:
        if args.out or args.data:
            raise RnnkitError("--resume continues a run from its own folder: give no DATA and no --out")
        _report(SpeechRecognizer.resume(args.resume, progress=None, **resume_options(args)))
        return
    if not args.data or not args.out:
        raise RnnkitError("give DATA and --out RUN, the run folder to train in (or --resume RUN)")
    if args.format != "fsdd" and args.split != "train":
        raise RnnkitError("--split is for --format fsdd")
    data = _data_kwargs(args)
    if args.format != "fsdd":
        data["split"] = "all"
    rec = SpeechRecognizer(cell=args.cell, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
                           weight_drop=args.weight_drop, variational_dropout=args.variational_dropout,
                           stride=args.stride, streaming=args.streaming,
                           conv_channels=args.conv_channels, features=args.features, n_mels=args.n_mels,
                           n_mfcc=args.n_mfcc, deltas=args.deltas, sample_rate=args.sample_rate, trim_db=args.trim_db,
                           labels=args.labels,
                           augment=args.spec_augment, speed_perturb=args.speed_perturb, vtlp=args.vtlp,
                           pad_silence_ms=args.pad_silence,
                           sortagrad=args.sortagrad, batch_size=args.batch_size,
                           val_fraction=args.val_fraction, out=args.out, progress=None, **options)
    rec.fit(args.data, **data)
    _report(rec)


def cmd_transcribe(args: argparse.Namespace) -> None:
    from ..data.audio import load_audio
    from ..tasks.speech import SpeechRecognizer

    if args.plot and len(args.files) != 1:
        raise RnnkitError("--plot draws one file; give a single FILE")
    if args.plot and args.ensemble:
        raise RnnkitError("--plot draws one model's posteriors; drop --ensemble")
    rec = SpeechRecognizer.load(args.run, args.checkpoint)
    if args.stream:
        if args.beam != 1 or args.lm or args.lexicon or args.ensemble:
            raise RnnkitError("--stream decodes greedily with one model; drop --beam, --lm, --lexicon and --ensemble")
        for f in args.files:
            wave, _ = load_audio(f, rec.feature_config.sample_rate)
            text = ""
            for i, text in enumerate(rec.stream(wave, args.chunk_ms / 1000)):
                print(f"{f}\t{(i + 1) * args.chunk_ms / 1000:.2f}s\t{text}")
            print(f"{f}\tfinal\t{text}")
        return
    decoding = _decoding(args)
    results = rec.transcribe(args.files, **decoding)
    for t in results:
        print(f"{t.path}\t{t.text}\t{t.seconds * 1000:.1f} ms\t({t.audio_seconds:.2f} s of audio)")
    if args.plot:
        rec.plot(args.files[0], args.plot, **decoding)
        print(f"plot: {args.plot}")


def cmd_eval(args: argparse.Namespace) -> None:
    from ..io import atomic_write_text
    from ..tasks.speech import SpeechRecognizer

    data = _data_kwargs(args)
    if args.format != "fsdd":
        if args.split != "test":
            raise RnnkitError("--split is for --format fsdd")
        data["split"] = "all"
    rec = SpeechRecognizer.load(args.run, args.checkpoint)
    r = rec.evaluate(args.data, **data, **_decoding(args))
    if args.output:
        rows = "".join(f"{p}\t{ref}\t{hyp}\n" for p, ref, hyp in zip(r["paths"], r["references"], r["hypotheses"],
                                                                      strict=True))
        atomic_write_text(args.output, "path\treference\thypothesis\n" + rows)
    print(f"utterances {r['utterances']}")
    print(f"seconds {r['seconds']:.2f}")
    print(f"cer {r['cer']:.4f}")
    print(f"ser {r['ser']:.4f}")
    print(f"wer {r['wer']:.4f}")
