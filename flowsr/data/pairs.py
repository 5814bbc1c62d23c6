"""Pairing HR images with their LR files: the one rule, for evaluation (``flowsr test``) and training.

An HR image ``<stem>.<ext>`` is paired with the LR file named ``<stem>`` or ``<stem>x<scale>`` (any
image extension) in the LR folder. The second form is how DIV2K and BasicSR name LR files
(``0801x4.png``, Set5's ``babyx4.png``); the plain stem wins when both exist. Only file names are
looked at here: nothing is read or decoded, so a caller can plan its work (and report a bad file
without losing the others) before touching pixels.

    pairs = pair_folders("data/HR", "data/LR", scale=4)   # [ImagePair(name, hr, lr or None), ...]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flowsr.data.image_files import list_images

__all__ = ["ImagePair", "images_by_stem", "lr_stems", "match_lr", "pair_folders"]


@dataclass(frozen=True)
class ImagePair:
    """One HR image and its LR file (``None``: no LR file; a caller makes the LR, e.g. bicubic)."""

    name: str
    hr: Path
    lr: Path | None = None


def lr_stems(stem: str, scale: int) -> tuple[str, str]:
    """The LR file stems that pair with the HR stem ``stem`` at ``scale``, preferred first."""
    return stem, f"{stem}x{int(scale)}"


def images_by_stem(folder: str | os.PathLike) -> dict[str, Path]:
    """``{stem: path}`` of the image files in ``folder`` (:func:`flowsr.data.list_images`: the one
    list of image extensions, not recursive, hidden files skipped).

    Raises ``ValueError`` when ``folder`` is not a folder or two images share a stem (``a.png`` and
    ``a.jpg``: which one is meant is a guess this function does not make).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    found: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in found:
            raise ValueError(f"{folder} has two images named {p.stem!r} ({found[p.stem].name} and {p.name})")
        found[p.stem] = p
    return found


def match_lr(stem: str, lr_by_stem: Mapping[str, Path], scale: int) -> Path | None:
    """The LR file of the HR stem ``stem`` among ``lr_by_stem`` (see :func:`lr_stems`), or ``None``."""
    for candidate in lr_stems(stem, scale):
        if candidate in lr_by_stem:
            return lr_by_stem[candidate]
    return None


def pair_folders(hr_dir: str | os.PathLike, lr_dir: str | os.PathLike | None, scale: int) -> list[ImagePair]:
    """Every image of ``hr_dir`` (sorted by stem) with its LR file from ``lr_dir`` if there is one.

    ``lr_dir=None``: every ``lr`` is ``None``. Errors as :func:`images_by_stem`.
    """
    hrs = images_by_stem(hr_dir)
    lrs = images_by_stem(lr_dir) if lr_dir is not None else {}
    return [ImagePair(stem, path, match_lr(stem, lrs, scale)) for stem, path in sorted(hrs.items())]
