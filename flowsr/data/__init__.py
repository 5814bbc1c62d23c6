"""Images in and out, MATLAB-compatible bicubic resizing, and the bundled sample images.

* :func:`read_image` / :func:`write_image`: files <-> ``(3, H, W)`` float32 RGB tensors in [0, 1];
  :func:`to_uint8` / :func:`from_uint8` for the 8-bit quantisation used by the metrics.
* :func:`imresize`: MATLAB ``imresize(..., 'bicubic')`` (antialiased, symmetric border), the way
  the benchmark LR images are made; ``uint8`` in -> ``uint8`` out like MATLAB, floats in -> floats out.
* :func:`sample_images`: the example HR/LR pairs installed with the package (``samples/``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from flowsr.data.image_io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV,
    WRITE_FORMATS,
    LoadedImage,
    Note,
    from_uint8,
    get_max_pixels,
    is_image_file,
    list_images,
    load_image,
    read_image,
    reset_max_pixels,
    resize_alpha,
    save_image,
    set_max_pixels,
    to_grey,
    to_uint8,
    write_image,
)
from flowsr.data.resize import imresize, resize_weights

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "SAMPLE_KINDS",
    "WRITE_FORMATS",
    "LoadedImage",
    "Note",
    "from_uint8",
    "get_max_pixels",
    "imresize",
    "is_image_file",
    "list_images",
    "load_image",
    "read_image",
    "reset_max_pixels",
    "resize_alpha",
    "resize_weights",
    "sample_images",
    "save_image",
    "set_max_pixels",
    "to_grey",
    "to_uint8",
    "write_image",
]

#: Sample sets in ``flowsr/data/samples`` and their SR scale factor.
SAMPLE_KINDS: dict[str, int] = {"face_x8": 8, "general_x4": 4}


def sample_images(kind: str) -> list[tuple[str, Path, Path]]:
    """The bundled example pairs of one set: ``[(name, hr_path, lr_path), ...]`` sorted by name.

    ``kind`` is ``"face_x8"`` (six 160 px CelebA-HQ faces, LR 20 px) or ``"general_x4"`` (Set5
    butterfly, 256 px, LR 64 px); :data:`SAMPLE_KINDS` gives the scale of each. Names are file
    stems (``"16"``, ``"butterfly"``). The paths are real files of the installed package.
    """
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"sample_images: unknown kind {kind!r}; expected one of {sorted(SAMPLE_KINDS)}")
    root = files("flowsr.data").joinpath("samples", kind)
    hr_dir, lr_dir = Path(str(root.joinpath("HR"))), Path(str(root.joinpath("LR")))
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise FileNotFoundError(
            f"sample_images: {hr_dir} or {lr_dir} is missing; the package data was not installed "
            "(a zipped install is not supported: install flowsr unpacked, as pip does)"
        )
    pairs = []
    for hr in sorted(hr_dir.glob("*.png"), key=lambda p: p.name):
        lr = lr_dir / hr.name
        if not lr.is_file():
            raise FileNotFoundError(f"sample_images: no LR image {lr} for {hr}")
        pairs.append((hr.stem, hr, lr))
    return pairs
