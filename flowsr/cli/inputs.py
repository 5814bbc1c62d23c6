"""The input images of a command: files and folders from the command line, checked before any work.

A folder means its image files (not recursive, hidden files skipped). In a folder, a file named
like an output of another input of the same run (``x_t0.8_s0.png`` beside ``x.png`` for ``sr``,
``x_lr.png`` / ``x_rec.png`` for ``rescale``) is taken for an earlier output of flowsr and skipped,
with a message: running ``flowsr sr dir -o dir`` twice must not process its own results. A file
named explicitly is always an input.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowsr.cli import images
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError

__all__ = ["Inputs", "collect", "path_problem"]


@dataclass
class Inputs:
    """``files``: the inputs, in order; ``skipped``: folder entries taken for flowsr's own outputs."""

    files: list[Path]
    skipped: list[Path]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device")):
        if test(mode):
            return name
    return "a device" if stat.S_ISBLK(mode) else "not a regular file"


def path_problem(path: str | os.PathLike, want: str = "file") -> str | None:
    """Why ``path`` is not an existing regular file (``want="file"``) or folder (``"folder"``), in
    words (``"does not exist"``, ``"is a FIFO"``, ``"is a folder"``, ...), or ``None`` when it is."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "does not exist (a broken symbolic link)" if os.path.islink(p) else "does not exist"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if want == "folder":
        return (
            None if stat.S_ISDIR(mode) else ("is a file, not a folder" if stat.S_ISREG(mode) else f"is {_kind(mode)}")
        )
    if stat.S_ISREG(mode):
        return None
    return "is a folder, not a file" if stat.S_ISDIR(mode) else f"is {_kind(mode)}, not a regular file"


def _expand(item: str) -> tuple[list[Path], bool]:
    """The files an argument names and whether it was a folder."""
    p = Path(item)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if os.path.islink(p) else ""
        raise CLIError(f"no such file or folder: {item}{broken}") from None
    except OSError as err:
        raise CLIError(f"cannot read {item}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        try:
            found = images.list_folder(p)
        except PermissionError:
            raise CLIError(f"cannot list folder {item}: permission denied") from None
        if not found:
            raise CLIError(f"no images ({', '.join(images.extensions())}) in folder {item}")
        return found, True
    if stat.S_ISREG(mode):
        return [p], False
    raise CLIError(f"{item} is {_kind(mode)}, not an image file")


def collect(arguments: Sequence[str], output_tag: str | None = None) -> Inputs:
    """The input files of ``arguments``; ``output_tag``: a regular expression of the part an output
    name adds after ``<stem>_`` (see the module docstring), e.g. ``t[0-9.e+-]+_s\\d+``."""
    files: list[Path] = []
    from_folder: set[Path] = set()
    for item in arguments:
        found, folder = _expand(item)
        files.extend(found)
        if folder:
            from_folder.update(found)
    seen: set[Path] = set()
    unique = []
    for f in files:  # the same file named twice (a file and its folder) is one input
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    files = unique
    skipped: list[Path] = []
    if output_tag:
        stems = {f.stem for f in files}
        pattern = re.compile(rf"_(?:.+_)?(?:{output_tag})")
        for f in files:
            if f in from_folder and any(
                s != f.stem and f.stem.startswith(s) and pattern.fullmatch(f.stem[len(s) :]) for s in stems
            ):
                skipped.append(f)
        files = [f for f in files if f not in skipped]
        if skipped:
            shown = ", ".join(f.name for f in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            say(
                f"skipping {len(skipped)} file(s) named like outputs of the other inputs ({shown}); "
                "name a file explicitly to process it"
            )
        if not files:
            raise CLIError("every image in the input folder(s) looks like a flowsr output; name the inputs explicitly")
    return Inputs(files, skipped)
