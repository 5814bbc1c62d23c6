"""Output planning: every file a command will write is named and checked before any work starts.

Guarantees (docs/cli.md):

* **an input is never written**: a planned output that is an input (same path, or the same file
  through a link or a case-insensitive file system) is an error, ``--overwrite`` or not. Files of
  an input folder that were skipped because they look like earlier outputs count as inputs too:
  flowsr cannot tell them from a user's own file of that name;
* **nothing is overwritten without --overwrite**: existing outputs are listed and refused;
* two planned outputs never share a name;
* ``--out`` is checked: a file where a folder is needed is named as such; ``-o name.png`` with one
  input and one output writes exactly that file.

Names are ``<stem>[_<suffix>]_<tag>.<ext>`` (the tag says what the file is: ``t0.8_s0``, ``lr``, ``rec``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowsr.cli.errors import CLIError

__all__ = ["Output", "OutputTarget", "check", "check_suffix", "name", "target"]

_SUFFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+=-]*(?:_[A-Za-z0-9.+=-]+)*")


@dataclass(frozen=True)
class Output:
    """One planned file: where it goes and which input it comes from (``None``: a report)."""

    path: Path
    source: Path | None = None


@dataclass(frozen=True)
class OutputTarget:
    """``--out`` understood: a folder, or (``file`` set) the one file to write."""

    folder: Path
    file: Path | None = None


def check_suffix(suffix: str) -> str:
    """``--suffix`` as given, if it is safe in a file name (letters, digits, ``. + = -``, inner ``_``)."""
    if suffix and not _SUFFIX.fullmatch(suffix):
        raise CLIError(f"--suffix {suffix!r}: use letters, digits and . + = - (and _ inside), e.g. --suffix tiled")
    return suffix


def name(stem: str, tag: str, suffix: str, ext: str) -> str:
    """``<stem>[_<suffix>]_<tag>.<ext>``."""
    return f"{stem}{'_' + suffix if suffix else ''}_{tag}.{ext.lstrip('.')}"


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be (created as) a folder, or ``None``."""
    for p in (folder, *folder.parents):
        if p.exists() or os.path.islink(p):
            if p.is_dir():
                return None
            if p == folder:
                return f"--out {folder} is a file, not a folder"
            return f"--out {folder}: {p} is a file, not a folder"
    return None


def target(out: str, image_extensions: Iterable[str], n_outputs: int, what: str) -> OutputTarget:
    """Read ``--out``: a file name (an image extension, not an existing folder) when exactly one output
    is planned, else a folder. ``what`` describes the outputs for the error message."""
    path = Path(out)
    if path.suffix.lower() in tuple(image_extensions) and not path.is_dir():
        if n_outputs != 1:
            raise CLIError(
                f"-o {out} names one file, but this run writes {n_outputs} files ({what}); "
                "give a folder, or one input with one output"
            )
        problem = _folder_problem(path.parent)
        if problem:
            raise CLIError(problem.replace(f"--out {path.parent}", f"--out {out}"))
        if path.is_dir():  # pragma: no cover - excluded above
            raise CLIError(f"--out {out} is a folder")
        return OutputTarget(path.parent, path)
    problem = _folder_problem(path)
    if problem:
        raise CLIError(problem)
    return OutputTarget(path)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check(outputs: Sequence[Output], inputs: Sequence[Path], overwrite: bool, protected: Sequence[Path] = ()) -> None:
    """Refuse a plan that would write an input (or a ``protected`` file: one skipped in an input
    folder), write one file twice, or (without ``overwrite``) replace an existing file. Called
    before any work; see the module docstring."""
    by_path: dict[Path, Output] = {}
    for out in outputs:
        key = Path(os.path.abspath(out.path))
        if key in by_path:
            a, b = by_path[key].source, out.source
            raise CLIError(
                f"two outputs would be named {out.path}"
                + (f" (from {a} and {b})" if a and b and a != b else "")
                + "; rename one input or use --suffix"
            )
        by_path[key] = out
    everything = [*inputs, *protected]
    skipped = {Path(os.path.abspath(p)) for p in protected}
    input_paths = {Path(os.path.abspath(p)): p for p in everything}
    input_ids = {i: p for p in everything if (i := _identity(Path(p))) is not None}
    existing = []
    for key, out in by_path.items():
        hit = input_paths.get(key) or input_paths.get(Path(os.path.realpath(key)))
        ident = _identity(key)
        if hit is None and ident is not None:
            hit = input_ids.get(ident)
        if hit is not None and Path(os.path.abspath(hit)) in skipped:
            raise CLIError(
                f"the output {out.path} would replace {hit}, a file of the input folder (skipped as it looks like "
                "an earlier output); flowsr never writes into its inputs: remove it first, or choose another "
                "--out or a --suffix"
            )
        if hit is not None:
            raise CLIError(
                f"the output {out.path} would overwrite the input {hit}; inputs are never written: "
                "choose another --out or a --suffix"
            )
        if key.is_dir():
            raise CLIError(f"the output {out.path} is an existing folder")
        if ident is not None or os.path.islink(key):
            existing.append(out.path)
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise CLIError(
            f"{len(existing)} output file(s) exist already ({shown}); add --overwrite to replace them, "
            "or choose another --out or --suffix"
        )
