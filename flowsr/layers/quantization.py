"""Quantisation (straight-through) and uniform dequantisation of images in ``[0, 1]``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["dequantize", "quantize"]


class _StraightThroughQuantize(torch.autograd.Function):
    """``round(clamp(x, 0, 1) * levels) / levels`` forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, levels: float) -> Tensor:
        return torch.round(torch.clamp(x, 0, 1) * levels) / levels

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output, None


def quantize(x: Tensor, levels: int = 255) -> Tensor:
    r"""Quantise to ``levels + 1`` grey levels with a straight-through gradient.

    Forward: :math:`Q(x) = \mathrm{round}(\mathrm{clamp}(x, 0, 1) \cdot L) / L` (``torch.round``
    rounds half to even). Backward: the identity, **also outside** ``[0, 1]`` -- the clamp sits
    inside the custom autograd function, so gradients are not zeroed there (HCFlow / IRN
    ``Quantization``).

    Args:
        x: any tensor (images in ``[0, 1]``).
        levels: ``L``; 255 for 8-bit images.

    Returns:
        A tensor of the same shape and dtype as ``x``.

    Papers: IRN (Xiao et al., ECCV 2020) and HCFlow (Liang et al., ICCV 2021), for the LR output.
    """
    return _StraightThroughQuantize.apply(x, float(levels))


def dequantize(
    x: Tensor,
    quant: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    centred: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Uniform dequantisation ``x + u / quant`` and its log-density constant.

    Discrete images with ``quant`` levels per unit become continuous by adding
    :math:`u \sim U[0, 1)` (or :math:`U[-\frac12, \frac12)` with ``centred=True``, SRFlow's
    ``get_encode_z`` variant) scaled by ``1 / quant``; the model density then carries the
    constant :math:`-\ln(\mathrm{quant})` per dequantised value.

    **Convention (HCFlow / SRFlow / Glow-pytorch)**: the constant is
    :math:`-\ln(\mathrm{quant}) \cdot H \cdot W` per sample -- **channels are not counted**, so
    NLLs normalised by ``ln 2 * H * W`` are bits per *pixel* (3x bits per dimension for RGB).
    Multiply by ``C`` yourself for the per-dimension convention.

    Args:
        x: ``(B, C, H, W)`` images.
        quant: number of quantisation levels per unit (HCFlow: 64 for x4 SR, 256 for x8 faces;
            SRFlow: 32).
        noise: optional pre-drawn ``u`` of ``x``'s shape (in ``[0, 1)``, or ``[-0.5, 0.5)`` if
            ``centred``); drawn with ``torch.rand`` otherwise.
        generator: ``torch.Generator`` for drawing the noise (must live on ``x``'s device).
        centred: draw ``u`` from ``U[-0.5, 0.5)`` (``rand - 0.5``) instead of ``U[0, 1)``.

    Returns:
        ``(x + u / quant, logdet)`` with ``logdet = -ln(quant) * H * W`` as a ``(B,)`` tensor of
        ``x``'s dtype.
    """
    if x.dim() != 4:
        raise ValueError(f"dequantize: x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if noise is None:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if centred:
            noise = noise - 0.5
    elif noise.shape != x.shape:
        raise ValueError(f"dequantize: noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}")
    pixels = x.shape[2] * x.shape[3]
    logdet = x.new_full((x.shape[0],), float(-math.log(quant) * pixels))
    return x + noise / quant, logdet
