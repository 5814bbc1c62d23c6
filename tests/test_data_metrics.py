"""flowsr.data (image I/O, MATLAB bicubic imresize, sample images) and flowsr.metrics."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from flowsr.data import (
    SAMPLE_KINDS,
    SAMPLE_SETS,
    from_uint8,
    imresize,
    read_image,
    redistributable_pairs,
    resize_weights,
    sample_images,
    sample_pairs,
    to_uint8,
    write_image,
)
from flowsr.data._png16 import decode_png
from flowsr.metrics import (
    LPIPS,
    bic_hr_psnr,
    bic_hr_ssim,
    diversity,
    gaussian_window,
    lpips_available,
    lr_consistency_psnr,
    psnr,
    quantize_for_metrics,
    rgb_to_y,
    ssim,
)


def _u8(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


# ------------------------------------------------------------------------------------ sample images


def test_sample_images_listing():
    faces = sample_images("face_x8")
    assert [n for n, _, _ in faces] == ["110", "16", "217", "253", "334", "36"]
    assert [n for n, _, _ in sample_images("general_x4")] == ["butterfly"]
    assert [n for n, _, _ in sample_images("open_x4")] == ["brick", "camera", "coins", "grass", "text"]
    assert SAMPLE_KINDS == {"face_x8": 8, "general_x4": 4}  # the demo's sets until it moves to redistributable_pairs
    assert {k: s.scale for k, s in SAMPLE_SETS.items()} == {"open_x4": 4, "general_x4": 4, "face_x8": 8}
    for _, hr, lr in faces:
        assert hr.is_file() and lr.is_file() and hr.name == lr.name
    with pytest.raises(ValueError, match="unknown kind"):
        sample_images("faces")


def test_sample_licences_are_exposed_and_documented():
    pairs = sample_pairs()
    assert len(pairs) == sum(len(sample_images(k)) for k in SAMPLE_SETS)
    by_kind = {p.kind: p for p in pairs}
    assert not by_kind["face_x8"].redistributable and "non-commercial" in by_kind["face_x8"].licence
    assert not by_kind["general_x4"].redistributable and by_kind["general_x4"].licence.startswith("unknown")
    free = redistributable_pairs()
    assert {p.kind for p in free} == {"open_x4"} and free == sample_pairs(redistributable=True)
    assert all(p.licence.startswith(("CC0", "public domain", "no known copyright")) for p in free)
    assert [p.name for p in redistributable_pairs(scale=8)] == []
    assert {p.kind for p in sample_pairs(redistributable=False)} == {"face_x8", "general_x4"}
    root = sample_images("face_x8")[0][1].parents[2]
    readme = (root / "README.md").read_text()
    for kind in SAMPLE_SETS:  # every shipped image is in the README's table; every set has its licence note
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{kind}/` |"))
        listed = {n.strip() for n in row.split("|")[2].strip().strip("`").split(",")}
        assert listed == {p.name for p in pairs if p.kind == kind}, kind
        assert (root / kind / "LICENSE-NOTE").is_file(), kind
    for p in free:  # and each redistributable image has its own provenance row
        assert any(line.startswith(f"| `{p.name}` | ") for line in readme.splitlines()), p.name
    shipped = {p.name for p in root.glob("*/HR/*")}
    assert shipped == {p.name for p in pairs for p in [p.hr]}
    # the redistributable evaluation images are none of the seven training images of the demo models
    train = Path(__file__).resolve().parents[1] / "flowsr" / "recipes" / "data" / "train"
    trained = {p.stem for p in train.iterdir() if p.suffix != ".md"}
    assert len(trained) == 7 and not trained & {p.name for p in pairs}


# ------------------------------------------------------------------------------------------ imresize


@pytest.mark.parametrize("kind", sorted(SAMPLE_SETS))
def test_imresize_reproduces_bundled_lr_exactly(kind):
    """MATLAB bicubic (per-pass rounding) gives the shipped LR files bit for bit."""
    scale = SAMPLE_SETS[kind].scale
    for name, hr_path, lr_path in sample_images(kind):
        hr, lr = _u8(hr_path), _u8(lr_path)
        out = imresize(hr, 1 / scale)
        assert out.dtype == torch.uint8 and out.shape == lr.shape, name
        diff = (out.int() - lr.int()).abs()
        # The brief allows 1 grey level for the butterfly; it is in fact exact (max 0, mean 0).
        assert int(diff.max()) == 0, f"{kind}/{name}: max diff {int(diff.max())}, mean {diff.float().mean():.4f}"


def test_imresize_batch_matches_single_and_shared_copy():
    faces = sample_images("face_x8")
    batch = torch.stack([_u8(hr) for _, hr, _ in faces])
    out = imresize(batch, 1 / 8)
    for i, (_, _, lr) in enumerate(faces):
        assert torch.equal(out[i], _u8(lr))


def _mirror(i: int, n: int) -> int:
    """MATLAB symmetric padding of a 0-based index, the slow obvious way."""
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def _naive_resize_1d(x: np.ndarray, scale: float, out_len: int) -> np.ndarray:
    """A per-pixel loop transcription of MATLAB's bicubic contributions (rows of x)."""

    def cub(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        if t <= 2:
            return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
        return 0.0

    n = x.shape[0]
    aa = scale < 1
    width = 4 / scale if aa else 4
    out = np.zeros((out_len,) + x.shape[1:])
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        ws, ids = [], []
        for k in range(math.ceil(width) + 2):
            j = left + k
            ws.append(scale * cub(scale * (u - j)) if aa else cub(u - j))
            ids.append(_mirror(j - 1, n))
        total = sum(ws)
        out[i] = sum(w / total * x[j] for w, j in zip(ws, ids))
    return out


@pytest.mark.parametrize(
    "shape, scale", [((13, 17), 0.5), ((9, 11), 1 / 3), ((7, 10), 2.5), ((5, 6), 0.37), ((3, 4), 1 / 8), ((12, 9), 3)]
)
def test_imresize_float_matches_naive_transcription(shape, scale):
    rng = np.random.default_rng(1)
    img = rng.random(shape)
    oh, ow = math.ceil(shape[0] * scale), math.ceil(shape[1] * scale)
    ref = _naive_resize_1d(_naive_resize_1d(img, scale, oh).T, scale, ow).T
    out = imresize(torch.from_numpy(img), scale)
    assert out.shape == (oh, ow) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale, size", [(0.25, (64, 80)), (0.5, (30, 22)), (1 / 3, (66, 45)), (2.5, (16, 20))])
def test_imresize_interior_matches_torch_antialiased_bicubic(scale, size):
    """Away from the borders MATLAB's kernel (a = -0.5, stretched by 1/scale) equals torch's antialiased bicubic.

    torch normalises over in-range pixels at the borders instead of mirroring, so only the interior agrees.
    """
    x = torch.rand(1, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = imresize(x, scale)
    b = F.interpolate(x, size=a.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
    m = 3 if scale < 1 else 6
    torch.testing.assert_close(a[..., m:-m, m:-m], b[..., m:-m, m:-m], rtol=0, atol=1e-12)


def test_imresize_sizes_ceil_and_round_trip_shapes():
    x = torch.rand(3, 17, 23)
    assert imresize(x, 0.5).shape == (3, 9, 12)  # ceil(8.5), ceil(11.5)
    assert imresize(x, 1 / 3).shape == (3, 6, 8)  # ceil(5.67), ceil(7.67)
    up = imresize(x, 3)
    assert up.shape == (3, 51, 69)
    assert imresize(up, 1 / 3).shape == (3, 17, 23)
    assert imresize(x, (0.5, 2)).shape == (3, 9, 46)
    assert imresize(x, output_size=(5, 40)).shape == (3, 5, 40)
    assert imresize(x, output_size=8).shape == (3, 8, 8)
    assert imresize(x[None], 0.5).shape == (1, 3, 9, 12)
    assert imresize(x[0], 0.5).shape == (9, 12)
    # The odd-size round trip down-up keeps the size only when ceil says so.
    y = torch.rand(1, 1, 15, 15)
    assert imresize(imresize(y, 0.5), 2).shape == (1, 1, 16, 16)


def test_imresize_identity_constant_and_errors():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    assert torch.equal(imresize(x, 1), x)  # cubic(0)=1, cubic(+-1)=cubic(+-2)=0 exactly
    const = torch.full((3, 11, 13), 0.3, dtype=torch.float64)
    for s in (0.25, 1 / 3, 2.0):
        torch.testing.assert_close(imresize(const, s), torch.full_like(imresize(const, s), 0.3), rtol=0, atol=1e-14)
    c8 = torch.full((3, 16, 16), 77, dtype=torch.uint8)
    assert torch.equal(imresize(c8, 0.25), torch.full((3, 4, 4), 77, dtype=torch.uint8))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x, 0.5, output_size=(4, 4))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x)
    with pytest.raises(ValueError, match="uint8 or floating"):
        imresize(torch.zeros(3, 4, 4, dtype=torch.int16), 0.5)
    with pytest.raises(ValueError, match="positive"):
        imresize(x, -1)
    with pytest.raises(ValueError, match="shape"):
        imresize(torch.zeros(4), 0.5)
    w, idx = resize_weights(10, 5, 0.5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert idx.min() >= 0 and idx.max() < 10


def test_imresize_float_vs_uint8_paths():
    rng = np.random.default_rng(2)
    img8 = torch.from_numpy(rng.integers(0, 256, (3, 24, 20), dtype=np.uint8))
    # One pass only (width): uint8 = MATLAB rounding (half away from zero) of the float path, clipped.
    f = imresize(img8.double(), (1, 0.5))
    u = imresize(img8, (1, 0.5))
    assert u.dtype == torch.uint8
    assert torch.equal(u, torch.floor(f.clamp(0, 255) + 0.5).to(torch.uint8))
    # Two passes: rounded after each pass, so within one level of the unrounded float result.
    f2 = imresize(img8.double(), 0.5)
    assert (imresize(img8, 0.5).double() - f2.clamp(0, 255)).abs().max() <= 1.0
    # The float path neither rounds nor clips: an edge overshoots when upscaling.
    edge = torch.zeros(1, 8, 8)
    edge[..., 4:] = 1.0
    up = imresize(edge, 2)
    assert up.dtype == torch.float32 and up.min() < 0 and up.max() > 1
    up8 = imresize((edge * 255).to(torch.uint8), 2)
    assert up8.min() == 0 and up8.max() == 255
    # float dtypes are kept; half precision is computed in float32.
    assert imresize(edge.double(), 0.5).dtype == torch.float64
    half = imresize(edge.half(), 0.5)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), imresize(edge, 0.5), rtol=0, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_imresize_cuda_matches_cpu():
    _, hr, lr = sample_images("general_x4")[0]
    out = imresize(_u8(hr).cuda(), 0.25)
    assert out.is_cuda and torch.equal(out.cpu(), _u8(lr))
    x = torch.rand(2, 3, 33, 47)
    torch.testing.assert_close(imresize(x.cuda(), 1 / 3).cpu(), imresize(x, 1 / 3), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- image I/O


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(img_bytes: np.ndarray, bpp: int, first_filter: int) -> bytes:
    """PNG-filter an (h, w*bpp) byte image, cycling through all five filter types row by row."""
    out = bytearray()
    h, n = img_bytes.shape
    prev = np.zeros(n, dtype=np.int64)
    for y in range(h):
        ft = (first_filter + y) % 5
        row = img_bytes[y].astype(np.int64)
        out.append(ft)
        for i in range(n):
            a = int(row[i - bpp]) if i >= bpp else 0
            b = int(prev[i])
            c = int(prev[i - bpp]) if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][ft]
            out.append((int(row[i]) - pred) % 256)
        prev = row
    return bytes(out)


def _encode_png(arr: np.ndarray, depth: int, ctype: int, interlace: bool = False) -> bytes:
    """A minimal PNG writer (all filter types, optional Adam7) to test the decoder independently of Pillow."""
    h, w, ch = arr.shape
    nbytes = depth // 8
    be = arr.astype(">u2").view(np.uint8).reshape(h, w, ch * 2) if nbytes == 2 else arr.astype(np.uint8)
    bpp = ch * nbytes
    if interlace:
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    else:
        passes = ((0, 0, 1, 1),)
    raw = b""
    for k, (x0, y0, dx, dy) in enumerate(passes):
        sub = be[y0::dy, x0::dx]
        if sub.size:
            raw += _filter_rows(sub.reshape(sub.shape[0], -1), bpp, k)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("ctype, ch", [(2, 3), (6, 4), (4, 2), (0, 1)])
def test_png16_decoder_all_filters_and_adam7(ctype, ch, interlace):
    rng = np.random.default_rng(ctype)
    arr = rng.integers(0, 65536, (11, 13, ch), dtype=np.uint16)
    dec, depth = decode_png(_encode_png(arr, 16, ctype, interlace))
    assert depth == 16 and dec.dtype == np.uint16
    np.testing.assert_array_equal(dec, arr)
    arr8 = rng.integers(0, 256, (9, 10, ch), dtype=np.uint8)
    dec8, depth8 = decode_png(_encode_png(arr8, 8, ctype, interlace))
    assert depth8 == 8
    np.testing.assert_array_equal(dec8, arr8)


def test_read_16bit_colour_png_full_precision(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    rgb[0, 0] = (0, 65535, 257)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_encode_png(rgb, 16, 2, interlace=True))
    img = read_image(p)
    assert img.shape == (3, 6, 7) and img.dtype == torch.float32
    expect = torch.from_numpy((rgb.astype(np.float32) / np.float32(65535)).transpose(2, 0, 1).copy())
    assert torch.equal(img, expect)
    assert img[:, 0, 0].tolist() == [0.0, 1.0, pytest.approx(257 / 65535)]
    # Pillow alone would keep only the high byte.
    assert np.asarray(Image.open(p)).dtype == np.uint8
    # RGBA 16: alpha dropped by default, composited on request.
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 0, np.uint16)], axis=-1)
    p2 = tmp_path / "rgba16.png"
    p2.write_bytes(_encode_png(rgba, 16, 6))
    assert torch.equal(read_image(p2), expect)
    assert torch.equal(read_image(p2, alpha="white"), torch.ones(3, 6, 7))
    assert torch.equal(read_image(p2, alpha="black"), torch.zeros(3, 6, 7))


def test_read_grey_16bit_png_and_tiff(tmp_path):
    g = np.array([[0, 65535, 1000], [32768, 1, 65534]], dtype=np.uint16)
    expect = torch.from_numpy(g.astype(np.float32) / np.float32(65535))[None].expand(3, -1, -1)
    for ext in ("png", "tif"):
        p = tmp_path / f"g16.{ext}"
        Image.fromarray(g).save(p)
        assert Image.open(p).mode.startswith("I;16")
        img = read_image(p)
        assert torch.equal(img, expect), ext
    # A 16-bit grey file is scaled, not truncated: 1000 / 65535, not (1000 >> 8) / 255.
    assert read_image(tmp_path / "g16.png")[0, 0, 2].item() == pytest.approx(1000 / 65535)


def test_read_grey_bilevel_palette_cmyk(tmp_path):
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (3, 5, 6)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert torch.equal(img[0], from_uint8(grey))
    Image.fromarray(grey > 128).save(tmp_path / "b.png")  # mode "1"
    assert torch.equal(read_image(tmp_path / "b.png")[2], torch.from_numpy(grey > 128).float())
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    want = from_uint8(np.array(pal.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(read_image(tmp_path / "p.png"), want)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    assert torch.equal(read_image(tmp_path / "pt.png"), want)  # transparency dropped
    cmyk = Image.fromarray(rgb).convert("CMYK")
    for ext in ("tif", "jpg"):
        cmyk.save(tmp_path / f"c.{ext}")
        out = read_image(tmp_path / f"c.{ext}")
        ref = from_uint8(np.array(Image.open(tmp_path / f"c.{ext}").convert("RGB"))).permute(2, 0, 1)
        assert out.shape == (3, 5, 6) and torch.equal(out, ref)


def test_read_rgba_and_la_alpha_policies(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[255, 0], [51, 102]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    drop = read_image(tmp_path / "a.png")
    assert torch.equal(drop[0], torch.full((2, 2), 200 / 255)) and drop[1:].abs().max() == 0
    a = torch.tensor([[255, 0], [51, 102]], dtype=torch.float32) / 255
    white = read_image(tmp_path / "a.png", alpha="white")
    torch.testing.assert_close(white[0], 200 / 255 * a + (1 - a))
    torch.testing.assert_close(white[1], 1 - a)
    black = read_image(tmp_path / "a.png", alpha="black")
    torch.testing.assert_close(black[0], 200 / 255 * a)
    assert black[1].abs().max() == 0
    la = np.stack([np.full((2, 2), 90, np.uint8), rgba[..., 3]], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert torch.equal(read_image(tmp_path / "la.png"), torch.full((3, 2, 2), 90 / 255))
    # an 8-bit RGB colour key (tRNS) is transparency too
    key = np.full((2, 2, 3), 10, np.uint8)
    key[0, 0] = 200
    Image.fromarray(key).save(tmp_path / "key.png", transparency=(10, 10, 10))
    assert torch.equal(read_image(tmp_path / "key.png"), from_uint8(key).permute(2, 0, 1))
    keyed = read_image(tmp_path / "key.png", alpha="white")
    assert torch.equal(keyed[:, 0, 0], from_uint8(torch.full((3,), 200, dtype=torch.uint8))) and torch.equal(
        keyed[:, 1:], torch.ones(3, 1, 2)
    )
    with pytest.raises(ValueError, match="alpha must be one of"):
        read_image(tmp_path / "la.png", alpha="grey")


def _tiff_rgb16(path: Path, arr: np.ndarray) -> None:
    """A minimal uncompressed little-endian 16-bit RGB TIFF."""
    h, w, _ = arr.shape
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, None)]
    entries += [(277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, arr.nbytes), (284, 3, 1, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_off = 8 + ifd_size
    data_off = bits_off + 6
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = bits_off if tag == 258 else data_off if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 and tag != 258 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    path.write_bytes(
        b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + arr.astype("<u2").tobytes()
    )


def test_read_other_formats_and_refusals(tmp_path):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    want = from_uint8(rgb).permute(2, 0, 1)
    for ext in ("bmp", "tif", "png"):
        Image.fromarray(rgb).save(tmp_path / f"x.{ext}")
        assert torch.equal(read_image(tmp_path / f"x.{ext}"), want), ext
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    jpg = read_image(tmp_path / "x.jpg")
    assert jpg.shape == (3, 7, 9) and jpg.dtype == torch.float32 and 0 <= jpg.min() and jpg.max() <= 1
    # 32-bit integer TIFF holding 16-bit values -> /65535; float TIFF -> refused.
    Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I").save(tmp_path / "i.tif")
    assert read_image(tmp_path / "i.tif")[:, 0].tolist() == [[0.0, 1.0]] * 3
    Image.fromarray(np.zeros((2, 2), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="float"):
        read_image(tmp_path / "f.tif")
    # 16-bit RGB TIFF (Pillow would truncate it to 8 bits): read at full precision by flowsr's own decoder.
    rgb16 = rng.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    _tiff_rgb16(tmp_path / "rgb16.tif", rgb16)
    expect = torch.from_numpy((rgb16.astype(np.float32) / np.float32(65535)).transpose(2, 0, 1).copy())
    assert torch.equal(read_image(tmp_path / "rgb16.tif"), expect)


def test_read_unreadable_files_raise_one_line_value_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    data = good.read_bytes()
    cases = {
        "missing.png": None,
        "text.png": b"this is not an image\n",
        "empty.png": b"",
        "truncated.png": data[: len(data) // 2],
    }
    p16 = _encode_png(np.zeros((4, 4, 3), np.uint16), 16, 2)
    cases["trunc16.png"] = p16[:-20]
    bad_crc = bytearray(p16)
    bad_crc[40] ^= 0xFF
    cases["crc16.png"] = bytes(bad_crc)
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            read_image(path)
        msg = str(info.value)
        assert msg.startswith(f"read_image: cannot read '{path}': ") and "\n" not in msg, (name, msg)
    with pytest.raises(ValueError, match="cannot read"):
        read_image(tmp_path)  # a folder


def test_uint8_helpers():
    t = torch.tensor([-0.2, 0.0, 0.3, 1.0, 1.7, 0.5 / 255, 1.5 / 255, 2.5 / 255], dtype=torch.float64)
    u = to_uint8(t)
    assert u.dtype == torch.uint8
    assert u[:5].tolist() == [0, 0, 76, 255, 255]  # 0.3 * 255 == 76.5 in float64: ties to even -> 76
    y = t.clamp(0, 1) * 255
    assert torch.equal(u, torch.round(y).to(torch.uint8))
    ties = (y == torch.floor(y) + 0.5).nonzero().flatten().tolist()
    assert ties == [2, 5, 6, 7]  # 76.5, 0.5, 1.5, 2.5 exactly: ties to even like torch.round
    assert [int(u[i]) for i in ties] == [76, 0, 2, 2]
    assert torch.equal(to_uint8(u), u)
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([float("nan")]))
    a = np.arange(256, dtype=np.uint8)
    f = from_uint8(a)
    assert f.dtype == torch.float32 and torch.equal(f, torch.arange(256, dtype=torch.float32) / 255)
    assert torch.equal(to_uint8(f), torch.from_numpy(a))  # exact round trip
    with pytest.raises(ValueError):
        from_uint8(np.zeros(3, np.int32))


def test_write_read_round_trip_and_atomicity(tmp_path):
    g = torch.Generator().manual_seed(6)
    img = torch.rand(3, 10, 12, generator=g) * 1.2 - 0.1  # out of range values get clamped
    for ext in ("png", "bmp", "tif"):
        path = write_image(tmp_path / f"r.{ext}", img)
        back = read_image(path)
        assert torch.equal(back, from_uint8(to_uint8(img))), ext
    write_image(tmp_path / "r.jpg", img, quality=95)
    assert read_image(tmp_path / "r.jpg").shape == (3, 10, 12)
    # overwrite in place, no temporary files left behind, usual permissions
    write_image(tmp_path / "r.png", torch.zeros(3, 4, 4))
    assert read_image(tmp_path / "r.png").shape == (3, 4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.bmp", "r.jpg", "r.png", "r.tif"]
    assert (tmp_path / "r.png").stat().st_mode & 0o644 == 0o644
    # grey and uint8 tensors
    grey = torch.rand(1, 5, 5, generator=g)
    write_image(tmp_path / "g.png", grey)
    assert Image.open(tmp_path / "g.png").mode == "L"
    assert torch.equal(read_image(tmp_path / "g.png"), from_uint8(to_uint8(grey)).expand(3, -1, -1))
    u8 = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8, generator=g)
    write_image(tmp_path / "u.png", u8[None])
    assert torch.equal(read_image(tmp_path / "u.png"), from_uint8(u8))
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "x.unknown", img)
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "n.png", torch.full((3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "s.png", torch.zeros(2, 3, 3))
    assert not (tmp_path / "n.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ metrics


def test_rgb_to_y_constants():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    y = rgb_to_y(rgb.T[:, :, None]).flatten()
    expect = [(16 + 65.481) / 255, (16 + 128.553) / 255, (16 + 24.966) / 255, 16 / 255, 235 / 255]
    torch.testing.assert_close(y, torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-15)
    assert rgb_to_y(torch.rand(2, 3, 4, 5)).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_y(torch.rand(1, 4, 4))


def test_psnr_values():
    g = torch.Generator().manual_seed(7)
    base = torch.randint(20, 230, (3, 16, 16), generator=g).double() / 255
    assert psnr(base, base) == math.inf
    for d in (1, 3, 10):
        assert psnr(base, base + d / 255) == pytest.approx(20 * math.log10(255 / d), abs=1e-9)
        # Y channel of a grey offset: Y changes by 219/255 * d levels.
        assert psnr(base, base + d / 255, y_channel=True) == pytest.approx(
            20 * math.log10(255 / (d * 219 / 255)), abs=1e-9
        )
    # quantize=True (default) rounds to 8 bits first: a sub-level difference vanishes.
    assert psnr(base, base + 0.3 / 255) == math.inf
    assert psnr(base, base + 0.3 / 255, quantize=False) == pytest.approx(20 * math.log10(255 / 0.3), abs=1e-9)
    # crop_border removes the border on every side.
    other = base.clone()
    other[:, :2, :] = 0
    other[:, :, -2:] = 1
    assert psnr(base, other) < 20 and psnr(base, other, crop_border=2) == math.inf
    assert math.isfinite(psnr(base, other, crop_border=1)) and psnr(base, other, crop_border=1) != psnr(base, other)
    # batches give one value per image
    batch = torch.stack([base, base + 2 / 255])
    out = psnr(batch, torch.stack([base, base]))
    assert out.shape == (2,) and out[0] == math.inf and out[1] == pytest.approx(20 * math.log10(255 / 2))
    # uint8 images are k / 255 whatever quantize says
    b8 = to_uint8(base)
    assert psnr(b8, to_uint8(base + 3 / 255), quantize=False) == pytest.approx(20 * math.log10(255 / 3), abs=1e-9)
    assert psnr(b8, base, quantize=False) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        psnr(base, base[:, :8])
    with pytest.raises(ValueError, match="crop_border"):
        psnr(base, base, crop_border=8)


def test_ssim_values_and_symmetry():
    g = torch.Generator().manual_seed(8)
    a = torch.rand(3, 32, 28, generator=g)
    b = (a + 0.1 * torch.randn(3, 32, 28, generator=g)).clamp(0, 1)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    s_ab, s_ba = ssim(a, b), ssim(b, a)
    assert s_ab == pytest.approx(s_ba, abs=1e-12) and 0 < s_ab < 1
    # RGB SSIM is the mean of the per-channel SSIMs.
    per = [ssim(a[c : c + 1], b[c : c + 1]) for c in range(3)]
    assert s_ab == pytest.approx(sum(per) / 3, abs=1e-12)
    # Two constant images: sigma = 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    m1, m2 = 100, 140
    c1 = (0.01 * 255) ** 2
    const = ssim(torch.full((1, 12, 12), m1 / 255), torch.full((1, 12, 12), m2 / 255))
    assert const == pytest.approx((2 * m1 * m2 + c1) / (m1 * m1 + m2 * m2 + c1), abs=1e-12)
    assert ssim(a, b, y_channel=True) != s_ab
    assert ssim(a, b, crop_border=4) != s_ab
    with pytest.raises(ValueError, match="11x11"):
        ssim(a, b, crop_border=9)
    batch = ssim(torch.stack([a, b]), torch.stack([b, b]))
    assert batch.shape == (2,) and batch[0].item() == pytest.approx(s_ab) and batch[1].item() == pytest.approx(1.0)


def test_ssim_matches_scipy_filter_reference():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(9)
    a = torch.rand(1, 20, 24, generator=g)
    b = (a + 0.05 * torch.randn(1, 20, 24, generator=g)).clamp(0, 1)
    x = quantize_for_metrics(a)[0].numpy() * 255
    y = quantize_for_metrics(b)[0].numpy() * 255
    win = gaussian_window().numpy()
    assert win.sum() == pytest.approx(1.0) and win[5, 5] == win.max()

    def filt(z):
        return ndimage.correlate(z, win, mode="reflect")[5:-5, 5:-5]

    mx, my = filt(x), filt(y)
    sx, sy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ref = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sx + sy + c2))).mean()
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)


def test_bic_hr_and_lr_consistency_on_samples():
    for name, hr_path, lr_path in sample_images("face_x8")[:2]:
        hr, lr = read_image(hr_path), read_image(lr_path)
        assert bic_hr_psnr(hr, hr, 8) == math.inf
        assert bic_hr_ssim(hr, hr, 8) == pytest.approx(1.0) or hr.shape[-1] // 8 < 11
        # The LR file is the 8-bit MATLAB downscale of the HR: only the rounding separates them.
        assert lr_consistency_psnr(hr, lr, 8) > 45, name
        sr = imresize(lr, 8).clamp(0, 1)
        v1, v2 = bic_hr_psnr(sr, hr, 8), lr_consistency_psnr(sr, lr, 8)
        assert 25 < v1 < 45 and abs(v1 - v2) < 1.0
    with pytest.raises(ValueError, match="shape"):
        lr_consistency_psnr(torch.rand(3, 16, 16), torch.rand(3, 5, 5), 4)


def test_diversity():
    z = torch.zeros(3, 4, 4)
    two = torch.full((3, 4, 4), 2 / 255, dtype=torch.float64)
    assert diversity([z, two]) == pytest.approx(math.sqrt(2), abs=1e-12)  # std of {0, 2} with N-1
    assert diversity(torch.stack([z, z, z])) == 0.0
    samples = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(10))
    ref = (samples.double() * 255).std(dim=0).mean().item()
    assert diversity(samples) == pytest.approx(ref, rel=1e-12)
    assert diversity(samples, quantize=True) == pytest.approx(
        (quantize_for_metrics(samples) * 255).std(0).mean().item()
    )
    for bad in ([z], [], samples[:1]):
        with pytest.raises(ValueError, match="at least 2"):
            diversity(bad)
    with pytest.raises(ValueError, match="same shape"):
        diversity([z, torch.zeros(3, 4, 5)])


def _fake_lpips_weights(tmp_path: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(11)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    alex = {}
    for i, s in shapes.items():
        alex[f"features.{i}.weight"] = torch.randn(*s, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(s[0])
    alex["classifier.1.weight"] = torch.zeros(2, 2)  # ignored
    lin = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 192, 384, 256, 256))
    }
    pa, pl = tmp_path / "alexnet.pth", tmp_path / "alex_lin.pth"
    torch.save(alex, pa)
    torch.save(lin, pl)
    return pa, pl


def test_lpips_local_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: no AlexNet to find
    ok, msg = lpips_available(None, None)
    assert not ok and "never downloads" in msg
    ok, msg = lpips_available(tmp_path / "nope.pth", tmp_path / "nope2.pth")
    assert not ok and "not found" in msg
    with pytest.raises(FileNotFoundError, match="never downloads"):
        LPIPS(tmp_path / "nope.pth", tmp_path / "nope2.pth")
    pa, pl = _fake_lpips_weights(tmp_path)
    assert lpips_available(pa, pl)[0]
    metric = LPIPS(pa, pl)
    g = torch.Generator().manual_seed(12)
    x = torch.rand(2, 3, 64, 64, generator=g)
    y = torch.rand(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        d_xy, d_yx, d_xx = metric(x, y), metric(y, x), metric(x, x)
    assert d_xy.shape == (2,) and torch.all(d_xy > 0)
    torch.testing.assert_close(d_xy, d_yx)
    assert torch.all(d_xx == 0)
    assert metric(x[0], y[0]).shape == (1,)
    torch.save({"lin0.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="lin1"):
        LPIPS(pa, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="AlexNet"):
        LPIPS(pl, pl)
