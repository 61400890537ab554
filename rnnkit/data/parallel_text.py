"""Parallel corpora for translation: reading sentence pairs, SentencePiece subwords, seq2seq batches, BLEU.

The flow a translation task follows::

    train = read_parallel("train.de.gz", "train.en.gz")
    tok = train_parallel_tokenizer(train, vocab_size=8000)   # from the training text only
    tok.save(run_dir)                                        # the model bytes live in the run folder
    data = encode_parallel(train, tok, max_tokens=100)       # ids once, as flat arrays
    for idx in batch_indices(data, 64, seed=epoch):
        batch = make_batch(data, idx)                        # padded (B, T) tensors and lengths
    ...
    bleu = corpus_bleu(tok.tgt.decode_batch(outputs), refs)  # sacreBLEU on detokenised text

Ids are fixed for every model trained here: pad 0, unk 1, BOS 2, EOS 3.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from ..errors import RnnkitError
from ..io import atomic_write

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
NEWLINE = b"\n"
TABLE_SUFFIXES = {".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_COLUMNS = ("src", "tgt")


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass
class ParallelCorpus:
    """Aligned sentence pairs, with where each pair came from (for error messages after reading)."""

    src: list[str]
    tgt: list[str]
    line_numbers: list[int]  # 1-based line (row, for Parquet) of each kept pair in the input
    src_name: str  # e.g. "train.de.gz", or "pairs.tsv column 'src'"
    tgt_name: str
    unit: str = "line"  # what line_numbers count: "line", or "row" for Parquet
    dropped: dict[str, int] = field(default_factory=dict)  # reason ("empty", "long") -> pairs dropped

    def __len__(self) -> int:
        return len(self.src)


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """A file's bytes, decompressed if gzip (by magic bytes; a ``.gz`` name must hold gzip); and whether it was."""
    if not path.exists():
        raise RnnkitError(f"no such file: {path}")
    if path.is_dir():
        raise RnnkitError(f"{path} is a directory: give a text file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RnnkitError(f"cannot read {path}: {e.strerror}") from None
    if not raw:
        raise RnnkitError(f"{path} is empty")
    gz = raw[:2] == GZIP_MAGIC
    if path.suffix.lower() == ".gz" and not gz:
        # decoding it as text would "work" on a mislabelled file; the name promises gzip, so say so
        raise RnnkitError(f"{path} ends in .gz but is not gzip-compressed: rename it or compress it")
    if gz:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise RnnkitError(f"{path} is a damaged gzip file ({e}): recompress or download it again") from None
        if not raw:
            raise RnnkitError(f"{path} is empty once decompressed")
    return raw, gz


def _decode(raw: bytes, path: Path, encoding: str, gz: bool) -> str:
    """Bytes to text; a UTF-8 byte-order mark is dropped; refuses binary and undecodable input by byte offset."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise RnnkitError(f"unknown encoding {encoding!r}") from None
    start = 0
    if codec in ("utf-8", "utf-8-sig"):
        codec = "utf-8"  # the mark is stripped here, so offsets below stay offsets into the file
        if raw.startswith(UTF8_BOM):
            start = len(UTF8_BOM)
    # where ASCII is one byte a character, a NUL means binary and newline counts give line numbers
    ascii_compatible = "\n\ta".encode(codec, errors="replace") == b"\n\ta"
    where = " of the decompressed text" if gz else ""
    if ascii_compatible:
        nul = raw.find(b"\x00", start, start + (1 << 20))
        if nul >= 0:
            raise RnnkitError(f"{path} looks binary (NUL byte at offset {nul}{where}): give a text file")
    try:
        return codecs.decode(memoryview(raw)[start:], codec)
    except UnicodeDecodeError as e:
        offset = start + e.start
        line = f", line {raw.count(NEWLINE, 0, offset) + 1}" if ascii_compatible else ""
        raise RnnkitError(f"{path} is not valid {encoding} at byte offset {offset}{where}{line}: "
                          "give its encoding with --encoding (e.g. latin-1)") from None


def _lines(text: str, path: Path) -> list[str]:
    """Lines split on newlines only: str.splitlines would also cut at U+2028, U+0085 and others inside sentences."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":  # the newline that ends the last line does not start another
        lines.pop()
    if not lines:
        raise RnnkitError(f"{path} is empty")
    return lines


def read_lines(path: str | os.PathLike, encoding: str = "utf-8") -> list[str]:
    """One sentence a line from a plain or gzip-compressed text file (see :func:`read_parallel` for refusals)."""
    path = Path(path)
    raw, gz = _read_bytes(path)
    return _lines(_decode(raw, path, encoding, gz), path)


def _build(src: Sequence[str | None], tgt: Sequence[str | None], line_numbers: Sequence[int], src_name: str,
           tgt_name: str, unit: str, drop_empty: bool, max_chars: int | None, drop_long: bool) -> ParallelCorpus:
    """Check every pair (empty, too long) and keep those that pass or raise at the first that fails."""
    if max_chars is not None and max_chars < 1:
        raise RnnkitError(f"the character cap must be at least 1, got {max_chars}")
    out = ParallelCorpus([], [], [], src_name, tgt_name, unit, {"empty": 0, "long": 0})
    for s, t, n in zip(src, tgt, line_numbers, strict=True):
        bad = next((name for name, text in ((src_name, s), (tgt_name, t)) if not text or text.isspace()), None)
        if bad is not None:
            if drop_empty:
                out.dropped["empty"] += 1
                continue
            raise RnnkitError(f"{bad} {unit} {n} is empty: a pair needs a sentence on both sides; remove the pair "
                              "or pass --drop-empty")
        if max_chars is not None and (len(s) > max_chars or len(t) > max_chars):  # type: ignore[arg-type]
            if drop_long:
                out.dropped["long"] += 1
                continue
            name, size = (src_name, len(s)) if len(s) > max_chars else (tgt_name, len(t))  # type: ignore[arg-type]
            raise RnnkitError(f"{name} {unit} {n} has {size} characters, over the cap of {max_chars}: raise "
                              "--max-chars or pass --drop-long")
        out.src.append(s)  # type: ignore[arg-type]
        out.tgt.append(t)  # type: ignore[arg-type]
        out.line_numbers.append(n)
    if not out.src:
        raise RnnkitError(f"no sentence pairs left in {src_name} and {tgt_name} after dropping empty/long ones")
    return out


def _table_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = TABLE_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise RnnkitError(f"{path}: give two plain text files (source and target), or one .tsv, .jsonl or .parquet "
                          "file with a source and a target column")
    if fmt == "parquet" and path.suffix.lower() == ".gz":
        raise RnnkitError(f"{path}: Parquet compresses itself; give the .parquet file, not a gzip of it")
    return fmt


def _pick_columns(found: Sequence[str], columns: tuple[str, str] | None, path: Path) -> tuple[str, str] | None:
    """The two columns to read: those asked for, else src/tgt when present, else None (= the first two)."""
    if columns is not None:
        missing = [c for c in columns if c not in found]
        if missing:
            raise RnnkitError(f"{path} has no column {missing[0]!r} (found: {', '.join(map(repr, found)) or 'none'}): "
                              "give the names with --src-column/--tgt-column")
        return columns
    if all(c in found for c in DEFAULT_COLUMNS):
        return DEFAULT_COLUMNS
    return None


def _read_tsv(text: str, path: Path, columns: tuple[str, str] | None) -> tuple[list, list, list, str, str]:
    """Tab-separated pairs. The first line is a header if it holds the column names asked for (default src and
    tgt); otherwise there is no header and the first two fields are source and target. No quoting: sentences
    are taken as they stand, quote marks included."""
    lines = _lines(text, path)
    header = lines[0].split("\t")
    picked = _pick_columns(header, columns, path)
    if picked is None:  # no header: every line is a pair
        i, j, rows, first, names = 0, 1, lines, 1, ("field 1", "field 2")
    else:
        i, j, rows, first = header.index(picked[0]), header.index(picked[1]), lines[1:], 2
        names = (repr(picked[0]), repr(picked[1]))
    need = max(i, j) + 1
    src, tgt, numbers = [], [], []
    for n, line in enumerate(rows, start=first):
        fields = line.split("\t")
        if len(fields) < need:
            if line.strip():
                raise RnnkitError(f"{path} line {n} has {len(fields)} tab-separated field(s), needs {need}")
            fields = [""] * need  # a blank line is an empty pair: refused or dropped like one
        src.append(fields[i])
        tgt.append(fields[j])
        numbers.append(n)
    if not src:
        raise RnnkitError(f"{path} has a header but no sentence pairs")
    return src, tgt, numbers, f"{path} column {names[0]}", f"{path} column {names[1]}"


def _read_jsonl(text: str, path: Path, columns: tuple[str, str] | None) -> tuple[list, list, list, str, str]:
    """One JSON object a line; columns as asked, else src/tgt when the first object has them, else its first two."""
    src, tgt, numbers = [], [], []
    picked: tuple[str, str] | None = None
    for n, line in enumerate(_lines(text, path), start=1):
        if not line.strip():
            src.append(None)
            tgt.append(None)
            numbers.append(n)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RnnkitError(f"{path} line {n} is not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise RnnkitError(f"{path} line {n} is not a JSON object")
        if picked is None:
            picked = _pick_columns(list(obj), columns, path)
            if picked is None:
                if len(obj) < 2:
                    raise RnnkitError(f"{path} line {n} has {len(obj)} key(s): a pair needs a source and a target")
                picked = tuple(list(obj)[:2])  # type: ignore[assignment]
        for key, out in zip(picked, (src, tgt), strict=True):  # type: ignore[arg-type]
            if key not in obj:
                raise RnnkitError(f"{path} line {n} has no key {key!r}")
            value = obj[key]
            if value is not None and not isinstance(value, str):
                raise RnnkitError(f"{path} line {n}: {key!r} holds a {type(value).__name__}, not a string")
            out.append(value)
        numbers.append(n)
    if picked is None:
        raise RnnkitError(f"{path} holds no JSON objects")
    return src, tgt, numbers, f"{path} column {picked[0]!r}", f"{path} column {picked[1]!r}"


def _read_parquet(path: Path, columns: tuple[str, str] | None) -> tuple[list, list, list, str, str]:
    """Two string columns of a Parquet file; nulls count as empty sentences."""
    import pyarrow as pa  # only Parquet needs it
    import pyarrow.parquet as pq

    if not path.exists():
        raise RnnkitError(f"no such file: {path}")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnkitError(f"{path} is not a readable Parquet file ({reason})") from None
    found = list(pf.schema_arrow.names)
    picked = _pick_columns(found, columns, path)
    if picked is None:
        if len(found) < 2:
            raise RnnkitError(f"{path} has {len(found)} column(s): a pair needs a source and a target")
        picked = (found[0], found[1])
    table = pf.read(columns=list(picked))
    for name in picked:
        kind = table.schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise RnnkitError(f"{path} column {name!r} holds {kind}, not strings")
    if table.num_rows == 0:
        raise RnnkitError(f"{path} has no rows")
    src, tgt = (table.column(name).to_pylist() for name in picked)
    return src, tgt, list(range(1, len(src) + 1)), f"{path} column {picked[0]!r}", f"{path} column {picked[1]!r}"


def read_parallel(src: str | os.PathLike, tgt: str | os.PathLike | None = None, *,
                  columns: tuple[str, str] | None = None, encoding: str = "utf-8", drop_empty: bool = False,
                  max_chars: int | None = None, drop_long: bool = False) -> ParallelCorpus:
    """Sentence pairs from two line-aligned text files, or from one TSV/JSONL/Parquet file when ``tgt`` is None.

    Text files may be gzip-compressed (known by their magic bytes) and may start with a UTF-8 byte-order mark.
    Table columns are ``columns`` (source, target) if given, else ``src``/``tgt`` when present, else the first
    two. Raises :class:`RnnkitError` in one line for a missing or empty file, undecodable bytes (with the byte
    offset), differing line counts, an empty sentence (unless ``drop_empty``) and a sentence over ``max_chars``
    characters (unless ``drop_long``), naming the file and line.
    """
    src = Path(src)
    if tgt is None:
        fmt = _table_format(src)
        if fmt == "parquet":
            s, t, numbers, src_name, tgt_name = _read_parquet(src, columns)
            return _build(s, t, numbers, src_name, tgt_name, "row", drop_empty, max_chars, drop_long)
        raw, gz = _read_bytes(src)
        text = _decode(raw, src, encoding, gz)
        reader = _read_tsv if fmt == "tsv" else _read_jsonl
        s, t, numbers, src_name, tgt_name = reader(text, src, columns)
        return _build(s, t, numbers, src_name, tgt_name, "line", drop_empty, max_chars, drop_long)
    if columns is not None:
        raise RnnkitError("column names apply to one TSV/JSONL/Parquet file, not to two text files")
    tgt = Path(tgt)
    s, t = read_lines(src, encoding), read_lines(tgt, encoding)
    if len(s) != len(t):
        raise RnnkitError(f"source {src} has {len(s)} lines but target {tgt} has {len(t)}: "
                          "a parallel corpus needs exactly one target line per source line")
    return _build(s, t, range(1, len(s) + 1), str(src), str(tgt), "line",  # type: ignore[arg-type]
                  drop_empty, max_chars, drop_long)


def find_split(directory: str | os.PathLike, split: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    """The two files of one split in a corpus folder laid out as ``{split}.{lang}`` or ``{split}.{lang}.gz``

    (Multi30k: ``train.de.gz``, ``val.en.gz``, ``test_2016_flickr.de.gz``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RnnkitError(f"no such directory: {directory}")
    found = []
    for lang in (src_lang, tgt_lang):
        options = [directory / f"{split}.{lang}", directory / f"{split}.{lang}.gz"]
        hit = [p for p in options if p.is_file()]
        if not hit:
            have = sorted(p.name for p in directory.iterdir() if p.is_file())
            raise RnnkitError(f"no {split}.{lang}[.gz] in {directory} (it holds: {', '.join(have[:12]) or 'nothing'})")
        if len(hit) > 1:
            raise RnnkitError(f"both {hit[0].name} and {hit[1].name} are in {directory}: keep one")
        found.append(hit[0])
    return found[0], found[1]


# ---------------------------------------------------------------------------------------------------------------
# Subword tokeniser


class SubwordTokenizer:
    """A SentencePiece model held as bytes: ids with pad 0, unk 1, BOS 2, EOS 3; lossless decoding by default."""

    def __init__(self, model_bytes: bytes, name: str = "subword model") -> None:
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=bytes(model_bytes))
        except (RuntimeError, TypeError):
            raise RnnkitError(f"{name} is not a SentencePiece model") from None
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise RnnkitError(f"{name} has pad/unk/bos/eos ids {ids}, rnnkit needs {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}"
                              ": train it with rnnkit")
        self._bytes = bytes(model_bytes)

    @classmethod
    def train(cls, sentences: Iterable[str], *, vocab_size: int = 8000, model_type: str = "bpe",
              character_coverage: float = 1.0, byte_fallback: bool = True, normalization: str = "identity",
              collapse_whitespace: bool = False, max_sentences: int | None = None, seed: int = 0) -> SubwordTokenizer:
        """Train in memory (no files) on ``sentences``, deterministically: one thread, every sentence, fixed seed.

        ``character_coverage=1.0`` keeps every character seen (right for European alphabets; SentencePiece
        suggests 0.9995 only for large character sets such as CJK). ``byte_fallback`` spells characters never seen
        in training as UTF-8 bytes instead of ``<unk>``, so decoding gives them back. With the default
        ``identity`` normalisation and whitespace kept as written, ``decode(encode(s)) == s`` for every ``s``.
        ``max_sentences`` trains on that many sentences drawn with ``seed`` (for corpora too big to train on whole).
        """
        if model_type not in ("bpe", "unigram"):
            raise RnnkitError(f"subword model type must be 'bpe' or 'unigram', got {model_type!r}")
        if not 0.9 <= character_coverage <= 1.0:
            raise RnnkitError(f"character coverage must be within 0.9..1.0, got {character_coverage}")
        lines = [s for s in sentences if s and not s.isspace()]
        if max_sentences is not None and len(lines) > max_sentences:
            # our own draw rather than SentencePiece's input_sentence_size, whose sampling is not seeded by us
            keep = np.sort(np.random.default_rng(seed).choice(len(lines), max_sentences, replace=False))
            lines = [lines[i] for i in keep]
        if not lines:
            raise RnnkitError("no text to train the subword model on")
        # process-wide in SentencePiece; set on every call so that earlier calls cannot change this one
        spm.set_random_generator_seed(seed)
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage, byte_fallback=byte_fallback,
                normalization_rule_name=normalization, remove_extra_whitespaces=collapse_whitespace,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                # all sentences in the order given, one thread: the same text gives the same model bytes
                input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
                # sentences up to 16 KiB (default 4 KiB would silently leave long ones out of training)
                max_sentence_length=1 << 14, minloglevel=2)
        except RuntimeError as e:
            limit = re.search(r"value <= (\d+)", str(e))
            if limit:
                raise RnnkitError(f"vocabulary size {vocab_size} is too large for this training text (at most "
                                  f"{limit.group(1)}): lower --vocab-size") from None
            floor = re.search(r"required_chars\. \d+ vs (\d+)", str(e))
            if floor:  # every character seen, the 4 special ids and, with byte fallback, 256 byte pieces
                raise RnnkitError(f"vocabulary size {vocab_size} is too small for this training text (at least "
                                  f"{floor.group(1)}): raise --vocab-size") from None
            raise RnnkitError(f"SentencePiece training failed: {str(e).splitlines()[0]}") from None
        return cls(out.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubwordTokenizer:
        """A model written by :meth:`save`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RnnkitError(f"no subword model at {path}") from None
        except OSError as e:
            raise RnnkitError(f"cannot read {path}: {e.strerror}") from None
        return cls(data, name=str(path))

    def save(self, path: str | os.PathLike) -> None:
        """Write the model bytes atomically (a run folder never holds half a model)."""
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(self._bytes))

    @property
    def model_bytes(self) -> bytes:
        return self._bytes

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Subword ids of one sentence, optionally framed by BOS/EOS."""
        return self._sp.encode(text, out_type=int, add_bos=bos, add_eos=eos)

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False) -> list[list[int]]:
        # one thread: the machines this runs on are shared, and 58k Multi30k sentences take well under a second
        return self._sp.encode(list(texts), out_type=int, add_bos=bos, add_eos=eos, num_threads=1)

    def pieces(self, text: str) -> list[str]:
        """The subword strings of one sentence (for looking at what the model does)."""
        return self._sp.encode(text, out_type=str)

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Detokenised text of one id sequence: stops at the first EOS, skips pad and BOS."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(int(i))
        bad = next((i for i in out if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise RnnkitError(f"id {bad} is outside the subword vocabulary (0..{self.vocab_size - 1})")
        return self._sp.decode(out)

    def decode_batch(self, rows: Sequence[Sequence[int]] | np.ndarray | torch.Tensor) -> list[str]:
        """:meth:`decode` for each row of a (B, T) array, e.g. a batch of generated targets."""
        if isinstance(rows, (torch.Tensor, np.ndarray)):
            rows = rows.tolist()
        return [self.decode(r) for r in rows]


SUBWORD_FILES = {"joint": ("subword.model",), "split": ("subword.src.model", "subword.tgt.model")}


@dataclass(frozen=True)
class ParallelTokenizer:
    """The source and target tokenisers; one and the same object when trained jointly."""

    src: SubwordTokenizer
    tgt: SubwordTokenizer

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``subword.model`` (joint) or ``subword.src.model`` and ``subword.tgt.model`` into ``directory``.

        The other layout's files, if any, are removed so that :meth:`load` never has to guess.
        """
        directory = Path(directory)
        kind, other = ("joint", "split") if self.joint else ("split", "joint")
        paths = [directory / name for name in SUBWORD_FILES[kind]]
        for path, tok in zip(paths, (self.src,) if self.joint else (self.src, self.tgt), strict=True):
            tok.save(path)
        for name in SUBWORD_FILES[other]:
            (directory / name).unlink(missing_ok=True)
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ParallelTokenizer:
        directory = Path(directory)
        joint = directory / SUBWORD_FILES["joint"][0]
        src, tgt = (directory / name for name in SUBWORD_FILES["split"])
        if joint.is_file():
            tok = SubwordTokenizer.load(joint)
            return cls(tok, tok)
        if src.is_file() and tgt.is_file():
            return cls(SubwordTokenizer.load(src), SubwordTokenizer.load(tgt))
        raise RnnkitError(f"no subword model in {directory} (expected {joint.name}, or {src.name} and {tgt.name})")


def train_parallel_tokenizer(corpus: ParallelCorpus, *, joint: bool = True, vocab_size: int | tuple[int, int] = 8000,
                             model_type: str = "bpe", **options: Any) -> ParallelTokenizer:
    """Train on the (training) corpus: one model on both sides (``joint``), or one a side.

    ``vocab_size`` is one number, or (source, target) when not joint; other options go to
    :meth:`SubwordTokenizer.train`. BPE trains several times faster than unigram.
    """
    if joint:
        if not isinstance(vocab_size, int):
            raise RnnkitError("a joint subword model has one vocabulary size")
        tok = SubwordTokenizer.train([*corpus.src, *corpus.tgt], vocab_size=vocab_size, model_type=model_type,
                                     **options)
        return ParallelTokenizer(tok, tok)
    src_size, tgt_size = (vocab_size, vocab_size) if isinstance(vocab_size, int) else vocab_size
    return ParallelTokenizer(
        SubwordTokenizer.train(corpus.src, vocab_size=src_size, model_type=model_type, **options),
        SubwordTokenizer.train(corpus.tgt, vocab_size=tgt_size, model_type=model_type, **options))


# ---------------------------------------------------------------------------------------------------------------
# Ids and batches


def _flat(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(offsets[-1]))
    return ids, offsets


@dataclass
class EncodedParallel:
    """A corpus as subword ids, each side all sentences end to end (no BOS/EOS) with offsets into it.

    Sentence ``i``'s source is ``src_ids[src_offsets[i]:src_offsets[i + 1]]``. Flat arrays rather than a list of
    tensors: one allocation, cheap to slice, pickle and share with DataLoader workers.
    """

    src_ids: np.ndarray  # int32
    src_offsets: np.ndarray  # int64, len(self) + 1
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    line_numbers: np.ndarray  # int64, the pair's line (or row) in the input
    dropped: int = 0  # pairs left out for being over max_tokens

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)

    def src(self, i: int) -> np.ndarray:
        return self.src_ids[self.src_offsets[i]:self.src_offsets[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_ids[self.tgt_offsets[i]:self.tgt_offsets[i + 1]]

    def stats(self) -> dict[str, float | int]:
        """Sizes worth logging: pairs, subword tokens per side, mean and longest sentence (tokens, no BOS/EOS)."""
        s, t = self.src_lengths, self.tgt_lengths
        return {"pairs": len(self), "src_tokens": int(s.sum()), "tgt_tokens": int(t.sum()),
                "src_mean": round(float(s.mean()), 2), "tgt_mean": round(float(t.mean()), 2),
                "src_max": int(s.max()), "tgt_max": int(t.max()), "dropped_long": self.dropped}


def encode_parallel(corpus: ParallelCorpus, tokenizer: ParallelTokenizer, *, max_tokens: int | None = None,
                    drop_long: bool = False) -> EncodedParallel:
    """Encode every pair once. A sentence over ``max_tokens`` subwords (BOS/EOS not counted) raises, naming its
    file and line, or with ``drop_long`` its pair is left out."""
    if max_tokens is not None and max_tokens < 1:
        raise RnnkitError(f"the subword token cap must be at least 1, got {max_tokens}")
    src = tokenizer.src.encode_batch(corpus.src)
    tgt = tokenizer.tgt.encode_batch(corpus.tgt)
    numbers = np.asarray(corpus.line_numbers, dtype=np.int64)
    dropped = 0
    if max_tokens is not None:
        keep = [len(s) <= max_tokens and len(t) <= max_tokens for s, t in zip(src, tgt, strict=True)]
        if not all(keep):
            if not drop_long:
                i = keep.index(False)
                name, size = (corpus.src_name, len(src[i])) if len(src[i]) > max_tokens else (corpus.tgt_name,
                                                                                              len(tgt[i]))
                raise RnnkitError(f"{name} {corpus.unit} {corpus.line_numbers[i]} has {size} subword tokens, over "
                                  f"the cap of {max_tokens}: raise --max-tokens or pass --drop-long")
            dropped = len(keep) - sum(keep)
            if dropped == len(keep):
                raise RnnkitError(f"every pair is over the cap of {max_tokens} subword tokens")
            src = [r for r, k in zip(src, keep, strict=True) if k]
            tgt = [r for r, k in zip(tgt, keep, strict=True) if k]
            numbers = numbers[np.asarray(keep)]
    (src_ids, src_off), (tgt_ids, tgt_off) = _flat(src), _flat(tgt)
    return EncodedParallel(src_ids, src_off, tgt_ids, tgt_off, numbers, dropped)


@dataclass
class Seq2SeqBatch:
    """Padded id tensors (pad id 0) for teacher-forced training of an encoder-decoder.

    ``tgt_in`` is BOS y1..yn and ``tgt_out`` is y1..yn EOS, both ``tgt_lengths`` = n + 1 long. Lengths stay on
    the CPU, where ``pack_padded_sequence`` wants them.
    """

    src: torch.Tensor  # (B, S) int64
    src_lengths: torch.Tensor  # (B,) int64
    tgt_in: torch.Tensor  # (B, T) int64
    tgt_out: torch.Tensor  # (B, T) int64
    tgt_lengths: torch.Tensor  # (B,) int64
    indices: torch.Tensor  # (B,) int64: which pairs of the corpus, in batch order

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Seq2SeqBatch:
        return Seq2SeqBatch(self.src.to(device, non_blocking=non_blocking), self.src_lengths,
                            self.tgt_in.to(device, non_blocking=non_blocking),
                            self.tgt_out.to(device, non_blocking=non_blocking), self.tgt_lengths, self.indices)

    @property
    def num_target_tokens(self) -> int:
        """Tokens the loss is summed over (EOS included, padding not)."""
        return int(self.tgt_lengths.sum())


def _pad(ids: np.ndarray, offsets: np.ndarray, idx: np.ndarray, before: int | None,
         after: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``idx`` of a flat id array as a (B, T) padded tensor, each framed by ``before``/``after`` when given."""
    starts, ends = offsets[idx], offsets[idx + 1]
    lengths = ends - starts
    extra = (before is not None) + (after is not None)
    out = np.full((len(idx), int(lengths.max(initial=0)) + extra), PAD_ID, dtype=np.int64)
    col = np.arange(out.shape[1])
    first = int(before is not None)
    if before is not None:
        out[:, 0] = before
    # all tokens of the batch in one gather: positions start..end of each row, laid into its row's slots
    body = (col[None, :] >= first) & (col[None, :] < (first + lengths)[:, None])
    gather = (starts[:, None] + col[None, :] - first)[body]
    out[body] = ids[gather]
    if after is not None:
        out[np.arange(len(idx)), first + lengths] = after
    return torch.from_numpy(out), torch.from_numpy(lengths + extra)


def make_batch(data: EncodedParallel, indices: Sequence[int] | np.ndarray | torch.Tensor, *,
               src_eos: bool = True) -> Seq2SeqBatch:
    """The pairs ``indices`` as a :class:`Seq2SeqBatch`; with ``src_eos`` the source ends in EOS (a fixed last
    position the encoder and attention can rely on)."""
    idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
    if idx.ndim != 1 or len(idx) == 0:
        raise RnnkitError("a batch needs a non-empty list of pair indices")
    if idx.min() < 0 or idx.max() >= len(data):
        raise RnnkitError(f"pair index out of range: the corpus has {len(data)} pairs")
    src, src_len = _pad(data.src_ids, data.src_offsets, idx, None, EOS_ID if src_eos else None)
    tgt_in, tgt_len = _pad(data.tgt_ids, data.tgt_offsets, idx, BOS_ID, None)
    tgt_out, _ = _pad(data.tgt_ids, data.tgt_offsets, idx, None, EOS_ID)
    return Seq2SeqBatch(src, src_len, tgt_in, tgt_out, tgt_len, torch.from_numpy(idx))


def batch_indices(data: EncodedParallel, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                  pool: int = 50) -> list[np.ndarray]:
    """Pair indices cut into batches, each pair once.

    Shuffled: pairs are shuffled, then within pools of ``pool`` batches sorted by length, so a batch holds
    sentences of similar length (little padding) while batch order and content still change with ``seed``.
    Not shuffled: corpus order, for evaluation where outputs must line up with references.
    """
    if batch_size < 1:
        raise RnnkitError(f"batch size must be at least 1, got {batch_size}")
    n = len(data)
    if not shuffle:
        return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    key = np.maximum(data.src_lengths, data.tgt_lengths)
    batches = []
    step = batch_size * max(1, pool)
    for i in range(0, n, step):
        chunk = order[i:i + step]
        chunk = chunk[np.argsort(key[chunk], kind="stable")]
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class MetricScore:
    """One sacreBLEU score with the signature that says how it was computed (report both)."""

    name: str  # "BLEU", "BLEU-lc" or "chrF2"
    score: float
    signature: str  # e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0
    text: str  # sacreBLEU's own one-line summary (n-gram precisions, brevity penalty, lengths)

    def as_dict(self) -> dict[str, float | str]:
        return {"name": self.name, "score": self.score, "signature": self.signature, "text": self.text}


def _references(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """sacreBLEU's layout: a list of reference streams, each as long as the hypotheses."""
    if len(hyps) == 0:
        raise RnnkitError("no hypotheses to score")
    streams = [list(refs)] if len(refs) and isinstance(refs[0], str) else [list(r) for r in refs]
    if not streams:
        raise RnnkitError("no references to score against")
    for stream in streams:
        if len(stream) != len(hyps):
            raise RnnkitError(f"{len(hyps)} hypotheses but {len(stream)} references: they must line up one to one")
    return streams


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]], *,
                lowercase: bool = False) -> MetricScore:
    """sacreBLEU corpus BLEU on detokenised text: 13a tokenisation, cased unless ``lowercase``.

    ``refs`` is one reference a hypothesis, or several such lists for multiple references.
    """
    from sacrebleu.metrics import BLEU  # imported on use: it is only needed at evaluation

    metric = BLEU(tokenize="13a", lowercase=lowercase)
    result = metric.corpus_score(list(hyps), _references(hyps, refs))
    return MetricScore("BLEU-lc" if lowercase else "BLEU", float(result.score), str(metric.get_signature()),
                       str(result))


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> MetricScore:
    """sacreBLEU chrF (character 6-grams, beta 2, no word n-grams: its defaults)."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    result = metric.corpus_score(list(hyps), _references(hyps, refs))
    return MetricScore(result.name, float(result.score), str(metric.get_signature()), str(result))


def translation_scores(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> dict[str, MetricScore]:
    """Cased BLEU, lowercased BLEU and chrF, keyed ``bleu``, ``bleu_lc``, ``chrf``."""
    return {"bleu": corpus_bleu(hyps, refs), "bleu_lc": corpus_bleu(hyps, refs, lowercase=True),
            "chrf": corpus_chrf(hyps, refs)}
