"""Writing files so that nobody ever reads a half-written one: write to a temporary file, then rename."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)``, then rename onto ``path``: readers never see a half-written file.

    A symbolic link keeps being one: its target is the file replaced. Something that is not a
    regular file (``/dev/stdout``, a named pipe) cannot be replaced by a rename and is written in
    place.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if path.exists() and not path.is_file():
        write(str(path))
        return
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give them the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """The folder ``path``, made if missing; if the block fails, a folder made here is removed again,
    so that a failed command leaves no empty or half-filled output folder behind."""
    path = Path(path)
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if made:
            shutil.rmtree(path, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def save_tensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Tensors (torch or numpy) into one safetensors file, atomically: what a run folder keeps of its data
    so that it resumes from the folder alone (reading it back runs no code)."""
    import torch
    from safetensors.torch import save_file

    tensors = {k: (torch.from_numpy(v) if not isinstance(v, torch.Tensor) else v).contiguous().cpu()
               for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path: str | os.PathLike, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata :func:`save_tensors` wrote; a one-line error naming ``what`` if unreadable."""
    from safetensors import SafetensorError, safe_open

    from .errors import RnnkitError, cause

    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except (OSError, SafetensorError) as e:
        raise RnnkitError(f"cannot read {path}, {what}: {cause(e, 100)}") from None
