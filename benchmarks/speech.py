"""Speech recognition on the Free Spoken Digit Dataset: isolated digits, leave-one-speaker-out, connected
strings, streaming.

    python benchmarks/speech.py isolated  --minutes 15     # takes 0-4 of every speaker and digit are the test set
    python benchmarks/speech.py loso      --minutes 5      # one run per held-out speaker
    python benchmarks/speech.py strings   --minutes 15 --stride 4 --sortagrad   # connected 1-7 digit strings
    python benchmarks/speech.py streaming --minutes 15     # the one-direction model on the same strings
    python benchmarks/speech.py all --smoke                # every part in seconds: checks the script runs

Every part trains through :class:`rnnkit.tasks.speech.SpeechRecognizer` (the same code as
``rnnkit speech train``) into ``--out/<part>...`` and prints a Markdown table; ``results.json``
collects the numbers. Digit strings are written once by ``benchmarks/make_digit_strings.py``:
training strings from FSDD's training takes (5-49), the fixed test set (seed 2024, 1,000 strings)
from its test takes (0-4); the script checks that no recording feeds both. Beside greedy decoding,
each part reports beam 8 with a character 4-gram language model built from training text only
(the ten digit words; the training strings' transcripts).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import make_digit_strings  # noqa: E402
from common import SHARED, machine, table  # noqa: E402

from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.io import write_json  # noqa: E402
from rnnkit.tasks.speech import SpeechRecognizer  # noqa: E402

FSDD = SHARED / "speech" / "fsdd"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TEST_SEED, TRAIN_SEED = 2024, 7


def recognizer(args: argparse.Namespace, out: Path, **model) -> SpeechRecognizer:
    options = {"hidden": 16, "layers": 1, "max_steps": 3} if args.smoke else {"max_time": args.minutes * 60}
    chosen = {k: getattr(args, k) for k in ("hidden", "layers", "stride", "batch_size", "lr", "features", "dropout",
                                            "speed_perturb", "vtlp", "pad_silence_ms", "sortagrad", "ema",
                                            "weight_decay", "trim_db", "conv_channels", "seed")
              if getattr(args, k) is not None}
    return SpeechRecognizer(**{"cell": args.cell, "out": out, "progress": not args.smoke, **chosen, **options,
                               **model})


def scores(rec: SpeechRecognizer, data: Path, **how) -> dict:
    r = rec.evaluate(data, **how)
    return {"utterances": r["utterances"], "wer_%": 100 * r["wer"], "cer_%": 100 * r["cer"],
            "string_error_%": 100 * r["ser"], "accuracy_%": 100 * (1 - r["ser"]),
            "train_s": rec.result.train_time, "steps": rec.result.steps}


def lm_text(args: argparse.Namespace, name: str, lines: list[str]) -> Path:
    """A language model text: one sentence a line (training transcripts only, never the test set's)."""
    from rnnkit.io import atomic_write_text

    path = args.out / f"lm-{name}.txt"
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
    return path


def with_lm(rec: SpeechRecognizer, data: Path, lm: Path, **how) -> dict:
    r = scores(rec, data, beam=8, lm=lm, lm_weight=1.0, **how)
    return {"lm_wer_%": r["wer_%"], "lm_string_error_%": r["string_error_%"]}


def vocabulary(args: argparse.Namespace) -> list[str]:
    """The ten digits as FSDD's transcripts spell them: words (``three``) or digits (``3``)."""
    from rnnkit.data.speech import DIGIT_WORDS

    return list(DIGIT_WORDS) if args.transcript == "words" else [str(d) for d in range(10)]


def with_lexicon(rec: SpeechRecognizer, data: Path, args: argparse.Namespace, **how) -> dict:
    """Beam 8 spelling only the ten digits (a closed vocabulary, as the digit classifiers in the literature)."""
    r = scores(rec, data, beam=8, lexicon=lm_text(args, "lexicon", vocabulary(args)), **how)
    return {"lexicon_wer_%": r["wer_%"], "lexicon_string_error_%": r["string_error_%"]}


def isolated(args: argparse.Namespace) -> list[dict]:
    fsdd = {"format": "fsdd", "transcript": args.transcript}
    rec = recognizer(args, args.out / "isolated").fit(args.fsdd, split="train", **fsdd)
    row = scores(rec, args.fsdd, split="test", **fsdd)
    # beam 8 with a character 4-gram of the ten digits: the vocabulary as a language model
    row.update(with_lm(rec, args.fsdd, lm_text(args, "digits", vocabulary(args)), split="test", **fsdd))
    row.update(with_lexicon(rec, args.fsdd, args, split="test", **fsdd))
    return [{"test": "FSDD takes 0-4", **row}]


def loso(args: argparse.Namespace) -> list[dict]:
    rows = []
    for speaker in SPEAKERS[:1] if args.smoke else SPEAKERS:
        fsdd = {"format": "fsdd", "split": "all", "transcript": args.transcript}
        rec = recognizer(args, args.out / f"loso-{speaker}").fit(args.fsdd, exclude_speakers=[speaker], **fsdd)
        rows.append({"held-out speaker": speaker, **scores(rec, args.fsdd, speakers=[speaker], **fsdd),
                     **with_lexicon(rec, args.fsdd, args, speakers=[speaker], **fsdd)})
    return rows


def string_sets(args: argparse.Namespace) -> tuple[Path, Path]:
    """The training and test string folders, written by make_digit_strings.py when absent, never sharing a file."""
    folders = {}
    for split, seed, count in (("train", TRAIN_SEED, args.train_strings), ("test", TEST_SEED, args.test_strings)):
        folder = args.strings / f"{split}-{count}-seed{seed}"
        if not (folder / "transcripts.tsv").exists():
            make_digit_strings.main([str(folder), "--fsdd", str(args.fsdd), "--split", split, "--count", str(count),
                                     "--seed", str(seed)] + (["--noise-db", str(args.noise_db)] if args.noise_db
                                                             else []))
        folders[split] = folder

    def sources(folder: Path) -> set[str]:
        lines = (folder / "sources.tsv").read_text(encoding="utf-8").splitlines()[1:]
        return {name for line in lines for name in line.split("\t")[2].split()}

    shared = sources(folders["train"]) & sources(folders["test"])
    if shared:
        raise SystemExit(f"{len(shared)} recordings feed both training and test strings, e.g. {sorted(shared)[0]}")
    return folders["train"], folders["test"]


def strings(args: argparse.Namespace, streaming: bool = False) -> list[dict]:
    train, test = string_sets(args)
    name = "streaming" if streaming else "strings"
    rec = recognizer(args, args.out / name, streaming=streaming).fit(train)
    row = {"model": "one direction (streaming)" if streaming else "bidirectional", **scores(rec, test)}
    if not args.smoke:
        row.update({f"beam8_{k}": v for k, v in scores(rec, test, beam=8).items() if k in ("wer_%",
                                                                                           "string_error_%")})
    from rnnkit.data.speech import read_transcripts

    row.update(with_lm(rec, test, lm_text(args, name, [u.text for u in read_transcripts(train)])))
    row.update(with_lexicon(rec, test, args))
    # WER against training time: the held-out training strings at each evaluation of the run
    curve = [json.loads(line) for line in (args.out / name / "metrics.jsonl").read_text().splitlines()]
    row["val_wer_by_time"] = " ".join(f"{r['time']:.0f}s:{100 * r['val_wer']:.1f}%" for r in curve if "val_wer" in r)
    if streaming:
        row["stream_rtf"] = real_time_factor(rec, test)
    return [row]


def real_time_factor(rec: SpeechRecognizer, folder: Path, files: int = 20) -> float:
    """Seconds of computation per second of audio when fed in 100 ms chunks."""
    from rnnkit.data.audio import load_audio
    from rnnkit.data.speech import read_transcripts

    spent = audio = 0.0
    for u in read_transcripts(folder)[:files]:
        wave, rate = load_audio(u.path, rec.feature_config.sample_rate)
        start = time.perf_counter()
        for _ in rec.stream(wave, 0.1):
            pass
        spent += time.perf_counter() - start
        audio += len(wave) / rate
    return spent / audio


PARTS = {"isolated": isolated, "loso": loso, "strings": strings, "streaming": lambda a: strings(a, streaming=True)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=[*PARTS, "all"])
    p.add_argument("--minutes", type=float, default=15.0, help="training budget of each run (default 15)")
    p.add_argument("--cell", default="lstm")
    for name, kind in (("hidden", int), ("layers", int), ("stride", int), ("batch-size", int), ("lr", float),
                       ("dropout", float), ("speed-perturb", float), ("vtlp", float), ("ema", float),
                       ("weight-decay", float), ("trim-db", float), ("conv-channels", int), ("seed", int)):
        p.add_argument(f"--{name}", type=kind, help="model or training setting (default: rnnkit speech train's)")
    p.add_argument("--pad-silence", type=float, dest="pad_silence_ms", metavar="MS",
                   help="model or training setting (default: rnnkit speech train's)")
    p.add_argument("--features", choices=["logmel", "mfcc"])
    p.add_argument("--sortagrad", action="store_true", default=None, help="the first epoch shortest first")
    p.add_argument("--fsdd", type=Path, default=FSDD)
    p.add_argument("--transcript", choices=["words", "digits"], default="words",
                   help="isolated and loso: FSDD's transcripts as digit words (three, the default) or digits (3)")
    p.add_argument("--strings", type=Path, default=Path("runs/digit-strings"),
                   help="where the string folders are written (or found; default runs/digit-strings)")
    p.add_argument("--train-strings", type=int, default=4000)
    p.add_argument("--test-strings", type=int, default=1000)
    p.add_argument("--noise-db", type=float, help="white background noise in dBFS for both string sets")
    p.add_argument("--out", type=Path, default=Path("runs/bench-speech"))
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice; 1 with --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets and string sets: checks the script runs")
    args = p.parse_args(argv)
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    if args.smoke:
        args.train_strings, args.test_strings = 24, 8
        args.strings = args.out / "digit-strings"
    if not args.fsdd.is_dir():
        print(f"no FSDD at {args.fsdd}", file=sys.stderr)
        return 2
    print(machine())
    results = {}
    for part in PARTS if args.part == "all" else [args.part]:
        if (args.out / part).exists() or (part == "loso" and any(args.out.glob("loso-*"))):
            print(f"{args.out / part} exists: remove it or give another --out", file=sys.stderr)
            return 2
        try:
            results[part] = PARTS[part](args)
        except RnnkitError as e:
            sys.exit(f"error: {e}")
        budget = "smoke" if args.smoke else f"{args.minutes:g} min a run"
        print(table(results[part], title=f"{part} ({budget}, {args.cell})"), flush=True)
    write_json(args.out / f"results-{args.part}.json", {"machine": machine(), "minutes": args.minutes,
                                                        "cell": args.cell, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
