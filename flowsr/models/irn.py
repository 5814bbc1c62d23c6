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

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from flowsr.layers.quantization import quantize
from flowsr.models.base import HierarchicalModel, NoiseSource, register_family
from flowsr.models.base import preset_scale as _preset_scale
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
        coupling=CouplingSpec(kind="inv_block_exp", subnet="dense", hidden=gc),
        keep=[0] * (levels - 1) + [None],
        latent=LatentSpec(steps=0, prior="none"),
        features=FeatureSpec(kind="none"),
    )


@register_family
class IRN(HierarchicalModel):
    """IRN-like invertible rescaling: ``HR <-> (LR y, latent z)`` with ``z`` at LR size.

    Args:
        spec: architecture (see :func:`irn_spec` for the official presets). Any hierarchy with no
            split at inner levels, one split at the last level and no latent flow or learned
            prior is accepted (e.g. another coupling or a checkerboard squeeze: "IRN-like").

    The one latent ``z`` is ``(B, 3 * 4^L - 3, H / s, W / s)``; ``encode`` is the official
    forward ``HR -> cat(y, z)`` (log-det per sample; the official code reports its batch mean),
    ``decode`` the official reverse, ``upscale`` samples ``z ~ N(0, T^2 I)`` (official T = 1).
    Training objective: :func:`irn_losses` with ``irn_fit`` / ``irn_rec`` / ``irn_ce``
    (``None``: official), the latent of the reverse pass drawn as noise ``"irn"``.

    Attributes:
        flow: the :class:`~flowsr.models.hierarchy.HierarchicalFlow` ``[x] -> [y, z]``.
    """

    family = "irn"
    task = "rescaling"
    default_temperature = 1.0
    objective_weights: ClassVar[tuple[str, ...]] = ("irn_fit", "irn_rec", "irn_ce")
    presets = ("x2", "x4", "x8", "x16")

    @classmethod
    def preset_spec(cls, name: str) -> HierarchySpec:
        return irn_spec(_preset_scale(cls, name))

    @classmethod
    def shrink_spec(cls, spec: HierarchySpec) -> HierarchySpec:
        return dataclasses.replace(spec, steps=1, coupling=dataclasses.replace(spec.coupling, hidden=4))

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

    @classmethod
    def loss_terms(cls, losses: Mapping[str, Any]) -> list[str]:
        return ["fit", "ce", "rec"]

    def training_losses(
        self, hr: Tensor, lr: Tensor, noise: NoiseSource, losses: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        z = noise.normal("irn", [s[1:] for s in self.latent_shapes(lr.shape[-2:], 1)], 1.0)
        w = {k: losses.get(k) for k in self.objective_weights}
        out = irn_losses(
            self,
            hr,
            lr,
            z,
            lambda_fit=w["irn_fit"],
            lambda_rec=1.0 if w["irn_rec"] is None else w["irn_rec"],
            lambda_ce=1.0 if w["irn_ce"] is None else w["irn_ce"],
        )
        return {"fit": out.l_forw_fit, "ce": out.l_forw_ce, "rec": out.l_back_rec, "total": out.total}


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
    zs: Sequence[Tensor] | None = None,
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
        zs: ``[z]``, the latent of the reverse pass; default ``gaussian_scale * N(0, I)`` from ``generator``.
        lambda_fit: LR-guidance weight; default ``scale^2`` (official 4 / 16 / 64 for x2 / x4 / x8).
        lambda_rec: HR-reconstruction weight (official 1).
        lambda_ce: latent weight (official 1).
        gaussian_scale: std of the sampled ``z`` (official training: 1).
    """
    if not isinstance(model, IRN):
        raise ValueError(f"irn_losses: model must be an IRN, got {type(model).__name__}")
    y, (z_fwd,), _ = model.encode(hr)
    model.check_image(lr_ref, "reference LR")
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
    y_q = quantize(y)
    # The LR is the model's own output: no input check on it (a diverging model's NaN must reach
    # the loss, where a trainer skips the step), only on the latents.
    zs = model.sample_latents(y, gaussian_scale, generator) if zs is None else model.check_latents(y_q, zs)
    x_hat = model._decode_unchecked(y_q, list(zs))
    diff = hr - x_hat
    l_back_rec = lambda_rec * torch.mean(torch.sum(torch.sqrt(diff * diff + CHARBONNIER_EPS), (1, 2, 3)))
    return IRNLosses(l_forw_fit, l_forw_ce, l_back_rec, lr=y, z=z_fwd, z_sample=zs[0], hr_rec=x_hat)
