"""HCFlow models: super-resolution (:class:`HCFlowSR`) and image rescaling (:class:`HCFlowRescaling`).

Both wrap one :class:`~flowsr.models.hierarchy.HierarchicalFlow`, the bijection
``x -> (y, z_{L-1}, ..., z_0)`` between an HR image and (the LR image, whitened latents).
Reference: Liang et al., "Hierarchical Conditional Flow: A Unified Framework for Image
Super-Resolution and Image Rescaling", ICCV 2021.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowsr.layers.base import check_finite, finite_checks, sum_except_batch
from flowsr.layers.quantization import dequantize, quantize
from flowsr.models.base import HierarchicalModel
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

__all__ = [
    "HCFlowSR",
    "HCFlowRescaling",
    "NLLOutput",
    "hcflow_sr_spec",
    "hcflow_rescaling_spec",
]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_logp(z: Tensor) -> Tensor:
    """``sum log N(z; 0, I)`` per sample."""
    return sum_except_batch(-0.5 * (z**2 + _LOG_2PI))


@dataclass
class NLLOutput:
    """Result of :meth:`HCFlowSR.nll`; every field is per sample ``(B,)`` except ``lr``.

    ``nll`` is in the official HCFlow/SRFlow unit, bits per *pixel* (``-log p / (ln 2 H W)``,
    channels not counted); ``bits_per_dim`` divides by ``C H W`` instead.
    """

    nll: Tensor
    bits_per_dim: Tensor
    logdet: Tensor
    logp_lr: Tensor
    lr: Tensor


class _HCFlowBase(HierarchicalModel):
    family = "hcflow"

    def latent_shapes(self, lr_size: Sequence[int], batch: int = 1) -> list[tuple[int, ...]]:
        """Shapes of the latents ``[z_{L-1}, ..., z_0]`` for an LR image of spatial size ``lr_size``."""
        h, w = (int(s) * self.scale for s in lr_size[-2:])
        dims = self.flow.output_dims([(self.spec.in_channels, h, w)])
        return [(batch, *d) for d in dims[1:]]

    def _check_latents(self, y: Tensor, zs: Sequence[Tensor]) -> None:
        name = type(self).__name__
        expected = self.latent_shapes(y.shape[2:], y.shape[0])
        if len(zs) != len(expected):
            raise ValueError(f"{name}: expected {len(expected)} latents (deepest level first), got {len(zs)}")
        for i, (z, shape) in enumerate(zip(zs, expected)):
            if not isinstance(z, Tensor) or tuple(z.shape) != shape:
                got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
                raise ValueError(f"{name}: latent {i} (deepest first) must have shape {shape}, got {got}")
            check_finite(name, f"latent {i}", z)

    # -- the bijection -----------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """HR ``x`` -> ``(y, zs, logdet)``: raw LR (not clamped), whitened latents deepest level
        first, and the per-sample log-determinant of ``x -> (y, zs)`` (whitening included)."""
        self._check_image(x, "HR image", self.spec.in_channels, self.scale)
        with finite_checks(False):
            outs, logdet, _ = self.flow.encode(x)
        return outs[0], outs[1:], logdet

    def decode(self, y: Tensor, zs: Sequence[Tensor]) -> Tensor:
        """Exact inverse of :meth:`encode` (no clamping)."""
        self._check_image(y, "LR image", self.spec.out_channels, 1)
        self._check_latents(y, zs)
        with finite_checks(False):
            x, _ = self.flow.decode(y, zs)
        return x

    def sample_latents(self, lr: Tensor, temperature: float, generator: torch.Generator | None = None) -> list[Tensor]:
        """Gaussian latents ``eps * temperature`` for ``lr`` (deepest level first)."""
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"{type(self).__name__}: temperature must be a finite number >= 0, got {temperature!r}")
        return [
            torch.randn(shape, generator=generator, device=lr.device, dtype=lr.dtype) * temperature
            for shape in self.latent_shapes(lr.shape[2:], lr.shape[0])
        ]

    def _generate(self, lr: Tensor, temperature: float, n: int, generator: torch.Generator | None) -> Tensor:
        self._check_image(lr, "LR image", self.spec.out_channels, 1)
        if n < 1:
            raise ValueError(f"{type(self).__name__}: n must be >= 1, got {n}")
        batch = lr.repeat(n, 1, 1, 1) if n > 1 else lr
        zs = self.sample_latents(batch, temperature, generator)
        with finite_checks(False):
            x, _ = self.flow.decode(lr, zs)  # n latents per LR: the LR-only features are computed once
        x = x.clamp(0, 1)
        return x if n == 1 else x.reshape(n, *lr.shape[:1], *x.shape[1:])


class HCFlowSR(_HCFlowBase):
    """HCFlow for super-resolution: samples diverse HR images for an LR image.

    Args:
        spec: architecture (see :func:`hcflow_sr_spec` for the official presets).
        quant: dequantisation levels of the NLL (64 for the official x4 model, 256 for x8).
        lr_log_std: log standard deviation of the Gaussian around the LR image that models
            ``y`` (an approximate Dirac; -6 in the official code).
    """

    family = "hcflow_sr"

    def __init__(self, spec: HierarchySpec, *, quant: int = 64, lr_log_std: float = -6.0):
        super().__init__(spec)
        self.quant = int(quant)
        self.lr_log_std = float(lr_log_std)

    def config(self) -> dict:
        return {**super().config(), "quant": self.quant, "lr_log_std": self.lr_log_std}

    def sample(
        self, lr: Tensor, temperature: float = 0.8, n: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample HR images for ``lr`` at ``temperature``, clamped to [0, 1].

        Returns ``(B, C, sH, sW)`` for ``n == 1`` and ``(n, B, C, sH, sW)`` otherwise. Latents are
        drawn from ``generator`` when given, so results are reproducible.
        """
        return self._generate(lr, temperature, n, generator)

    def nll(
        self, hr: Tensor, lr: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> NLLOutput:
        """Negative log-likelihood of ``hr`` given ``lr`` in the official HCFlow units.

        ``hr`` is dequantised with ``U[0, 1)`` noise divided by ``quant`` (``noise`` overrides the
        draw); the LR term is a Gaussian of std ``exp(lr_log_std)`` around ``lr`` evaluated at
        the straight-through 8-bit quantised flow output.
        """
        self._check_image(hr, "HR image", self.spec.in_channels, self.scale)
        self._check_image(lr, "LR image", self.spec.out_channels, 1)
        expected = (hr.shape[0], self.spec.out_channels, hr.shape[2] // self.scale, hr.shape[3] // self.scale)
        if tuple(lr.shape) != expected:
            raise ValueError(
                f"HCFlowSR: LR image must have shape {expected} for an HR image of shape {tuple(hr.shape)} "
                f"(scale {self.scale}), got {tuple(lr.shape)}"
            )
        if noise is not None and noise.shape != hr.shape:
            raise ValueError(f"HCFlowSR: noise must have the HR shape {tuple(hr.shape)}, got {tuple(noise.shape)}")
        x, logdet = dequantize(hr, self.quant, noise=noise, generator=generator)
        with finite_checks(False):
            outs, flow_logdet, _ = self.flow.encode(x)
        y, zs = outs[0], outs[1:]
        logdet = logdet + flow_logdet + sum(standard_normal_logp(z) for z in zs)
        y_q = quantize(y)
        log_std = self.lr_log_std
        logp_lr = sum_except_batch(-0.5 * (2 * log_std + (y_q - lr) ** 2 / math.exp(2 * log_std) + _LOG_2PI))
        pixels = hr.shape[2] * hr.shape[3]
        nll = -(logdet + logp_lr) / (math.log(2.0) * pixels)
        return NLLOutput(nll=nll, bits_per_dim=nll / hr.shape[1], logdet=logdet, logp_lr=logp_lr, lr=y_q)


class HCFlowRescaling(_HCFlowBase):
    """HCFlow for image rescaling: downscale an HR image to a visually valid LR image, and
    upscale it back with sampled high-frequency latents."""

    family = "hcflow_rescaling"

    def downscale(self, hr: Tensor, quantize_8bit: bool = True) -> Tensor:
        """HR -> LR: the flow output clamped to [0, 1] and (by default) rounded to 8 bits."""
        y, _, _ = self.encode(hr)
        return quantize(y) if quantize_8bit else y.clamp(0, 1)

    def upscale(self, lr: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """LR -> HR with latents drawn at ``temperature``, clamped to [0, 1]."""
        return self._generate(lr, temperature, 1, generator)


# -- presets -------------------------------------------------------------------------------


def hcflow_sr_spec(scale: int = 4, *, nb: Sequence[int] | None = None) -> HierarchySpec:
    """The official HCFlow SR architecture: x4 (DF2K, 2 levels, RRDB [7, 7]) or x8 (CelebA faces,
    3 levels, RRDB [5, 5]); K = 26 steps per level of which 13 follow the split."""
    levels = {2: 1, 4: 2, 8: 3, 16: 4}.get(scale)
    if levels is None:
        raise ValueError(f"scale must be 2, 4, 8 or 16, got {scale}")
    nb = list(nb) if nb is not None else ([5, 5] if scale == 8 else [7, 7])
    fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=64, scale="atan")
    return HierarchySpec(
        levels=levels,
        steps=13,
        squeeze="checkerboard",
        permutation="invconv",
        coupling=fcn,
        latent=LatentSpec(steps=13, permutation="invconv", coupling=fcn, prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=64, gc=32, nb=nb, concat=True),
    )


def hcflow_rescaling_spec(scale: int = 4) -> HierarchySpec:
    """The official HCFlow rescaling architecture (x4: 2 levels, K = 14 of which 6 follow the
    split, Haar squeeze, three-shift DenseBlock couplings); x2 and x8 use 1 and 3 such levels."""
    levels = {2: 1, 4: 2, 8: 3, 16: 4}.get(scale)
    if levels is None:
        raise ValueError(f"scale must be 2, 4, 8 or 16, got {scale}")
    return HierarchySpec(
        levels=levels,
        steps=8,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=32, scale="atan"),
        latent=LatentSpec(
            steps=6,
            permutation="invconv",
            coupling=CouplingSpec(kind="affine", subnet="fcn", hidden=64, scale="atan"),
            prior="atan",
        ),
        features=FeatureSpec(kind="rrdb", nf=64, gc=16, nb=[2, 1], concat=False),
    )
