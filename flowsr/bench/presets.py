"""The benchmark's model presets, their inputs and their non-trivial random weights.

A :class:`Preset` says how to build a flowsr model (the official configurations of HCFlow SR x4
and x8, HCFlow rescaling x4, SRFlow x4 and IRN x4, plus tiny versions of every family for tests)
and which input it gets: a real 160x160 crop of a bundled image with its bundled LR
(:func:`crop_inputs`). :func:`make_nontrivial` gives a model random weights whose numerics look
like a trained network's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "FULL_PRESETS",
    "PRESETS",
    "Preset",
    "available_presets",
    "crop_inputs",
    "large_lr",
    "make_nontrivial",
]

# -- presets ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Preset:
    """A benchmark preset: how to build the model and its input."""

    name: str
    title: str
    family: str  # hcflow_sr, hcflow_rescaling, srflow, irn
    build: Callable[[], Any]
    scale: int
    hr_size: int = 160
    heat: float = 0.9
    image: str = "general_x4"  # bundled sample set of the input crop
    tiled_lr: int = 0  # LR size of the tiled measurement (0: none)
    tile: int = 128  # LR tile size of the tiled measurement
    shares_lr_features: bool = False  # whether to also time diverse samples without sharing LR-only work
    tiny: bool = False
    #: output std of the zero-initialised layers after :func:`make_nontrivial` (SRFlow's reverse
    #: pass overflows on random latents above ~0.02: its sigmoid couplings divide)
    output_std: float = 0.1

    @property
    def sr(self) -> bool:
        from flowsr.models import get_family

        return get_family(self.family).task == "sr"


def _tiny_hcflow_sr():
    from flowsr.models.hcflow import HCFlowSR
    from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

    fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=8, scale="atan")
    spec = HierarchySpec(
        levels=2,
        steps=2,
        coupling=fcn,
        latent=LatentSpec(steps=2, coupling=fcn, prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=True),
    )
    return HCFlowSR(spec, quant=64)


def _tiny_hcflow_rescaling():
    from flowsr.models.hcflow import HCFlowRescaling
    from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

    spec = HierarchySpec(
        levels=2,
        steps=2,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=4),
        latent=LatentSpec(steps=1, coupling=CouplingSpec(kind="affine", subnet="fcn", hidden=8), prior="atan"),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=False),
    )
    return HCFlowRescaling(spec)


def _hcflow_sr(scale: int):
    from flowsr.models.hcflow import HCFlowSR, hcflow_sr_spec

    return HCFlowSR(hcflow_sr_spec(scale), quant=64 if scale == 4 else 256)


def _hcflow_rescaling():
    from flowsr.models.hcflow import HCFlowRescaling, hcflow_rescaling_spec

    return HCFlowRescaling(hcflow_rescaling_spec(4))


def _srflow(tiny: bool = False):
    from flowsr.models.srflow import SRFlow, make_srflow_spec, srflow_spec

    if tiny:
        return SRFlow(make_srflow_spec(4, K=1, extra_steps=1, hidden=8, nf=8, nb=2, gc=4, blocks=(0, 1)))
    return SRFlow(srflow_spec("DF2K_4X"))


def _tiny_srflow():
    return _srflow(tiny=True)


def _irn(tiny: bool = False):
    from flowsr.models.irn import IRN, irn_spec

    return IRN(irn_spec(4, block_num=1, gc=4) if tiny else irn_spec(4))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "hcflow_sr_x4",
            "HCFlow SR x4",
            "hcflow_sr",
            lambda: _hcflow_sr(4),
            4,
            heat=0.9,
            tiled_lr=512,
            shares_lr_features=True,
        ),
        Preset(
            "hcflow_sr_x8",
            "HCFlow SR x8 face",
            "hcflow_sr",
            lambda: _hcflow_sr(8),
            8,
            heat=0.8,
            image="face_x8",
            tiled_lr=512,
            shares_lr_features=True,
        ),
        Preset(
            "hcflow_rescaling_x4",
            "HCFlow rescaling x4",
            "hcflow_rescaling",
            _hcflow_rescaling,
            4,
            heat=1.0,
            shares_lr_features=True,
        ),
        Preset("srflow_x4", "SRFlow x4 (DF2K)", "srflow", _srflow, 4, heat=0.9, output_std=0.01),
        Preset("irn_x4", "IRN x4", "irn", _irn, 4, heat=1.0),
        # Tiny versions of every family (tests, smoke runs): same code paths, seconds to run.
        Preset(
            "tiny_hcflow_sr",
            "tiny HCFlow SR x4",
            "hcflow_sr",
            _tiny_hcflow_sr,
            4,
            16,
            0.8,
            tiled_lr=16,
            tile=8,
            tiny=True,
            shares_lr_features=True,
        ),
        Preset(
            "tiny_hcflow_rescaling",
            "tiny HCFlow rescaling x4",
            "hcflow_rescaling",
            _tiny_hcflow_rescaling,
            4,
            16,
            1.0,
            tiny=True,
            shares_lr_features=True,
        ),
        Preset(
            "tiny_srflow", "tiny SRFlow x4", "srflow", lambda: _srflow(True), 4, 16, 0.9, tiny=True, output_std=0.01
        ),
        Preset("tiny_irn", "tiny IRN x4", "irn", lambda: _irn(True), 4, 16, 1.0, tiny=True),
    ]
}
FULL_PRESETS = ("hcflow_sr_x4", "hcflow_sr_x8", "hcflow_rescaling_x4", "srflow_x4", "irn_x4")


def available_presets(names: Sequence[str] | None = None) -> dict[str, str | None]:
    """``{name: None if it can be built, else why not}`` (SRFlow / IRN may not exist yet)."""

    from flowsr.models import FAMILIES

    out: dict[str, str | None] = {}
    for name in names or list(PRESETS):
        registered = FAMILIES.get(PRESETS[name].family)
        out[name] = None if registered else f"model family {PRESETS[name].family!r} is not registered"
    return out


# -- weights and inputs -----------------------------------------------------------------------------


def make_nontrivial(model, seed: int = 0, inputs: tuple | None = None, output_std: float = 0.1):
    """Random weights whose numerics look like a trained network's (finite, well-conditioned).

    * 1x1-convolution weights ``+= N(0, 0.05^2)`` (:func:`flowsr.testing.perturb_parameters`),
      as the official measurements (hcflow-spec section 8).
    * Every all-zero parameter that is not an ActNorm's or a zero-initialised convolution weight
      (biases, output log-scales) ``:= N(0, 0.01^2)``.
    * With ``inputs = (hr, lr)``, one encode pass in training mode on that real input (as the SRFlow
      measurements and golden files): every ActNorm initialises itself from the data (Glow's
      data-dependent init), and each zero-initialised convolution weight (coupling outputs, priors)
      is drawn so that the layer's output has standard deviation about ``output_std``.
      Without ``inputs``: ActNorm ``bias`` / ``logs`` ``+= N(0, 0.1^2)`` and zero weights
      ``:= N(0, 0.02^2)``, the official scheme -- under which HCFlow's reverse pass reaches ~1e10
      on random latents and SRFlow's forward contracts so much that the reverse pass overflows
      (finite timings, but meaningless bf16 / compile deviations).

    Returns ``model`` in eval mode, every ActNorm marked initialised.
    """
    import torch

    from flowsr.layers.actnorm import ActNorm
    from flowsr.layers.invconv import InvConv1x1
    from flowsr.testing import perturb_parameters

    g = torch.Generator().manual_seed(seed)

    def draw(p, std):
        p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * std)

    actnorms = [m for m in model.modules() if isinstance(m, ActNorm)]
    for i, module in enumerate(model.modules()):
        if isinstance(module, InvConv1x1):
            perturb_parameters(module, seed=seed + i, scale=0.05)
    with torch.no_grad():
        zero = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.nn.Parameter)]
        zero = [m for m in zero if m.weight.dim() > 1 and not bool(m.weight.any())]
        skip = {id(m.weight) for m in zero} | {id(p) for a in actnorms for p in a.parameters()}
        for p in model.parameters():
            if p.is_floating_point() and p.requires_grad and id(p) not in skip and not bool(p.any()):
                draw(p, 0.01)
        if inputs is not None:

            def calibrate_hook(module, args):
                rms = float(args[0].detach().double().pow(2).mean().sqrt()) or 1.0
                draw(module.weight, output_std / (rms * math.sqrt(module.weight[0].numel())))
                handles.pop(id(module)).remove()

            handles = {id(m): m.register_forward_pre_hook(calibrate_hook) for m in zero}
            model.train()  # ActNorms initialise from this batch
            try:
                _encode_for_calibration(model, *inputs)
            finally:
                for h in handles.values():
                    h.remove()
        else:
            for i, module in enumerate(actnorms):
                perturb_parameters(module, seed=seed + 100_000 + i, scale=0.1)
        for m in zero:  # not reached by the pass (or no pass): the official N(0, 0.02^2)
            if not bool(m.weight.any()):
                draw(m.weight, 0.02)
    for module in actnorms:
        module.mark_initialized()
    return model.eval()


def _encode_for_calibration(model, hr, lr) -> None:
    model.encode(hr, lr)


def crop_inputs(preset: Preset, batch: int = 1):
    """``(hr, lr)`` float32 crops of a bundled image (as the official measurements), or random
    images for tiny presets; ``lr`` is the bundled bicubic LR (MATLAB-exact) cropped to match."""
    import torch

    s, n = preset.scale, preset.hr_size
    if not preset.tiny:
        try:
            from flowsr.data import read_image, sample_images

            name = "butterfly" if preset.image == "general_x4" else "16"
            (_, hr_path, lr_path), *_ = [t for t in sample_images(preset.image) if t[0] == name]
            hr_full, lr_full = read_image(hr_path), read_image(lr_path)
            y0 = 48 if hr_full.shape[-1] >= 48 + n else 0
            hr = hr_full[..., y0 : y0 + n, y0 : y0 + n]
            lr = lr_full[..., y0 // s : (y0 + n) // s, y0 // s : (y0 + n) // s]
            if hr.dim() == 3:
                hr, lr = hr[None], lr[None]
            if lr.shape[-1] * s == n and hr.shape[-1] == n:
                return hr.repeat(batch, 1, 1, 1).contiguous(), lr.repeat(batch, 1, 1, 1).contiguous()
        except Exception:  # pragma: no cover - bundled data missing: fall back to random images
            pass
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(batch, 3, n, n, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, s)
    return hr, lr


def large_lr(preset: Preset, size: int):
    """A ``size x size`` LR image for the tiled measurement (the bundled HR image resized)."""
    import torch.nn.functional as F

    hr, _ = crop_inputs(dataclasses.replace(preset, hr_size=160))
    return F.interpolate(hr, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1).contiguous()
