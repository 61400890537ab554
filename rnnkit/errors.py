"""The one exception rnnkit raises for bad input; the CLI prints it as a one-line error."""


class RnnkitError(Exception):
    """A problem with what the user gave (a path, an option, a file): say what, and how to fix it."""
