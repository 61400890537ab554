"""The fixed connected-digit test set: seeded digit strings from FSDD's test takes, written as WAVs.

Each string is 1-7 digits spoken by one speaker, built only from FSDD takes 0-4 (FSDD's test
split), so no recording in it is ever seen by a model trained on takes 5-49. The same seed and
FSDD folder always give the same strings, byte for byte.

    python benchmarks/make_digit_strings.py ../shared/data/speech/digit_strings_test
    python benchmarks/make_digit_strings.py OUT --count 2000 --seed 7 --noise-db -50 --transcript digits

Writes into OUT: ``0000.wav`` ... (16-bit PCM mono at --rate), ``transcripts.tsv``
(``path<TAB>text``, readable by ``rnnkit.data.speech.read_transcripts``), ``sources.tsv`` (each
string's speaker and source files) and ``settings.json``. Every file is written atomically and
transcripts.tsv last, so a folder with a transcripts.tsv is complete.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnkit.data.audio import save_audio  # noqa: E402
from rnnkit.data.speech import fsdd_utterances, make_digit_strings, write_transcripts  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.io import atomic_write_text, write_json  # noqa: E402

DEFAULT_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fsdd"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write the WAVs and transcripts.tsv into (created if needed)")
    p.add_argument("--fsdd", default=str(DEFAULT_FSDD), help="FSDD folder of {digit}_{speaker}_{take}.wav")
    p.add_argument("--count", type=int, default=1000, help="number of strings")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--split", choices=["test", "train"], default="test", help="which FSDD takes to draw from")
    p.add_argument("--min-digits", type=int, default=1)
    p.add_argument("--max-digits", type=int, default=7)
    p.add_argument("--gap", type=float, nargs=2, default=(0.05, 0.25), metavar=("LOW", "HIGH"),
                   help="seconds of silence between digits and at both ends")
    p.add_argument("--noise-db", type=float, default=None, help="white background noise RMS in dBFS, e.g. -50")
    p.add_argument("--transcript", choices=["words", "digits"], default="words")
    p.add_argument("--rate", type=int, default=8000, help="sample rate of the written WAVs")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        pool = fsdd_utterances(args.fsdd, split=args.split)
        strings = make_digit_strings(pool, args.count, seed=args.seed, split=args.split, min_digits=args.min_digits,
                                     max_digits=args.max_digits, gap_s=tuple(args.gap), noise_db=args.noise_db,
                                     transcript=args.transcript, sample_rate=args.rate)
    except RnnkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    width = max(4, len(str(max(args.count - 1, 0))))
    rows, sources, seconds = [], [], 0.0
    for i, s in enumerate(strings):
        name = f"{i:0{width}d}.wav"
        x = s.load()
        save_audio(out / name, x, s.sample_rate)
        seconds += len(x) / s.sample_rate
        rows.append((name, s.text))
        sources.append(f"{name}\t{s.speaker}\t{' '.join(src.name for src in s.sources)}\n")
    atomic_write_text(out / "sources.tsv", "path\tspeaker\tsources\n" + "".join(sources))
    write_json(out / "settings.json", {**{k: v for k, v in vars(args).items() if k != "out"},
                                       "fsdd_files_in_pool": len(pool)})
    write_transcripts(out / "transcripts.tsv", rows)  # last: its presence marks a finished folder
    lengths = collections.Counter(len(s.parts) for s in strings)
    repeats = sum(any(a == b for a, b in zip(s.digits, s.digits[1:], strict=False)) for s in strings)
    print(f"{len(strings)} strings from {len(pool)} {args.split} recordings, {seconds / 60:.1f} min of audio, "
          f"{repeats} with a repeated digit; digits per string: "
          + ", ".join(f"{k}: {lengths[k]}" for k in sorted(lengths)))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
