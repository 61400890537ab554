"""The exceptions rnnkit raises for the user; the CLI prints them as one line and exits non-zero."""

import operator
from typing import Any


class RnnkitError(Exception):
    """A problem with what the user gave (a path, an option, a file): say what, and how to fix it."""

    exit_code = 1


def cause(error: BaseException, limit: int = 120) -> str:
    """An exception's message squeezed onto one line and cut at a word (its type's name when it has none), for
    an RnnkitError that names its cause."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0]
    return cut + "..."


def is_whole(value: Any) -> bool:
    """Whether ``value`` is an integer (Python, numpy or 0-d torch), not a float or a bool: checked before
    it sizes a tensor or a window, where a float fails deep in numpy or torch."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


class TrainingDiverged(RnnkitError):
    """The loss, gradients or validation metrics stayed non-finite; ``result`` is the run's ``TrainResult``."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class RunFinished(RnnkitError):
    """A run asked to continue has already trained for its whole budget."""

    @classmethod
    def of(cls, run: object) -> "RunFinished":
        return cls(f"{run} already finished its budget; give a larger --max-time, --max-steps or --epochs to continue")


class TrainingStopped(RnnkitError):
    """Training was stopped by a signal (Ctrl-C: exit 130, SIGTERM: exit 143) after saving ``last.pt``.

    The message says where the run was saved and the command that continues it.
    """

    def __init__(self, message: str, signal_name: str = "interrupted") -> None:
        super().__init__(message)
        self.exit_code = 143 if signal_name == "terminated" else 130
