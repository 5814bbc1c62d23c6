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

Decompression is bounded: the IDAT stream is inflated to at most the size the header declares
(plus one byte), so a file whose image data inflates to more than its header says cannot make the
decoder allocate more than the declared image. The *declared* size is checked against flowsr's
pixel limit by the caller (:mod:`flowsr.data.image_io`) before :func:`decode_png` is called.

:func:`encode_png` is the matching writer (Pillow cannot write 16-bit colour PNGs either): every
row "Up"-filtered, zlib-compressed, optional ``iCCP`` colour profile.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["PNG_SIGNATURE", "decode_png", "encode_png", "png_header", "read_png"]

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
    # int16 is enough (predictions and sums stay within -255..765) and halves the memory of int32.
    filt = rows[:, 1:].reshape(height, width, bpp).astype(np.int16)
    # recon[y + 1, x + 1] holds pixel (y, x); row 0 and column 0 are the zero borders.
    recon = np.zeros((height + 1, width + 1, bpp), dtype=np.int16)
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


def _passes(width: int, height: int, interlace: int):
    """``(x0, y0, dx, dy, pass_width, pass_height)`` of every non-empty (Adam7) pass."""
    for x0, y0, dx, dy in _ADAM7 if interlace == 1 else ((0, 0, 1, 1),):
        pw = (width - x0 + dx - 1) // dx if width > x0 else 0
        ph = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pw and ph:
            yield x0, y0, dx, dy, pw, ph


def decode_png(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an 8- or 16-bit grey / grey+alpha / RGB / RGBA PNG: ``(array, bit_depth)``.

    See :func:`read_png`, which also returns the colour profile and EXIF data.
    """
    arr, depth, _info = read_png(data)
    return arr, depth


def read_png(data: bytes) -> tuple[np.ndarray, int, dict[str, bytes]]:
    """Decode an 8- or 16-bit grey / grey+alpha / RGB / RGBA PNG.

    Returns ``(array, bit_depth, info)`` with ``array`` of shape ``(H, W, channels)`` (1, 2, 3 or 4
    channels, alpha last), dtype ``uint16`` for 16-bit files and ``uint8`` for 8-bit ones. A ``tRNS``
    colour key on a grey or RGB image becomes an alpha channel (0 where the pixel equals the key).
    ``info`` holds ``"icc_profile"`` (the decompressed ``iCCP`` profile) and ``"exif"`` (the raw
    ``eXIf`` chunk) when the file has them. Raises ``ValueError`` on anything else or on a damaged
    file.
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
    info: dict[str, bytes] = {}
    for ctype_, body in _chunks(data):
        if ctype_ == b"IDAT":
            idat.append(body)
        elif ctype_ == b"tRNS":
            trns = body
        elif ctype_ == b"eXIf":
            info["exif"] = body
        elif ctype_ == b"iCCP":
            name_end = body.find(b"\0")
            try:
                info["icc_profile"] = zlib.decompress(body[name_end + 2 :]) if name_end > 0 else b""
            except zlib.error:
                pass  # a damaged profile is ignored, as libpng does
            if not info.get("icc_profile"):
                info.pop("icc_profile", None)
    channels = _CHANNELS[ctype]
    nbytes = depth // 8
    bpp = channels * nbytes
    passes = list(_passes(width, height, interlace))
    expected = sum(ph * (1 + pw * bpp) for *_, pw, ph in passes)
    try:
        # Inflate no more than the header promises: extra data is ignored (as libpng does), and a
        # stream that would inflate further cannot make us allocate more than the declared image.
        raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(idat), expected), dtype=np.uint8)
    except zlib.error as err:
        raise ValueError(f"corrupt PNG image data ({err})") from None
    if raw.size < expected:
        raise ValueError("PNG image data is truncated")
    out = np.zeros((height, width, bpp), dtype=np.uint8)
    pos = 0
    for x0, y0, dx, dy, pw, ph in passes:
        size = ph * (1 + pw * bpp)
        out[y0::dy, x0::dx] = _unfilter(raw[pos : pos + size], ph, pw, bpp)
        pos += size
    samples = out.reshape(height, width, channels, nbytes).astype(np.uint16)
    arr = (samples[..., 0] << 8) | samples[..., 1] if nbytes == 2 else samples[..., 0]
    if trns is not None and ctype in (0, 2):
        key = np.array(struct.unpack(f">{channels}H", trns[: 2 * channels]), dtype=np.uint16)
        opaque = (1 << depth) - 1
        alpha = np.where(np.all(arr == key, axis=-1), 0, opaque).astype(arr.dtype)
        arr = np.concatenate([arr, alpha[..., None]], axis=-1)
    return arr.astype(np.uint16 if depth == 16 else np.uint8), depth, info


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(arr: np.ndarray, *, icc_profile: bytes | None = None, compress_level: int = 6) -> bytes:
    """Encode ``(H, W)`` or ``(H, W, C)`` ``uint8`` / ``uint16`` samples (C = 1 grey, 2 grey+alpha,
    3 RGB, 4 RGBA) as an 8- / 16-bit PNG. Every row uses the "Up" filter (vectorised; a good filter
    for photographs); ``icc_profile`` is stored in an ``iCCP`` chunk."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png: expected (H, W, 1..4) uint8 or uint16 samples, got {arr.shape} {arr.dtype}")
    height, width, channels = arr.shape
    if height < 1 or width < 1:
        raise ValueError(f"encode_png: empty image {width}x{height}")
    depth = 16 if arr.dtype == np.uint16 else 8
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(height, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as the filter is defined
    filtered = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1)
    out = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    out.append(_chunk(b"IDAT", zlib.compress(filtered.tobytes(), compress_level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
