"""Image files for the image-to-image commands: read as they look, written as the same kind of file.

With ``flowsr.data.load_image`` / ``save_image`` (the IO redesign of issue 13) the EXIF orientation
is applied, alpha is kept, grey stays grey and 16 bit stays 16 bit, and every conversion comes
back as a note. A flowsr without them reads RGB with ``read_image`` and writes 8-bit RGB: this
module is the one place that knows the difference.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsr.cli.errors import CLIError

__all__ = ["Image", "IMAGE_EXTENSIONS", "list_folder", "read", "write"]

#: The image extensions a folder is scanned for (``flowsr.data.IMAGE_EXTENSIONS`` when it exists).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass
class Image:
    """An input image: ``rgb`` ``(3, H, W)`` floats for the model, ``like`` what the writer needs to
    give the output the input's kind (alpha, grey, bit depth), ``notes`` the conversions made."""

    path: Path
    rgb: Any
    like: Any = None
    notes: list = field(default_factory=list)


def _io():
    import flowsr.data as data

    return data if hasattr(data, "load_image") else None


def extensions() -> tuple[str, ...]:
    data = _io()
    return tuple(data.IMAGE_EXTENSIONS) if data is not None else IMAGE_EXTENSIONS


def list_folder(folder: Path) -> list[Path]:
    """Image files of ``folder`` (not recursive; hidden files and non-regular files skipped), by name."""
    exts = extensions()
    out = []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if p.name.startswith(".") or p.suffix.lower() not in exts:
            continue
        try:
            if stat.S_ISREG(p.stat().st_mode):
                out.append(p)
        except OSError:  # a broken link: reported when read, if named explicitly
            continue
    return out


def _strip(msg: str) -> str:
    return msg[len("read_image: ") :] if msg.startswith("read_image: ") else msg


def read(path: Path) -> Image:
    """Read ``path`` (``CLIError`` with the reader's one-line reason when it cannot be read)."""
    data = _io()
    try:
        if data is not None:
            img = data.load_image(path)
            return Image(path, img.rgb, img, list(img.notes))
        from flowsr.data import read_image

        return Image(path, read_image(path))
    except ValueError as err:
        raise CLIError(_strip(str(err))) from None


def write(path: Path, tensor: Any, like: Image | None) -> list:
    """Write ``tensor`` ``(3, H, W)`` to ``path`` as the same kind of file as ``like``; returns notes
    about what the output format could not keep."""
    data = _io()
    if data is not None:
        return list(data.save_image(path, tensor, like.like if like is not None else None))
    from flowsr.data import write_image

    write_image(path, tensor)
    return []
