"""Writing images: float tensors in ``[0, 1]`` -> files, the format following the extension.

:func:`write_image` is the low level (you say the bit depth and give the alpha); :func:`save_image`
writes a result the way its input was (:class:`~flowsr.data.image_io.LoadedImage`: grey again,
alpha resized and re-attached, 16 bits where the format holds them) and returns the
:class:`~flowsr.data.image_io.Note` s of what the output format could not keep.
:data:`WRITE_FORMATS` says what each output extension can hold. JPEG and WebP default to
``quality=95``. Floats are clamped to ``[0, 1]`` and rounded (8 bit: ``to_uint8``; 16 bit:
``round(x * 65535)``); an image with NaN or Inf is refused with a message naming the file, and
nothing is written. Files are written atomically (:func:`flowsr.fileio.atomic_write`).
"""


from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flowsr.data._png16 import encode_png
from flowsr.data._tiff16 import encode_tiff
from flowsr.data.image_io import LoadedImage, Note, from_uint8, resize_alpha, to_grey, to_uint8
from flowsr.fileio import atomic_write

__all__ = ["WRITE_FORMATS", "WriteFormat", "save_image", "write_image"]

# ------------------------------------------------------------------------------------------ writing


@dataclass(frozen=True)
class WriteFormat:
    """What an output extension can hold: Pillow format name, 16-bit samples, an alpha channel."""

    pillow: str
    bits16: bool
    alpha: bool
    name: str


#: Output extensions and what they can hold (16-bit: PNG and TIFF; alpha: PNG, TIFF, WebP).
WRITE_FORMATS: dict[str, WriteFormat] = {
    ".png": WriteFormat("PNG", True, True, "PNG"),
    ".tif": WriteFormat("TIFF", True, True, "TIFF"),
    ".tiff": WriteFormat("TIFF", True, True, "TIFF"),
    ".webp": WriteFormat("WEBP", False, True, "WebP"),
    ".jpg": WriteFormat("JPEG", False, False, "JPEG"),
    ".jpeg": WriteFormat("JPEG", False, False, "JPEG"),
    ".bmp": WriteFormat("BMP", False, False, "BMP"),
    ".gif": WriteFormat("GIF", False, False, "GIF"),
    ".ppm": WriteFormat("PPM", False, False, "PPM"),
    ".pgm": WriteFormat("PPM", False, False, "PGM"),
    ".pnm": WriteFormat("PPM", False, False, "PNM"),
}


def _write_format(path: Path, fn: str) -> WriteFormat:
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{fn}: cannot write '{path}': unknown image extension {path.suffix!r}; "
            f"use one of {', '.join(WRITE_FORMATS)}"
        )
    return fmt


def _as_chw(tensor, what: str, path: Path, fn: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{fn}: expected a torch.Tensor {what}, got {type(tensor).__name__}")
    t = tensor.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        shape = tuple(tensor.shape)
        raise ValueError(f"{fn}: expected shape (3, H, W), (1, H, W) or (H, W) for the {what}, got {shape}")
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise ValueError(f"{fn}: expected a floating or uint8 {what}, got {t.dtype}")
    if t.is_floating_point():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(
                f"{fn}: cannot write '{path}': the {what} contains NaN or Inf ({bad} of {t.numel()} values); "
                "nothing was written"
            )
    return t.cpu()


def _quantise(t: torch.Tensor, bits: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, C)`` uint8 / uint16 samples (floats clamped and rounded)."""
    if bits == 8:
        return to_uint8(t).permute(1, 2, 0).numpy()
    if t.dtype == torch.uint8:
        return (t.to(torch.int32) * 257).permute(1, 2, 0).numpy().astype(np.uint16)  # 255 -> 65535 exactly
    q = torch.round(t.to(torch.float64).clamp(0.0, 1.0) * 65535.0)
    return q.permute(1, 2, 0).numpy().astype(np.uint16)


def write_image(
    path: str | os.PathLike,
    tensor: torch.Tensor,
    *,
    bit_depth: int = 8,
    alpha: torch.Tensor | None = None,
    icc_profile: bytes | None = None,
    **save_kwargs,
) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, H, W)`` / ``(H, W)`` grey) image in ``[0, 1]`` to ``path``.

    The format comes from the extension (:data:`WRITE_FORMATS`). Floats are clamped to ``[0, 1]`` and
    rounded (8 bit: :func:`to_uint8`; 16 bit: ``round(x * 65535)``); ``uint8`` tensors are written as
    they are. ``bit_depth=16`` needs PNG or TIFF; ``alpha`` (``(1, H, W)`` / ``(H, W)``, same size)
    needs PNG, TIFF or WebP: otherwise ``ValueError`` (:func:`save_image` falls back instead, with a
    note). ``icc_profile`` is embedded (PNG, JPEG, WebP, TIFF). ``save_kwargs`` go to
    ``PIL.Image.save`` for 8-bit files (JPEG and WebP default to ``quality=95``). NaN or Inf:
    ``ValueError`` naming the file, nothing written. Written atomically. Returns the path.
    """
    path = Path(path)
    fmt = _write_format(path, "write_image")
    img = _as_chw(tensor, "image", path, "write_image")
    if bit_depth not in (8, 16):
        raise ValueError(f"write_image: bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and not fmt.bits16:
        raise ValueError(f"write_image: cannot write '{path}': {fmt.name} holds 8 bits per channel; use .png or .tif")
    if alpha is not None:
        if not fmt.alpha:
            raise ValueError(
                f"write_image: cannot write '{path}': {fmt.name} has no alpha channel; use .png, .tif or .webp"
            )
        a = _as_chw(alpha, "alpha", path, "write_image")
        if a.shape[0] != 1 or a.shape[-2:] != img.shape[-2:]:
            raise ValueError(
                f"write_image: the alpha plane has shape {tuple(alpha.shape)}, the image {tuple(img.shape)}; "
                "bring it to the image size with resize_alpha"
            )
        if a.dtype != img.dtype:  # quantise both the same way
            a = a.to(torch.float32) / 255.0 if a.dtype == torch.uint8 else a
            img = img.to(torch.float32) / 255.0 if img.dtype == torch.uint8 else img
        img = torch.cat([img, a.to(img.dtype)], dim=0)
    arr = _quantise(img, bit_depth)
    if bit_depth == 16 or (fmt.pillow == "TIFF" and arr.shape[-1] == 2):
        # Pillow writes no 16-bit colour (nor 16-bit grey+alpha, nor grey+alpha TIFF): flowsr's encoders.
        if fmt.pillow == "PNG":
            data = encode_png(arr, icc_profile=icc_profile)
        else:
            data = encode_tiff(arr, icc_profile=icc_profile)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return path
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    kwargs = dict(save_kwargs)
    if fmt.pillow in ("JPEG", "WEBP"):
        kwargs.setdefault("quality", 95)
    if fmt.pillow == "WEBP" and alpha is not None:
        kwargs.setdefault("exact", True)  # libwebp would otherwise discard the colours under alpha = 0
    if icc_profile and fmt.pillow in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs.setdefault("icc_profile", icc_profile)
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt.pillow, **kwargs))
    return path


def save_image(
    path: str | os.PathLike,
    tensor: torch.Tensor,
    like: LoadedImage | None = None,
    *,
    alpha: torch.Tensor | None = None,
    bit_depth: int | None = None,
    grey: bool | None = None,
    **save_kwargs,
) -> list[Note]:
    """Write a tool's result as the same kind of file as its input ``like`` (a :class:`LoadedImage`).

    * grey input (``like.grey``): the result is written grey (:func:`to_grey`, luma);
    * alpha (``like.alpha``): resized to the result's size with :func:`resize_alpha` and attached;
      formats without alpha (JPEG, BMP, GIF, PPM) drop it;
    * 16-bit input: written with 16 bits per channel to PNG / TIFF; other formats get 8 bits;
    * the colour profile of ``like`` is embedded.

    ``alpha``, ``bit_depth`` and ``grey`` override what ``like`` says (without ``like``: no alpha,
    8 bits, grey only for a one-channel tensor). Returns the :class:`Note` s about what the output
    format could not keep (empty when it kept everything). Errors as :func:`write_image`.
    """
    path = Path(path)
    fmt = _write_format(path, "save_image")
    img = _as_chw(tensor, "image", path, "save_image")
    if img.dtype == torch.uint8:
        img = from_uint8(img)
    notes: list[Note] = []
    name = path.name
    if grey is None:
        grey = like.grey if like is not None else img.shape[0] == 1
    if grey:
        img = to_grey(img)
    elif img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    if alpha is None and like is not None and like.alpha is not None:
        alpha = resize_alpha(like.alpha.to(torch.float32), img.shape[-2:])
    if alpha is not None and not fmt.alpha:
        notes.append(Note("alpha_dropped", f"{name}: {fmt.name} has no alpha channel: the alpha plane was dropped"))
        alpha = None
    if bit_depth is None:
        bit_depth = like.bit_depth if like is not None else 8
    if bit_depth == 16 and not fmt.bits16:
        notes.append(Note("8bit", f"{name}: {fmt.name} holds 8 bits per channel: the 16-bit result was rounded to 8"))
        bit_depth = 8
    if fmt.pillow == "GIF":
        notes.append(Note("quantised", f"{name}: GIF holds at most 256 colours: the result was quantised"))
    icc = like.icc_profile if like is not None else None
    write_image(path, img, bit_depth=bit_depth, alpha=alpha, icc_profile=icc, **save_kwargs)
    return notes
