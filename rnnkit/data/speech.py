"""Speech datasets: transcript folders, the Free Spoken Digit Dataset (FSDD), and connected digit strings.

An :class:`Utterance` is one audio file and its transcript. Three sources make them:

* :func:`read_transcripts`: a folder with ``transcripts.tsv`` (``path<TAB>text``) or
  ``transcripts.csv`` (``path,text``); paths are relative to the folder.
* :func:`fsdd_utterances`: FSDD's ``{digit}_{speaker}_{take}.wav`` files. The transcript is the
  digit as a word ("three", the default) or as a character ("3"). Words are the default because
  CTC over characters then has a real task (spelling, letters shared between digits, the double
  "e" of "three" and "seven"'s two "e"s), where single characters would make it ten-way
  classification. FSDD's own split is by take: ``train`` takes 5-49, ``test`` takes 0-4; speaker
  filters give leave-one-speaker-out splits.
* :func:`make_digit_strings`: 1-7 digit strings made by concatenating recordings of one speaker
  with random gaps of silence (optionally low white noise over the whole string), seeded. Each
  string names its source recordings, and a pool declared as one split may only hold that
  split's takes, so test strings never reuse a training recording.

Repeated digits are kept ("three three", "3 3"). CTC can only emit the same label twice in a row
with a blank between the two, so a target needs at least ``len(target) + repeats`` frames
(:func:`ctc_min_frames`, :func:`ctc_feasible`): check that against the model's output frame rate.

:class:`SpeechDataset` turns utterances or strings into ``(features, target ids)`` items and
:func:`collate` pads them into batches for ``torch.nn.functional.ctc_loss``.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RnnkitError
from .audio import FeatureConfig, load_audio, resample, spec_augment

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRANSCRIPT_STYLES = ("words", "digits")
TRAIN_TAKES = range(5, 50)
TEST_TAKES = range(0, 5)
SPLITS = ("train", "test", "all")
TRANSCRIPT_NAMES = ("transcripts.tsv", "transcripts.csv")
_FSDD_NAME = re.compile(r"^(\d)_([^_]+)_(\d+)$")


# ---------------------------------------------------------------- labels and CTC lengths

class Alphabet:
    """Characters as CTC label ids: id 0 is the blank, ``symbols[i]`` is id ``i + 1``."""

    blank = 0

    def __init__(self, symbols: str | Sequence[str]):
        symbols = list(symbols)
        if not symbols:
            raise RnnkitError("an alphabet needs at least one symbol")
        dup = sorted({s for s in symbols if symbols.count(s) > 1})
        if dup:
            raise RnnkitError(f"alphabet symbols must be distinct; repeated: {''.join(dup)!r}")
        bad = [s for s in symbols if len(s) != 1]
        if bad:
            raise RnnkitError(f"alphabet symbols must be single characters, not {bad[0]!r}")
        self.symbols = symbols
        self._ids = {s: i + 1 for i, s in enumerate(symbols)}

    @classmethod
    def for_digits(cls, transcript: str = "words") -> Alphabet:
        """The space plus the characters of the ten digit words (``"words"``) or ``0-9`` (``"digits"``)."""
        _check_style(transcript)
        chars = "".join(DIGIT_WORDS) if transcript == "words" else "0123456789"
        return cls(" " + "".join(sorted(set(chars))))

    def __len__(self) -> int:
        """Number of classes a CTC model outputs, the blank included."""
        return len(self.symbols) + 1

    def __contains__(self, char: str) -> bool:
        return char in self._ids

    @property
    def labels(self) -> list[str]:
        """Display names by id (the blank is ``""``), as :func:`~rnnkit.data.audio.plot_spectrogram` takes them."""
        return ["", *self.symbols]

    def encode(self, text: str) -> list[int]:
        """Label ids of each character; a character outside the alphabet is a one-line error."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            raise RnnkitError(f"character {e.args[0]!r} in {text!r} is not in the alphabet "
                              f"{''.join(self.symbols)!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Characters of the non-blank ids, as given (no merging of repeats: that is the decoder's job)."""
        return "".join(self.symbols[i - 1] for i in map(int, ids) if i != self.blank)


def ctc_min_frames(target_ids: Sequence[int] | torch.Tensor) -> int:
    """Fewest output frames a CTC model needs for this target: one per label plus a blank between repeats."""
    ids = [int(i) for i in target_ids]
    return len(ids) + sum(a == b for a, b in itertools.pairwise(ids))


def ctc_feasible(num_frames: int, target_ids: Sequence[int] | torch.Tensor) -> bool:
    """Whether ``num_frames`` output frames can emit ``target_ids`` under CTC (else the loss is infinite)."""
    return int(num_frames) >= ctc_min_frames(target_ids)


def _check_style(transcript: str) -> None:
    if transcript not in TRANSCRIPT_STYLES:
        raise RnnkitError(f"transcript style must be 'words' or 'digits', not {transcript!r}")


def digit_text(digits: Iterable[int], transcript: str = "words") -> str:
    """Digits as a transcript: ``[3, 3, 7]`` -> ``"three three seven"`` or ``"3 3 7"``."""
    _check_style(transcript)
    return " ".join(DIGIT_WORDS[d] if transcript == "words" else str(d) for d in digits)


def text_digits(text: str) -> list[int]:
    """The inverse of :func:`digit_text` for either style (for scoring digit strings)."""
    out = []
    for tok in text.split():
        if tok in DIGIT_WORDS:
            out.append(DIGIT_WORDS.index(tok))
        elif len(tok) == 1 and tok.isdigit():
            out.append(int(tok))
        else:
            raise RnnkitError(f"{tok!r} in {text!r} is not a digit or digit word")
    return out


# ---------------------------------------------------------------- utterances

@functools.lru_cache(maxsize=4096)  # FSDD is 3,000 short files: all of them stay in memory across epochs
def _cached_audio(path: str, sample_rate: int) -> torch.Tensor:
    return load_audio(path, sample_rate)[0]


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript; FSDD recordings also know their digit, speaker and take."""

    path: Path
    text: str
    speaker: str | None = None
    digit: int | None = None
    take: int | None = None

    def load(self, sample_rate: int) -> torch.Tensor:
        """The mono samples at ``sample_rate`` (cached; a copy, so callers may modify it)."""
        return _cached_audio(str(self.path), int(sample_rate)).clone()

    @property
    def sources(self) -> tuple[Path, ...]:
        """The recording itself (as :attr:`DigitString.sources` lists its recordings)."""
        return (self.path,)


def _label_check(labels: str | Alphabet | Iterable[str] | None):
    if labels is None:
        return None
    return labels if isinstance(labels, Alphabet) else set(labels)


def _find_transcripts(source: Path) -> Path:
    if source.is_dir():
        for name in TRANSCRIPT_NAMES:
            if (source / name).is_file():
                return source / name
        raise RnnkitError(f"{source} has no transcripts.tsv or transcripts.csv (lines of path<TAB>text)")
    if not source.is_file():
        raise RnnkitError(f"no such folder or transcript file: {source}")
    return source


def read_transcripts(source: str | os.PathLike, labels: str | Alphabet | Iterable[str] | None = None,
                     check_files: bool = True) -> list[Utterance]:
    """Utterances listed in a folder's ``transcripts.tsv`` / ``.csv`` (or that file given directly).

    TSV lines are ``path<TAB>text`` (the text may hold spaces, not tabs); CSV rows are ``path,text``
    with CSV quoting. An optional first line ``path<TAB>text`` is a header; blank lines are skipped.
    Relative paths are resolved against the transcript file's folder. A missing audio file, a
    malformed line and (given ``labels``) a character outside the label set are each a one-line
    error naming the line.
    """
    file = _find_transcripts(Path(source))
    try:
        content = file.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not a path
    except UnicodeDecodeError as e:
        raise RnnkitError(f"{file} is not UTF-8 text (byte {e.start})") from None
    allowed = _label_check(labels)
    if file.suffix.lower() == ".csv":
        rows = csv.reader(io.StringIO(content))
        numbered = ((rows.line_num, row) for row in rows)
    else:
        numbered = ((n, line.split("\t", 1)) for n, line in enumerate(content.splitlines(), 1))
    out: list[Utterance] = []
    for n, row in numbered:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if not out and [c.strip().lower() for c in row] == ["path", "text"]:
            continue
        if len(row) != 2:
            sep = "," if file.suffix.lower() == ".csv" else "<TAB>"
            raise RnnkitError(f"{file} line {n}: expected path{sep}text, got {len(row)} field(s)")
        rel, text = row[0].strip(), row[1].strip()
        if not rel:
            raise RnnkitError(f"{file} line {n}: the path is empty")
        path = file.parent / rel
        if check_files and not path.is_file():
            raise RnnkitError(f"{file} line {n}: no such audio file {rel}")
        if allowed is not None:
            bad = next((c for c in text if c not in allowed), None)
            if bad is not None:
                raise RnnkitError(f"{file} line {n}: character {bad!r} in {text!r} is not in the label set")
        out.append(Utterance(path, text))
    if not out:
        raise RnnkitError(f"{file} lists no recordings")
    return out


def write_transcripts(path: str | os.PathLike, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``transcripts.tsv`` lines ``path<TAB>text`` atomically (no tabs or newlines allowed in either)."""
    from ..io import atomic_write_text

    lines = []
    for rel, text in rows:
        if any(c in f"{rel}{text}" for c in "\t\r\n"):
            raise RnnkitError(f"a transcript row may not hold tabs or line breaks: {rel!r}, {text!r}")
        lines.append(f"{rel}\t{text}\n")
    atomic_write_text(path, "".join(lines))


# ---------------------------------------------------------------- FSDD

def fsdd_split(take: int) -> str:
    """FSDD's own split of a take number: ``"test"`` for takes 0-4, ``"train"`` for the rest."""
    return "test" if take in TEST_TAKES else "train"


def fsdd_utterances(root: str | os.PathLike, split: str = "train", speakers: Iterable[str] | None = None,
                    exclude_speakers: Iterable[str] | None = None, transcript: str = "words") -> list[Utterance]:
    """FSDD recordings in ``root``, sorted by file name, filtered by split and speaker.

    ``split`` is ``"train"`` (takes 5-49), ``"test"`` (takes 0-4) or ``"all"``. ``speakers`` keeps
    only those speakers and ``exclude_speakers`` drops some: leave-one-speaker-out is
    ``split="all", exclude_speakers=[s]`` against ``split="all", speakers=[s]``. A ``.wav`` whose
    name is not ``{digit}_{speaker}_{take}.wav`` and a speaker not in the folder are errors.
    """
    _check_style(transcript)
    if split not in SPLITS:
        raise RnnkitError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise RnnkitError(f"no such FSDD folder: {root}")
    found = []
    for p in sorted(root.glob("*.wav")):
        m = _FSDD_NAME.match(p.stem)
        if not m:
            raise RnnkitError(f"{p.name} in {root} is not named {{digit}}_{{speaker}}_{{take}}.wav as FSDD files are")
        digit, speaker, take = int(m[1]), m[2], int(m[3])
        found.append(Utterance(p, digit_text([digit], transcript), speaker, digit, take))
    if not found:
        raise RnnkitError(f"{root} holds no .wav files")
    known = {u.speaker for u in found}
    keep, drop = (set(speakers) if speakers is not None else None), set(exclude_speakers or ())
    unknown = sorted(((keep or set()) | drop) - known)
    if unknown:
        raise RnnkitError(f"unknown speaker(s) {', '.join(unknown)}; {root} has {', '.join(sorted(known))}")
    out = [u for u in found if (split == "all" or fsdd_split(u.take) == split)
           and (keep is None or u.speaker in keep) and u.speaker not in drop]
    if not out:
        raise RnnkitError(f"no {split} recordings left in {root} after the speaker filters")
    return out


# ---------------------------------------------------------------- connected digit strings

@dataclass(frozen=True)
class DigitString:
    """A connected digit string: recordings of one speaker with gaps, rendered on :meth:`load`.

    ``gaps`` holds ``len(parts) + 1`` sample counts: before the first part, between parts, after
    the last. With ``noise_rms > 0``, white noise of that RMS (seeded by ``noise_seed``) is added
    over the whole string, gaps and speech alike, as a background would be.
    """

    parts: tuple[Utterance, ...]
    gaps: tuple[int, ...]
    text: str
    sample_rate: int
    noise_rms: float = 0.0
    noise_seed: int = 0

    @property
    def digits(self) -> list[int]:
        """The digits spoken, in order."""
        return [p.digit for p in self.parts]

    @property
    def speaker(self) -> str | None:
        """The one speaker of every part."""
        return self.parts[0].speaker

    @property
    def sources(self) -> tuple[Path, ...]:
        """The recordings this string is made of, in order."""
        return tuple(p.path for p in self.parts)

    def load(self, sample_rate: int | None = None) -> torch.Tensor:
        """The string's samples, built at its own rate, then resampled if ``sample_rate`` differs."""
        pieces = []
        for gap, part in zip(self.gaps, self.parts, strict=False):
            pieces += [torch.zeros(gap), part.load(self.sample_rate)]
        pieces.append(torch.zeros(self.gaps[-1]))
        x = torch.cat(pieces)
        if self.noise_rms > 0:
            noise = np.random.default_rng(self.noise_seed).normal(0.0, self.noise_rms, len(x))
            x = x + torch.from_numpy(noise.astype(np.float32))
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            x = resample(x, self.sample_rate, int(sample_rate))
        return x


def make_digit_strings(pool: Sequence[Utterance], count: int, seed: int = 0, split: str | None = None,
                       min_digits: int = 1, max_digits: int = 7, gap_s: tuple[float, float] = (0.05, 0.25),
                       noise_db: float | None = None, same_speaker: bool = True, transcript: str = "words",
                       sample_rate: int = 8000) -> list[DigitString]:
    """``count`` seeded connected digit strings from the single-digit recordings in ``pool``.

    String ``i`` depends only on ``(seed, i)``, so the first strings of a larger set are the same
    strings. Its length is uniform in ``min_digits..max_digits``; each digit is uniform over the
    digits the chosen speaker has (``same_speaker``; else any speaker per digit), so repeats such as
    "3 3" occur and are kept; a recording is reused within one string only when the pool has no
    other. Gaps (and the silence before and after) are uniform in ``gap_s`` seconds. ``noise_db``
    adds white noise at that RMS level in dB below full scale (e.g. -50).

    ``split`` (``"train"`` or ``"test"``) declares which FSDD takes the pool may hold: a pool with a
    recording of the other split is refused, so test strings are never built from training takes.
    """
    _check_style(transcript)
    if count < 0:
        raise RnnkitError(f"count must be at least 0, not {count}")
    if not 1 <= min_digits <= max_digits:
        raise RnnkitError(f"need 1 <= min_digits <= max_digits, not {min_digits} and {max_digits}")
    if not 0 <= gap_s[0] <= gap_s[1]:
        raise RnnkitError(f"gap_s must be (low, high) seconds with 0 <= low <= high, not {gap_s}")
    if not pool:
        raise RnnkitError("the pool of recordings is empty")
    for u in pool:
        if u.digit is None:
            raise RnnkitError(f"{u.path.name} has no digit label; digit strings need FSDD-style recordings")
        if split is not None:
            if split not in ("train", "test"):
                raise RnnkitError(f"split must be 'train' or 'test', not {split!r}")
            if u.take is None or fsdd_split(u.take) != split:
                raise RnnkitError(f"{u.path.name} (take {u.take}) is not a {split} recording; {split} strings "
                                  f"must come from {split} takes only")
    # recordings grouped by speaker and digit, in a fixed order so that a seed always picks the same files
    by_speaker: dict[str | None, dict[int, list[Utterance]]] = {}
    for u in sorted(pool, key=lambda u: (str(u.speaker), u.digit, str(u.path))):
        by_speaker.setdefault(u.speaker if same_speaker else None, {}).setdefault(u.digit, []).append(u)
    speakers = list(by_speaker)
    noise_rms = 0.0 if noise_db is None else 10 ** (noise_db / 20)
    lo, hi = round(gap_s[0] * sample_rate), round(gap_s[1] * sample_rate)
    out = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        groups = by_speaker[speakers[rng.integers(len(speakers))]]
        digits_available = sorted(groups)
        n = int(rng.integers(min_digits, max_digits + 1))
        digits = [digits_available[k] for k in rng.integers(len(digits_available), size=n)]
        used: set[Path] = set()
        parts = []
        for d in digits:
            fresh = [u for u in groups[d] if u.path not in used] or groups[d]
            pick = fresh[int(rng.integers(len(fresh)))]
            used.add(pick.path)
            parts.append(pick)
        gaps = tuple(int(g) for g in rng.integers(lo, hi + 1, size=n + 1))
        out.append(DigitString(tuple(parts), gaps, digit_text(digits, transcript), int(sample_rate), noise_rms,
                               int(rng.integers(2**31))))
    return out


# ---------------------------------------------------------------- torch dataset and batches

class SpeechDataset(torch.utils.data.Dataset):
    """Utterances or digit strings as ``{"features", "targets", "text", "index"}`` items for CTC training.

    Features are computed once per item and kept (``cache``). With ``augment`` (keyword arguments of
    :func:`~rnnkit.data.audio.spec_augment`), each access masks a copy with a generator seeded by
    ``(seed, epoch, index)``: the same epoch gives the same masks in any worker process, and
    :meth:`set_epoch` draws new ones. Targets are the transcript encoded by ``alphabet``; a
    transcript it cannot encode is refused when the dataset is built, not mid-epoch.
    """

    def __init__(self, items: Sequence[Utterance | DigitString], features: FeatureConfig | None = None,
                 alphabet: Alphabet | None = None, augment: dict[str, Any] | None = None, seed: int = 0,
                 cache: bool = True):
        self.items = list(items)
        self.features = features or FeatureConfig()
        self.alphabet = alphabet or Alphabet.for_digits("words")
        self.augment = augment
        self.seed, self.epoch, self.cache = seed, 0, cache
        self._targets = []
        for item in self.items:
            try:
                self._targets.append(torch.tensor(self.alphabet.encode(item.text), dtype=torch.long))
            except RnnkitError as e:
                raise RnnkitError(f"{getattr(item, 'path', 'a digit string')}: {e}") from None
        self._feats: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose SpecAugment masks items get."""
        self.epoch = int(epoch)

    def features_of(self, index: int) -> torch.Tensor:
        """The un-augmented features of item ``index``."""
        feats = self._feats.get(index)
        if feats is None:
            feats = self.features(self.items[index].load(self.features.sample_rate))
            if self.cache:
                self._feats[index] = feats
        return feats

    def __getitem__(self, index: int) -> dict[str, Any]:
        feats = self.features_of(index)
        if self.augment:
            state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
            g = torch.Generator().manual_seed(int(state) >> 1)  # manual_seed takes a signed 64-bit value
            feats = spec_augment(feats, g, **self.augment)
        return {"features": feats, "targets": self._targets[index], "text": self.items[index].text, "index": index}


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad items into a batch: features ``(B, T, D)`` and targets ``(B, S)`` (padding 0, the blank) with lengths.

    ``targets`` and the two length tensors are in the form ``torch.nn.functional.ctc_loss`` takes.
    """
    if not batch:
        raise RnnkitError("cannot collate an empty batch")
    feats = [b["features"] for b in batch]
    targets = [b["targets"] for b in batch]
    return {
        "features": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
        "feature_lengths": torch.tensor([len(f) for f in feats], dtype=torch.long),
        "targets": torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=Alphabet.blank),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        "texts": [b["text"] for b in batch],
        "indices": [b["index"] for b in batch],
    }
