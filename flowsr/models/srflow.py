"""SRFlow: a conditional Glow on an RRDB encoder of the LR image, built with the hierarchy builder.

Reference: Lugmayr et al., "SRFlow: Learning the Super-Resolution Space with Normalizing Flow",
ECCV 2020. The architecture follows the re-implementation spec of the official code
(``srflow-irn-spec.md``, Part A); nothing is copied from the official (non-commercial) code.

The flow is a :class:`~flowsr.models.hierarchy.HierarchicalFlow` from a
:class:`~flowsr.models.spec.HierarchySpec` with

* per level: squeeze, ``extra_steps`` ActNorm + 1x1-conv steps (``additionalFlowNoAffine``),
  ``K`` steps ActNorm -> 1x1 conv -> affine injector -> conditional affine coupling, both
  conditioned on the encoder feature at the level's size (``condition_channels``), with
  SRFlow's scale ``sigmoid(s + 2) + 1e-4``;
* a learned-prior split (``Split2d``: prior conv on the kept half only, ``FeatureSpec("kept")``,
  ``LatentSpec(steps=0)``) at every level but the last two (``keep = 0`` there);
* the final latent ``z`` = all channels of the last level (the builder's ``y``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import yaml
from torch import Tensor, nn

from flowsr.layers.base import check_finite
from flowsr.layers.quantization import dequantize
from flowsr.models.base import HierarchicalModel, NoiseSource, register_family
from flowsr.models.encoders import EncoderSpec, RRDBEncoder, feature_name
from flowsr.models.hcflow import NLLOutput, standard_normal_logp
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec, check_keys

__all__ = ["SRFlow", "SRFlowSpec", "SRFLOW_PRESETS", "make_srflow_spec", "srflow_spec"]


@dataclass
class SRFlowSpec:
    """Architecture of an SRFlow model: the flow (a :class:`HierarchySpec`) and its LR encoder.

    Attributes:
        flow: the conditional flow; ``flow.levels = L`` gives the SR scale ``2^(L-1)``;
            ``flow.condition_channels`` must equal ``encoder.channels``.
        encoder: the RRDB encoder widths.
        unused_conv_channels: output channels of the conv ``unused_conv``
            (``condition_channels -> unused_conv_channels``, 3x3) that the official network
            constructs (``flowUpsamplerNet.f``) but never calls. It is carried only so that
            official checkpoints load key for key and parameter counts match (96 in every
            official configuration); 0 leaves it out.
    """

    flow: HierarchySpec = field(default_factory=HierarchySpec)
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    unused_conv_channels: int = 96

    def __post_init__(self) -> None:
        if isinstance(self.flow, dict):
            self.flow = HierarchySpec.from_dict(self.flow)
        if isinstance(self.encoder, dict):
            self.encoder = EncoderSpec.from_dict(self.encoder)
        if self.flow.levels < 2:
            raise ValueError(f"SRFlowSpec: needs at least 2 flow levels (scale 2^(L-1) >= 2), got {self.flow.levels}")
        if self.flow.condition_channels != self.encoder.channels:
            raise ValueError(
                f"SRFlowSpec: flow.condition_channels ({self.flow.condition_channels}) must equal the encoder's "
                f"feature channels (1 + len(blocks)) * nf = {self.encoder.channels}"
            )
        if self.unused_conv_channels < 0:
            raise ValueError(f"SRFlowSpec: unused_conv_channels must be >= 0, got {self.unused_conv_channels}")

    @property
    def scale(self) -> int:
        """The SR factor ``2^(L-1)`` (the flow squeezes ``L`` times; its last level is at LR/2)."""
        return 2 ** (self.flow.levels - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow.to_dict(),
            "encoder": self.encoder.to_dict(),
            "unused_conv_channels": self.unused_conv_channels,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SRFlowSpec:
        return cls(**check_keys(cls, d))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> SRFlowSpec:
        return cls.from_dict(yaml.safe_load(text))


def make_srflow_spec(
    scale: int = 4,
    *,
    K: int | list[int] = 16,
    extra_steps: int = 2,
    hidden: int = 64,
    nf: int = 64,
    nb: int = 23,
    gc: int = 32,
    blocks: Sequence[int] = (1, 8, 15, 22),
    split: bool = True,
    in_channels: int = 3,
    unused_conv_channels: int = 96,
) -> SRFlowSpec:
    """An SRFlow architecture for any power-of-two ``scale >= 2`` (``L = log2(scale) + 1`` levels).

    ``split=True`` puts a learned-prior split at every level but the last two (official
    behaviour); ``split=False`` has none (all ``4^L * in_channels`` dims go to the final latent).
    """
    levels = int(round(math.log2(scale))) + 1 if scale >= 1 else 0
    if scale < 2 or 2 ** (levels - 1) != scale:
        raise ValueError(f"SRFlow scale must be a power of two >= 2, got {scale}")
    encoder = EncoderSpec(nf=nf, nb=nb, gc=gc, blocks=list(blocks))
    coupling = CouplingSpec(kind="affine", subnet="fcn", hidden=hidden, scale="sigmoid", injector=True, init_std=0.05)
    keep = [None if split and l < levels - 2 else 0 for l in range(levels)]
    flow = HierarchySpec(
        in_channels=in_channels,
        levels=levels,
        steps=K,
        extra_steps=extra_steps,
        condition_channels=encoder.channels,
        squeeze="checkerboard",
        actnorm=True,
        permutation="invconv",
        coupling=coupling,
        keep=keep,
        latent=LatentSpec(steps=0, prior="exp"),
        features=FeatureSpec(kind="kept"),
    )
    # The builder's output y is SRFlow's final latent: record its channel count (keep 0 = no split).
    flow = dataclasses.replace(flow, out_channels=flow.kept_channels()[-1])
    return SRFlowSpec(flow=flow, encoder=encoder, unused_conv_channels=unused_conv_channels)


#: The official configurations (SRFlow_DF2K_4X.yml, SRFlow_CelebA_8X.yml, SRFlow_DF2K_8X.yml).
SRFLOW_PRESETS: dict[str, dict[str, Any]] = {
    "DF2K_4X": {"scale": 4, "nb": 23, "blocks": (1, 8, 15, 22)},
    "CelebA_8X": {"scale": 8, "nb": 8, "blocks": (1, 3, 5, 7)},
    "DF2K_8X": {"scale": 8, "nb": 23, "blocks": (1, 3, 5, 7)},
}


def srflow_spec(preset: str = "DF2K_4X") -> SRFlowSpec:
    """The official SRFlow architecture ``"DF2K_4X"`` (39,541,811 parameters), ``"CelebA_8X"``
    (40,030,531) or ``"DF2K_8X"`` (50,821,891): K = 16, 2 extra steps per level, nf 64, gc 32,
    coupling hidden width 64."""
    if preset not in SRFLOW_PRESETS:
        raise ValueError(f"unknown SRFlow preset {preset!r}; expected one of {sorted(SRFLOW_PRESETS)}")
    return make_srflow_spec(**SRFLOW_PRESETS[preset])


@register_family
class SRFlow(HierarchicalModel):
    """SRFlow super-resolution: a conditional flow ``HR <-> latents`` given the LR image.

    Args:
        spec: architecture (:func:`srflow_spec` for the official presets, :func:`make_srflow_spec`).
        quant: quantisation levels of the optional dequantised NLL (official: 32).

    Children: ``encoder`` (:class:`~flowsr.models.encoders.RRDBEncoder`), ``flow`` (the
    :class:`~flowsr.models.hierarchy.HierarchicalFlow`) and ``unused_conv`` (never called; see
    :class:`SRFlowSpec`). The LR image conditions the flow through :meth:`conditions` (the
    encoder features of every level); every flow output is a latent.

    Latents are ordered deepest first: ``[z, eps_{s_k}, ..., eps_{s_1}]`` -- the final latent
    (all channels of the last level, ``(B, C_L, H / 2^L, W / 2^L)``), then the whitened
    split-off parts of the split levels from the deepest to the HR-side one. (The official code
    lists them the other way round: HR-side split first, ``z`` last.)

    LR sizes must be even (``lr_multiple`` 2: the deepest level works at LR/2); the official test
    script reflect-pads the LR bottom/right to even size and crops the SR output.

    Training objective: ``nll * NLL(hr | lr)`` without dequantisation (official).
    """

    family = "srflow"
    task = "sr"
    default_temperature = 0.9
    lr_is_flow_output = False
    lr_multiple_reason = (
        "the deepest flow level works at LR/2; pad the LR image (the official test script reflect-pads "
        "bottom/right by one pixel) and crop the output"
    )
    has_unused_parameters = True  # unused_conv (kept only so official checkpoints load key for key)
    objective_weights: ClassVar[tuple[str, ...]] = ("nll",)
    presets = tuple(SRFLOW_PRESETS)

    def __init__(self, spec: SRFlowSpec, *, quant: int = 32):
        if isinstance(spec, dict):
            spec = SRFlowSpec.from_dict(spec)
        self.quant = int(quant)
        if self.quant < 1:
            raise ValueError(f"SRFlow: quant must be >= 1, got {quant}")
        super().__init__(spec)
        flow = spec.flow
        if spec.unused_conv_channels:
            self.unused_conv = nn.Conv2d(flow.condition_channels, spec.unused_conv_channels, 3, 1, 1)
        else:
            self.unused_conv = None

    @property
    def flow_spec(self) -> HierarchySpec:
        return self.spec.flow

    def _build_conditioning(self) -> None:
        flow = self.spec.flow
        self.encoder = RRDBEncoder.from_spec(self.spec.encoder, flow.in_channels, flow.in_channels, self.spec.scale)

    @classmethod
    def preset_spec(cls, name: str) -> SRFlowSpec:
        return srflow_spec(name)

    @classmethod
    def spec_from_dict(cls, d: dict) -> SRFlowSpec:
        return SRFlowSpec.from_dict(d)

    @classmethod
    def shrink_spec(cls, spec: SRFlowSpec) -> SRFlowSpec:
        return make_srflow_spec(spec.scale, K=1, extra_steps=1, hidden=8, nf=8, nb=2, gc=4, blocks=(0, 1))

    @property
    def levels(self) -> int:
        return self.spec.flow.levels

    def config(self) -> dict:
        return {**super().config(), "quant": self.quant}

    # -- conditioning ------------------------------------------------------------------------
    def conditions(self, lr: Tensor | None) -> list[Tensor]:
        """The encoder features that condition flow levels ``0 .. L-1`` (HR side first)."""
        if lr is None:
            raise ValueError("SRFlow: the flow is conditioned on the LR image; give it")
        return self.encoder.level_features(lr, self.levels)

    def feature_names(self) -> list[str]:
        """Official names of the features conditioning levels ``0 .. L-1`` (``fea_up2``, ``fea_up1``, ...)."""
        return [feature_name(l, self.levels) for l in range(self.levels)]

    # -- training ----------------------------------------------------------------------------
    @classmethod
    def loss_terms(cls, losses: Mapping[str, Any]) -> list[str]:
        return ["nll"] if losses.get("nll") else []

    def training_losses(
        self, hr: Tensor, lr: Tensor, noise: NoiseSource, losses: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """``nll`` (logged unweighted, bits per pixel, no dequantisation as officially) and
        ``total = nll_weight * nll``."""
        nll = self.nll(hr, lr).nll.mean()
        return {"nll": nll, "total": float(losses.get("nll") or 0.0) * nll}

    def nll(
        self,
        hr: Tensor,
        lr: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        dequantize_hr: bool = False,
    ) -> NLLOutput:
        """Negative log-likelihood of ``hr`` given ``lr`` in the official SRFlow unit.

        ``nll = -(log-det + sum log N(zs; 0, I)) / (ln 2 * H * W)``: bits per *pixel* (channels
        not counted), as the official training loss and validation NLL. By default, as there,
        ``hr`` is **not** dequantised. With ``dequantize_hr=True`` or an explicit ``noise``
        (the centred offset ``u - 0.5`` in ``[-0.5, 0.5)``, shape of ``hr``) the input is
        ``hr + noise / quant`` and the log-density starts at ``-ln(quant) * H * W`` (the official
        ``get_encode_z(add_gt_noise=True)``); ``generator`` draws that noise.

        Returns an :class:`~flowsr.models.hcflow.NLLOutput`: ``logdet`` is the whole log-density
        ``log p(hr | lr)`` (dequantisation constant + log-det + Gaussian terms), ``logp_lr`` is 0
        (the LR image is a condition, not modelled) and ``lr`` is the conditioning LR image.
        """
        self.check_pair(hr, lr)
        if noise is not None:
            if not isinstance(noise, Tensor) or noise.shape != hr.shape:
                got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
                raise ValueError(f"SRFlow: noise must have the HR shape {tuple(hr.shape)}, got {got}")
            check_finite("SRFlow", "noise", noise)
            dequantize_hr = True
        elif generator is not None and not dequantize_hr:
            raise ValueError("SRFlow: a generator is only used to draw dequantisation noise (dequantize_hr=True)")
        if dequantize_hr:
            x, logdet = dequantize(hr, self.quant, noise=noise, generator=generator, centred=True)
        else:
            x, logdet = hr, hr.new_zeros(hr.shape[0])
        outs, flow_logdet, _ = self.flow.encode(x, c=self.conditions(lr))
        logdet = logdet + flow_logdet + sum(standard_normal_logp(z) for z in outs)
        pixels = hr.shape[2] * hr.shape[3]
        nll = -logdet / (math.log(2.0) * pixels)
        return NLLOutput(nll=nll, bits_per_dim=nll / hr.shape[1], logdet=logdet, logp_lr=torch.zeros_like(nll), lr=lr)
