"""What the command line prints: results on stdout, warnings and progress bars on stderr.

* :func:`say` prints a line of results; when stdout is a pipe that closed (``flowsr ... | head``),
  the rest of the output is dropped quietly and the work goes on (a ``BrokenPipeError`` must
  neither abort a batch half-way nor print a traceback).
* :func:`warn` prints ``flowsr: warning: ...`` on stderr.
* :func:`progress` / :class:`TileProgress`: tqdm bars over images and over tiles, shown only when
  stderr is a terminal (logs and tests stay clean).
* :class:`NoteLog`: conversions applied to images (EXIF rotation, alpha, grey, 16 bit), each kind
  printed once in full and counted after that.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["NoteLog", "TileProgress", "progress", "say", "stdout_closed", "warn"]

T = TypeVar("T")
_closed = False


def stdout_closed() -> bool:
    """Whether the reader of stdout went away (the rest of the output is being dropped)."""
    return _closed


def _drop_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it once more at exit, which would raise again."""
    global _closed
    _closed = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured by a test)
        pass


def handle_broken_pipe() -> None:
    """Called when a ``BrokenPipeError`` reached the top: drop the rest of stdout quietly."""
    _drop_stdout()


def say(*parts: Any, sep: str = " ", end: str = "\n") -> None:
    """``print`` to stdout, flushed; silent once stdout's reader has gone (see the module docstring)."""
    if _closed:
        return
    try:
        print(*parts, sep=sep, end=end, file=sys.stdout, flush=True)
    except BrokenPipeError:
        _drop_stdout()


def warn(message: str) -> None:
    """``flowsr: warning: <message>`` on stderr (one line)."""
    try:
        print(f"flowsr: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    except BrokenPipeError:  # pragma: no cover - nobody is reading stderr either
        pass


def _tqdm(**kwargs):
    from tqdm.auto import tqdm  # imported when a bar is made: not for --help

    # disable=None: no bar unless stderr is a terminal
    return tqdm(file=sys.stderr, disable=None, dynamic_ncols=True, **kwargs)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "image") -> Iterator[T]:
    """``items`` with a progress bar (when more than one item and stderr is a terminal)."""
    items = list(items) if total is None else items
    total = len(items) if total is None else total  # type: ignore[arg-type]
    if total <= 1:
        yield from items
        return
    bar = _tqdm(total=total, desc=desc, unit=unit)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


class TileProgress:
    """A bar over the tiles of one image: pass the instance as ``progress=`` to the inference helpers
    (they call it with ``(done, total)``); nothing is shown for an image that fits in one tile."""

    def __init__(self, desc: str = "tiles") -> None:
        self.desc, self._bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        if total <= 1:
            return
        if self._bar is None:
            self._bar = _tqdm(total=total, desc=self.desc, unit="tile", leave=False)
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class NoteLog:
    """Prints each kind of image conversion once (the first image's message) and counts the rest.

    Notes are objects with ``kind`` and ``str(note)`` (:class:`flowsr.data.Note`).
    """

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()

    def add(self, notes: Iterable[Any]) -> None:
        for note in notes:
            kind = getattr(note, "kind", str(note))
            if self._seen[kind] == 0:
                say(f"note: {note}")
            self._seen[kind] += 1

    def summary(self) -> None:
        """One line for the kinds that occurred more than once (printed once above)."""
        again = {k: n - 1 for k, n in self._seen.items() if n > 1}
        if again:
            say("note: the same for " + ", ".join(f"{n} more ({k})" for k, n in sorted(again.items())))
