"""Which files are images, and how large an image flowsr agrees to decode.

:data:`IMAGE_EXTENSIONS` is the one list of file extensions flowsr treats as images (single files
and folders alike: :func:`is_image_file`, :func:`list_images`).

The pixel limit (:func:`get_max_pixels`; default :data:`DEFAULT_MAX_PIXELS` = 89,478,485, Pillow's
default ``MAX_IMAGE_PIXELS``) is checked by every reader of :mod:`flowsr.data.image_io` on the size a
file *declares*, before any pixel is decoded, so a small file declaring a huge image (a
decompression bomb) is refused without allocating it. Raise it with the environment variable
``FLOWSR_MAX_PIXELS=<pixels>`` (``0``: no limit) or :func:`set_max_pixels`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "get_max_pixels",
    "is_image_file",
    "list_images",
    "reset_max_pixels",
    "set_max_pixels",
]

#: File extensions flowsr reads as images (lower case, with the dot), for single files and folders.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".pnm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

#: Pillow's default ``Image.MAX_IMAGE_PIXELS`` (``1024**3 // 4 // 3``): flowsr's default pixel limit.
DEFAULT_MAX_PIXELS = 89_478_485
#: The environment variable that sets the pixel limit (a positive integer; ``0`` = no limit).
MAX_PIXELS_ENV = "FLOWSR_MAX_PIXELS"

_UNSET = object()
_max_pixels_override: object = _UNSET


# ----------------------------------------------------------------------------------- pixel limit


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit of every image reader in this process (overrides ``FLOWSR_MAX_PIXELS``).

    ``limit``: the largest ``width * height`` accepted; ``None`` or ``0``: no limit. If the limit is
    above Pillow's own ``Image.MAX_IMAGE_PIXELS``, Pillow's is raised to match when an image is read
    (Pillow would otherwise refuse what flowsr allows). :func:`reset_max_pixels` undoes the override.
    """
    global _max_pixels_override
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"set_max_pixels: expected a non-negative integer or None, got {limit!r}")
    _max_pixels_override = limit or None


def reset_max_pixels() -> None:
    """Forget :func:`set_max_pixels`: ``FLOWSR_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS` apply again."""
    global _max_pixels_override
    _max_pixels_override = _UNSET


def get_max_pixels() -> int | None:
    """The pixel limit in force: :func:`set_max_pixels`, else ``$FLOWSR_MAX_PIXELS``, else the default.

    ``None`` means no limit. A malformed ``FLOWSR_MAX_PIXELS`` raises ``ValueError`` (a typo must not
    silently switch the guard off).
    """
    if _max_pixels_override is not _UNSET:
        return _max_pixels_override  # type: ignore[return-value]
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if text.lower() in ("0", "none", "off", "unlimited"):
        return None
    if not text.isdigit():
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive number of pixels or 0 (no limit), got {text!r}")
    return int(text)


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path``'s extension is one of :data:`IMAGE_EXTENSIONS` (the file is not opened)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files in ``folder`` (not recursive), sorted by name: regular files with an extension
    in :data:`IMAGE_EXTENSIONS`; hidden files (``.name``, e.g. macOS ``._x.png``) are skipped."""
    folder = Path(folder)
    return sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".") and is_image_file(p) and p.is_file()),
        key=lambda p: p.name,
    )
