"""HCFlow models: super-resolution (:class:`HCFlowSR`) and image rescaling (:class:`HCFlowRescaling`).

Both wrap one :class:`~flowsr.models.hierarchy.HierarchicalFlow`, the bijection
``x -> (y, z_{L-1}, ..., z_0)`` between an HR image and (the LR image, whitened latents).
Reference: Liang et al., "Hierarchical Conditional Flow: A Unified Framework for Image
Super-Resolution and Image Rescaling", ICCV 2021.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from flowsr.layers.base import check_finite, sum_except_batch
from flowsr.layers.quantization import dequantize, quantize
from flowsr.models.base import HierarchicalModel, NoiseSource, preset_scale, register_family
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

__all__ = [
    "HCFlowSR",
    "HCFlowRescaling",
    "NLLOutput",
    "hcflow_sr_spec",
    "hcflow_rescaling_spec",
    "standard_normal_logp",
]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_logp(z: Tensor) -> Tensor:
    """``sum log N(z; 0, I)`` per sample."""
    return sum_except_batch(-0.5 * (z**2 + _LOG_2PI))


@dataclass
class NLLOutput:
    """Result of an SR model's ``nll``; every field is per sample ``(B,)`` except ``lr``.

    ``nll`` is in the official HCFlow/SRFlow unit, bits per *pixel* (``-log p / (ln 2 H W)``,
    channels not counted); ``bits_per_dim`` divides by ``C H W`` instead. With dequantisation the
    density of a continuous variable can exceed 1, so both can be negative.
    """

    nll: Tensor
    bits_per_dim: Tensor
    logdet: Tensor
    logp_lr: Tensor
    lr: Tensor


def _weight(losses: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = losses.get(name, default)
    return default if value is None else float(value)


def _terms(names: Sequence[str], losses: Mapping[str, Any]) -> list[str]:
    return [n for n in names if _weight(losses, n)]


@register_family
class HCFlowSR(HierarchicalModel):
    """HCFlow for super-resolution: samples diverse HR images for an LR image.

    Args:
        spec: architecture (see :func:`hcflow_sr_spec` for the official presets).
        quant: dequantisation levels of the NLL (64 for the official x4 model, 256 for x8).
        lr_log_std: log standard deviation of the Gaussian around the LR image that models
            ``y`` (an approximate Dirac; -6 in the official code).

    Training objective (:meth:`training_losses`, the likelihood phase of an SR iteration):
    ``nll * NLL(hr + U/quant | lr)`` (noise ``"dequant"``) plus ``lr_l1`` / ``lr_l2`` times the
    L1 / MSE between the flow's 8-bit LR output and ``lr``.
    """

    family = "hcflow_sr"
    task = "sr"
    default_temperature = 0.8
    objective_weights: ClassVar[tuple[str, ...]] = ("nll", "lr_l1", "lr_l2")
    presets = ("x2", "x4", "x8", "x16")

    def __init__(self, spec: HierarchySpec, *, quant: int = 64, lr_log_std: float = -6.0):
        super().__init__(spec)
        self.quant = int(quant)
        self.lr_log_std = float(lr_log_std)

    def config(self) -> dict:
        return {**super().config(), "quant": self.quant, "lr_log_std": self.lr_log_std}

    @classmethod
    def preset_spec(cls, name: str) -> HierarchySpec:
        return hcflow_sr_spec(preset_scale(cls, name))

    def nll(
        self, hr: Tensor, lr: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> NLLOutput:
        """Negative log-likelihood of ``hr`` given ``lr`` in the official HCFlow units.

        ``hr`` is dequantised with ``U[0, 1)`` noise divided by ``quant`` (``noise`` overrides the
        draw); the LR term is a Gaussian of std ``exp(lr_log_std)`` around ``lr`` evaluated at
        the straight-through 8-bit quantised flow output.
        """
        self.check_pair(hr, lr)
        if noise is not None:
            if not isinstance(noise, Tensor) or noise.shape != hr.shape:
                got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
                raise ValueError(f"HCFlowSR: noise must have the HR shape {tuple(hr.shape)}, got {got}")
            check_finite(self._name, "noise", noise)
        x, logdet = dequantize(hr, self.quant, noise=noise, generator=generator)
        outs, flow_logdet, _ = self.flow.encode(x)
        y, zs = outs[0], outs[1:]
        logdet = logdet + flow_logdet + sum(standard_normal_logp(z) for z in zs)
        y_q = quantize(y)
        log_std = self.lr_log_std
        logp_lr = sum_except_batch(-0.5 * (2 * log_std + (y_q - lr) ** 2 / math.exp(2 * log_std) + _LOG_2PI))
        pixels = hr.shape[2] * hr.shape[3]
        nll = -(logdet + logp_lr) / (math.log(2.0) * pixels)
        return NLLOutput(nll=nll, bits_per_dim=nll / hr.shape[1], logdet=logdet, logp_lr=logp_lr, lr=y_q)

    @classmethod
    def loss_terms(cls, losses: Mapping[str, Any]) -> list[str]:
        return _terms(cls.objective_weights, losses)

    def training_losses(
        self, hr: Tensor, lr: Tensor, noise: NoiseSource, losses: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """``nll`` (logged unweighted: the batch-mean NLL in bits per pixel), ``lr_l1``, ``lr_l2``
        (weighted) and ``total = nll_weight * nll + lr_l1 + lr_l2``."""
        out = self.nll(hr, lr, noise=noise.uniform("dequant", hr.shape[1:]))
        nll = out.nll.mean()
        terms = {"nll": nll}
        total = _weight(losses, "nll") * nll
        for name, loss in (("lr_l1", F.l1_loss), ("lr_l2", F.mse_loss)):
            if _weight(losses, name):
                terms[name] = _weight(losses, name) * loss(out.lr, lr)
                total = total + terms[name]
        terms["total"] = total
        return terms


@register_family
class HCFlowRescaling(HierarchicalModel):
    """HCFlow for image rescaling: downscale an HR image to a visually valid LR image, and
    upscale it back with sampled high-frequency latents.

    Training objective (:meth:`training_losses`, hcflow-spec §6.3): ``y, zs = encode(hr)``,
    ``lr_c = clamp(y, 0, 1)``; ``lr_l2 * MSE(lr_c, lr)`` (+ ``lr_l1 * L1``),
    ``z_l2 * mean(cat(zs)^2)``, ``hr_l1 * L1(clamp(decode(Q(lr_c), eps), 0, 1), hr)``
    (+ ``hr_l2 * MSE``), with ``eps`` drawn at ``hr_temperature`` (default 1; noise ``"rescale"``).
    """

    family = "hcflow_rescaling"
    task = "rescaling"
    default_temperature = 1.0
    objective_weights: ClassVar[tuple[str, ...]] = ("lr_l2", "lr_l1", "z_l2", "hr_l1", "hr_l2")
    presets = ("x2", "x4", "x8", "x16")

    @classmethod
    def preset_spec(cls, name: str) -> HierarchySpec:
        return hcflow_rescaling_spec(preset_scale(cls, name))

    @classmethod
    def loss_terms(cls, losses: Mapping[str, Any]) -> list[str]:
        terms = _terms(cls.objective_weights, losses)
        if not terms:
            raise ValueError("HCFlowRescaling: every loss weight (lr_l2, lr_l1, z_l2, hr_l1, hr_l2) is 0")
        return terms

    def training_losses(
        self, hr: Tensor, lr: Tensor, noise: NoiseSource, losses: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        # the LR target must match the flow's LR output: a mismatched one would broadcast into the losses
        self.check_pair(hr, lr)
        w = {name: _weight(losses, name) for name in self.loss_terms(losses)}
        temperature = _weight(losses, "hr_temperature", 1.0)
        eps = noise.normal("rescale", [s[1:] for s in self.latent_shapes(lr.shape[-2:], 1)], temperature)
        y, zs, _ = self.encode(hr)
        lr_c = y.clamp(0, 1)
        terms: dict[str, Tensor] = {}
        if "lr_l2" in w:
            terms["lr_l2"] = w["lr_l2"] * F.mse_loss(lr_c, lr)
        if "lr_l1" in w:
            terms["lr_l1"] = w["lr_l1"] * F.l1_loss(lr_c, lr)
        if "z_l2" in w:
            terms["z_l2"] = w["z_l2"] * torch.mean(torch.cat([z.flatten() for z in zs]) ** 2)
        if "hr_l1" in w or "hr_l2" in w:
            # no input check on the model's own LR: a diverging model's NaN reaches the loss
            sr = self._decode_unchecked(quantize(lr_c), eps).clamp(0, 1)
            if "hr_l1" in w:
                terms["hr_l1"] = w["hr_l1"] * F.l1_loss(sr, hr)
            if "hr_l2" in w:
                terms["hr_l2"] = w["hr_l2"] * F.mse_loss(sr, hr)
        terms["total"] = sum(terms.values())
        return terms


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
