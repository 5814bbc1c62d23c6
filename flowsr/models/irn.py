"""IRN-like image rescaling (:class:`IRN`), built with the hierarchy builder.

Reference: Xiao et al., "Invertible Image Rescaling", ECCV 2020. The architecture follows the
re-implementation spec of the official code (``srflow-irn-spec.md``, Part B); nothing is copied
from the official code.

IRN is the simplest member of the hierarchy family: a :class:`~flowsr.models.spec.HierarchySpec`
with

* per level (one per x2 of the scale): a Haar downsampling (``squeeze="haar"``) followed by
  ``block_num[l]`` :class:`~flowsr.layers.coupling.InvBlockExp` couplings with
  :class:`~flowsr.layers.subnets.DenseBlock` subnets (``actnorm=False``, ``permutation="none"``);
* no split at inner levels (``keep = 0``) and one split at the last level into the LR image
  ``y`` (the first ``out_channels = 3`` channels) and the latent ``z`` (the remaining
  ``3 * 4^L - 3`` channels, at LR size);
* no latent flow and no learned prior (``LatentSpec(steps=0, prior="none")``): training pushes
  ``z`` towards N(0, I) with a loss, upscaling samples ``z ~ N(0, T^2 I)``.

So ``encode`` is the official forward ``HR -> cat(y, z)`` and ``decode`` the official reverse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flowsr.layers.base import check_finite, finite_checks
from flowsr.layers.quantization import quantize
from flowsr.models.base import HierarchicalModel
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

__all__ = ["IRN", "IRNLosses", "irn_losses", "irn_spec"]

#: Charbonnier epsilon of the official HR reconstruction loss.
CHARBONNIER_EPS = 1e-6


def irn_spec(
    scale: int = 4,
    *,
    block_num: int | Sequence[int] = 8,
    gc: int = 32,
    in_channels: int = 3,
    out_channels: int = 3,
) -> HierarchySpec:
    """The IRN architecture as a :class:`HierarchySpec`.

    Args:
        scale: rescaling factor, a power of two >= 2 (official: 2, 4, 8 with 1, 2, 3 levels).
        block_num: InvBlockExp blocks per level (int, or one entry per level); official 8.
        gc: growth channels of the DenseBlock subnets (official 32).
        in_channels: image channels (3).
        out_channels: channels of the LR image ``y`` = the InvBlockExp split (3).

    The official x2 / x4 / x8 networks (``irn_spec(2)``, ``irn_spec(4)``, ``irn_spec(8)``) have
    1,668,000 / 4,355,376 / 11,120,256 parameters, fixed Haar weights included.
    """
    if not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
        raise ValueError(f"irn_spec: scale must be a power of two >= 2, got {scale!r}")
    levels = scale.bit_length() - 1
    if not isinstance(block_num, int):
        block_num = [int(b) for b in block_num]
        if len(block_num) != levels:
            raise ValueError(
                f"irn_spec: block_num must be an int or a list of {levels} ints for scale {scale}, got {block_num}"
            )
        if len(set(block_num)) == 1:
            block_num = block_num[0]
    return HierarchySpec(
        in_channels=in_channels,
        out_channels=out_channels,
        levels=levels,
        steps=block_num,
        squeeze="haar",
        actnorm=False,
        permutation="none",
        coupling=CouplingSpec(kind="inv_block_exp", subnet="dense", hidden=gc, scale="tanh_clamp"),
        keep=[0] * (levels - 1) + [None],
        latent=LatentSpec(steps=0, prior="none"),
        features=FeatureSpec(kind="none"),
    )


class IRN(HierarchicalModel):
    """IRN-like invertible rescaling: ``HR <-> (LR y, latent z)`` with ``z`` at LR size.

    Args:
        spec: architecture (see :func:`irn_spec` for the official presets). Any hierarchy with no
            split at inner levels, one split at the last level and no latent flow or learned
            prior is accepted (e.g. another coupling or a checkerboard squeeze: "IRN-like").

    Attributes:
        flow: the :class:`~flowsr.models.hierarchy.HierarchicalFlow` ``[x] -> [y, z]``.
    """

    family = "irn"

    def __init__(self, spec: HierarchySpec):
        if spec.condition_channels:
            raise ValueError("IRN: the flow takes no external condition (spec.condition_channels must be 0)")
        if spec.latent.prior != "none" or any(spec.latent_steps()):
            raise ValueError(
                "IRN: the latent has no flow and no learned prior "
                f"(spec.latent needs steps=0 and prior='none', "
                f"got steps={spec.latent.steps}, prior={spec.latent.prior!r})"
            )
        channels, kept = spec.channels(), spec.kept_channels()
        if any(k != c for k, c in zip(kept[:-1], channels[:-1])) or kept[-1] == channels[-1]:
            raise ValueError(
                "IRN: the hierarchy must split only at its last level (keep = [0, ..., 0, out_channels]); "
                f"levels keep {kept} of {channels} channels"
            )
        if kept[-1] != spec.out_channels:
            raise ValueError(
                f"IRN: the last level must keep out_channels={spec.out_channels} channels, keeps {kept[-1]}"
            )
        super().__init__(spec)

    def latent_shape(self, lr_size: Sequence[int], batch: int = 1) -> tuple[int, ...]:
        """Shape ``(batch, C_z, h, w)`` of the latent for an LR image of spatial size ``lr_size``."""
        h, w = (int(s) * self.scale for s in lr_size[-2:])
        return (batch, *self.flow.output_dims([(self.spec.in_channels, h, w)])[1])

    def _as_latent(self, y: Tensor, zs: Sequence[Tensor] | Tensor, what: str = "latent") -> Tensor:
        if isinstance(zs, Tensor):
            z = zs
        elif isinstance(zs, (list, tuple)) and len(zs) == 1:
            z = zs[0]
        else:
            n = len(zs) if isinstance(zs, (list, tuple)) else type(zs).__name__
            raise ValueError(f"IRN: expected one latent (a one-element list, or a tensor), got {n}")
        expected = self.latent_shape(y.shape[2:], y.shape[0])
        if not isinstance(z, Tensor) or tuple(z.shape) != expected:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"IRN: {what} must have shape {expected} for an LR image of shape {tuple(y.shape)}, got {got}"
            )
        check_finite("IRN", what, z)
        return z

    # -- the bijection -----------------------------------------------------------------------
    def encode(self, hr: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """HR -> ``(y, [z], logdet)``: the raw LR image (neither clamped nor rounded), the latent
        ``(B, 3 * 4^L - 3, H / s, W / s)`` and the per-sample log-determinant ``(B,)`` of the
        bijection (Haar layers included; the official code reports its batch mean)."""
        self._check_image(hr, "HR image", self.spec.in_channels, self.scale)
        with finite_checks(False):
            outs, logdet, _ = self.flow.encode(hr)
        return outs[0], [outs[1]], logdet

    def decode(self, y: Tensor, zs: Sequence[Tensor] | Tensor) -> Tensor:
        """Exact inverse of :meth:`encode` (the official reverse pass; no clamping)."""
        self._check_image(y, "LR image", self.spec.out_channels, 1)
        z = self._as_latent(y, zs)
        with finite_checks(False):
            x, _ = self.flow.decode(y, [z])
        return x

    # -- rescaling ---------------------------------------------------------------------------
    def downscale(self, hr: Tensor, quantize_8bit: bool = True) -> Tensor:
        """HR -> LR image: ``y`` rounded to 8 bits (``round(clamp(y, 0, 1) * 255) / 255``, the
        official test-time LR, straight-through gradient), or only clamped to [0, 1]."""
        y, _, _ = self.encode(hr)
        return quantize(y) if quantize_8bit else y.clamp(0, 1)

    def sample_latent(self, lr: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """``z ~ N(0, temperature^2 I)`` of the shape that goes with ``lr``."""
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"IRN: temperature must be a finite number >= 0, got {temperature!r}")
        shape = self.latent_shape(lr.shape[2:], lr.shape[0])
        return torch.randn(shape, generator=generator, device=lr.device, dtype=lr.dtype) * temperature

    def upscale(
        self,
        lr: Tensor,
        z: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        clamp: bool = True,
    ) -> Tensor:
        """LR -> HR: the reverse pass on ``cat(lr, z)``.

        ``z`` defaults to a draw from ``N(0, temperature^2 I)`` (from ``generator`` when given,
        so results are reproducible; the official test uses temperature 1); an explicit ``z`` is
        used as given. The output is clamped to [0, 1] (as the official evaluation does when it
        saves images) unless ``clamp=False``, which returns the raw official reverse output.
        """
        self._check_image(lr, "LR image", self.spec.out_channels, 1)
        z = self.sample_latent(lr, temperature, generator) if z is None else self._as_latent(lr, z, "z")
        with finite_checks(False):
            x, _ = self.flow.decode(lr, [z])
        return x.clamp(0, 1) if clamp else x


@dataclass
class IRNLosses:
    """The three official IRN training losses (scalars) and the tensors they were computed from.

    Attributes:
        l_forw_fit: LR guidance ``lambda_fit * mean_b sum_chw (y - lr_ref)^2``.
        l_forw_ce: latent distribution matching ``lambda_ce * sum z^2 / B``.
        l_back_rec: HR reconstruction ``lambda_rec * mean_b sum_chw sqrt((hr - x_hat)^2 + 1e-6)``,
            ``x_hat = decode(quantize(y), z_sample)``.
        lr: the raw forward LR ``y``; ``z``: the forward latent; ``z_sample``: the latent fed to
            the reverse pass; ``hr_rec``: ``x_hat``.
    """

    l_forw_fit: Tensor
    l_forw_ce: Tensor
    l_back_rec: Tensor
    lr: Tensor
    z: Tensor
    z_sample: Tensor
    hr_rec: Tensor

    @property
    def total(self) -> Tensor:
        """``l_forw_fit + l_back_rec + l_forw_ce`` (the official sum)."""
        return self.l_forw_fit + self.l_back_rec + self.l_forw_ce


def irn_losses(
    model: IRN,
    hr: Tensor,
    lr_ref: Tensor,
    z: Tensor | None = None,
    *,
    lambda_fit: float | None = None,
    lambda_rec: float = 1.0,
    lambda_ce: float = 1.0,
    gaussian_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> IRNLosses:
    """The official IRN training losses (``IRN_model.py``: ``loss_forward`` + ``loss_backward``).

    Args:
        model: the :class:`IRN` model (train or eval mode; gradients flow as in the official
            code, through the straight-through quantiser into the forward pass).
        hr: HR batch ``(B, C, H, W)``.
        lr_ref: reference LR ``(B, out_channels, H / s, W / s)`` (official: MATLAB bicubic of the
            float HR, neither rounded nor clamped).
        z: the latent of the reverse pass; default ``gaussian_scale * N(0, I)`` from ``generator``.
        lambda_fit: LR-guidance weight; default ``scale^2`` (official 4 / 16 / 64 for x2 / x4 / x8).
        lambda_rec: HR-reconstruction weight (official 1).
        lambda_ce: latent weight (official 1).
        gaussian_scale: std of the sampled ``z`` (official training: 1).
    """
    if not isinstance(model, IRN):
        raise ValueError(f"irn_losses: model must be an IRN, got {type(model).__name__}")
    y, (z_fwd,), _ = model.encode(hr)
    model._check_image(lr_ref, "reference LR", model.spec.out_channels, 1)
    if lr_ref.shape != y.shape:
        raise ValueError(
            f"IRN: reference LR must have shape {tuple(y.shape)} for an HR image of shape {tuple(hr.shape)} "
            f"(scale {model.scale}), got {tuple(lr_ref.shape)}"
        )
    if lambda_fit is None:
        lambda_fit = float(model.scale**2)
    batch = hr.shape[0]
    l_forw_fit = lambda_fit * torch.mean(torch.sum((y - lr_ref) ** 2, (1, 2, 3)))
    l_forw_ce = lambda_ce * torch.sum(z_fwd.reshape(batch, -1) ** 2) / batch
    if z is None:
        z_sample = model.sample_latent(y, gaussian_scale, generator)
    else:
        z_sample = model._as_latent(y, z, "z")
    with finite_checks(False):
        x_hat, _ = model.flow.decode(quantize(y), [z_sample])
    diff = hr - x_hat
    l_back_rec = lambda_rec * torch.mean(torch.sum(torch.sqrt(diff * diff + CHARBONNIER_EPS), (1, 2, 3)))
    return IRNLosses(l_forw_fit, l_forw_ce, l_back_rec, lr=y, z=z_fwd, z_sample=z_sample, hr_rec=x_hat)
