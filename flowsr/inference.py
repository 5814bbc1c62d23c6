"""Model-level inference helpers: any image size, large images in tiles, one API for every family.

This module sits above :mod:`flowsr.models` (the command line, :mod:`flowsr.cli`, is built on it):

* :func:`pad_to_multiple` / :func:`crop_to`: reflect-pad the bottom/right of an image to a
  multiple of the model's factor and crop the output back, so any input size works.
* :func:`tiled`: run an image-to-image function on overlapping tiles and blend them with linear
  (feathered) ramps, so peak memory is bounded by the tile size, not the image size.
* :func:`super_resolve`, :func:`downscale`, :func:`upscale`: SR sampling and rescaling for every
  model family (HCFlow SR / rescaling, SRFlow, IRN), whole-image or tiled, on any device.

Latents and tiling. A flow's output depends on its latents; drawing them *per tile* would give
each tile an independent sample, and the overlaps would blend two unrelated samples (blurry
seams at temperature > 0). Instead the latents of the whole (padded) image are drawn once, in the
order and from the generator the model's own ``sample`` would use, and every tile decodes its
crop of them. Tiled and whole-image outputs therefore differ only by the tiles' border effects
(the receptive field of the networks), at every temperature (``tests/test_cli_inference.py`` checks a
mean difference below 1/255 at temperatures 0 and 0.8). The latents, the output accumulator and
its weight map are image-sized (together about 2.5x the output image in float32, ~130 MB for a
2048x2048 output); every network activation is tile-sized. The whole-image path (``tile=None``)
draws exactly what ``model.sample(lr, temperature, generator=g)`` draws, so both give the same
image for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import torch
from torch import Tensor
from torch.nn import functional as F

from flowsr.layers.quantization import quantize
from flowsr.models.base import FlowSRModel, check_generator, check_temperature

__all__ = [
    "DEFAULT_OVERLAP",
    "hr_multiple",
    "pad_to_multiple",
    "crop_to",
    "tile_starts",
    "tile_boxes",
    "ramp",
    "tiled",
    "draw_latents",
    "super_resolve",
    "downscale",
    "upscale",
]

#: Default tile overlap in *input* pixels of the tiled function (LR pixels for SR / upscaling).
DEFAULT_OVERLAP = 16

Box = tuple[int, int, int, int]  # (top, bottom, left, right), half-open


# -- model adapters ---------------------------------------------------------------------------------


def _latent_ratios(model: FlowSRModel) -> list[tuple[Fraction, Fraction]]:
    """Spatial size of each latent divided by the LR size (e.g. 2 for HCFlow x4's level 0, 1/2 for SRFlow's z)."""
    ref = 64 * model.lr_multiple
    return [(Fraction(s[-2], ref), Fraction(s[-1], ref)) for s in model.latent_shapes((ref, ref), 1)]


def hr_multiple(model: FlowSRModel) -> int:
    """HR sizes must be a multiple of this: ``model.scale * model.lr_multiple``."""
    return int(model.scale) * model.lr_multiple


# -- padding ----------------------------------------------------------------------------------------


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "reflect") -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``x`` (``(..., H, W)``) to multiples of ``multiple``.

    Returns ``(padded, (H, W))``; undo with :func:`crop_to` (times the scale for a model output).
    ``mode`` is that of :func:`torch.nn.functional.pad` (``"reflect"``, ``"replicate"``,
    ``"constant"``); reflection needs the pad to be smaller than the image, so tiny images fall
    back to ``"replicate"``. ``x`` is returned unchanged when no padding is needed.
    """
    if multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be >= 1, got {multiple}")
    if x.dim() < 2:
        raise ValueError(f"pad_to_multiple: expected (..., H, W), got shape {tuple(x.shape)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"
    shape = x.shape
    x4 = x.reshape(-1, *shape[-3:]) if x.dim() >= 3 else x[None, None]
    if x4.dim() == 3:
        x4 = x4[None]
    out = F.pad(x4, (0, pw, 0, ph), mode=mode)
    return out.reshape(*shape[:-2], h + ph, w + pw), (h, w)


def crop_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """The top-left ``size = (H, W)`` part of ``x`` (``(..., H', W')`` with ``H' >= H``, ``W' >= W``)."""
    h, w = int(size[0]), int(size[1])
    if x.shape[-2] < h or x.shape[-1] < w:
        raise ValueError(f"crop_to: cannot crop {tuple(x.shape[-2:])} to the larger size {(h, w)}")
    return x[..., :h, :w]


# -- tiling -----------------------------------------------------------------------------------------


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Neighbouring tiles overlap by at least ``overlap``; the tiles are spread evenly (the first
    starts at 0, the last ends at ``length``); every start is a multiple of ``align``. ``tile``,
    ``overlap`` and ``length`` must be multiples of ``align`` (:func:`tiled` rounds them), and
    ``overlap <= tile / 2`` so that no point lies in more than two tiles along one axis. A length
    that fits in one tile gives ``[0]`` (that tile is then ``length`` long).
    """
    if align < 1 or tile < 1 or overlap < 0:
        raise ValueError(f"tile_starts: need tile >= 1, overlap >= 0, align >= 1; got {tile}, {overlap}, {align}")
    if tile % align or overlap % align or length % align:
        raise ValueError(
            f"tile_starts: tile {tile}, overlap {overlap} and length {length} must be multiples of {align}"
        )
    if 2 * overlap > tile:
        raise ValueError(f"tile_starts: overlap {overlap} must be at most half the tile size {tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = 1 + math.ceil((length - tile) / stride)
    span = (length - tile) // align  # in units of align
    # Even spread, rounded to the alignment; consecutive gaps are floor/ceil of span / (n - 1) <= stride.
    return [align * round(i * span / (n - 1)) for i in range(n)]


def tile_boxes(
    size: Sequence[int], tile: int | Sequence[int], overlap: int | Sequence[int], align: int = 1
) -> list[Box]:
    """All tiles ``(top, bottom, left, right)`` of an image of ``size = (H, W)`` (row-major order)."""
    th, tw = _pair(tile, "tile")
    oh, ow = _pair(overlap, "overlap")
    h, w = int(size[0]), int(size[1])
    rows = tile_starts(h, th, oh, align)
    cols = tile_starts(w, tw, ow, align)
    return [(r, min(r + th, h), c, min(c + tw, w)) for r in rows for c in cols]


def ramp(length: int, before: int, after: int, margin: int = 0, dtype=torch.float32, device=None) -> Tensor:
    """Feathering weights along one axis of a tile.

    ``before`` / ``after``: overlap (in samples) with the previous / next tile. Over such an
    overlap of ``k`` samples the weight is 0 for the ``margin`` samples nearest the tile's edge
    (where the tile lacks context), rises linearly over the middle ``k - 2 margin`` samples
    (``(j + 0.5 - margin) / (k - 2 margin)``) and is 1 beyond; elsewhere it is 1. The next tile
    gets the mirror image, so two neighbours' weights sum to exactly 1 in their overlap (a linear
    cross-fade, a hard seam in the middle when ``k <= 2 margin``).
    """
    w = torch.ones(length, dtype=dtype, device=device)
    if before > 0:
        w[:before] = _rising(before, margin, dtype, device)
    if after > 0:
        w[length - after :] = torch.minimum(w[length - after :], _rising(after, margin, dtype, device).flip(0))
    return w


def _rising(k: int, margin: int, dtype, device) -> Tensor:
    j = torch.arange(k, dtype=torch.float64, device=device) + 0.5
    width = k - 2 * margin
    if width <= 0:
        return (j >= k / 2).to(dtype)
    return ((j - margin) / width).clamp(0, 1).to(dtype)


def _overlaps(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """Per tile along one axis: overlap with the previous and with the next tile (input units)."""
    ends = [min(s + tile, length) for s in starts]
    out = []
    for i in range(len(starts)):
        before = ends[i - 1] - starts[i] if i > 0 else 0
        after = ends[i] - starts[i + 1] if i + 1 < len(starts) else 0
        out.append((before, after))
    return out


def _as_fraction(scale: float | int | Fraction) -> Fraction:
    f = Fraction(scale).limit_denominator(1024)
    if f <= 0:
        raise ValueError(f"tiled: scale must be positive, got {scale!r}")
    return f


def _scaled(v: int, scale: Fraction, what: str) -> int:
    out = v * scale
    if out.denominator != 1:
        raise ValueError(f"tiled: {what} {v} times the scale {scale} is not an integer; align tiles to the scale")
    return int(out)


def tiled(
    fn: Callable[..., Tensor],
    x: Tensor,
    tile: int | Sequence[int] | None,
    overlap: int | Sequence[int] = DEFAULT_OVERLAP,
    scale: float | int | Fraction = 1,
    *,
    align: int = 1,
    margin: int | None = None,
    with_box: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` and blend the outputs with feathered (linear) ramps.

    Args:
        fn: ``(B, C, h, w) -> (B, C', h * scale, w * scale)``; called as ``fn(tile)`` or, with
            ``with_box=True``, ``fn(tile, box)`` where ``box = (top, bottom, left, right)`` is the
            tile's position in ``x`` (e.g. to crop matching latents).
        x: ``(B, C, H, W)``; ``H`` and ``W`` must be multiples of ``align`` (see :func:`pad_to_multiple`).
        tile: tile size in input pixels (int or ``(th, tw)``); rounded down to a multiple of
            ``align``. ``None`` or a tile at least as large as the image calls ``fn(x)`` once.
        overlap: overlap between neighbouring tiles in input pixels; rounded up to a multiple of
            ``align`` and capped at half the tile.
        scale: output size / input size (e.g. 4 for x4 SR, ``1/4`` for a x4 downscale).
        align: tile positions and sizes are multiples of this (the model's factor).
        margin: input pixels at each inner tile edge that get weight 0 (context only: a
            convolutional network's output is least accurate near a border it cannot see past);
            default ``overlap // 4`` (rounded down to ``align``). The rest of each overlap is
            cross-faded linearly (:func:`ramp`).
        progress: called as ``progress(done, total)`` after each tile (e.g. a progress bar);
            not called when the image is processed in one piece.

    Peak memory: one tile's worth of ``fn`` activations plus the output and a weight map. Each
    output pixel is the weighted mean of the tiles covering it; the weights of neighbouring tiles
    sum to 1, so a function without border effects is reproduced exactly.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"tiled: x must be a (B, C, H, W) tensor, got {tuple(getattr(x, 'shape', ())) or type(x)}")
    scale = _as_fraction(scale)
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % align or w % align:
        raise ValueError(f"tiled: image size {(h, w)} must be a multiple of {align}; pad it first")
    call = (lambda t, b: fn(t, b)) if with_box else (lambda t, b: fn(t))
    for name, value in (("tile", tile), ("overlap", overlap)):
        if value is None:
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        low = 1 if name == "tile" else 0
        if any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
            raise ValueError(f"tiled: {name} must be {'a positive' if low else 'a non-negative'} int, got {value!r}")
    if tile is None:
        return call(x, (0, h, 0, w))
    th, tw = _pair(tile, "tile")
    th, tw = max(align, th // align * align), max(align, tw // align * align)
    if th >= h and tw >= w:
        return call(x, (0, h, 0, w))
    oh, ow = _pair(overlap, "overlap")
    oh = min(-(-oh // align) * align, th // 2 // align * align)
    ow = min(-(-ow // align) * align, tw // 2 // align * align)
    if margin is None:
        margin = min(oh, ow) // 4
    margin = max(0, int(margin)) // align * align
    m_out = _scaled(margin, scale, "margin")
    rows, cols = tile_starts(h, th, oh, align), tile_starts(w, tw, ow, align)
    row_ov, col_ov = _overlaps(rows, th, h), _overlaps(cols, tw, w)
    out = weight = None
    done, total = 0, len(rows) * len(cols)
    for r, (rb, ra) in zip(rows, row_ov):
        r1 = min(r + th, h)
        for c, (cb, ca) in zip(cols, col_ov):
            c1 = min(c + tw, w)
            y = call(x[:, :, r:r1, c:c1], (r, r1, c, c1))
            oy0, oy1 = _scaled(r, scale, "tile offset"), _scaled(r1, scale, "tile end")
            ox0, ox1 = _scaled(c, scale, "tile offset"), _scaled(c1, scale, "tile end")
            if y.dim() != 4 or y.shape[0] != x.shape[0] or tuple(y.shape[2:]) != (oy1 - oy0, ox1 - ox0):
                raise ValueError(
                    f"tiled: fn mapped a tile of shape {tuple(x[:, :, r:r1, c:c1].shape)} to {tuple(y.shape)}, "
                    f"expected (B, C, {oy1 - oy0}, {ox1 - ox0}) for scale {scale}"
                )
            if out is None:
                oh_, ow_ = _scaled(h, scale, "height"), _scaled(w, scale, "width")
                out = torch.zeros(y.shape[0], y.shape[1], oh_, ow_, dtype=y.dtype, device=y.device)
                weight = torch.zeros(1, 1, oh_, ow_, dtype=y.dtype, device=y.device)
            wy = ramp(oy1 - oy0, _scaled(rb, scale, "overlap"), _scaled(ra, scale, "overlap"), m_out, y.dtype, y.device)
            wx = ramp(ox1 - ox0, _scaled(cb, scale, "overlap"), _scaled(ca, scale, "overlap"), m_out, y.dtype, y.device)
            wmap = wy[:, None] * wx[None, :]
            out[:, :, oy0:oy1, ox0:ox1] += y * wmap
            weight[:, :, oy0:oy1, ox0:ox1] += wmap
            del y
            done += 1
            if progress is not None:
                progress(done, total)
    return out.div_(weight)  # in place: no second image-sized buffer


# -- sampling ---------------------------------------------------------------------------------------


def draw_latents(
    model: FlowSRModel,
    lr_size: Sequence[int],
    temperature: float,
    generator: torch.Generator | None = None,
    *,
    batch: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """Latents ``N(0, I) * temperature`` of the whole image for an LR image of ``lr_size``, deepest first.

    Drawn in the same order, from the same generator, as ``model.sample`` / ``model.upscale`` draw
    them (on the generator's device, then moved to ``device``): the same seed gives the same image.
    """
    temperature = check_temperature(temperature, "draw_latents")
    check_generator(generator, "draw_latents")
    size = tuple(lr_size[-2:])
    if len(size) != 2 or any(not isinstance(v, int) or v < 1 for v in size) or batch < 1:
        raise ValueError(f"draw_latents: need an LR size of two positive ints and batch >= 1, got {lr_size}, {batch}")
    gen_device = generator.device if generator is not None else device
    zs = [
        torch.randn(shape, generator=generator, device=gen_device, dtype=dtype) * temperature
        for shape in model.latent_shapes(size, batch)
    ]
    return [z.to(device) for z in zs] if device is not None else zs


def _decode_tiles(model: FlowSRModel, lr: Tensor, zs: list[Tensor], tile, overlap, progress=None) -> Tensor:
    ratios = _latent_ratios(model)

    def fn(lr_tile: Tensor, box: Box) -> Tensor:
        r0, r1, c0, c1 = box
        crops = [z[:, :, int(r0 * rh) : int(r1 * rh), int(c0 * rw) : int(c1 * rw)] for z, (rh, rw) in zip(zs, ratios)]
        return model.decode(lr_tile, crops).clamp(0, 1)

    return tiled(fn, lr, tile, overlap, model.scale, align=model.lr_multiple, with_box=True, progress=progress)


@torch.no_grad()
def super_resolve(
    model: FlowSRModel,
    lr: Tensor,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    pad_mode: str = "reflect",
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """One HR sample ``(B, C, sH, sW)`` in [0, 1] for ``lr`` ``(B, C, H, W)`` of any size.

    The LR image is padded to the model's ``lr_multiple`` and the output cropped back. ``tile``
    (LR pixels) decodes in overlapping tiles (see the module docstring); ``None`` decodes the
    whole image, identical to ``model.sample(lr, temperature, generator=generator)``. Works for SR
    models and for rescaling models (upscaling an LR they did not make). ``temperature``
    defaults to the model's. ``progress(done, total)`` is called after each tile (a progress
    bar). Raises :class:`~flowsr.models.NonFiniteOutputError` when the model overflows.
    """
    model.check_image(lr, "LR image")
    t = model.default_temperature if temperature is None else temperature
    size = lr.shape[2:]
    x, _ = pad_to_multiple(lr, model.lr_multiple, pad_mode)
    zs = draw_latents(model, x.shape[2:], t, generator, batch=x.shape[0], device=x.device, dtype=x.dtype)
    out = _decode_tiles(model, x, zs, tile, overlap, progress)
    model.check_output(out, t)
    return crop_to(out, (size[0] * model.scale, size[1] * model.scale))


@torch.no_grad()
def upscale(
    model: FlowSRModel,
    lr: Tensor,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    pad_mode: str = "reflect",
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Rescaling LR -> HR (the model's ``upscale``), any size, optionally tiled; same as :func:`super_resolve`."""
    return super_resolve(
        model, lr, temperature, generator, tile=tile, overlap=overlap, pad_mode=pad_mode, progress=progress
    )


@torch.no_grad()
def downscale(
    model: FlowSRModel,
    hr: Tensor,
    *,
    tile: int | None = None,
    overlap: int = 4 * DEFAULT_OVERLAP,
    quantize_8bit: bool = True,
    pad_mode: str = "reflect",
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Rescaling HR -> LR ``(B, C, ceil(H/s), ceil(W/s))``: the flow's LR output clamped to [0, 1]
    and (by default) rounded to 8 bits, as the model's ``downscale``.

    The HR image is padded to a multiple of the scale (so the LR is ``ceil(H / s)`` high; upscaling
    it gives the padded size: crop to ``(H, W)``). ``tile`` and ``overlap`` are in HR pixels.
    """
    if model.task != "rescaling":
        raise ValueError(f"{type(model).__name__} is an SR model, not a rescaling model; it cannot downscale")
    model.check_image(hr, "HR image")
    mult = hr_multiple(model)
    x, _ = pad_to_multiple(hr, mult, pad_mode)
    y = tiled(
        lambda t: model.downscale(t, quantize_8bit=False),
        x,
        tile,
        overlap,
        Fraction(1, model.scale),
        align=mult,
        progress=progress,
    )
    return quantize(y) if quantize_8bit else y
