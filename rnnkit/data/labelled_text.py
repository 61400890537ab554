"""Labelled text for classification: reading examples, tokens and vocabulary, stratified splits.

Three ways to give examples, each read by one function and chosen by :func:`load_labelled`:

- a table (CSV, TSV, JSON Lines or Parquet) with a text and a label column (:func:`read_table`);
- ``LABEL=FILE`` pairs, one example a line (:func:`read_pairs`), e.g. ``pos=rt-polarity.pos``;
- a folder (:func:`read_folder`) with one sub-folder per label holding one example a file (the
  IMDB layout), or one file per label holding one example a line (label = file stem).

Every problem with the input is a :class:`~rnnkit.errors.RnnkitError` whose one line names the
file and the line, row or byte offset. Text files are UTF-8 unless an encoding is given; line
files are split on ``\\n`` only, because ``str.splitlines`` also breaks at characters such as
U+0085, which is what byte 0x85 (an ellipsis in Windows-1252) becomes when read as Latin-1.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RnnkitError

MAX_CHARS = 100_000  # default cap on one text: far above a long review, well below a whole book
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class LabelledText:
    """Examples as parallel lists: ``texts[i]`` has label ``labels[i]`` and came from ``origins[i]``.

    An origin is a short human-readable place such as ``"rt-polarity.pos line 12"``,
    ``"train.csv row 3"`` or ``"train/pos/10_9.txt"``; errors and reports quote it as is.
    """

    texts: list[str]
    labels: list[str]
    origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.origins:
            self.origins = [f"example {i + 1}" for i in range(len(self.texts))]
        if not len(self.texts) == len(self.labels) == len(self.origins):
            raise ValueError(f"{len(self.texts)} texts, {len(self.labels)} labels and {len(self.origins)} origins")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted: class ``i`` of a model is ``classes[i]``."""
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        """How many examples each label has, in :attr:`classes` order."""
        c = Counter(self.labels)
        return {label: c[label] for label in self.classes}

    def subset(self, indices: Iterable[int]) -> LabelledText:
        """The examples at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return LabelledText([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                            [self.origins[i] for i in idx])


# ---------------------------------------------------------------------------- decoding


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RnnkitError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise RnnkitError(f"{path} is a folder, not a file") from None
    except OSError as e:
        raise RnnkitError(f"cannot read {path}: {e.strerror}") from None
    return raw


def decode(raw: bytes, path: Path | str, encoding: str | None = None) -> str:
    """Bytes of ``path`` as text: UTF-8 (a byte-order mark dropped) unless ``encoding`` is given.

    Undecodable bytes raise an error naming the byte offset; without an explicit encoding it
    suggests one, since most non-UTF-8 English text is Windows-1252.
    """
    if encoding is None or codecs.lookup(_known_encoding(encoding)).name == "utf-8":
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            hint = "give its encoding with --encoding (e.g. cp1252)" if encoding is None else "check --encoding"
            raise RnnkitError(f"{path} is not valid UTF-8 at byte offset {e.start}: {hint}") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise RnnkitError(f"{path} is not valid {encoding} at byte offset {e.start} "
                          f"(byte 0x{raw[e.start]:02x}): check --encoding") from None


def _known_encoding(encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise RnnkitError(f"unknown encoding {encoding!r}") from None
    return encoding


def _read_text(path: Path, encoding: str | None) -> str:
    raw = _read_bytes(path)
    if not raw.strip():
        raise RnnkitError(f"{path} is empty")
    return decode(raw, path, encoding)


def _lines(text: str) -> list[str]:
    """Lines split on ``\\n`` alone (see the module docstring for why), each without a trailing ``\\r``.

    The newline ending the last line does not start another one.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# ---------------------------------------------------------------------------- readers


def read_lines(path: str | os.PathLike, label: str, encoding: str | None = None) -> LabelledText:
    """One file, one example a line, every example labelled ``label``."""
    path = Path(path)
    lines = _lines(_read_text(path, encoding))
    return LabelledText(lines, [label] * len(lines), [f"{path} line {i + 1}" for i in range(len(lines))])


def parse_pair(pair: str) -> tuple[str, Path]:
    """``"LABEL=FILE"`` as ``(label, path)``; the label is everything before the first ``=``."""
    label, sep, file = pair.partition("=")
    if not sep or not label.strip() or not file:
        raise RnnkitError(f"expected LABEL=FILE, got {pair!r}")
    return label.strip(), Path(file)


def read_pairs(pairs: Sequence[str] | Mapping[str, str | os.PathLike], encoding: str | None = None) -> LabelledText:
    """Examples from ``LABEL=FILE`` strings (or a label -> file mapping), one example a line.

    A label may be given for several files; the examples keep the order of the files.
    """
    items = ([(label, Path(p)) for label, p in pairs.items()] if isinstance(pairs, Mapping)
             else [parse_pair(p) for p in pairs])
    if not items:
        raise RnnkitError("no LABEL=FILE pairs given")
    return _concat([read_lines(path, label, encoding) for label, path in items])


def read_folder(path: str | os.PathLike, encoding: str | None = None,
                labels: Sequence[str] | None = None) -> LabelledText:
    """Examples from a folder: sub-folders as labels (a file an example), else files as labels (a line an example).

    With sub-folders present, loose files beside them are ignored: IMDB's ``train/`` keeps
    feature and URL files next to ``pos/`` and ``neg/``. ``labels`` keeps only those
    sub-folders (or file stems), e.g. to leave out IMDB's unlabelled ``unsup/``. Hidden
    entries (names starting with a dot) are skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise RnnkitError(f"no such folder: {root}" if not root.exists() else f"{root} is not a folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    dirs = [p for p in entries if p.is_dir()]
    by_label = dirs if dirs else [p for p in entries if p.is_file()]
    if not by_label:
        raise RnnkitError(f"folder {root} holds no sub-folders or files")
    name = (lambda p: p.name) if dirs else (lambda p: p.stem)
    if labels is not None:
        found = [name(p) for p in by_label]
        missing = [label for label in labels if label not in found]
        if missing:
            what = "sub-folder" if dirs else "file"
            raise RnnkitError(f"no {what} for label {missing[0]!r} in {root}; found {', '.join(found)}")
        by_label = [p for p in by_label if name(p) in labels]
    stems = Counter(name(p) for p in by_label)
    dup = [s for s, n in stems.items() if n > 1]
    if dup:
        raise RnnkitError(f"two files in {root} give the label {dup[0]!r}; rename one")
    if not dirs:
        return _concat([read_lines(p, p.stem, encoding) for p in by_label])
    parts = []
    for d in by_label:
        files = sorted((f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")), key=_natural)
        if not files:
            raise RnnkitError(f"folder {d} holds no files")
        texts = [_read_text(f, encoding).rstrip("\r\n") for f in files]
        parts.append(LabelledText(texts, [d.name] * len(files), [str(f) for f in files]))
    return _concat(parts)


def _natural(p: Path) -> tuple:
    """Sort key putting ``2_7.txt`` before ``10_1.txt``, so example order follows the numbering."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p.name))


def read_table(path: str | os.PathLike, text_col: str = "text", label_col: str = "label",
               encoding: str | None = None) -> LabelledText:
    """Examples from a CSV, TSV, JSON Lines or Parquet file (by suffix), one example a row.

    Cells are read as strings (a label column of 0/1 gives the labels ``"0"``/``"1"``; the
    text ``NA`` stays ``NA``). TSV is read without quoting: tab-separated text needs none, and
    sentiment TSVs hold stray double quotes that a CSV parser would take as field delimiters.
    Parquet strings are already Unicode, so ``encoding`` does not apply to them.
    """
    path = Path(path)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise RnnkitError(f"cannot tell the format of {path} from its suffix; use one of "
                          f"{', '.join(TABLE_SUFFIXES)}, or give LABEL=FILE pairs for plain text")
    if kind == "jsonl":
        return _read_jsonl(path, text_col, label_col, encoding)
    if kind == "parquet":
        rows = _read_parquet(path)
    else:
        rows = _read_delimited(path, kind, encoding)
    columns = [str(c) for c in rows.columns]
    for col, what in ((text_col, "text"), (label_col, "label")):
        if col not in rows.columns:
            raise RnnkitError(f"no {what} column {col!r} in {path}; the columns are {', '.join(columns) or 'none'}"
                              f" (name it with --{what}-column)")
    if len(rows) == 0:
        raise RnnkitError(f"{path} has a header but no rows")
    origins = [f"{path} row {i + 1}" for i in range(len(rows))]
    # gaps (NaN, None, pd.NA in nullable columns) all become None, which _cell refuses by name
    texts, labels = ([_cell(v, what, o) for v, o in zip(rows[col].astype(object).where(rows[col].notna(), None)
                                                         .tolist(), origins, strict=True)]
                     for col, what in ((text_col, "text"), (label_col, "label")))
    return LabelledText(texts, labels, origins)


def _read_delimited(path: Path, kind: str, encoding: str | None) -> Any:
    import pandas as pd

    text = _read_text(path, encoding)
    options: dict[str, Any] = ({"sep": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {"sep": ","})
    try:
        # strings everywhere and no NA guessing: a review saying "NA" or "null" is text, not missing
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, **options)
    except pd.errors.EmptyDataError:
        raise RnnkitError(f"{path} is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RnnkitError(f"cannot read {path} as {kind.upper()}: {first[:200]}") from None


def _read_parquet(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise RnnkitError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise RnnkitError(f"{path} is empty")
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise RnnkitError("reading Parquet needs pyarrow: pip install pyarrow") from None
    except Exception as e:  # pyarrow raises several types for damaged files; all mean the same to a user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RnnkitError(f"cannot read {path} as Parquet: {first[:200]}") from None


def _read_jsonl(path: Path, text_col: str, label_col: str, encoding: str | None) -> LabelledText:
    texts, labels, origins = [], [], []
    for i, line in enumerate(_lines(_read_text(path, encoding))):
        if not line.strip():
            continue  # blank lines between records are common in hand-edited JSON Lines
        where = f"{path} line {i + 1}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise RnnkitError(f"{where} is not valid JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(record, dict):
            raise RnnkitError(f"{where} is a JSON {type(record).__name__}, not an object with "
                              f"{text_col!r} and {label_col!r}")
        for col, what in ((text_col, "text"), (label_col, "label")):
            if col not in record:
                raise RnnkitError(f"no {what} field {col!r} at {where}; its fields are "
                                  f"{', '.join(map(str, record)) or 'none'} (name it with --{what}-column)")
        texts.append(_cell(record[text_col], "text", where))
        labels.append(_cell(record[label_col], "label", where))
        origins.append(where)
    return LabelledText(texts, labels, origins)


def _cell(value: Any, what: str, origin: str) -> str:
    """One text or label as a string; a missing value is an error, a number its usual spelling."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and value != value):
        raise RnnkitError(f"missing {what} at {origin}")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # an integer column with gaps comes back from Parquet as floats
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    raise RnnkitError(f"the {what} at {origin} is a {type(value).__name__}, not a string")


def _concat(parts: Sequence[LabelledText]) -> LabelledText:
    return LabelledText([t for p in parts for t in p.texts], [t for p in parts for t in p.labels],
                        [t for p in parts for t in p.origins])


# ---------------------------------------------------------------------------- checks and labels


def check_examples(data: LabelledText, max_chars: float = MAX_CHARS, min_classes: int = 2) -> LabelledText:
    """Refuse data no classifier should train on: no examples, empty or over-long texts, too few classes."""
    if len(data) == 0:
        raise RnnkitError("no examples were read")
    for text, label, origin in zip(data.texts, data.labels, data.origins, strict=True):
        if not (isinstance(text, str) and isinstance(label, str)):
            raise RnnkitError(f"texts and labels must be strings; at {origin} the text is a {type(text).__name__} "
                              f"and the label a {type(label).__name__}")
        if not text.strip():
            raise RnnkitError(f"empty text at {origin}; remove the line or give it text")
        if len(text) > max_chars:
            raise RnnkitError(f"text at {origin} is {len(text):,} characters long, over the cap of "
                              f"{max_chars:,}; raise it with --max-chars")
        if not label.strip():
            raise RnnkitError(f"empty label at {origin}")
    classes = data.classes
    if len(classes) < min_classes:
        only = f"only the label {classes[0]!r}" if classes else "no labels"
        raise RnnkitError(f"{len(data):,} examples but {only}; a classifier needs at least {min_classes} classes")
    return data


def load_labelled(sources: Sequence[str | os.PathLike] | str | os.PathLike | LabelledText, *, text_col: str = "text",
                  label_col: str = "label", encoding: str | None = None, max_chars: int = MAX_CHARS,
                  labels: Sequence[str] | None = None, min_classes: int = 2) -> LabelledText:
    """Read and check examples from what a user gave on the command line (or in memory).

    ``sources`` is one table file, one folder, ``LABEL=FILE`` pairs (every item of the
    sequence then a pair), or a :class:`LabelledText` (checked, not capped). An existing path is read as
    a file or folder even if its name holds ``=``. ``labels`` restricts a folder to some of its
    labels. Use ``min_classes=1`` for data to evaluate on, which may hold a single class.
    """
    if isinstance(sources, LabelledText):  # checked as read examples are, but the length cap guards reading
        return check_examples(sources, math.inf, min_classes)
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not items:
        raise RnnkitError("no data given: name a table file, a folder, or LABEL=FILE pairs")
    if not all(isinstance(s, (str, os.PathLike)) for s in items):
        raise RnnkitError("expected a table file, a folder, or LABEL=FILE pairs; texts and labels held in memory "
                          "go in as LabelledText(texts, labels)")
    paths = [Path(s) for s in items]
    if len(items) == 1 and not paths[0].exists() and "=" not in str(items[0]):
        raise RnnkitError(f"no such file or folder: {items[0]}")
    if len(items) == 1 and paths[0].is_dir():
        data = read_folder(paths[0], encoding, labels)
    elif len(items) == 1 and (paths[0].is_file() or "=" not in str(items[0])):
        data = read_table(paths[0], text_col, label_col, encoding)
    else:
        bad = [str(s) for s, p in zip(items, paths, strict=True) if "=" not in str(s) or p.exists()]
        if bad:
            raise RnnkitError(f"expected one table file, one folder, or LABEL=FILE pairs; got {bad[0]!r} "
                              f"among {len(items)} sources")
        data = read_pairs([str(s) for s in items], encoding)
    return check_examples(data, max_chars, min_classes)


def label_ids(labels: Sequence[str], classes: Sequence[str], origins: Sequence[str] | None = None) -> np.ndarray:
    """Each label's index in ``classes`` (a trained model's classes); an unknown label is an error."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        try:
            out[i] = index[label]
        except KeyError:
            where = f" at {origins[i]}" if origins is not None else ""
            known = ", ".join(repr(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise RnnkitError(f"unknown label {label!r}{where}; the model knows {known}") from None
    return out


# ---------------------------------------------------------------------------- tokens and vocabulary

# One regular expression, alternatives tried in order at each position. Contractions split as in
# the Penn Treebank ("don't" -> "do" "n't", "he's" -> "he" "'s"), so negation is a token of its own;
# a space put before every "n't" first does that split at about half the cost of a look-ahead in
# the pattern. Hyphenated words and numbers with a decimal point stay whole; any other character
# that is not a space is a token alone (punctuation, symbols, emoji).
_WORD_RE = re.compile(r"""
      n't\b
    | '(?:s|re|ve|ll|d|m)\b              # clitics: 's 're 've 'll 'd 'm
    | \d+(?:[.,]\d+)+                    # 3.5, 1,000
    | [^\W_]+(?:-[^\W_]+)*               # words, hyphenated words
    | \S                                 # anything else, one character at a time
""", re.X | re.I)


@dataclass(frozen=True)
class Tokenizer:
    """Text to tokens: words and punctuation (``level="word"``) or characters (``level="char"``).

    Curly apostrophes are read as straight ones, so "don’t" and "don't" give the same tokens.
    """

    level: str = "word"
    lower: bool = True

    def __post_init__(self) -> None:
        if self.level not in ("word", "char"):
            raise RnnkitError(f"tokeniser level must be 'word' or 'char', not {self.level!r}")

    def __call__(self, text: str) -> list[str]:
        if self.lower:
            text = text.lower()
        if self.level == "char":
            return list(text)
        text = text.replace("\u2019", "'").replace("n't", " n't").replace("N'T", " N'T")
        return _WORD_RE.findall(text)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "lower": self.lower}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tokenizer:
        return cls(level=str(d.get("level", "word")), lower=bool(d.get("lower", True)))


PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """Tokens mapped to ids: ``<pad>`` is 0, ``<unk>`` is 1, then tokens by falling count (ties by token).

    Build it from training texts only (:meth:`build`): a token seen only in validation or
    test texts must map to ``<unk>`` as it would for new text. It carries its tokeniser, so a
    stored vocabulary encodes new text exactly as at training time.
    """

    pad_id, unk_id = 0, 1

    def __init__(self, tokens: Sequence[str], tokenizer: Tokenizer | None = None) -> None:
        self.itos = [PAD, UNK, *tokens]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise RnnkitError("the vocabulary lists a token twice")
        self.tokenizer = tokenizer or Tokenizer()

    @classmethod
    def build(cls, texts: Iterable[str], tokenizer: Tokenizer | None = None, min_count: int = 1,
              max_size: int | None = None) -> Vocab:
        """The tokens of ``texts`` seen at least ``min_count`` times, at most ``max_size`` ids in all.

        ``max_size`` counts ``<pad>`` and ``<unk>``, so it is the embedding table's size.
        """
        if min_count < 1:
            raise RnnkitError(f"min count must be at least 1, not {min_count}")
        if max_size is not None and max_size < 3:
            raise RnnkitError(f"max vocabulary size must be at least 3 (<pad>, <unk> and a token), not {max_size}")
        tokenizer = tokenizer or Tokenizer()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenizer(text))
        for special in (PAD, UNK):  # a char-level or odd tokeniser must not give them a second id
            counts.pop(special, None)
        kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls(kept, tokenizer)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of the tokens of ``text``; tokens outside the vocabulary become ``<unk>`` (1)."""
        get = self.stoi.get
        return [get(t, 1) for t in self.tokenizer(text)]

    def encode_all(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild it; the tokens exclude the two special ones."""
        return {"format": "rnnkit-vocab", "version": 1, "tokenizer": self.tokenizer.to_dict(),
                "tokens": self.itos[2:]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocab:
        if not isinstance(d, Mapping) or d.get("format") != "rnnkit-vocab" or not isinstance(d.get("tokens"), list):
            raise RnnkitError("not an rnnkit vocabulary (expected format 'rnnkit-vocab' with a token list)")
        return cls([str(t) for t in d["tokens"]], Tokenizer.from_dict(d.get("tokenizer", {})))

    def save(self, path: str | os.PathLike) -> None:
        """Write it as JSON, atomically (a run folder never holds half a vocabulary)."""
        from ..io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        path = Path(path)
        try:
            d = json.loads(_read_bytes(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RnnkitError(f"{path} is not a JSON vocabulary file") from None
        try:
            return cls.from_dict(d)
        except RnnkitError as e:
            raise RnnkitError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------- splits


def _by_class(labels: Sequence[Any], seed: int) -> list[np.ndarray]:
    """Each class's indices, shuffled by ``seed``; classes in sorted order so the result is repeatable."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]


def folds(labels: Sequence[Any], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` stratified folds as ``(train_indices, test_indices)``, sorted index arrays.

    Each class is shuffled (by ``seed``) and dealt round-robin over the folds, the classes one
    after another, so every fold holds ``floor`` or ``ceil`` of ``n_c / k`` of each class ``c``
    and fold sizes differ by at most one. The test parts are disjoint and cover every index.
    """
    n = len(labels)
    if k < 2:
        raise RnnkitError(f"cross-validation needs at least 2 folds, not {k}")
    groups = _by_class(labels, seed)
    for c, g in zip(np.unique(np.asarray(labels)), groups, strict=True):
        if len(g) < k:
            raise RnnkitError(f"class {str(c)!r} has {len(g)} example(s), fewer than the {k} folds; lower --folds")
    order = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def holdout(labels: Sequence[Any], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified ``(train_indices, validation_indices)`` split with ``fraction`` held out of each class.

    Each class gives ``round(fraction * n_c)`` examples, at least one and never all of them,
    so every class is seen in both parts.
    """
    if not 0 < fraction < 1:
        raise RnnkitError(f"validation fraction must be between 0 and 1, not {fraction}")
    held = []
    for c, g in zip(np.unique(np.asarray(labels)), _by_class(labels, seed), strict=True):
        if len(g) < 2:
            raise RnnkitError(f"class {str(c)!r} has 1 example; a validation split needs at least 2 of each class")
        held.append(g[: min(max(1, round(fraction * len(g))), len(g) - 1)])
    val = np.sort(np.concatenate(held))
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val
