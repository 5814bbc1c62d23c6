"""The errors the command line reports to the user, and how an exception becomes one line."""

from __future__ import annotations

__all__ = ["BatchFailed", "CLIError", "UsageError", "one_line"]


class CLIError(Exception):
    """A user-facing error: printed as one line ``flowsr: error: <message>``, exit status 2."""


class UsageError(CLIError):
    """A bad command line (argparse's errors, reported like every other error)."""


class BatchFailed(CLIError):
    """Some inputs of a batch failed (each was reported when it failed); the message is the summary."""


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line, with a hint where the cause is known to have a remedy."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        text = f"out of memory ({text}); try --tile 128 (or smaller)"
    return text
