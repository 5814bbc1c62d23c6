"""Image files for the image-to-image commands: read as they look, written as the same kind of file.

``flowsr.data.load_image`` applies the EXIF orientation and keeps what the writer needs (alpha, grey,
bit depth, colour profile); ``save_image(..., like=)`` gives the output the input's kind. Every
conversion comes back as a note. ``flowsr.data`` imports torch, so it is imported when an image is
read or listed, not when the parser is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsr.cli.errors import CLIError

__all__ = ["Image", "extensions", "list_folder", "read", "write"]


@dataclass
class Image:
    """An input image: ``rgb`` ``(3, H, W)`` floats for the model, ``like`` what the writer needs to
    give the output the input's kind (alpha, grey, bit depth), ``notes`` the conversions made."""

    path: Path
    rgb: Any
    like: Any = None
    notes: list = field(default_factory=list)


def extensions() -> tuple[str, ...]:
    """The image extensions (``flowsr.data.IMAGE_EXTENSIONS``: one list for files and folders)."""
    from flowsr.data import IMAGE_EXTENSIONS

    return tuple(IMAGE_EXTENSIONS)


def list_folder(folder: Path) -> list[Path]:
    """Image files of ``folder`` (``flowsr.data.list_images``: not recursive, hidden files skipped)."""
    from flowsr.data import list_images

    return list_images(folder)


def read(path: Path) -> Image:
    """Read ``path`` (``CLIError`` with the reader's one-line reason when it cannot be read)."""
    from flowsr.data import load_image

    try:
        img = load_image(path)
    except ValueError as err:
        msg = str(err)
        raise CLIError(msg.removeprefix("read_image: ")) from None
    return Image(path, img.rgb, img, list(img.notes))


def write(path: Path, tensor: Any, like: Image | None) -> list:
    """Write ``tensor`` ``(3, H, W)`` to ``path`` as the same kind of file as ``like``; returns notes
    about what the output format could not keep."""
    from flowsr.data import save_image

    return list(save_image(path, tensor, like.like if like is not None else None))
