"""MATLAB-compatible bicubic resizing (``imresize``) for torch tensors.

The LR images of the SR benchmarks (and the example pairs shipped with HCFlow / SRFlow) are made
with MATLAB's ``imresize(img, 1/scale, 'bicubic')``. Reproducing them needs MATLAB's exact
semantics, which differ from ``torch.nn.functional.interpolate(mode='bicubic')``:

* cubic convolution kernel with ``a = -0.5`` (Keys), support ``[-2, 2]`` (width 4);
* **antialiasing** when downscaling (scale ``s < 1``): the kernel is stretched by ``1/s``,
  ``h_s(x) = s * cubic(s * x)`` with width ``4 / s``, so every output pixel averages all input
  pixels under it;
* output pixel ``i`` (1-based) is centred at input coordinate ``u = i / s + 0.5 * (1 - 1/s)``;
  it takes the ``ceil(width) + 2`` input pixels from ``floor(u - width/2)`` on, weights
  normalised to sum to 1;
* **symmetric** border handling (the image is mirrored *including* the edge pixel:
  ``... x1 x0 | x0 x1 ... x_{n-1} | x_{n-1} x_{n-2} ...``);
* output size ``ceil(s * H)`` x ``ceil(s * W)`` for a scale; a requested size gives the scale
  ``out / in`` per dimension;
* the two dimensions are resized one after the other (separable), the dimension with the smaller
  scale first (ties: height first);
* ``uint8`` input: each 1-D pass is computed in float64, then rounded (half away from zero, as
  MATLAB's conversion to ``uint8``) and clipped to ``[0, 255]``, giving a ``uint8`` result;
* floating input: no rounding and no clipping (the float path of BasicSR's ``imresize_np``), the
  result has the input's dtype (float16 / bfloat16 are computed in float32).

Implementation: for each dimension a small table of ``(out, taps)`` input indices and weights is
precomputed (cached) and applied as ``sum_k w[:, k] * x.index_select(dim, idx[:, k])`` — a loop over
the ``ceil(4/s) + 2`` taps only, vectorised over everything else, on whatever device the tensor is
on. See ``docs/metrics.md`` for the verification against the bundled LR images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

__all__ = ["cubic", "imresize", "resize_weights"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``'bicubic'``), float64."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return np.where(ax <= 1.0, inner, np.where(ax <= 2.0, outer, 0.0))


@lru_cache(maxsize=128)
def _weights_cached(in_len: int, out_len: int, scale: float, antialiasing: bool) -> tuple[np.ndarray, np.ndarray]:
    stretch = scale < 1.0 and antialiasing
    width = 4.0 / scale if stretch else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # input coordinate (1-based) of each output centre
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input indices
    dist = u[:, None] - ind
    weights = scale * cubic(scale * dist) if stretch else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Drop taps that are zero for every output pixel (MATLAB does the same; it only saves work).
    keep = np.any(weights != 0.0, axis=0)
    weights, ind = weights[:, keep], ind[:, keep]
    # Symmetric padding: index i (0-based) maps into the period [0..n-1, n-1..0].
    period = 2 * in_len
    m = np.mod(ind.astype(np.int64) - 1, period)
    idx = np.where(m < in_len, m, period - 1 - m)
    weights.setflags(write=False)
    idx.setflags(write=False)
    return weights, idx


def resize_weights(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-output weights and 0-based input indices of one 1-D MATLAB bicubic pass.

    Returns ``(weights, indices)``, both of shape ``(out_len, taps)`` (float64 / int64, read-only,
    cached); output ``i`` is ``sum_k weights[i, k] * x[indices[i, k]]``. ``scale`` is the
    resizing factor of this dimension (``out / in`` when a size was requested).
    """
    if in_len < 1 or out_len < 1:
        raise ValueError(f"resize_weights: lengths must be positive, got in_len={in_len}, out_len={out_len}")
    if not (scale > 0.0 and math.isfinite(scale)):
        raise ValueError(f"resize_weights: scale must be a positive finite number, got {scale}")
    return _weights_cached(int(in_len), int(out_len), float(scale), bool(antialiasing))


def _pair(value, name: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"imresize: {name} must be a number or a pair (height, width), got {value!r}")
        return tuple(value)
    return (value, value)


def _round_half_away_uint8(x: torch.Tensor) -> torch.Tensor:
    # MATLAB's double -> uint8 conversion: round half away from zero, saturate. x >= 0 after clamp.
    return torch.floor(x.clamp(0.0, 255.0) + 0.5)


def _resize_dim(x: torch.Tensor, dim: int, weights: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)  # copies the cached read-only arrays
    ix = torch.tensor(idx, dtype=torch.long, device=x.device)
    # Shape the weights to broadcast along `dim` (a negative dimension: -2 height, -1 width).
    shape = [1] * x.dim()
    shape[dim] = w.shape[0]
    out = None
    for k in range(w.shape[1]):
        term = x.index_select(dim, ix[:, k]) * w[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def imresize(
    img: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    output_size: int | Sequence[int] | None = None,
    *,
    antialiasing: bool = True,
) -> torch.Tensor:
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')`` (see the module docstring).

    Args:
        img: ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` tensor, ``uint8`` (0..255) or floating
            (any range, usually [0, 1]); the last two dimensions are resized. Any device.
        scale: factor (``0.25`` for x4 downscaling) or a pair ``(scale_h, scale_w)``; the output
            size is ``ceil(scale * size)``.
        output_size: ``(out_h, out_w)`` (or one int for both) instead of ``scale``; the scale of
            each dimension is then ``out / in``.
        antialiasing: stretch the kernel when downscaling (MATLAB's default ``True``).

    Returns:
        ``uint8`` input: ``uint8`` output, every pass rounded and clipped (MATLAB). Floating input:
        same dtype, neither rounded nor clipped.
    """
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"imresize: expected a torch.Tensor, got {type(img).__name__}")
    if img.dim() not in (2, 3, 4):
        raise ValueError(f"imresize: expected shape (H, W), (C, H, W) or (B, C, H, W), got {tuple(img.shape)}")
    is_uint8 = img.dtype == torch.uint8
    if not is_uint8 and not img.is_floating_point():
        raise ValueError(f"imresize: expected a uint8 or floating tensor, got {img.dtype}")
    if (scale is None) == (output_size is None):
        raise ValueError("imresize: give exactly one of scale and output_size")
    in_size = (img.shape[-2], img.shape[-1])
    if in_size[0] < 1 or in_size[1] < 1:
        raise ValueError(f"imresize: empty image of size {in_size}")
    if scale is not None:
        scales = tuple(float(s) for s in _pair(scale, "scale"))
        if not all(s > 0.0 and math.isfinite(s) for s in scales):
            raise ValueError(f"imresize: scale must be positive and finite, got {scale!r}")
        out_size = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_size))
    else:
        out_size = tuple(int(o) for o in _pair(output_size, "output_size"))
        if not all(o >= 1 for o in out_size):
            raise ValueError(f"imresize: output_size must be positive, got {output_size!r}")
        scales = tuple(o / n for o, n in zip(out_size, in_size))

    if is_uint8:
        work_dtype = torch.float64
    elif img.dtype in (torch.float32, torch.float64):
        work_dtype = img.dtype
    else:
        work_dtype = torch.float32
    x = img.to(work_dtype)
    # MATLAB resizes the dimension with the smaller scale first (stable sort: height on ties).
    order = sorted(range(2), key=lambda d: scales[d])
    for d in order:
        weights, idx = resize_weights(in_size[d], out_size[d], scales[d], antialiasing)
        x = _resize_dim(x, d - 2, weights, idx)
        if is_uint8:
            x = _round_half_away_uint8(x)
    return x.to(torch.uint8) if is_uint8 else x.to(img.dtype)
