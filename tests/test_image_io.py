"""flowsr.data.image_io: images handled as they look (EXIF, alpha, grey, 16 bit), the one list of
extensions, the writer, and the pixel limit of every reader (issue #13 item 2, issue #14 defect 5)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from flowsr.data import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    WRITE_FORMATS,
    from_uint8,
    get_max_pixels,
    imresize,
    is_image_file,
    list_images,
    load_image,
    read_image,
    reset_max_pixels,
    resize_alpha,
    save_image,
    set_max_pixels,
    to_grey,
    write_image,
)
from flowsr.data._png16 import encode_png, png_header
from flowsr.data._tiff16 import encode_tiff

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _default_pixel_limit(monkeypatch):
    monkeypatch.delenv("FLOWSR_MAX_PIXELS", raising=False)
    reset_max_pixels()
    yield
    reset_max_pixels()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _with_chunk_before_idat(png: bytes, chunk: bytes) -> bytes:
    i = png.index(b"IDAT") - 4
    return png[:i] + chunk + png[i:]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _rng_u8(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillows_exif_transpose(tmp_path: Path, orientation: int) -> None:
    rgb = _rng_u8((5, 7, 3), orientation)
    p = tmp_path / "o.png"
    Image.fromarray(rgb).save(p, exif=_exif(orientation))
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    assert torch.equal(read_image(p), from_uint8(want).permute(2, 0, 1))
    assert torch.equal(read_image(p, orient=False), from_uint8(rgb).permute(2, 0, 1))
    img = load_image(p)
    assert torch.equal(img.rgb, from_uint8(want).permute(2, 0, 1)) and img.orientation == orientation
    kinds = [n.kind for n in img.notes]
    assert kinds == (["orientation"] if orientation != 1 else [])
    # The 16-bit PNG decoder reads the eXIf chunk too.
    rgb16 = np.random.default_rng(orientation).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    p16 = tmp_path / "o16.png"
    p16.write_bytes(_with_chunk_before_idat(encode_png(rgb16), _chunk(b"eXIf", _exif(orientation))))
    plane = Image.fromarray(rgb16[..., 0])  # the same motion on one plane (ImageOps.exif_transpose's table)
    motion = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip
    expect = np.asarray(plane.transpose(getattr(Image.Transpose, motion[orientation])) if orientation > 1 else plane)
    assert torch.equal(read_image(p16)[0], torch.from_numpy(expect.astype(np.float32) / np.float32(65535)))


def test_exif_orientation_of_a_jpeg_and_its_note(tmp_path: Path) -> None:
    p = tmp_path / "phone.jpg"
    Image.fromarray(_rng_u8((6, 10, 3))).save(p, exif=_exif(6), quality=100)
    stored = read_image(p, orient=False)
    img = load_image(p)
    assert img.rgb.shape == (3, 10, 6)
    assert torch.equal(img.rgb, torch.rot90(stored, -1, dims=(1, 2)))  # 90° clockwise
    (note,) = img.notes
    assert str(note) == (
        "phone.jpg: EXIF orientation 6 applied (rotated 90° clockwise; now 6x10); the output is stored upright"
    )
    out = tmp_path / "out.png"
    assert save_image(out, img.rgb, like=img) == []
    assert Image.open(out).size == (6, 10) and not Image.open(out).getexif()


# ------------------------------------------------------------------------------------------- alpha


def test_alpha_is_kept_resized_and_reattached(tmp_path: Path) -> None:
    rgba = _rng_u8((8, 6, 4), 1)
    rgba[..., 3] = 0
    rgba[2:6, 1:5, 3] = 255  # an opaque rectangle: bicubic overshoots at its edges -> must be clamped
    p = tmp_path / "logo.png"
    Image.fromarray(rgba).save(p)
    img = load_image(p)
    assert torch.equal(img.rgb, from_uint8(rgba[..., :3]).permute(2, 0, 1))  # straight colours, not composited
    assert torch.equal(img.alpha, from_uint8(rgba[..., 3:]).permute(2, 0, 1))
    assert [n.kind for n in img.notes] == ["alpha"]
    assert torch.equal(read_image(p), img.rgb)  # read_image drops alpha by default, as before
    up = imresize(img.rgb, 2).clamp(0, 1)  # stands in for a model's x2 output
    resized = resize_alpha(img.alpha, (16, 12))
    assert resized.shape == (1, 16, 12) and resized.min() >= 0 and resized.max() <= 1
    unclamped = imresize(img.alpha, output_size=(16, 12))
    assert unclamped.min() < 0 and unclamped.max() > 1  # so the clamp matters
    assert torch.equal(resized, unclamped.clamp(0, 1))
    assert torch.equal(resize_alpha(img.alpha, (8, 6)), img.alpha)
    for ext in ("png", "tif", "webp"):
        out = tmp_path / f"sr.{ext}"
        kw = {"lossless": True} if ext == "webp" else {}
        assert save_image(out, up, like=img, **kw) == []
        back = Image.open(out)
        assert back.mode == "RGBA" and back.size == (12, 16), ext
        arr = np.asarray(back)
        assert np.array_equal(arr[..., 3], np.round(resized[0].numpy() * 255).astype(np.uint8)), ext
        assert np.array_equal(arr[..., :3], np.round(up.permute(1, 2, 0).numpy() * 255).astype(np.uint8)), ext
    notes = save_image(tmp_path / "sr.jpg", up, like=img)
    assert [(n.kind, str(n)) for n in notes] == [
        ("alpha_dropped", "sr.jpg: JPEG has no alpha channel: the alpha plane was dropped")
    ]
    assert Image.open(tmp_path / "sr.jpg").mode == "RGB"


def test_grey_alpha_palette_transparency_and_premultiplied(tmp_path: Path) -> None:
    la = _rng_u8((5, 5, 2), 2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img = load_image(tmp_path / "la.png")
    assert img.grey and img.alpha is not None and {n.kind for n in img.notes} == {"alpha", "grey"}
    save_image(tmp_path / "la_out.png", img.rgb, like=img)
    assert Image.open(tmp_path / "la_out.png").mode == "LA"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "la_out.png")), la)  # unchanged content: exact
    pal = Image.fromarray(_rng_u8((4, 4, 3), 3)).quantize(colors=8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    img = load_image(tmp_path / "p.png")
    assert img.alpha is not None and {n.kind for n in img.notes} == {"palette", "alpha"}
    want = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))
    assert np.array_equal(np.round(img.alpha[0].numpy() * 255).astype(np.uint8), want[..., 3])
    Image.fromarray(_rng_u8((4, 4, 3), 4)).quantize(colors=8).save(tmp_path / "anim.gif", save_all=True,
        append_images=[Image.fromarray(_rng_u8((4, 4, 3), 5)).quantize(colors=8)])  # fmt: skip
    img = load_image(tmp_path / "anim.gif")
    assert img.alpha is None and {n.kind for n in img.notes} == {"palette", "frames"}


# ------------------------------------------------------------------------------------ grey, 16 bit


def test_grey_inputs_give_grey_outputs_by_luma(tmp_path: Path) -> None:
    g = _rng_u8((6, 6), 6)
    Image.fromarray(g).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.grey and img.rgb.shape == (3, 6, 6) and torch.equal(img.rgb[0], img.rgb[2])
    (note,) = img.notes
    assert str(note) == "g.png: grey image: processed as RGB (R = G = B), written back as grey (luma)"
    assert save_image(tmp_path / "same.png", img.rgb, like=img) == []
    assert Image.open(tmp_path / "same.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), g)  # luma of R = G = B is the grey value
    out = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))  # a model's slightly coloured output
    save_image(tmp_path / "out.png", out, like=img)
    luma = 0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2]
    assert torch.equal(to_grey(out)[0], luma)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), torch.round(luma * 255).to(torch.uint8).numpy())
    # Pillow's own RGB -> L conversion uses the same weights (within its integer rounding).
    rgb8 = _rng_u8((6, 6, 3), 7)
    pil = np.asarray(Image.fromarray(rgb8).convert("L")).astype(int)
    ours = torch.round(to_grey(from_uint8(rgb8).permute(2, 0, 1))[0] * 255).numpy().astype(int)
    assert np.abs(pil - ours).max() <= 1


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_inputs_give_16bit_outputs(tmp_path: Path, ext: str, channels: int) -> None:
    arr = np.random.default_rng(channels).integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    arr[0, 0, 0] = 257  # 257 / 65535 is exactly 1 / 255: must not become 8 bits on the way
    src = tmp_path / f"in.{ext}"
    src.write_bytes(encode_png(arr) if ext == "png" else encode_tiff(arr))
    img = load_image(src)
    assert img.bit_depth == 16 and img.grey == (channels <= 2) and (img.alpha is not None) == (channels in (2, 4))
    assert "16bit" in {n.kind for n in img.notes}
    for out_ext in ("png", "tif"):
        out = tmp_path / f"out.{out_ext}"
        assert save_image(out, img.rgb, like=img) == []
        back = load_image(out)
        assert back.bit_depth == 16 and back.grey == img.grey
        assert torch.equal(back.rgb, img.rgb) and (back.alpha is None or torch.equal(back.alpha, img.alpha))
    assert torch.equal(img.rgb[0, 0, 0], torch.tensor(257 / 65535, dtype=torch.float32))
    notes = save_image(tmp_path / "out.jpg", img.rgb, like=img)
    assert "8bit" in {n.kind for n in notes}
    assert Image.open(tmp_path / "out.jpg").mode == ("L" if channels <= 2 else "RGB")


def test_16bit_tiff_written_by_flowsr_is_read_by_pillow_and_other_tiffs_refused_clearly(tmp_path: Path) -> None:
    arr = np.random.default_rng(9).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    write_image(tmp_path / "x.tif", torch.from_numpy(arr.astype(np.float64) / 65535).permute(2, 0, 1), bit_depth=16)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.tif")), (arr >> 8).astype(np.uint8))  # libtiff reads it
    data = bytearray((tmp_path / "x.tif").read_bytes())
    i = data.index(struct.pack("<HHI", 259, 3, 1))
    data[i + 8 : i + 10] = struct.pack("<H", 5)  # claim LZW compression
    (tmp_path / "lzw.tif").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="16-bit TIFF with LZW compression is not supported; save it as a 16-bit PNG"):
        read_image(tmp_path / "lzw.tif")


# ---------------------------------------------------------------------------------------- extensions


def test_one_list_of_image_extensions_for_files_and_folders(tmp_path: Path) -> None:
    assert ".gif" in IMAGE_EXTENSIONS and ".png" in IMAGE_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
    for ext in IMAGE_EXTENSIONS:  # every listed extension is one Pillow (or flowsr) really opens
        assert ext in Image.registered_extensions(), ext
    assert is_image_file("A.GIF") and is_image_file(Path("x.Tiff")) and not is_image_file("notes.txt")
    for name in ("b.gif", "a.PNG", "c.jpeg", "notes.txt", ".hidden.png", "._a.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.gif", "c.jpeg"]
    assert set(WRITE_FORMATS) >= {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


# -------------------------------------------------------------------------------------------- writer


def test_writer_chooses_the_format_by_extension_and_refuses_nan(tmp_path: Path) -> None:
    img = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(1))
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF"), (".bmp", "BMP")):
        write_image(tmp_path / f"x{ext}", img)
        assert Image.open(tmp_path / f"x{ext}").format == fmt
    write_image(tmp_path / "x16.png", img, bit_depth=16)
    assert png_header((tmp_path / "x16.png").read_bytes())[2] == 16
    with pytest.raises(ValueError, match="JPEG holds 8 bits per channel"):
        write_image(tmp_path / "y.jpg", img, bit_depth=16)
    with pytest.raises(ValueError, match="JPEG has no alpha channel"):
        write_image(tmp_path / "y.jpg", img, alpha=torch.ones(1, 6, 8))
    with pytest.raises(ValueError, match="resize_alpha"):
        write_image(tmp_path / "y.png", img, alpha=torch.ones(1, 3, 4))
    with pytest.raises(ValueError, match="unknown image extension '.xyz'"):
        write_image(tmp_path / "y.xyz", img)
    bad = img.clone()
    bad[0, 0, 0] = float("nan")
    bad[1, 2, 3] = float("inf")
    target = tmp_path / "nan.png"
    with pytest.raises(ValueError) as info:
        write_image(target, bad)
    assert str(info.value) == (
        f"write_image: cannot write '{target}': the image contains NaN or Inf (2 of 144 values); nothing was written"
    )
    with pytest.raises(ValueError, match="alpha contains NaN"):
        write_image(target, img, alpha=torch.full((1, 6, 8), float("nan")))
    with pytest.raises(ValueError, match="NaN or Inf"):
        save_image(target, bad)
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_icc_profile_is_carried_to_the_output(tmp_path: Path) -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_rng_u8((4, 4, 3), 11)).save(tmp_path / "c.png", icc_profile=profile)
    img = load_image(tmp_path / "c.png")
    assert img.icc_profile == profile
    for ext in ("png", "jpg", "webp", "tif"):
        save_image(tmp_path / f"o.{ext}", img.rgb, like=img)
        assert Image.open(tmp_path / f"o.{ext}").info.get("icc_profile") == profile, ext
    img.bit_depth = 16
    save_image(tmp_path / "o16.png", img.rgb, like=img)
    assert load_image(tmp_path / "o16.png").icc_profile == profile


# ------------------------------------------------------------------------------------- pixel limit


def _png_header_only(width: int, height: int, depth: int, ctype: int) -> bytes:
    """A tiny PNG declaring ``width x height`` (IHDR, a few bytes of IDAT, IEND)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )


def _bomb_png(side: int = 13400) -> bytes:
    """A valid ~1 MB 16-bit RGB PNG of ``side x side`` black pixels (2.2 GB of raw samples).

    Compressing 1 GB of zeros would take seconds; instead one 100-row block is compressed after a
    full flush (which resets the deflate dictionary, so the block's bytes do not depend on what came
    before) and repeated, and the Adler-32 of ``n`` zero bytes, ``(n mod 65521) << 16 | 1``, is appended.
    """
    row = 1 + side * 6
    rows_per_block = 100
    assert side % rows_per_block == 0
    block = bytes(row * rows_per_block)
    c = zlib.compressobj(9)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()[:-4]  # the empty final block, without the checksum of two blocks
    n = row * side
    stream = first + again * (side // rows_per_block - 1) + end + struct.pack(">I", ((n % 65521) << 16) | 1)
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


def test_small_bomb_stream_is_a_valid_png() -> None:
    data = _bomb_png(200)
    from flowsr.data._png16 import decode_png

    arr, depth = decode_png(data)
    assert depth == 16 and arr.shape == (200, 200, 3) and not arr.any()


@pytest.mark.parametrize(
    "header",
    [
        _png_header_only(13400, 13400, 16, 2),  # the 16-bit path of issue #14
        _png_header_only(13400, 13400, 8, 2),  # the 8-bit (Pillow) path
        _png_header_only(13400, 13400, 16, 0),  # 16-bit grey
        encode_tiff(np.zeros((1, 1, 3), np.uint16)).replace(struct.pack("<HHII", 256, 4, 1, 1),
            struct.pack("<HHII", 256, 4, 1, 13400)).replace(struct.pack("<HHII", 257, 4, 1, 1),
            struct.pack("<HHII", 257, 4, 1, 13400)),  # fmt: skip
    ],
    ids=["png16", "png8", "png16grey", "tiff16"],
)
def test_every_reader_refuses_more_pixels_than_the_limit_before_decoding(tmp_path: Path, header: bytes) -> None:
    p = tmp_path / "bomb.img"
    p.write_bytes(header)
    for fn in (read_image, load_image):
        with pytest.raises(ValueError) as info:
            fn(p)
        msg = str(info.value)
        assert msg.startswith(f"read_image: cannot read '{p}': 13400x13400 = 179,560,000 pixels is more than")
        assert "limit of 89,478,485 pixels" in msg and "FLOWSR_MAX_PIXELS=179560000" in msg
        assert "flowsr.data.set_max_pixels(179560000)" in msg and "\n" not in msg


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch) -> None:
    assert get_max_pixels() == DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    p = tmp_path / "x.jpg"
    Image.fromarray(_rng_u8((10, 12, 3))).save(p)
    monkeypatch.setenv("FLOWSR_MAX_PIXELS", "119")
    assert get_max_pixels() == 119
    with pytest.raises(ValueError, match="12x10 = 120 pixels is more than flowsr's limit of 119 pixels"):
        read_image(p)
    monkeypatch.setenv("FLOWSR_MAX_PIXELS", "120")
    assert read_image(p).shape == (3, 10, 12)
    monkeypatch.setenv("FLOWSR_MAX_PIXELS", "0")
    assert get_max_pixels() is None
    monkeypatch.setenv("FLOWSR_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="FLOWSR_MAX_PIXELS must be a positive number of pixels or 0"):
        read_image(p)
    set_max_pixels(50)  # overrides the environment
    assert get_max_pixels() == 50
    with pytest.raises(ValueError, match="limit of 50 pixels"):
        read_image(p)
    set_max_pixels(None)
    assert get_max_pixels() is None and read_image(p).shape == (3, 10, 12)
    with pytest.raises(ValueError):
        set_max_pixels(-1)
    reset_max_pixels()
    monkeypatch.delenv("FLOWSR_MAX_PIXELS")
    assert get_max_pixels() == DEFAULT_MAX_PIXELS


_BOMB_UNDER_RLIMIT = """
import resource, sys
from flowsr.data import read_image, set_max_pixels

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

headroom = 256 << 20  # far less than the 1 GB the decoder would need for this image
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, resource.RLIM_INFINITY))
try:
    read_image(sys.argv[1])
except ValueError as err:
    print("limited:", err)
set_max_pixels(None)  # the control: without the limit the same file does try to allocate gigabytes
try:
    read_image(sys.argv[1])
except MemoryError:
    print("unlimited: MemoryError")
except ValueError as err:
    print("unlimited:", err)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux features")
def test_decompression_bomb_is_refused_without_a_big_allocation(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png())
    assert bomb.stat().st_size < 1_500_000  # a ~1 MB file declaring 13400x13400 16-bit RGB (1 GB of samples)
    env = {k: v for k, v in os.environ.items() if k != "FLOWSR_MAX_PIXELS"}
    out = subprocess.run(
        [sys.executable, "-c", _BOMB_UNDER_RLIMIT, os.fspath(bomb)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    limited, unlimited = out.stdout.strip().splitlines()
    assert limited.startswith(f"limited: read_image: cannot read '{bomb}': 13400x13400 = 179,560,000 pixels")
    assert unlimited == "unlimited: MemoryError"  # so the rlimit would have caught a big allocation
