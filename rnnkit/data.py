"""Text corpora: reading files, the character vocabulary, and batches of contiguous streams."""

from __future__ import annotations

import glob
import os
import sysconfig
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import RnnkitError

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


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a text file, dropping a UTF-8 byte-order mark; refuse binary or undecodable files."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RnnkitError(f"cannot read {path}: {e.strerror}") from None
    if not data:
        raise RnnkitError(f"{path} is empty")
    nul = data.find(b"\x00", 0, 1 << 20)
    if nul >= 0 and encoding.lower().replace("-", "") in ("utf8", "utf8sig", "ascii", "latin1"):
        raise RnnkitError(f"{path} looks binary (NUL byte at offset {nul}); give a text file")
    skipped = 0
    if encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
        encoding = "utf-8"
        if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not text
            data, skipped = data[3:], 3
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise RnnkitError(f"{path} is not valid {e.encoding} at byte offset {e.start + skipped}: "
                          f"give its encoding with --encoding (e.g. latin-1)") from None
    except LookupError:
        raise RnnkitError(f"unknown encoding {encoding!r}") from None


def read_corpus(paths: Sequence[str | os.PathLike] | None, encoding: str = "utf-8") -> str:
    """All files of a corpus as one string (files joined by a newline); the default corpus if none."""
    files = default_corpus_files() if not paths else resolve_corpus(paths)
    return "\n".join(read_text(f, encoding) for f in files)


class Vocab:
    """The characters of a text, each mapped to an integer id (sorted, so ids are stable).

    With ``max_size``, only the most frequent characters are kept; the rest map to
    :data:`UNKNOWN`.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str, max_size: int | None = None) -> Vocab:
        counts = Counter(text)
        if max_size is not None and len(counts) > max_size:
            counts.pop(UNKNOWN, None)  # it stands for the dropped characters anyway
            keep = [c for c, _ in counts.most_common(max_size - 1)]
            return cls(sorted(keep + [UNKNOWN]))
        return cls(sorted(counts))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.index))

    def encode(self, text: str, strict: bool = True) -> np.ndarray:
        """Ids of ``text`` as a compact array; unknown characters raise (strict) or map to UNKNOWN."""
        missing = self.unknown_chars(text)
        if missing:
            if strict or UNKNOWN not in self.index:
                shown = ", ".join(repr(c) for c in missing[:10])
                raise RnnkitError(f"characters not in the model's vocabulary: {shown}"
                                  + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
            text = text.translate({ord(c): UNKNOWN for c in missing})
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        # chars are sorted by code point, so a binary search maps code points to ids at numpy speed
        ids = np.searchsorted(self._codes, codes)
        return ids.astype(np.uint8 if len(self) <= 256 else np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """First ``1 - val_fraction`` for training, the rest for validation (nanoGPT's split)."""
    n_train = int(len(tokens) * (1 - val_fraction))
    return tokens[:n_train], tokens[n_train:]


class StreamBatcher:
    """Cuts a token array into ``batch_size`` contiguous streams, read ``seq_len`` at a time.

    Batch ``i`` of an epoch holds, for every stream, characters ``[i*T, (i+1)*T]`` of it
    (input and the target shifted by one), so the hidden state at the end of one batch is the
    right start for the next: truncated backpropagation through time, as in char-rnn.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int) -> None:
        self.batch_size, self.seq_len = batch_size, seq_len
        stream_len = (len(tokens) - 1) // batch_size
        self.batches_per_epoch = stream_len // seq_len
        if self.batches_per_epoch == 0:
            need = batch_size * seq_len + 1
            raise RnnkitError(f"text too short: {len(tokens)} characters, need at least {need} "
                              f"for batch size {batch_size} x sequence length {seq_len}; "
                              "lower --batch-size or --seq-len")
        usable = stream_len * batch_size
        streams = torch.from_numpy(np.ascontiguousarray(tokens[: usable + 1]).astype(np.int64))
        self.inputs = streams[:-1].view(batch_size, stream_len)
        self.targets = streams[1:].view(batch_size, stream_len)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of batch ``index``, each ``(batch_size, seq_len)``."""
        s = slice(index * self.seq_len, (index + 1) * self.seq_len)
        return self.inputs[:, s], self.targets[:, s]
