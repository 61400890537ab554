"""The exceptions rnnkit raises for the user; the CLI prints them as one line and exits non-zero."""


class RnnkitError(Exception):
    """A problem with what the user gave (a path, an option, a file): say what, and how to fix it."""

    exit_code = 1


class TrainingStopped(RnnkitError):
    """Training was stopped by a signal (Ctrl-C: exit 130, SIGTERM: exit 143) after saving ``last.pt``.

    The message says where the run was saved and the command that continues it.
    """

    def __init__(self, message: str, signal_name: str = "interrupted") -> None:
        super().__init__(message)
        self.exit_code = 143 if signal_name == "terminated" else 130
