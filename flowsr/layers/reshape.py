"""Invertible 2x spatial downsampling: checkerboard squeeze and Haar wavelet transform."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from einops import rearrange
from FrEIA.modules import HaarDownsampling as _FrEIAHaar
from torch import Tensor, nn

from flowsr.layers.base import FlowModule

__all__ = ["HaarDownsampling", "Squeeze"]


def _downsampled_dims(name: str, input_dims: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    if len(input_dims) != 1 or len(input_dims[0]) != 3:
        raise ValueError(f"{name}: expected one input of shape (C, H, W), got {list(input_dims)}")
    c, h, w = (int(d) for d in input_dims[0])
    if h % 2 or w % 2:
        raise ValueError(f"{name}: spatial size ({h}, {w}) is not divisible by 2")
    return [(4 * c, h // 2, w // 2)]


class Squeeze(FlowModule):
    r"""Checkerboard space-to-depth by a factor 2 (RealNVP / Glow "squeeze").

    **Forward**: ``out[:, 4c + 2i + j, y, x] = in[:, c, 2y + i, 2x + j]`` for ``i, j`` in ``{0, 1}``,
    i.e. each input channel becomes four consecutive output channels (its top-left, top-right,
    bottom-left and bottom-right pixels of every 2x2 block).

    **Inverse**: the transposed permutation (depth-to-space).

    **Log-det**: 0 (a permutation), returned as ``(B,)`` zeros.

    Shapes: ``[(B, C, H, W)] -> [(B, 4C, H/2, W/2)]``; ``H`` and ``W`` must be even.

    The channel order is the one of HCFlow's and SRFlow's ``SqueezeLayer``, of nflows'
    ``SqueezeTransform`` and of FrEIA's ``IRevNetDownsampling(legacy_backend=False)``.

    Why not wrap FrEIA's ``IRevNetDownsampling``: it computes the same permutation as a strided
    convolution with one-hot kernels, so every output is a sum of the four block pixels, three
    of them multiplied by 0 -- an ``Inf`` in one pixel turns its neighbours into ``NaN`` (and
    the arithmetic is wasted); it also returns a Python ``float`` log-det. Here the permutation
    is a pure ``einops.rearrange`` (no arithmetic, never modifies the input).

    Papers: RealNVP (Dinh et al., ICLR 2017), Glow (Kingma & Dhariwal, 2018); SRFlow, HCFlow.
    """

    spatial_factor = 2

    def __init__(self, dims_in: Sequence[Sequence[int]], dims_c: Sequence[Sequence[int]] | None = None):
        super().__init__(dims_in, dims_c)
        _downsampled_dims("Squeeze", self.dims_in)
        self._require_no_conditions()

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        x0 = x[0]
        if not rev:
            out = rearrange(x0, "b c (h i) (w j) -> b (c i j) h w", i=2, j=2)
        else:
            out = rearrange(x0, "b (c i j) h w -> b c (h i) (w j)", i=2, j=2)
        return (out,), self._zero_logdet(x0)

    def output_dims(self, input_dims: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        return _downsampled_dims("Squeeze", input_dims)


class HaarDownsampling(FlowModule):
    r"""Haar wavelet downsampling by a factor 2 with sub-band-major channel order (IRN, HCFlow).

    For every channel ``c`` and 2x2 block ``[[a, b], [c', d]]`` (row-major):

    **Forward**::

        band 0 = (a + b + c' + d) / 4     (2x2 box average, the "LR" band)
        band 1 = (a - b + c' - d) / 4     (left minus right column)
        band 2 = (a + b - c' - d) / 4     (top minus bottom row)
        band 3 = (a - b - c' + d) / 4     (diagonal)

    output channel ``band * C + c`` (the first ``C`` channels are the box-averaged image).
    Computed as ``conv2d(x, haar_weights, stride=2, groups=C) / 4`` (channel ``4c + band``),
    then regrouped band-major.

    **Inverse**: regroup channel-major and ``conv_transpose2d(z, haar_weights, stride=2, groups=C)``
    with no extra factor (exact, since the 4x4 Haar matrix ``K`` has ``K K^T = 4 I``).

    **Log-det** (per sample, ``H, W`` of the input): :math:`-(C H W / 4) \ln 16` forward
    (each 2x2 block is mapped by ``K / 4`` with :math:`|\det| = 1/16`); reverse the negative.

    Shapes: ``[(B, C, H, W)] -> [(B, 4C, H/2, W/2)]``; ``H`` and ``W`` must be even.

    ``haar_weights`` ``(4C, 1, 2, 2)`` (row ``4c + band``) is a non-trainable parameter, as in the
    official IRN / HCFlow state_dicts; the kernels are built by FrEIA's ``HaarDownsampling``
    (same kernels and row order). The result equals FrEIA's
    ``HaarDownsampling(order_by_wavelet=True, rebalance=0.5)`` and the official IRN Haar layer,
    log-det included. This class does not subclass FrEIA's: FrEIA 0.2's reverse multiplies its
    input in place (``x_perm *= fac_rev``, mutating the caller's tensor when
    ``order_by_wavelet=False`` and breaking autograd on leaf inputs), keeps its channel
    permutation as plain CPU tensors and returns a ``numpy.float64`` log-det. This module
    never modifies its input and returns ``(B,)`` log-dets.

    Papers: IRN (Xiao et al., "Invertible Image Rescaling", ECCV 2020); HCFlow rescaling
    (Liang et al., ICCV 2021).
    """

    spatial_factor = 2

    def __init__(self, dims_in: Sequence[Sequence[int]], dims_c: Sequence[Sequence[int]] | None = None):
        super().__init__(dims_in, dims_c)
        _downsampled_dims("HaarDownsampling", self.dims_in)
        self._require_no_conditions()
        self.channels = self.dims_in[0][0]
        # Reuse FrEIA's kernel construction (rows 4c + band, +-1 entries); only its weights are kept.
        kernels = _FrEIAHaar([self.dims_in[0]], order_by_wavelet=True, rebalance=0.5).haar_weights.detach().clone()
        self.haar_weights = nn.Parameter(kernels, requires_grad=False)

    def _logdet(self, x0: Tensor, rev: bool) -> Tensor:
        if not rev:  # x0 is the (C, H, W) input
            elements = x0.shape[1] * x0.shape[2] * x0.shape[3]
            value = elements / 4 * math.log(1 / 16.0)
        else:  # x0 is the (4C, H/2, W/2) output; elements = C H W
            elements = x0.shape[1] * x0.shape[2] * x0.shape[3]
            value = elements / 4 * math.log(16.0)
        return x0.new_full((x0.shape[0],), value)

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        self._check_conditions(c, x[0])
        x0 = x[0]
        weights = self.haar_weights.to(x0.dtype)
        if not rev:
            out = F.conv2d(x0, weights, bias=None, stride=2, groups=self.channels) / 4.0
            out = rearrange(out, "b (c k) h w -> b (k c) h w", k=4)
        else:
            out = rearrange(x0, "b (k c) h w -> b (c k) h w", k=4)
            out = F.conv_transpose2d(out, weights, stride=2, groups=self.channels)
        return (out,), self._logdet(x0, rev)

    def output_dims(self, input_dims: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        return _downsampled_dims("HaarDownsampling", input_dims)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
