"""Text corpora: reading files, the character vocabulary, and batches of contiguous streams."""

from __future__ import annotations

import codecs
import glob
import os
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import RnnkitError

UNKNOWN = "\ufffd"  # stands for characters outside a capped vocabulary


def default_corpus_files() -> list[Path]:
    """The Python standard library's own top-level source files: real text present wherever Python is."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("*.py"))


def resolve_corpus(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files, directories (every file below, sorted) and glob patterns into a file list."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise RnnkitError(f"directory {p} holds no files")
            files += found
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(str(raw)):
            found = sorted(Path(f) for f in glob.glob(str(raw), recursive=True) if Path(f).is_file())
            if not found:
                raise RnnkitError(f"pattern {raw} matches no files")
            files += found
        else:
            raise RnnkitError(f"no such file or directory: {raw}")
    return files


CHUNK_BYTES = 1 << 24  # files are read and tokenised 16 MiB at a time, whatever their size
_UTF8 = ("utf8", "utf8sig")
# encodings in which a byte below 0x80 is that ASCII character, so pure-ASCII chunks need no decoding
_ASCII_COMPATIBLE = (*_UTF8, "ascii", "usascii", "latin1", "iso88591", "cp1252")
_ASCII = bytes(range(128))
_CONTINUATION = bytes(range(0x80, 0xC0))  # the bytes after the first of a multi-byte UTF-8 character


def _norm(encoding: str) -> str:
    return encoding.lower().replace("-", "").replace("_", "")


def _iter_file_chunks(path: Path, encoding: str = "utf-8", utf8_bytes: bool = False) -> Iterator[str | bytes]:
    """One file's text in chunks; refuses empty, binary and undecodable files, naming the byte offset.

    A UTF-8 byte-order mark is dropped. With ``utf8_bytes``, chunks that are valid UTF-8 as
    read (UTF-8 files, and pure-ASCII chunks of ASCII-compatible encodings) come as ``bytes``
    cut at character boundaries, sparing the tokeniser the decoding; others as ``str``.
    """
    try:
        fh = path.open("rb")
    except OSError as e:
        raise RnnkitError(f"cannot read {path}: {e.strerror}") from None
    norm = _norm(encoding)
    utf8, ascii_compatible = norm in _UTF8, norm in _ASCII_COMPATIBLE
    try:
        decoder = codecs.getincrementaldecoder("utf-8" if utf8 else encoding)("strict")
    except LookupError:
        raise RnnkitError(f"unknown encoding {encoding!r}") from None
    offset = 0
    with fh:
        while chunk := fh.read(CHUNK_BYTES):
            start = offset
            if offset == 0:
                if utf8 and chunk.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not text
                    chunk, start = chunk[3:], 3
                nul = chunk.find(b"\x00", 0, 1 << 20)
                if nul >= 0 and ascii_compatible:
                    raise RnnkitError(f"{path} looks binary (NUL byte at offset {nul + start}); give a text file")
            offset += len(chunk) + (start if offset == 0 else 0)
            pending = decoder.getstate()[0]
            if utf8_bytes and ascii_compatible and not pending and chunk.isascii():
                yield chunk
                continue
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise RnnkitError(f"{path} is not valid {e.encoding} at byte offset "
                                  f"{start - len(pending) + e.start}: give its encoding with --encoding "
                                  "(e.g. latin-1)") from None
            if utf8_bytes and utf8:  # validated; the bytes of a character cut by the chunk's end wait
                chunk = pending + chunk
                yield chunk[: len(chunk) - len(decoder.getstate()[0])]
            else:
                yield text
        if offset == 0:
            raise RnnkitError(f"{path} is empty")
        try:
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise RnnkitError(f"{path} is not valid {encoding}: it ends inside a character") from None


def iter_file_text(path: Path, encoding: str = "utf-8") -> Iterator[str]:
    """Decoded text of one file in chunks (see :func:`_iter_file_chunks` for what is refused)."""
    yield from _iter_file_chunks(path, encoding)  # type: ignore[misc]


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A whole text file as a string (see :func:`iter_file_text` for what is refused)."""
    return "".join(iter_file_text(Path(path), encoding))


def iter_corpus_text(files: Sequence[Path], encoding: str = "utf-8",
                     utf8_bytes: bool = False) -> Iterator[str | bytes]:
    """The text of all files in chunks, one newline between files; ``utf8_bytes`` as in :func:`_iter_file_chunks`."""
    for i, f in enumerate(files):
        if i:
            yield "\n"
        yield from _iter_file_chunks(f, encoding, utf8_bytes)


def read_corpus(paths: Sequence[str | os.PathLike] | None, encoding: str = "utf-8") -> str:
    """All files of a corpus as one string (files joined by a newline); the default corpus if none."""
    files = default_corpus_files() if not paths else resolve_corpus(paths)
    return "".join(iter_corpus_text(files, encoding))  # type: ignore[arg-type]


def _code_points(text: str) -> np.ndarray:
    if text.isascii():  # most text: one byte a character, four times less to move than UTF-32
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class Vocab:
    """The characters of a text, each mapped to an integer id (sorted by code point, so ids are stable).

    With ``max_size``, only the most frequent characters are kept and the rest map to
    :data:`UNKNOWN` (U+FFFD), which then takes one of the ``max_size`` places.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        # code point -> id, -1 where absent; the last slot stands for every larger code point
        self._lut = np.full(int(codes.max(initial=0)) + 2, -1, dtype=np.int32)
        self._lut[codes] = np.arange(len(codes), dtype=np.int32)
        # UTF-8 bytes are encoded with bytes.translate (see _encode_utf8); ids sort by code
        # point, so ASCII characters have ids below 128 and 255 is free as a placeholder
        ascii_ids = np.full(128, -1, dtype=np.int32)
        ascii_ids[: min(128, len(self._lut) - 1)] = self._lut[: min(128, len(self._lut) - 1)]
        self._utf8_known = bytes(np.flatnonzero(ascii_ids >= 0).astype(np.uint8)) + bytes(range(128, 256))
        self._utf8_table = bytes(np.maximum(ascii_ids, 0).astype(np.uint8)) + bytes([255]) * 128

    @classmethod
    def from_counts(cls, counts: dict[str, int], max_size: int | None = None) -> Vocab:
        if max_size is not None and len(counts) > max_size:
            counts = {c: n for c, n in counts.items() if c != UNKNOWN}  # it stands for the dropped ones
            keep = sorted(counts, key=lambda c: (-counts[c], c))[: max_size - 1]
            return cls(keep + [UNKNOWN])
        return cls(counts)

    @classmethod
    def from_text(cls, text: str, max_size: int | None = None) -> Vocab:
        return cls.from_counts(count_chars([text]), max_size)

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        """The smallest integer type that holds every id."""
        return np.dtype(np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.int32)

    def unknown_chars(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.index))

    def encode(self, text: str | bytes, strict: bool = True) -> np.ndarray:
        """Ids of ``text`` (a string, or valid UTF-8 bytes) as a compact array.

        Unknown characters raise (``strict``) or map to :data:`UNKNOWN`.
        """
        if isinstance(text, str) and text.isascii():
            text = text.encode("ascii")
        if isinstance(text, bytes):
            ids = self._encode_utf8(text, strict)
            if ids is not None:
                return ids
            text = text.decode("utf-8")
        return self._encode_code_points(_code_points(text), strict)

    def _encode_utf8(self, raw: bytes, strict: bool) -> np.ndarray | None:
        """Ids of UTF-8 bytes by ``bytes.translate``, or None when an ASCII character is unknown.

        ASCII bytes map through a table; each multi-byte character keeps only its first byte,
        as the placeholder 255, and the characters themselves, few in most text, are looked up
        apart and put in the placeholders' places.
        """
        if raw.translate(None, self._utf8_known):
            return None
        ids = np.frombuffer(bytearray(raw.translate(self._utf8_table, _CONTINUATION)), dtype=np.uint8)
        rest = raw.translate(None, _ASCII)
        if not rest:
            return ids.astype(self.dtype, copy=False)
        wide = ids.astype(self.dtype)
        wide[ids == 255] = self._encode_code_points(_code_points(rest.decode("utf-8")), strict)
        return wide

    def _encode_code_points(self, codes: np.ndarray, strict: bool) -> np.ndarray:
        top = len(self._lut) - 1  # code points past the table all land on its last slot (-1)
        ids = self._lut[codes if top >= np.iinfo(codes.dtype).max else np.minimum(codes, codes.dtype.type(top))]
        missing = ids < 0
        if missing.any():
            if strict or UNKNOWN not in self.index:
                chars = sorted({chr(c) for c in np.unique(codes[missing])})
                shown = ", ".join(repr(c) for c in chars[:10])
                raise RnnkitError(f"characters not in the model's vocabulary: {shown}"
                                  + (f" and {len(chars) - 10} more" if len(chars) > 10 else ""))
            ids[missing] = self.index[UNKNOWN]
        return ids.astype(self.dtype)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def count_chars(chunks: Iterable[str | bytes]) -> dict[str, int]:
    """How often each character occurs in a stream of text chunks (strings, or valid UTF-8 bytes)."""
    total = np.zeros(0, dtype=np.int64)
    for chunk in chunks:
        if not chunk:
            continue
        if isinstance(chunk, bytes):  # ASCII counted as bytes; the rest, few in most text, decoded
            ascii_counts = torch.bincount(torch.frombuffer(bytearray(chunk), dtype=torch.uint8), minlength=128)
            total = _add_counts(total, ascii_counts[:128].numpy())
            chunk = chunk.translate(None, _ASCII).decode("utf-8")
        total = _add_counts(total, np.bincount(_code_points(chunk)))
    return {chr(c): int(total[c]) for c in np.flatnonzero(total)}


def _add_counts(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if len(counts) > len(total):
        total, counts = counts.astype(np.int64), total
    total[: len(counts)] += counts
    return total


def tokenize_to_file(files: Sequence[Path], path: str | os.PathLike, encoding: str = "utf-8",
                     max_vocab: int | None = None, vocab: Vocab | None = None) -> tuple[Vocab, np.memmap]:
    """Tokenise a corpus of any size into a token file, streaming; return the vocabulary and a memory map.

    Two passes over the files (count characters, then encode), 16 MiB at a time, so memory
    stays flat whatever the corpus size. The file is written to a temporary name and renamed.
    """
    from ..io import atomic_write

    if vocab is None:
        vocab = Vocab.from_counts(count_chars(iter_corpus_text(files, encoding, utf8_bytes=True)), max_vocab)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as out:
            for chunk in iter_corpus_text(files, encoding, utf8_bytes=True):
                out.write(vocab.encode(chunk, strict=False).tobytes())

    atomic_write(path, write)
    return vocab, open_tokens(path, vocab)


def open_tokens(path: str | os.PathLike, vocab: Vocab) -> np.memmap:
    """A token file as a read-only memory map."""
    return np.memmap(path, dtype=vocab.dtype, mode="r")


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """First ``1 - val_fraction`` for training, the rest for validation (nanoGPT's split)."""
    n_train = int(len(tokens) * (1 - val_fraction))
    return tokens[:n_train], tokens[n_train:]


class StreamBatcher:
    """Cuts a token array into ``batch_size`` contiguous streams, read ``seq_len`` at a time.

    Batch ``i`` of an epoch holds, for every stream, characters ``[i*T, (i+1)*T]`` of it
    (input and the target shifted by one), so the hidden state at the end of one batch is the
    right start for the next: truncated backpropagation through time, as in char-rnn.
    ``tokens`` may be a memory map: a batch reads only its own ``batch_size x (seq_len+1)``
    tokens. ``streams`` picks a subset of the streams (one process's share in data-parallel
    training).
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int,
                 streams: range | None = None) -> None:
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        stream_len = (len(tokens) - 1) // batch_size
        self.batches_per_epoch = stream_len // seq_len
        if self.batches_per_epoch == 0:
            need = batch_size * seq_len + 1
            raise RnnkitError(f"text too short: {len(tokens)} characters, need at least {need} "
                              f"for batch size {batch_size} x sequence length {seq_len}; "
                              "lower --batch-size or --seq-len")
        self.starts = [s * stream_len for s in (streams or range(batch_size))]

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``index``, each ``(streams, seq_len)``."""
        at, n = index * self.seq_len, self.seq_len + 1
        rows = torch.from_numpy(np.stack([self.tokens[s + at: s + at + n] for s in self.starts]).astype(np.int64))
        return rows[:, :-1], rows[:, 1:]
