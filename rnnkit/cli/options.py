"""Command-line options generated from the config dataclasses: each option is declared once, with its help
and its check, in the dataclass (:func:`rnnkit.training.config.option`), and refused the same way on the
command line and in Python."""

from __future__ import annotations

import argparse
import itertools
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import RnnkitError
from ..training.config import TrainConfig, _check

# what every training command takes, in --help order
TRAIN_OPTIONS = ("lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip", "grad_clip_value", "ema",
                 "grad_accum", "max_time", "max_steps", "epochs", "eval_every", "patience", "seed", "precision",
                 "device")


def _kind(annotation: str) -> type:
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if name in annotation.replace("None", "").split("|")[0] or annotation.startswith(name):
            return kind
    return str


def value_type(kind: type, rule: str | None):
    """An argparse ``type`` that parses ``kind`` and applies ``rule`` (a one-line usage error otherwise)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        problem = _check(value, rule) if rule else None
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse.__name__ = kind.__name__
    return parse


seed_value = value_type(int, "seed")  # for the seeds of commands that do not train (sample, generate, folds)


def add_config_options(group: Any, cls: type = TrainConfig, names: tuple[str, ...] | None = None,
                       defaults: dict[str, Any] | None = None) -> None:
    """Add ``--name`` for each field of ``cls`` in ``names`` (default: every command-line field), default None.

    Unset options stay None, so the task (or its recommended settings) decides; ``defaults``
    names those values for ``--help``.
    """
    by_name = {f.name: f for f in fields(cls)}
    defaults = defaults or {}
    for name in names or [f.name for f in fields(cls) if f.metadata.get("cli", True)]:
        f = by_name[name]
        meta = f.metadata
        shown = defaults.get(name, f.default)
        help_text = meta.get("help", "") + (f" (default {shown})" if shown is not None else "")
        flag = "--" + name.replace("_", "-")
        kind = _kind(str(f.type))
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif meta.get("choices"):
            group.add_argument(flag, choices=meta["choices"], default=None, help=help_text)
        else:
            group.add_argument(flag, type=value_type(kind, meta.get("check")), default=None, help=help_text)


def given(args: argparse.Namespace, names: tuple[str, ...] = TRAIN_OPTIONS) -> dict[str, Any]:
    """The options among ``names`` that the user set."""
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def resume_options(args: argparse.Namespace, reports: tuple[str, ...] = ()) -> dict[str, Any]:
    """The training options given with ``--resume``, for :func:`rnnkit.training.fit.resume` to check (it refuses
    any but the budget and device that differ from the run's). Every other option of the command (its model's,
    its data's) given is refused in one line, as the run keeps its own, except ``reports``: options that shape
    only what the command prints once training ends (``rnnkit train --sample-length``).

    The command's parser is ``args.parser`` (``set_defaults(parser=...)``); ``args.typed`` holds the option
    flags on the command line, so that an option given at its default value is caught too.
    """
    typed = getattr(args, "typed", set())
    for flag, action in args.parser._option_string_actions.items():  # argparse's table of every option's flags
        if action.dest in (*TRAIN_OPTIONS, *reports, "resume", "out", "help"):
            continue
        if flag in typed or getattr(args, action.dest) != args.parser.get_default(action.dest):
            raise RnnkitError(f"--resume continues the run with its own model and data: drop {flag} "
                              "(only the budget and device may change)")
    return given(args)


__all__ = ["TRAIN_OPTIONS", "add_config_options", "given", "resume_options", "value_type"]


def add_checkpoint_option(parser: Any) -> None:
    """``--checkpoint best|last``: which of a run's checkpoints a command loads (``run_checkpoint``)."""
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="best by the run's validation metric (default; last.pt while the run has "
                        "no best yet), or the last")


def default_run_folder(source: str | None, prefix: str = "", fallback: str = "corpus") -> str:
    """``runs/<prefix><name>`` for a command's first data path: a file's name up to its first dot
    (``train.de.gz``: ``train``), a folder's name, or for a glob pattern the folder it searches
    (``logs/*.txt``: ``logs``)."""
    parts = Path(source).parts if source else ()
    plain = list(itertools.takewhile(lambda part: not re.search(r"[*?[]", part), parts))
    name = Path(*plain).name if plain else ""
    if len(plain) == len(parts):
        name = name.split(".")[0]
    if not name or name.startswith("."):  # "", "..", a hidden name: never a path outside runs/
        name = fallback
    return str(Path("runs") / f"{prefix}{name}")
