"""Running a command over many images: a bad image is reported and skipped, the rest go on.

Each image is all or nothing: its outputs are computed first and written only when all of them
succeeded, so a failure leaves no partial results. At the end, a run with failures exits with
status 2 and a summary. With a single input there is nothing to continue with: its error is the
one-line error of the command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from flowsr.cli.console import progress
from flowsr.cli.errors import BatchFailed, CLIError, one_line

__all__ = ["Batch", "ITEM_ERRORS", "describe"]

T = TypeVar("T")

#: Errors that concern one image (unreadable, wrong size, the model overflowed, out of memory for
#: this size, ...). Others (a full disk, a bug) stop the run.
ITEM_ERRORS: tuple[type[BaseException], ...] = (CLIError, ValueError, FloatingPointError, MemoryError, RuntimeError)


def describe(err: BaseException) -> str:
    """One line for a failed image."""
    return one_line(err)


class Batch:
    """``Batch(items, label).run(fn)`` calls ``fn(item)`` for every item (with a progress bar),
    reporting failures as they happen (``flowsr: error: ...`` on stderr) and continuing."""

    def __init__(self, items: Sequence[T], label: Callable[[T], str], what: str = "image") -> None:
        self.items, self.label, self.what = list(items), label, what
        self.failed: list[tuple[str, str]] = []

    def run(self, fn: Callable[[T], None]) -> None:
        single = len(self.items) == 1
        for item in progress(self.items, desc=f"{self.what}s", unit=self.what):
            try:
                fn(item)
            except ITEM_ERRORS as err:
                label = self.label(item)
                message = describe(err)
                if label not in message:  # say which image, once
                    message = f"{label}: {message}"
                if single:
                    raise CLIError(message) from err
                self.failed.append((label, message))
                print(f"flowsr: error: {message} (skipped; continuing with the other {self.what}s)", file=sys.stderr)

    def finish(self) -> None:
        """``BatchFailed`` with a summary when any item failed."""
        if self.failed:
            n, total = len(self.failed), len(self.items)
            names = ", ".join(name for name, _ in self.failed[:5]) + (", ..." if n > 5 else "")
            raise BatchFailed(
                f"{n} of {total} {self.what}s failed ({names}); the other {total - n} were processed "
                "and nothing was written for the failed ones"
            )
