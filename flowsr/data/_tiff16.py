"""A small reader and writer for 16-bit TIFF images (internal).

Pillow has no 16-bit colour mode: it opens 48-bit RGB / 64-bit RGBA TIFFs as 8-bit images and
cannot write them. ``flowsr.data`` promises 16-bit in, 16-bit out, so the common cases are handled
here:

* reading: baseline TIFF (little- or big-endian, first image only), 16 bits per sample, unsigned,
  1 to 4 samples per pixel (grey, grey+alpha, RGB, RGBA), chunky planar configuration, strips,
  compression none (1) or Deflate (8, 32946), predictor none (1) or horizontal differencing (2);
  the orientation tag and the ICC profile are returned as well. Anything else (LZW, tiles, planar
  files, floats, BigTIFF, ...) raises ``ValueError`` naming what is not supported.
* writing: :func:`encode_tiff`, little-endian, one Deflate strip with horizontal differencing
  (what libtiff and Pillow read), 1 to 4 channels, 8 or 16 bits, optional ICC profile.

:func:`tiff_info` parses only the first IFD (no pixel data), so the caller can check the pixel
limit before anything is decoded; decompression is bounded to the declared size.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TiffInfo", "decode_tiff", "encode_tiff", "tiff_info"]

_TYPES = {1: ("B", 1), 2: ("B", 1), 3: ("H", 2), 4: ("I", 4), 6: ("b", 1), 7: ("B", 1), 8: ("h", 2), 9: ("i", 4)}
_DEFLATE = (8, 32946)


@dataclass
class TiffInfo:
    """The tags of the first image of a TIFF file that the decoder needs (see :func:`tiff_info`)."""

    byteorder: str
    width: int
    height: int
    bits: tuple[int, ...]
    samples: int
    compression: int
    photometric: int
    planar: int
    predictor: int
    sample_format: int
    orientation: int
    strip_offsets: tuple[int, ...] = ()
    strip_counts: tuple[int, ...] = ()
    rows_per_strip: int = 0
    tiled: bool = False
    icc_profile: bytes | None = None
    extra: dict[int, tuple] = field(default_factory=dict)


def tiff_info(data: bytes) -> TiffInfo | None:
    """Parse the first IFD of a TIFF file; None if ``data`` is not a (classic) TIFF file."""
    if data[:4] == b"II*\x00":
        bo = "<"
    elif data[:4] == b"MM\x00*":
        bo = ">"
    else:
        return None
    try:
        (offset,) = struct.unpack(bo + "I", data[4:8])
        (count,) = struct.unpack(bo + "H", data[offset : offset + 2])
        tags: dict[int, tuple] = {}
        for i in range(count):
            entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
            tag, typ, n = struct.unpack(bo + "HHI", entry[:8])
            if typ not in _TYPES:
                continue
            fmt, size = _TYPES[typ]
            raw = entry[8:12] if n * size <= 4 else None
            if raw is None:
                (ptr,) = struct.unpack(bo + "I", entry[8:12])
                raw = data[ptr : ptr + n * size]
                if len(raw) != n * size:
                    raise ValueError(f"TIFF tag {tag} points past the end of the file")
            if typ in (2, 7):
                tags[tag] = (bytes(raw[:n]),)
            else:
                tags[tag] = struct.unpack(f"{bo}{n}{fmt}", raw[: n * size])
    except struct.error:
        raise ValueError("truncated TIFF header") from None

    def one(tag: int, default: int) -> int:
        return int(tags[tag][0]) if tag in tags else default

    if 256 not in tags or 257 not in tags:
        raise ValueError("TIFF has no image width or height")
    samples = one(277, 1)
    icc = tags.get(34675, (None,))[0]
    return TiffInfo(
        byteorder=bo,
        width=one(256, 0),
        height=one(257, 0),
        bits=tuple(int(b) for b in tags.get(258, (1,))),
        samples=samples,
        compression=one(259, 1),
        photometric=one(262, -1),
        planar=one(284, 1),
        predictor=one(317, 1),
        sample_format=one(339, 1),
        orientation=one(274, 1),
        strip_offsets=tuple(int(v) for v in tags.get(273, ())),
        strip_counts=tuple(int(v) for v in tags.get(279, ())),
        rows_per_strip=one(278, 2**32 - 1),
        tiled=322 in tags or 324 in tags,
        icc_profile=icc if isinstance(icc, bytes) and icc else None,
        extra={k: v for k, v in tags.items() if k == 338},
    )


def decode_tiff(data: bytes, info: TiffInfo) -> np.ndarray:
    """The ``(H, W, samples)`` ``uint16`` samples of a 16-bit TIFF described by ``info``.

    Raises ``ValueError`` for the variants this decoder does not handle (see the module docstring).
    """
    unsupported = None
    if set(info.bits) != {16} or len(info.bits) not in (1, info.samples):
        unsupported = f"{'/'.join(map(str, info.bits))} bits per sample"
    elif info.sample_format != 1:
        unsupported = "non-integer (e.g. floating-point) samples"
    elif info.samples not in (1, 2, 3, 4):
        unsupported = f"{info.samples} samples per pixel"
    elif info.photometric not in (1, 2):
        unsupported = f"photometric interpretation {info.photometric} (only grey and RGB)"
    elif info.planar != 1:
        unsupported = "separate colour planes (PlanarConfiguration 2)"
    elif info.tiled:
        unsupported = "tiles"
    elif info.compression not in (1, *_DEFLATE):
        names = {5: "LZW", 7: "JPEG", 32773: "PackBits", 34925: "LZMA", 50000: "Zstd"}
        unsupported = f"{names.get(info.compression, 'compression ' + str(info.compression))} compression"
    elif info.predictor not in (1, 2):
        unsupported = f"predictor {info.predictor}"
    if unsupported is not None:
        raise ValueError(f"16-bit TIFF with {unsupported} is not supported; save it as a 16-bit PNG")
    width, height, spp = info.width, info.height, info.samples
    if width < 1 or height < 1:
        raise ValueError(f"TIFF has an empty size {width}x{height}")
    if not info.strip_offsets or len(info.strip_offsets) != len(info.strip_counts):
        raise ValueError("TIFF has no valid strip offsets")
    row_bytes = width * spp * 2
    rows_per_strip = max(1, min(info.rows_per_strip, height))
    out = bytearray()
    for i, (offset, count) in enumerate(zip(info.strip_offsets, info.strip_counts)):
        rows = min(rows_per_strip, height - i * rows_per_strip)
        if rows <= 0:
            break
        want = rows * row_bytes
        chunk = data[offset : offset + count]
        if len(chunk) != count:
            raise ValueError("TIFF image data is truncated")
        if info.compression in _DEFLATE:
            try:
                chunk = zlib.decompressobj().decompress(chunk, want)  # bounded to the declared size
            except zlib.error as err:
                raise ValueError(f"corrupt TIFF image data ({err})") from None
        if len(chunk) < want:
            raise ValueError("TIFF image data is truncated")
        out += chunk[:want]
    if len(out) != height * row_bytes:
        raise ValueError("TIFF image data is truncated")
    arr = np.frombuffer(bytes(out), dtype=info.byteorder + "u2").astype(np.uint16).reshape(height, width, spp)
    if info.predictor == 2:  # horizontal differencing: a running sum along each row, modulo 2**16
        arr = np.cumsum(arr, axis=1, dtype=np.uint16)
    return arr


def encode_tiff(arr: np.ndarray, *, icc_profile: bytes | None = None) -> bytes:
    """Encode ``(H, W)`` / ``(H, W, C)`` ``uint8`` or ``uint16`` samples (C = 1..4; the last of 2 or 4 is
    an unassociated alpha) as a little-endian TIFF: one Deflate strip, horizontal differencing."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_tiff: expected (H, W, 1..4) uint8 or uint16 samples, got {arr.shape} {arr.dtype}")
    height, width, spp = arr.shape
    bits = arr.dtype.itemsize * 8
    diff = arr.copy()
    diff[:, 1:] -= arr[:, :-1]  # unsigned arithmetic wraps, as the predictor is defined
    strip = zlib.compress(np.ascontiguousarray(diff.astype("<u" + str(bits // 8))).tobytes(), 6)
    entries: list[tuple[int, int, list[int] | bytes]] = [
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [bits] * spp),
        (259, 3, [8]),
        (262, 3, [2 if spp >= 3 else 1]),
        (273, 4, [0]),  # patched below
        (277, 3, [spp]),
        (278, 4, [height]),
        (279, 4, [len(strip)]),
        (284, 3, [1]),
        (317, 3, [2]),
    ]
    if spp in (2, 4):
        entries.append((338, 3, [2]))  # ExtraSamples: unassociated alpha
    if icc_profile:
        entries.append((34675, 7, icc_profile))
    entries.sort(key=lambda e: e[0])
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()
    extra_base = 8 + ifd_size
    strip_offset = None
    packed = []
    for tag, typ, values in entries:
        fmt, size = _TYPES[typ]
        payload = values if isinstance(values, bytes) else struct.pack(f"<{len(values)}{fmt}", *values)
        n = len(values)
        if len(payload) <= 4:
            packed.append(struct.pack("<HHI", tag, typ, n) + payload.ljust(4, b"\0"))
        else:
            if len(extra) % 2:
                extra += b"\0"
            packed.append(struct.pack("<HHII", tag, typ, n, extra_base + len(extra)))
            extra += payload
    strip_offset = extra_base + len(extra)
    ifd = struct.pack("<H", len(entries)) + b"".join(packed) + struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", 8)
    body = bytearray(head + ifd + extra + strip)
    # Patch StripOffsets (an inline LONG) now that the strip's position is known.
    index = [e[0] for e in entries].index(273)
    pos = 8 + 2 + 12 * index + 8
    body[pos : pos + 4] = struct.pack("<I", strip_offset)
    return bytes(body)
