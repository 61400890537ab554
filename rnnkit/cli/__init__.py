"""The ``rnnkit`` command: a thin layer over the Python API.

Each command group lives in its own module of this package, found here by itself: a module with
a ``register(subparsers)`` function that adds its subcommands, each with
``set_defaults(handler=...)``, and an ``ORDER`` number placing them in ``--help``. Handlers
import what they need lazily so that ``rnnkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import RnnkitError, TrainingStopped


def command_modules() -> list:
    """Every command-group module of this package, in ``--help`` order."""
    import pkgutil

    found = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m for m in found if hasattr(m, "register")), key=lambda m: getattr(m, "ORDER", 100))


def _number(text: str, cast, ok, need: str):
    try:
        value = cast(text)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {need}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v > 0, "positive")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "non-negative")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < float("inf"), "positive and finite")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < float("inf"), "non-negative")


def unit_interval(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "in [0, 1]")


def fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < 1, "in [0, 1)")


def output_file(text: str) -> str:
    """A file to write: refused before any work if it names a folder or lies under a file."""
    from pathlib import Path

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
            break
    return text


def png_file(text: str) -> str:
    """An image to write: a ``.png`` file name (checked as :func:`output_file`)."""
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"must be a .png file, got {text}")
    return output_file(text)


class Parser(argparse.ArgumentParser):
    _intermixing = False

    def error(self, message: str) -> None:  # one line, exit 2, like every other rnnkit error
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args: list[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        # A command's own arguments are parsed intermixed, so a list of positionals may also follow
        # options (`translate predict RUN --beam 3 "text"`); plain argparse takes them only in one run.
        # Intermixed parsing calls this method again, hence the flag.
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = Parser(prog="rnnkit", description="Recurrent neural networks on PyTorch: train, sample, "
               "evaluate and inspect RNN, LSTM and GRU models.")
    p.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in command_modules():
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ..training.fit import failed_starts_removed

    with failed_starts_removed() as abandon:  # a failed start leaves no half-made run folder behind
        code = _run(argv)
        if code:
            abandon()
    return code


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.typed = {token.split("=", 1)[0] for token in (sys.argv[1:] if argv is None else argv)
                      if isinstance(token, str) and token.startswith("--")}
        args.handler(args)
    except TrainingStopped as e:
        print(f"rnnkit: {e}", file=sys.stderr)
        return e.exit_code
    except RnnkitError as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before training took over Ctrl-C (loading, tokenising), or a second Ctrl-C
        print("\nrnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a full disk, a read-only folder, a vanished file: say which, in one line
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"rnnkit: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        # torch reports a failed allocation as a RuntimeError (OutOfMemoryError on a GPU)
        if not isinstance(e, MemoryError) and not _out_of_memory(e):
            raise
        print("rnnkit: error: out of memory: choose a smaller model, batch or length", file=sys.stderr)
        return 1
    return 0


def _out_of_memory(e: RuntimeError) -> bool:
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)
