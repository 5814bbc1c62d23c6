"""Reading and writing images as ``(3, H, W)`` float32 RGB tensors in ``[0, 1]``.

``read_image`` goes through Pillow (PNG, JPEG, BMP, TIFF, and whatever else Pillow opens) and
makes every file the same kind of tensor:

=====================  =====================================================================
file                   what ``read_image`` returns
=====================  =====================================================================
RGB, 8 bit             ``uint8 / 255``
grey (``L``, ``1``)    the grey value replicated to R, G and B (Y = R = G = B; the same as
                       OpenCV's ``IMREAD_COLOR``), so grey and colour images go through the
                       same networks and metrics
16-bit grey            (``I;16*`` / 16-bit ``I``) ``value / 65535``, replicated to 3 channels
16-bit colour PNG      ``value / 65535`` at full precision (decoded by :mod:`flowsr.data._png16`:
                       Pillow would keep only the high byte)
alpha (RGBA, LA, PA,   ``alpha="drop"`` (default): the alpha channel is discarded and the
RGBa, La, tRNS)        stored colours are kept, as the official HCFlow / SRFlow loaders do
                       (``img[:, :, :3]``): SR benchmarks compare the stored colour values, and
                       compositing would change pixels that an LR image made from the same
                       file did not see. ``alpha="white"`` / ``"black"`` composite instead
                       (``c * a + bg * (1 - a)``, straight alpha).
palette (``P``)        converted to RGB through the palette (transparency then dropped)
CMYK, YCbCr, ...       Pillow's ``convert("RGB")`` (naive CMYK conversion, no ICC colour
                       management; embedded ICC profiles are ignored for every file)
=====================  =====================================================================

EXIF orientation is *not* applied: the pixel grid is returned as stored, so HR/LR pairs stay
aligned. Only the first frame of a multi-frame file is read. Anything that cannot be read —
missing file, unknown format, truncated or corrupt data, 16-bit colour TIFF (Pillow would
truncate it to 8 bits), 32-bit float images (unknown range) — raises ``ValueError("read_image:
cannot read '<path>': <reason>")`` on one line.

``write_image`` clamps to ``[0, 1]``, rounds to 8 bits (:func:`to_uint8`) and writes by the
file's extension (PNG, JPEG, BMP, TIFF, ...) atomically: to a temporary file in the same folder,
then ``os.replace`` — a reader never sees a half-written image.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flowsr.data._png16 import decode_png, png_header
from flowsr.fileio import atomic_write

__all__ = ["from_uint8", "read_image", "to_uint8", "write_image"]

_ALPHA_MODES = ("drop", "white", "black")


def to_uint8(t: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` floats -> ``uint8``: ``round(clamp(t, 0, 1) * 255)``, ties to even (``torch.round``).

    The same as the official ``tensor2img`` (clamp, ``* 255``, round) in the tensor's own dtype.
    ``uint8`` input is returned unchanged. NaN raises ``ValueError``.
    """
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():
        raise ValueError(f"to_uint8: expected a floating tensor in [0, 1], got {t.dtype}")
    if torch.isnan(t).any():
        raise ValueError("to_uint8: the tensor contains NaN")
    return torch.round(t.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def from_uint8(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``uint8`` tensor or array -> float32 tensor in ``[0, 1]`` (``a / 255``, correctly rounded), same shape."""
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.array(a, order="C"))  # a writable copy (Pillow's arrays are read-only)
    if a.dtype != torch.uint8:
        raise ValueError(f"from_uint8: expected uint8 data, got {a.dtype}")
    return a.to(torch.float32) / 255.0


def _fail(path, reason: str) -> ValueError:
    reason = " ".join(str(reason).split()) or "unknown error"
    return ValueError(f"read_image: cannot read '{os.fspath(path)}': {reason}")


def _composite(color: np.ndarray, alpha: np.ndarray, mode: str) -> np.ndarray:
    """``color`` (H, W, C) and ``alpha`` (H, W) floats in [0, 1] -> (H, W, C) according to ``mode``."""
    if mode == "drop":
        return color
    bg = 1.0 if mode == "white" else 0.0
    a = alpha[..., None]
    return color * a + bg * (1.0 - a)


def _to_rgb(color: np.ndarray) -> np.ndarray:
    if color.shape[-1] == 1:
        color = np.repeat(color, 3, axis=-1)
    return color


def _from_float_hwc(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.float32, order="C"))


def _read_png16(path, data: bytes, alpha: str) -> torch.Tensor:
    try:
        arr, depth = decode_png(data)
    except ValueError as err:
        raise _fail(path, err) from None
    scale = float((1 << depth) - 1)
    values = arr.astype(np.float32) / np.float32(scale)
    channels = values.shape[-1]
    if channels in (2, 4):
        color = _composite(values[..., :-1], values[..., -1], alpha)
    else:
        color = values
    return _from_float_hwc(_to_rgb(color))


def _pillow_to_tensor(path, im: Image.Image, alpha: str) -> torch.Tensor:
    mode = im.mode
    if mode == "F":
        raise _fail(path, "32-bit float images are not supported (their value range is unknown)")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N") or mode == "I":
        arr = np.asarray(im)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise _fail(path, f"32-bit integer image with values outside 0..65535 ({arr.min()}..{arr.max()})")
        grey = arr.astype(np.float32) / np.float32(65535.0)
        return _from_float_hwc(_to_rgb(grey[..., None]))
    bits = im.tag_v2.get(258) if im.format == "TIFF" and hasattr(im, "tag_v2") else None
    depth = int(max(np.atleast_1d(bits))) if bits is not None else 8
    if depth > 8:  # the 16-bit grey modes were handled above; Pillow keeps 8 bits of anything else
        reason = f"{depth}-bit {mode} TIFF: Pillow would truncate it to 8 bits; convert it to a 16-bit PNG"
        raise _fail(path, reason)
    if mode in ("RGB", "L") and alpha != "drop" and "transparency" in im.info:  # a tRNS colour key
        im = im.convert("RGBA" if mode == "RGB" else "LA")
        mode = im.mode
    if mode in ("RGBa", "La", "PA", "P"):
        im = im.convert("RGBA" if mode != "La" else "LA")
        mode = im.mode
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode in ("RGBA", "LA"):
        arr = np.asarray(im).astype(np.float32) / np.float32(255.0)
        color = _composite(arr[..., :-1], arr[..., -1], alpha)
        return _from_float_hwc(_to_rgb(color))
    if mode == "L":
        arr = np.asarray(im)[..., None]
    elif mode == "RGB":
        arr = np.asarray(im)
    else:  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        try:
            arr = np.asarray(im.convert("RGB"))
        except (ValueError, OSError) as err:
            raise _fail(path, f"cannot convert mode {mode} to RGB ({err})") from None
    return from_uint8(_to_rgb(arr)).permute(2, 0, 1).contiguous()


def read_image(path: str | os.PathLike, *, alpha: str = "drop") -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 RGB tensor in ``[0, 1]`` (see the module docstring).

    Args:
        path: the image file.
        alpha: what to do with an alpha channel: ``"drop"`` (default, keep the stored colours),
            ``"white"`` or ``"black"`` (composite on that background).

    Raises:
        ValueError: ``read_image: cannot read '<path>': <reason>`` for a missing, unreadable,
            corrupt or unsupported file.
    """
    if alpha not in _ALPHA_MODES:
        raise ValueError(f"read_image: alpha must be one of {_ALPHA_MODES}, got {alpha!r}")
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise _fail(path, err.strerror or err) from None
    header = png_header(data)
    if header is not None and header[2] == 16 and header[3] in (2, 4, 6):
        return _read_png16(path, data, alpha)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _pillow_to_tensor(path, im, alpha)
    except ValueError as err:
        if str(err).startswith("read_image:"):
            raise
        raise _fail(path, err) from None
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError, struct.error) as err:
        raise _fail(path, f"{type(err).__name__}: {err}") from None


def _as_hwc_uint8(tensor: torch.Tensor) -> np.ndarray:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"write_image: expected a torch.Tensor, got {type(tensor).__name__}")
    t = tensor.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"write_image: expected shape (3, H, W), (1, H, W) or (H, W), got {tuple(tensor.shape)}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError("write_image: the image contains NaN or Inf")
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise ValueError(f"write_image: expected a floating or uint8 tensor, got {t.dtype}")
    arr = to_uint8(t).cpu().permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def write_image(path: str | os.PathLike, tensor: torch.Tensor, **save_kwargs) -> Path:
    """Write a ``(3, H, W)`` (or ``(1, H, W)`` / ``(H, W)`` grey) image in ``[0, 1]`` as an 8-bit file.

    Floats are clamped to ``[0, 1]`` and rounded with :func:`to_uint8`; ``uint8`` tensors are written
    as they are. The format comes from the extension (``.png``, ``.jpg``, ``.bmp``, ``.tif``, ...);
    ``save_kwargs`` go to ``PIL.Image.save`` (e.g. ``quality=95`` for JPEG). The file is written to a
    temporary name in the target folder and renamed over ``path`` (atomic on POSIX). Returns the path.
    """
    path = Path(path)
    arr = _as_hwc_uint8(tensor)
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"write_image: cannot tell an image format Pillow can write from the extension of '{path}'")
    im = Image.fromarray(arr)
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **save_kwargs))
    return path
