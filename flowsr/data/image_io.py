"""Reading and writing images: files <-> float32 tensors in ``[0, 1]``.

Two levels:

* :func:`read_image` -> a ``(3, H, W)`` RGB tensor, for metrics, training and evaluation: every
  file becomes the same kind of tensor (grey replicated, alpha dropped or composited).
* :func:`load_image` / :func:`save_image`, for tools that turn an image into an image (``flowsr sr``,
  ``rescale``): **the output is the same kind of file as the input**, and every conversion on the
  way is reported once as a :class:`Note`::

      img = load_image("photo.png")          # LoadedImage: .rgb (3, H, W), .alpha, .bit_depth, .grey, .notes
      for note in img.notes: print(note)     # e.g. "photo.png: EXIF orientation 6 applied (rotated 90° clockwise)"
      out = model_output(img.rgb)            # (3, sH, sW): the model always sees RGB
      for note in save_image("out.png", out, like=img): print(note)
      # -> grey again if the input was grey, alpha resized and re-attached, 16-bit if the input was

What :func:`load_image` does with each kind of file (``read_image`` does the same unless noted):

=====================  =====================================================================
file                   result
=====================  =====================================================================
EXIF orientation       applied (the image as viewers show it); ``orient=False`` keeps the
                       stored pixel grid. Written files carry no EXIF, so they are upright.
RGB, 8 bit             ``uint8 / 255``
grey (``L``, ``1``,    the grey value replicated to R, G and B, so the model and the metrics see
16-bit grey)           RGB (Y = R = G = B). ``save_image(..., like=img)`` converts the result
                       back to grey with **luma** ``0.299 R + 0.587 G + 0.114 B`` (ITU-R 601-2,
                       Pillow's ``convert("L")``; for a grey result, R = G = B, that is the
                       grey value itself).
16 bit per channel     ``value / 65535`` at full precision: PNG (all colour types) and TIFF
                       (grey / RGB / RGBA, uncompressed or Deflate) are decoded by flowsr's own
                       small decoders (:mod:`flowsr.data._png16`, :mod:`flowsr.data._tiff16`)
                       because Pillow keeps only the high byte of 16-bit colour. ``save_image``
                       writes 16 bits again to PNG and TIFF (other formats: 8 bits, noted).
alpha (RGBA, LA, PA,   ``load_image``: the stored colours as ``rgb`` (straight alpha, not
RGBa, La, tRNS)        composited) and the alpha plane as ``alpha`` ``(1, H, W)``; process the
                       colours, then ``save_image(..., like=img)`` brings the alpha to the
                       output size with :func:`resize_alpha` (MATLAB bicubic, clamped to
                       [0, 1]) and re-attaches it (formats without alpha: dropped, noted).
                       ``read_image``: ``alpha="drop"`` (default) keeps the stored colours as the
                       official HCFlow / SRFlow loaders do (``img[:, :, :3]``: an LR made from
                       the same file never saw a composited image); ``"white"`` / ``"black"``
                       composite on that background (``c * a + bg * (1 - a)``).
palette (``P``)        converted to RGB(A) through the palette (written as RGB(A), noted)
CMYK, YCbCr, ...       Pillow's ``convert("RGB")`` (naive CMYK formula; noted)
ICC profile            the values are used as stored; ``save_image`` copies the profile into
                       the output (PNG, JPEG, WebP, TIFF), so the result looks like the input
animated (GIF, ...)    the first frame only (noted)
=====================  =====================================================================

Refused (``ValueError``): 32-bit float images (unknown range), 16-bit TIFF variants the small
decoder does not handle (LZW, tiles, ...: the message says which), and **images with more pixels
than the limit** (:func:`get_max_pixels`; default :data:`DEFAULT_MAX_PIXELS` = 89,478,485, Pillow's
default ``MAX_IMAGE_PIXELS``). The limit is checked on the size the file *declares*, before any
pixel is decoded, in every reader (Pillow, 16-bit PNG, 16-bit TIFF), so a small file declaring a
huge image (a decompression bomb) is refused without allocating it. Raise it with the environment
variable ``FLOWSR_MAX_PIXELS=<pixels>`` (``0``: no limit) or :func:`set_max_pixels`. Any failure is
one line: ``ValueError("read_image: cannot read '<path>': <reason>")`` (from :func:`load_image` too).

:data:`IMAGE_EXTENSIONS` is the one list of file extensions flowsr treats as images (files and
folders alike; :func:`is_image_file`, :func:`list_images`). :data:`WRITE_FORMATS` says what each
output extension can hold.

Writing: :func:`write_image` (low level: you say the bit depth and give the alpha) and
:func:`save_image` (like the input). The format follows the extension (PNG, JPEG, WebP, TIFF, BMP,
GIF, PPM); JPEG and WebP default to ``quality=95``. Floats are clamped to ``[0, 1]`` and rounded
(8 bit: :func:`to_uint8`; 16 bit: ``round(x * 65535)``); an image with NaN or Inf is refused with a
message naming the file, and nothing is written. Files are written atomically
(:func:`flowsr.fileio.atomic_write`): a reader never sees a half-written image.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flowsr.data._png16 import encode_png, png_header, read_png
from flowsr.data._tiff16 import decode_tiff, encode_tiff, tiff_info
from flowsr.data.resize import imresize
from flowsr.fileio import atomic_write

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "WRITE_FORMATS",
    "LoadedImage",
    "Note",
    "WriteFormat",
    "from_uint8",
    "get_max_pixels",
    "is_image_file",
    "list_images",
    "load_image",
    "read_image",
    "reset_max_pixels",
    "resize_alpha",
    "save_image",
    "set_max_pixels",
    "to_grey",
    "to_uint8",
    "write_image",
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

_ALPHA_MODES = ("drop", "white", "black")
_UNSET = object()
_max_pixels_override: object = _UNSET
# ITU-R 601-2 luma, as Pillow's convert("L"): the grey value of an RGB result.
_LUMA = (0.299, 0.587, 0.114)
_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "transposed",
    6: "rotated 90° clockwise",
    7: "transversed",
    8: "rotated 90° counter-clockwise",
}


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


def _check_pixels(path, width: int, height: int) -> None:
    limit = get_max_pixels()
    if limit is not None and width * height > limit:
        n = width * height
        raise _fail(
            path,
            f"{width}x{height} = {n:,} pixels is more than flowsr's limit of {limit:,} pixels (a guard against "
            f"decompression bombs; nothing was decoded); to read it, raise the limit: set the environment "
            f"variable {MAX_PIXELS_ENV}={n} (0 = no limit) or call flowsr.data.set_max_pixels({n})",
        )


# ------------------------------------------------------------------------------------ small helpers


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


def to_grey(img: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB -> ``(..., 1, H, W)`` luma ``0.299 R + 0.587 G + 0.114 B`` (Pillow's ``"L"``).

    One-channel input is returned unchanged. Used by :func:`save_image` to give grey inputs grey
    outputs: the model ran on the replicated RGB copy, whose channels stay (nearly) equal.
    """
    if img.shape[-3] == 1:
        return img
    if img.shape[-3] != 3:
        raise ValueError(f"to_grey: expected 1 or 3 channels, got shape {tuple(img.shape)}")
    r, g, b = img.unbind(dim=-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def resize_alpha(alpha: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """An alpha plane brought to ``size = (H, W)``: MATLAB bicubic (:func:`flowsr.data.imresize`,
    float path, antialiased when shrinking), clamped to ``[0, 1]`` (bicubic overshoots at edges).

    ``alpha``: ``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)`` floats in [0, 1]; returned in the same
    layout and dtype. The same size returns a copy (no resampling).
    """
    if not alpha.is_floating_point():
        raise ValueError(f"resize_alpha: expected a floating alpha plane, got {alpha.dtype}")
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"resize_alpha: output size must be positive, got {size}")
    if tuple(alpha.shape[-2:]) == size:
        return alpha.clone()
    return imresize(alpha, output_size=size).clamp_(0.0, 1.0)


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


# --------------------------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class Note:
    """One conversion applied to one image, for the user: ``str(note)`` is the message.

    ``kind`` groups notes of the same sort across files (a tool may print each kind once):
    ``"orientation"``, ``"alpha"``, ``"grey"``, ``"16bit"``, ``"palette"``, ``"colour"``,
    ``"frames"``, ``"icc"``, and on writing ``"alpha_dropped"``, ``"8bit"``, ``"quantised"``.
    """

    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class LoadedImage:
    """An image as :func:`load_image` read it.

    ``rgb``: ``(3, H, W)`` float32 in [0, 1], EXIF-oriented, stored colours (what the model sees);
    ``alpha``: ``(1, H, W)`` float32 or ``None``; ``bit_depth``: 8 or 16 bits per channel of the
    file; ``grey``: the file is grey (``rgb`` has R = G = B); ``orientation``: the EXIF orientation
    applied (1 = none); ``icc_profile``: the embedded colour profile (copied to the output);
    ``notes``: what was converted, once each.
    """

    path: Path
    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    grey: bool = False
    orientation: int = 1
    format: str = ""
    icc_profile: bytes | None = None
    notes: list[Note] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])


# ------------------------------------------------------------------------------------------ reading


def _fail(path, reason) -> ValueError:
    reason = " ".join(str(reason).split()) or "unknown error"
    return ValueError(f"read_image: cannot read '{os.fspath(path)}': {reason}")


@dataclass
class _Decoded:
    """Samples as float32 ``(H, W, C)`` in [0, 1], colour channels then (optionally) alpha."""

    values: np.ndarray
    has_alpha: bool
    grey: bool
    depth: int
    orientation: int
    format: str
    icc_profile: bytes | None
    notes: list[tuple[str, str]]


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to ``(H, W, C)`` samples (the same as ``PIL.ImageOps.exif_transpose``)."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.transpose(1, 0, 2)
    elif orientation == 6:
        arr = np.rot90(arr, -1)
    elif orientation == 7:
        arr = arr.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:
        arr = np.rot90(arr, 1)
    return np.ascontiguousarray(arr)


def _exif_orientation(exif: Image.Exif | bytes | None) -> int:
    if exif is None:
        return 1
    if isinstance(exif, bytes):
        parsed = Image.Exif()
        try:
            parsed.load(exif)
        except Exception:  # noqa: BLE001 - damaged EXIF data is ignored, as viewers do
            return 1
        exif = parsed
    try:
        value = int(exif.get(0x0112, 1))
    except (TypeError, ValueError):
        return 1
    return value if value in _ORIENTATIONS else 1


def _scale(arr: np.ndarray, depth: int) -> np.ndarray:
    return arr.astype(np.float32) / np.float32((1 << depth) - 1)


def _read_png(path, data: bytes) -> _Decoded:
    try:
        arr, depth, info = read_png(data)
    except ValueError as err:
        raise _fail(path, err) from None
    grey = arr.shape[-1] in (1, 2)
    return _Decoded(
        values=_scale(arr, depth),
        has_alpha=arr.shape[-1] in (2, 4),
        grey=grey,
        depth=depth,
        orientation=_exif_orientation(info.get("exif")),
        format="PNG",
        icc_profile=info.get("icc_profile"),
        notes=[],
    )


def _read_tiff16(path, data: bytes, info) -> _Decoded:
    try:
        arr = decode_tiff(data, info)
    except ValueError as err:
        raise _fail(path, err) from None
    has_alpha = info.samples in (2, 4)
    return _Decoded(
        values=_scale(arr, 16),
        has_alpha=has_alpha,
        grey=info.samples in (1, 2),
        depth=16,
        orientation=info.orientation if info.orientation in _ORIENTATIONS else 1,
        format="TIFF",
        icc_profile=info.icc_profile,
        notes=[],
    )


def _pillow_open(path, source) -> Image.Image:
    """``Image.open`` with flowsr's pixel limit in charge of Pillow's decompression-bomb check."""
    limit = get_max_pixels()
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and (limit is None or limit > pillow_limit):
        Image.MAX_IMAGE_PIXELS = limit  # documented in set_max_pixels: Pillow must not refuse what flowsr allows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check follows
        try:
            im = Image.open(source)
        except Image.DecompressionBombError as err:
            match = re.search(r"\((\d+) pixels\)", str(err))
            n = int(match.group(1)) if match else 0
            raise _fail(
                path,
                f"{n:,} pixels is more than the pixel limit (a guard against decompression bombs); to read it, "
                f"set {MAX_PIXELS_ENV}={n} (0 = no limit) or call flowsr.data.set_max_pixels({n})",
            ) from None
    _check_pixels(path, *im.size)
    return im


def _read_pillow(path, im: Image.Image) -> _Decoded:
    notes: list[tuple[str, str]] = []
    name = Path(path).name
    fmt = im.format or ""
    orientation = _exif_orientation(im.getexif())
    icc = im.info.get("icc_profile") or None
    if getattr(im, "is_animated", False):
        notes.append(("frames", f"{name}: animated image: only the first frame is used"))
    im.load()
    mode = im.mode
    if mode == "F":
        raise _fail(path, "32-bit float images are not supported (their value range is unknown)")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise _fail(path, f"32-bit integer image with values outside 0..65535 ({arr.min()}..{arr.max()})")
        return _Decoded(_scale(arr.astype(np.uint16)[..., None], 16), False, True, 16, orientation, fmt, icc, notes)
    bits = im.tag_v2.get(258) if fmt == "TIFF" and hasattr(im, "tag_v2") else None
    depth = int(max(np.atleast_1d(bits))) if bits is not None else 8
    if depth > 8:  # the 16-bit grey modes were handled above; Pillow keeps 8 bits of anything else
        raise _fail(path, f"{depth}-bit {mode} TIFF: not supported (Pillow would truncate it); convert it to PNG")
    if mode in ("RGB", "L") and "transparency" in im.info:  # a tRNS colour key
        im = im.convert("RGBA" if mode == "RGB" else "LA")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append(("palette", f"{name}: palette image: converted to {im.mode} (the output is not a palette image)"))
    elif mode in ("RGBa", "La"):  # premultiplied alpha -> straight alpha
        im = im.convert("RGBA" if mode == "RGBa" else "LA")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("RGB", "RGBA", "L", "LA"):  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as err:
            raise _fail(path, f"cannot convert mode {mode} to RGB ({err})") from None
        notes.append(("colour", f"{name}: {mode} image: converted to RGB (no colour management)"))
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    return _Decoded(
        values=_scale(arr, 8),
        has_alpha=im.mode in ("RGBA", "LA"),
        grey=im.mode in ("L", "LA"),
        depth=8,
        orientation=orientation,
        format=fmt,
        icc_profile=icc,
        notes=notes,
    )


def _read_all(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise _fail(path, err.strerror or err) from None


def _decode(path: str | os.PathLike) -> _Decoded:
    """Any supported file -> :class:`_Decoded` (not yet oriented); one-line ``ValueError`` on failure."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise _fail(path, err.strerror or err) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, socket or device)"
        raise _fail(path, kind)
    # Sniff the format from the first bytes: only the formats flowsr decodes itself are read whole
    # (after the size check); everything else goes to Pillow, which reads lazily from the file.
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise _fail(path, err.strerror or err) from None
    header = png_header(head)
    if header is not None:
        _check_pixels(path, header[0], header[1])
        if header[2] == 16 and header[3] in (0, 2, 4, 6):
            return _read_png(path, _read_all(path))
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        data = _read_all(path)
        try:
            tinfo = tiff_info(data)
        except ValueError as err:
            raise _fail(path, err) from None
        _check_pixels(path, tinfo.width, tinfo.height)
        if 16 in tinfo.bits and tinfo.samples > 1:  # Pillow would truncate 16-bit colour / grey+alpha
            return _read_tiff16(path, data, tinfo)
    try:
        with _pillow_open(path, os.fspath(path)) as im:
            return _read_pillow(path, im)
    except ValueError as err:
        if str(err).startswith("read_image:"):
            raise
        raise _fail(path, err) from None
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError, struct.error, MemoryError) as err:
        raise _fail(path, f"{type(err).__name__}: {err}") from None


def _composite(color: np.ndarray, alpha: np.ndarray, mode: str) -> np.ndarray:
    """``color`` (H, W, C) and ``alpha`` (H, W) floats in [0, 1] -> (H, W, C) according to ``mode``."""
    if mode == "drop":
        return color
    bg = 1.0 if mode == "white" else 0.0
    a = alpha[..., None]
    return color * a + bg * (1.0 - a)


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.float32, order="C"))


def _rgb3(color: np.ndarray) -> np.ndarray:
    return np.repeat(color, 3, axis=-1) if color.shape[-1] == 1 else color


def read_image(path: str | os.PathLike, *, alpha: str = "drop", orient: bool = True) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 RGB tensor in ``[0, 1]`` (see the module docstring).

    Args:
        path: the image file.
        alpha: what to do with an alpha channel: ``"drop"`` (default, keep the stored colours),
            ``"white"`` or ``"black"`` (composite on that background).
        orient: apply the EXIF orientation (default); ``False`` returns the stored pixel grid.

    Raises:
        ValueError: ``read_image: cannot read '<path>': <reason>`` for a missing, unreadable,
            corrupt, unsupported or too large (:func:`get_max_pixels`) file.
    """
    if alpha not in _ALPHA_MODES:
        raise ValueError(f"read_image: alpha must be one of {_ALPHA_MODES}, got {alpha!r}")
    dec = _decode(path)
    values = dec.values
    if dec.has_alpha:
        values = _composite(values[..., :-1], values[..., -1], alpha)
    if orient and dec.orientation != 1:
        values = _orient(values, dec.orientation)
    return _chw(_rgb3(values))


def load_image(path: str | os.PathLike, *, orient: bool = True) -> LoadedImage:
    """Read an image for an image-to-image tool: RGB for the model, plus what is needed to write the
    result as the same kind of file (alpha plane, bit depth, grey, colour profile) and the
    :class:`Note` s saying what was converted. See the module docstring.

    Raises:
        ValueError: as :func:`read_image` (the message starts with ``read_image: cannot read``).
    """
    dec = _decode(path)
    values = dec.values
    if orient and dec.orientation != 1:
        values = _orient(values, dec.orientation)
    color, alpha = (values[..., :-1], values[..., -1:]) if dec.has_alpha else (values, None)
    name = Path(path).name
    notes = [Note(kind, msg) for kind, msg in dec.notes]
    if orient and dec.orientation != 1:
        h, w = values.shape[:2]
        notes.append(
            Note(
                "orientation",
                f"{name}: EXIF orientation {dec.orientation} applied ({_ORIENTATIONS[dec.orientation]}; "
                f"now {w}x{h}); the output is stored upright",
            )
        )
    if alpha is not None:
        notes.append(
            Note(
                "alpha",
                f"{name}: has an alpha channel: the colours go through the model, the alpha plane is resized "
                "separately (MATLAB bicubic) and re-attached",
            )
        )
    if dec.grey:
        notes.append(
            Note("grey", f"{name}: grey image: processed as RGB (R = G = B), written back as grey (luma)")
        )
    if dec.depth == 16:
        notes.append(
            Note("16bit", f"{name}: 16 bits per channel: processed at full precision, written as 16-bit (PNG, TIFF)")
        )
    return LoadedImage(
        path=Path(path),
        rgb=_chw(_rgb3(color)),
        alpha=_chw(alpha) if alpha is not None else None,
        bit_depth=dec.depth,
        grey=dec.grey,
        orientation=dec.orientation if orient else 1,
        format=dec.format,
        icc_profile=dec.icc_profile,
        notes=notes,
    )


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

