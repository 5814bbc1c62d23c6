"""A small PNG decoder for 16-bit colour PNGs (internal).

Pillow has no 16-bit-per-channel colour mode: it opens 48-bit RGB / 64-bit RGBA / 32-bit
grey+alpha PNGs as 8-bit images, keeping only the high byte of every sample. ``read_image``
promises full 16-bit precision, so these files are decoded here instead: chunks parsed (CRCs
checked), IDAT inflated with :mod:`zlib`, scanlines un-filtered, Adam7 interlacing undone.

Un-filtering (PNG filters None, Sub, Up, Average, Paeth) is sequential along a row and down the
image; pixel ``(y, x)`` depends only on ``(y, x-1)``, ``(y-1, x)`` and ``(y-1, x-1)``, so all pixels
of one anti-diagonal ``y + x = d`` are reconstructed at once with numpy (``H + W - 1`` vectorised
steps). Handles bit depths 8 and 16 and colour types 0 (grey), 2 (RGB), 4 (grey+alpha), 6 (RGBA);
palette images and bit depths below 8 are left to Pillow.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["PNG_SIGNATURE", "decode_png", "png_header"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """``(width, height, bit_depth, colour_type, interlace)`` from a PNG's IHDR, or None if not a PNG."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, ctype, interlace


def _chunks(data: bytes):
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError(f"truncated PNG chunk {ctype!r}")
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {ctype!r} has a bad CRC")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos += 12 + length
    raise ValueError("PNG has no IEND chunk (truncated file)")


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, width: int, bpp: int) -> np.ndarray:
    """Reconstruct ``(height, width, bpp)`` bytes from ``height`` filtered scanlines."""
    rows = raw.reshape(height, 1 + width * bpp)
    ftype = rows[:, 0].astype(np.int64)
    if np.any(ftype > 4):
        raise ValueError(f"PNG scanline has an unknown filter type {int(ftype.max())}")
    filt = rows[:, 1:].reshape(height, width, bpp).astype(np.int32)
    # recon[y + 1, x + 1] holds pixel (y, x); row 0 and column 0 are the zero borders.
    recon = np.zeros((height + 1, width + 1, bpp), dtype=np.int32)
    for d in range(height + width - 1):
        y = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        x = d - y
        f = filt[y, x]
        a = recon[y + 1, x]
        b = recon[y, x + 1]
        c = recon[y, x]
        t = ftype[y][:, None]
        pred = np.where(
            t == 1,
            a,
            np.where(t == 2, b, np.where(t == 3, (a + b) >> 1, np.where(t == 4, _paeth(a, b, c), 0))),
        )
        recon[y + 1, x + 1] = (f + pred) & 0xFF
    return recon[1:, 1:].astype(np.uint8)


def decode_png(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an 8- or 16-bit grey / grey+alpha / RGB / RGBA PNG.

    Returns ``(array, bit_depth)`` with ``array`` of shape ``(H, W, channels)`` (1, 2, 3 or 4 channels,
    alpha last), dtype ``uint16`` for 16-bit files and ``uint8`` for 8-bit ones. A ``tRNS`` colour key
    on a grey or RGB image becomes an alpha channel (0 where the pixel equals the key). Raises
    ``ValueError`` on anything else or on a damaged file.
    """
    header = png_header(data)
    if header is None:
        raise ValueError("not a PNG file")
    width, height, depth, ctype, interlace = header
    if ctype not in _CHANNELS or depth not in (8, 16):
        raise ValueError(f"unsupported PNG colour type {ctype} / bit depth {depth}")
    if interlace not in (0, 1):
        raise ValueError(f"unknown PNG interlace method {interlace}")
    if width < 1 or height < 1:
        raise ValueError(f"PNG has an empty size {width}x{height}")
    idat = []
    trns = None
    for ctype_, body in _chunks(data):
        if ctype_ == b"IDAT":
            idat.append(body)
        elif ctype_ == b"tRNS":
            trns = body
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    except zlib.error as err:
        raise ValueError(f"corrupt PNG image data ({err})") from None
    channels = _CHANNELS[ctype]
    nbytes = depth // 8
    bpp = channels * nbytes
    out = np.zeros((height, width, bpp), dtype=np.uint8)
    passes = _ADAM7 if interlace == 1 else ((0, 0, 1, 1),)
    pos = 0
    for x0, y0, dx, dy in passes:
        pw = (width - x0 + dx - 1) // dx if width > x0 else 0
        ph = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pw == 0 or ph == 0:
            continue
        size = ph * (1 + pw * bpp)
        if pos + size > raw.size:
            raise ValueError("PNG image data is truncated")
        out[y0::dy, x0::dx] = _unfilter(raw[pos : pos + size], ph, pw, bpp)
        pos += size
    samples = out.reshape(height, width, channels, nbytes).astype(np.uint16)
    arr = (samples[..., 0] << 8) | samples[..., 1] if nbytes == 2 else samples[..., 0]
    if trns is not None and ctype in (0, 2):
        key = np.array(struct.unpack(f">{channels}H", trns[: 2 * channels]), dtype=np.uint16)
        opaque = (1 << depth) - 1
        alpha = np.where(np.all(arr == key, axis=-1), 0, opaque).astype(arr.dtype)
        arr = np.concatenate([arr, alpha[..., None]], axis=-1)
    return arr.astype(np.uint16 if depth == 16 else np.uint8), depth
