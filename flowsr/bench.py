"""``flowsr bench``: speed, FLOP efficiency and peak memory of the model presets.

For every preset (HCFlow SR x4 and x8, HCFlow rescaling x4, SRFlow x4, IRN x4) and operation

* ``encode``  -- HR -> LR/latents (for SR models the full NLL, as the official "forward"),
* ``decode``  -- LR -> one HR sample (latents drawn inside, as the official "reverse"),
* ``train``   -- one training step: forward + backward + Adam step on the model's loss
  (NLL for SR models, the official rescaling losses for HCFlow rescaling and IRN),
* ``samples`` -- ``N`` diverse HR samples of one LR image in one batched call
  (``samples_repeat``: the same with the LR repeated ``N`` times, i.e. without sharing the
  LR-only features -- the baseline of the shared-feature optimisation),
* ``tiled``   -- HCFlow SR x4 from a 512x512 LR to a 2048x2048 HR in tiles
  (:func:`flowsr.inference.super_resolve` with ``tile``),

it reports the median time (and min / max) of ``--repeats`` calls after ``--warmup`` calls,
the time per megapixel of HR output, the conv/matmul FLOPs of one call
(:class:`torch.utils.flop_counter.FlopCounterMode`, 1 MAC = 2 FLOP), the achieved GFLOP/s and its
fraction of a 3x3-convolution throughput measured in the same run, the peak memory (CPU: the
``ru_maxrss`` high-water mark of a fresh process that runs only that measurement; CUDA:
``torch.cuda.max_memory_allocated``), the load averages before / after, and how much CPU other
processes used during the timed calls (from ``/proc/stat``), so runs on a busy machine show it.
The official CPU timings (``hcflow-spec.md`` section 8, ``srflow-irn-spec.md`` part C) are listed
next to ours with the ratio.

Usage::

    python -m flowsr.bench --all --markdown docs/benchmarks.md     # what docs/benchmarks.md holds
    flowsr bench --preset hcflow_sr_x4 --ops decode samples          # a quick look
    flowsr bench --preset hcflow_sr_x4 --ops decode train --amp bf16 --compile --device cuda

Weights are random but non-trivial and numerically like a trained network's (:func:`make_nontrivial`):
1x1-convolution weights ``+= N(0, 0.05^2)`` (:func:`flowsr.testing.perturb_parameters`, as the
official measurements), ActNorms data-initialised on the input crop, zero-initialised layers drawn
for a small output (0.1 std; SRFlow 0.01), other zero parameters ``N(0, 0.01^2)``; latents of real
images then have std ~1 and every output is checked to be finite. ``--from-json`` re-renders a
report from saved results. Timings never belong in the test suite; ``tests/test_bench.py`` only
checks that this runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "OFFICIAL",
    "OPS",
    "PRESETS",
    "add_parser",
    "available_presets",
    "calibrate",
    "count_flops",
    "main",
    "run",
    "run_measurement",
]

RESULT_TAG = "FLOWSR_BENCH_RESULT "
OPS = ("encode", "decode", "train", "samples", "samples_repeat", "tiled")
DEFAULT_OPS = ("encode", "decode", "train", "samples")
#: Official numbers (CPU, torch 2.13, float32, 2 threads, batch 1, median of 3 after a warm-up).
#: ``encode`` / ``decode`` are the official forward / reverse seconds (a ``(lo, hi)`` range where
#: the reference gives two clean runs), ``gflop`` per pass, ``rss`` the peak RSS of the process
#: in MiB (forward, reverse).
OFFICIAL: dict[str, dict[str, Any]] = {
    "hcflow_sr_x4": {
        "encode": 1.93,
        "decode": 1.71,
        "gflop": 184.3,
        "rss": (490, 486),
        "source": "hcflow-spec.md section 8",
    },
    "hcflow_sr_x8": {
        "encode": 1.67,
        "decode": 1.60,
        "gflop": 146.6,
        "rss": (508, 510),
        "source": "hcflow-spec.md section 8",
    },
    "hcflow_rescaling_x4": {
        "encode": 0.49,
        "decode": 0.49,
        "gflop": 34.0,
        "rss": (426, 409),
        "source": "hcflow-spec.md section 8",
    },
    "srflow_x4": {
        "encode": 1.91,
        "decode": 1.54,
        "gflop": 168.8,
        "rss": (622, 622),
        "source": "srflow-irn-spec.md part C (DF2K x4)",
    },
    "irn_x4": {
        "encode": (0.53, 0.65),
        "decode": (0.62, 0.67),
        "gflop": 29.9,
        "rss": (407, 407),
        "source": "srflow-irn-spec.md part C",
    },
}
#: Issue 6: N diverse samples of one LR in at most this fraction of N official reverse calls.
SAMPLES_TARGET = 0.6
#: Issue 6: tiled HCFlow SR x4 512 -> 2048 within this peak memory (MiB).
TILED_TARGET_MIB = 2048


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
            "hcflow_sr_x4", "HCFlow SR x4", "hcflow_sr", lambda: _hcflow_sr(4), 4, heat=0.9, tiled_lr=512,
            shares_lr_features=True,
        ),
        Preset(
            "hcflow_sr_x8", "HCFlow SR x8 face", "hcflow_sr", lambda: _hcflow_sr(8), 8, heat=0.8, image="face_x8",
            tiled_lr=512, shares_lr_features=True,
        ),
        Preset(
            "hcflow_rescaling_x4", "HCFlow rescaling x4", "hcflow_rescaling", _hcflow_rescaling, 4, heat=1.0,
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


def _crop_inputs(preset: Preset, batch: int = 1):
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


def _large_lr(preset: Preset, size: int):
    """A ``size x size`` LR image for the tiled measurement (the bundled HR image resized)."""
    import torch.nn.functional as F

    hr, _ = _crop_inputs(dataclasses.replace(preset, hr_size=160))
    return F.interpolate(hr, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1).contiguous()


# -- the operations ---------------------------------------------------------------------------------


def _generator(device, seed: int):
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def _diverse(model, lr, heat: float, n: int, g, share: bool = True):
    """``n`` samples of ``lr`` in one batched call, ``(n * B, C, H, W)``.

    ``share=False`` samples ``lr.repeat(n)`` (every LR-only feature recomputed per sample: the
    baseline of the shared-feature optimisation in :meth:`HierarchicalFlow.decode`)."""
    if not share:
        return model.sample(lr.repeat(n, 1, 1, 1), heat, generator=g)
    out = model.sample(lr, heat, n=n, generator=g)
    return out.reshape(-1, *out.shape[2:]) if n > 1 else out


def _make_op(op: str, model, preset: Preset, cfg: dict, device, channels_last: bool = False):
    """``(fn, hr_pixels_per_call, uses_grad)``: ``fn()`` runs the operation once and returns a
    tensor (training: the loss, before backward)."""
    import torch

    heat, seed, n = preset.heat, cfg["seed"], cfg["samples"]
    batch = cfg["batch"] if op == "train" else 1
    hr, lr = _crop_inputs(preset, batch)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    hr, lr = hr.to(device, memory_format=fmt), lr.to(device, memory_format=fmt)
    pixels = hr.shape[0] * hr.shape[2] * hr.shape[3]

    if op == "encode":
        return (lambda: model.encode(hr, lr)[2]), pixels, False

    if op == "decode":
        return (lambda: model.upscale(lr, heat, generator=_generator(device, seed))), pixels, False

    if op in ("samples", "samples_repeat"):
        share = op == "samples"
        return (lambda: _diverse(model, lr, heat, n, _generator(device, seed), share)), pixels * n, False

    if op == "tiled":
        from flowsr import inference

        if not hasattr(inference, "tiled") or not hasattr(inference, "super_resolve"):
            raise RuntimeError("flowsr.inference.tiled / super_resolve are not available yet")
        big = _large_lr(preset, preset.tiled_lr).to(device)
        out_pixels = (big.shape[2] * preset.scale) * (big.shape[3] * preset.scale)

        def tiled_fn():
            return inference.super_resolve(model, big, heat, _generator(device, seed), tile=preset.tile)

        return tiled_fn, out_pixels, False

    if op == "train":
        from flowsr.models.base import GeneratorNoise

        losses = {w: 1.0 for w in model.objective_weights}

        def loss_fn():
            noise = GeneratorNoise(hr.shape[0], _generator("cpu", seed), device=device)
            return model.training_losses(hr, lr, noise, losses)["total"]

        return loss_fn, pixels, True
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


def count_flops(fn: Callable[[], Any]) -> int:
    """Convolution / matmul FLOPs of one call of ``fn`` (``FlopCounterMode``: 1 MAC = 2 FLOP;
    backward passes run inside ``fn`` are counted too)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


# -- measurement helpers ----------------------------------------------------------------------------


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def _cpu_busy() -> tuple[float, float] | None:
    """``(busy, total)`` CPU seconds of the whole machine so far (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def _rss_now_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _maxrss_mib(who=None) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF if who is None else who)
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def calibrate(device="cpu", seconds: float = 1.0, bf16: bool = False) -> dict[str, float]:
    """Peak throughput (GFLOP/s of the fastest call) of a 3x3 convolution 64 -> 64 channels on a
    1x64x80x80 float32 input (the size of HCFlow's HR/2 feature maps for a 160x160 crop, where most
    of the FLOPs are) and of a 1024x1024 float32 matmul (``bf16=True`` adds the
    convolution under bf16 autocast)."""
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 80, 80, generator=g).to(device)
    w = torch.randn(64, 64, 3, 3, generator=g).to(device) * 0.05
    a = torch.randn(1024, 1024, generator=g).to(device)
    b = torch.randn(1024, 1024, generator=g).to(device)
    kernels = {
        "conv3x3_64": (lambda: F.conv2d(x, w, padding=1), 2 * 64 * 64 * 9 * 80 * 80),
        "matmul_1024": (lambda: a @ b, 2 * 1024**3),
    }
    if bf16:

        def conv_bf16():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return F.conv2d(x, w, padding=1)

        kernels["conv3x3_64_bf16"] = (conv_bf16, 2 * 64 * 64 * 9 * 80 * 80)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, (fn, flops) in kernels.items():
            for _ in range(2):
                fn()
            _sync(device)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 1000):
                t0 = time.perf_counter()
                fn()
                _sync(device)
                times.append(time.perf_counter() - t0)
            out[name] = flops / min(times) / 1e9  # peak: the fastest call
    return out


def _deviation(out, ref) -> dict[str, float] | None:
    import torch

    if not isinstance(out, torch.Tensor) or not isinstance(ref, torch.Tensor) or out.shape != ref.shape:
        return None
    d = (out.detach().float() - ref.detach().float()).abs()
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def _autocast(device, amp: str | None):
    """bf16 autocast for ``amp == "bf16"``, nothing for ``None``."""
    import torch

    if amp is None:
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"amp must be 'bf16' here, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _is_variant(job: dict) -> bool:
    return job.get("amp") not in (None, "none") or bool(job.get("compile")) or bool(job.get("channels_last"))


class _Bf16Features:
    """Runs a model's conditioning networks (HCFlow feature extractors, SRFlow's LR encoder)
    under bf16 autocast and hands float32 features to the flow, which stays in float32."""

    def __init__(self, model, device):
        import torch

        self.model, self.device, self.undo = model, device, []

        def wrap(fn):
            def wrapped(*args, **kwargs):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    out = fn(*args, **kwargs)
                if isinstance(out, (list, tuple)):
                    return type(out)(o.float() for o in out)
                return out.float()

            return wrapped

        for level in getattr(getattr(model, "flow", None), "levels", []):
            if getattr(level, "features", None) is not None and not _is_kept_part(level.features):
                self._patch(level.features, "forward", wrap)
        encoder = getattr(model, "encoder", None)
        if encoder is not None and hasattr(encoder, "level_features"):
            self._patch(encoder, "level_features", wrap)
        if not self.undo:
            raise ValueError(f"{type(model).__name__} has no conditioning network to run in bf16")

    def _patch(self, obj, name, wrap):
        setattr(obj, name, wrap(getattr(obj, name)))
        self.undo.append((obj, name))

    def restore(self):
        for obj, name in self.undo:
            delattr(obj, name)  # back to the class attribute
        self.undo = []


def _is_kept_part(module) -> bool:
    return type(module).__name__ == "KeptPart"


def run_measurement(job: dict) -> dict:
    """Run one measurement in this process and return its result dict (see :func:`run`)."""
    import torch

    t_start = time.perf_counter()
    threads = int(job.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    keys = ("preset", "op", "batch", "samples", "amp", "compile", "channels_last")
    result: dict[str, Any] = {k: job.get(k) for k in keys}
    result.update(threads=threads, load_before=_loadavg(), rss_start_mib=_rss_now_mib())
    device = torch.device(job.get("device") or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA requested but not available")
    if job["op"] == "calibrate":
        result["calibration"] = calibrate(device, job.get("calib_seconds", 1.0), bf16=bool(job.get("amp")))
        result["load_after"] = _loadavg()
        return result

    preset = PRESETS[job["preset"]]
    op, amp = job["op"], job.get("amp")
    torch.manual_seed(job.get("seed", 0))
    model = make_nontrivial(preset.build(), job.get("seed", 0), _crop_inputs(preset), preset.output_std).to(device)
    result["params"] = sum(p.numel() for p in model.parameters())
    channels_last = bool(job.get("channels_last"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn, pixels, grad = _make_op(op, model, preset, job, device, channels_last)
    result["hr_pixels"] = pixels
    bf16_features = _Bf16Features(model, device) if amp == "bf16-features" else None
    full_amp = "bf16" if amp == "bf16" else None
    compiled = torch.compile(fn) if job.get("compile") else fn
    if grad:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-6)

        def timed():
            with _autocast(device, full_amp):
                loss = compiled()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

    else:
        model.eval()

        def timed():
            with torch.no_grad(), _autocast(device, full_amp):
                return compiled()

    result["rss_build_mib"] = _rss_now_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # warm-up (the first call also compiles), then the timed calls
    first = None
    for i in range(int(job.get("warmup", 1))):
        _sync(device)
        t0 = time.perf_counter()
        timed()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    result["first_call_s"] = first
    times, cpu_times = [], []
    busy0, cpu0 = _cpu_busy(), time.process_time()
    wall0 = time.perf_counter()
    out = None
    for _ in range(max(1, int(job.get("repeats", 3)))):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = timed()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    wall = time.perf_counter() - wall0
    busy1, cpu1 = _cpu_busy(), time.process_time()
    result["peak_rss_mib"] = _maxrss_mib()
    if device.type == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result.update(times=times, cpu_times=cpu_times, median=statistics.median(times), min=min(times), max=max(times))
    if busy0 is not None and busy1 is not None and wall > 0:
        others = (busy1[0] - busy0[0]) - (cpu1 - cpu0)
        result["others_cpu"] = max(0.0, others / wall)  # cores' worth of CPU used by other processes
    result["cpu_per_wall"] = (cpu1 - cpu0) / wall if wall > 0 else None
    result["load_after"] = _loadavg()
    result["finite"] = bool(torch.isfinite(out).all()) if isinstance(out, torch.Tensor) else None
    if isinstance(out, torch.Tensor) and out.numel():
        result["output_mean"] = float(out.detach().float().mean())

    # numerics of a variant (amp / compile / channels-last) against the float32 eager run
    if _is_variant(job) and op != "tiled":
        with torch.no_grad():
            if grad:
                with _autocast(device, full_amp):
                    out = compiled()
            if bf16_features is not None:
                bf16_features.restore()
            if channels_last:
                model = model.to(memory_format=torch.contiguous_format)
            ref_fn, _, _ = _make_op(op, model, preset, job, device, False)
            result["deviation"] = _deviation(out, ref_fn())
    else:
        ref_fn = fn
        if bf16_features is not None:
            bf16_features.restore()
    if job.get("flops", True):
        if grad:
            result["flop"] = count_flops(lambda: ref_fn().backward())
        else:
            with torch.no_grad():
                result["flop"] = count_flops(ref_fn)
    result["total_s"] = time.perf_counter() - t_start
    return result


def _run_job(job: dict, in_process: bool, timeout: float | None) -> dict:
    """One measurement, in a fresh subprocess (for the peak RSS) unless ``in_process``."""
    before = _loadavg()
    if in_process:
        try:
            res = run_measurement(job)
            res["in_process"] = True
        except Exception as err:  # noqa: BLE001 - reported in the table
            res = {**job, "error": f"{type(err).__name__}: {err}"}
        res.setdefault("load_before", before)
        res.setdefault("load_after", _loadavg())
        return res
    cmd = [sys.executable, "-m", "flowsr.bench", "--worker", json.dumps(job)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(job.get("threads") or ""))
    if not env["OMP_NUM_THREADS"]:
        del env["OMP_NUM_THREADS"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout} s", "load_before": before, "load_after": _loadavg()}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG) :])
            res["load_before"] = before  # as seen from outside, before the process started
            res["load_after"] = _loadavg()
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**job, "error": " | ".join(tail) or f"worker exited with {proc.returncode}", "load_before": before}


def _worker_main(payload: str) -> int:
    job = json.loads(payload)
    try:
        res = run_measurement(job)
    except Exception as err:  # noqa: BLE001 - reported in the table
        import traceback

        traceback.print_exc()
        res = {**job, "error": f"{type(err).__name__}: {_one_line(err)}"}
    print(RESULT_TAG + json.dumps(res), flush=True)
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


# -- planning ---------------------------------------------------------------------------------------


def plan(args) -> list[dict]:
    """The list of measurements (jobs) an argument namespace asks for.

    ``--all`` adds, after each HCFlow preset's rows, ``samples_repeat`` (the baseline of the
    shared-feature sampling) and, for HCFlow SR x4, the issue's batch-4 training step, the
    variants (bf16 autocast of everything / of the conditioning networks only, channels-last,
    ``torch.compile``) and the tiled 512 -> 2048 decode.
    """
    amp = None if args.amp in (None, "none") else args.amp
    base = {
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "samples": args.samples,
        "batch": args.train_batch,
        "seed": args.seed,
        "amp": amp,
        "compile": bool(args.compile),
        "channels_last": bool(args.channels_last),
        "flops": not args.no_flops,
    }
    tiled = {"op": "tiled", "repeats": 1, "warmup": 0, "flops": False}
    presets = list(args.preset or [])
    if args.all and not presets:
        presets = list(FULL_PRESETS)
    if not presets:
        presets = ["hcflow_sr_x4"]
    avail = available_presets(presets)
    ops = list(args.ops or DEFAULT_OPS)
    cuda = str(args.device).startswith("cuda")
    jobs: list[dict] = []
    for name in presets:
        if avail[name] is not None:
            jobs.append({**base, "preset": name, "op": "-", "skip": avail[name]})
            continue
        for op in ops:
            if op == "tiled" and not PRESETS[name].tiled_lr:
                continue
            jobs.append({**base, "preset": name, "op": op, **(tiled if op == "tiled" else {})})
        if not args.all:
            continue
        if PRESETS[name].shares_lr_features and "samples" in ops and "samples_repeat" not in ops:
            jobs.append({**base, "preset": name, "op": "samples_repeat"})
        if name != "hcflow_sr_x4":
            continue
        if base["batch"] != 4:
            jobs.append({**base, "preset": name, "op": "train", "batch": 4})
        plain = {"amp": None, "compile": False, "channels_last": False}
        if not (amp or args.compile or args.channels_last):
            variants = [
                ("decode", {"amp": "bf16"}),
                ("decode", {"amp": "bf16-features"}),
                ("decode", {"channels_last": True}),
                ("decode", {"compile": True}),
                ("samples", {"amp": "bf16-features"}),
                ("train", {"amp": "bf16"}),
                ("train", {"amp": "bf16-features"}),
            ]
            if cuda:
                variants.append(("train", {"compile": True}))
            jobs += [{**base, **plain, "preset": name, "op": op, **v} for op, v in variants]
        if "tiled" not in ops:
            jobs.append({**base, "preset": name, **tiled})
    return jobs


# -- reporting --------------------------------------------------------------------------------------


def _label(r: dict) -> str:
    op = r.get("op", "?")
    if op in ("samples", "samples_repeat"):
        op = f"{op} (N={r.get('samples')})"
    elif op == "train":
        op = f"train (batch {r.get('batch')})"
    elif op == "tiled":
        p = PRESETS.get(r.get("preset", ""))
        if p is not None:
            op = f"tiled {p.tiled_lr}->{p.tiled_lr * p.scale} (tile {p.tile})"
    tags = []
    if r.get("amp") not in (None, "none"):
        tags.append(str(r["amp"]))
    if r.get("channels_last"):
        tags.append("channels-last")
    if r.get("compile"):
        tags.append("compile")
    return op + (f" [{', '.join(tags)}]" if tags else "")


def _official_seconds(r: dict) -> float | tuple[float, float] | None:
    ref = OFFICIAL.get(r.get("preset", ""))
    if not ref or _is_variant(r):
        return None
    op = r.get("op")
    if op in ("encode", "decode"):
        return ref[op]
    if op in ("samples", "samples_repeat"):
        dec = ref["decode"]
        n = r.get("samples") or 1
        return (dec[0] * n, dec[1] * n) if isinstance(dec, tuple) else dec * n
    return None


def _mid(v):
    return (v[0] + v[1]) / 2 if isinstance(v, tuple) else v


def _fmt_s(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return f"{_fmt_s(v[0])}-{_fmt_s(v[1])}"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _fmt_load(v) -> str:
    return "-" if not v else f"{v[0]:.2f}"


COLUMNS = [
    "preset",
    "operation",
    "median s",
    "min-max s",
    "s / MP",
    "GFLOP",
    "GFLOP/s",
    "% conv peak",
    "peak MiB",
    "load 1m before/after",
    "others' CPU",
    "official s",
    "ours / official",
]


def rows(results: Sequence[dict], calib: dict | None) -> list[list[str]]:
    """The table rows (strings) for ``results``; columns :data:`COLUMNS`."""
    conv = (calib or {}).get("conv3x3_64")
    out = []
    for r in results:
        name = r.get("preset", "?")
        if r.get("skip") or r.get("error"):
            why = r.get("skip") or r.get("error")
            out.append([name, _label(r), f"not measured: {why}"] + [""] * (len(COLUMNS) - 3))
            continue
        med, pixels = r["median"], r.get("hr_pixels") or 0
        gflop = r.get("flop", 0) / 1e9 if r.get("flop") is not None else None
        rate = gflop / med if gflop is not None and med > 0 else None
        mem = r.get("gpu_peak_mib") or r.get("peak_rss_mib")
        mem_s = "-" if mem is None else f"{mem:.0f}" + (" (GPU)" if r.get("gpu_peak_mib") else "")
        if r.get("in_process") and not r.get("gpu_peak_mib"):
            mem_s += " (in-process)"
        official = _official_seconds(r)
        ratio = med / _mid(official) if official else None
        note = "" if r.get("finite") in (True, None) else " NON-FINITE"
        out.append(
            [
                name,
                _label(r) + note,
                _fmt_s(med),
                f"{_fmt_s(r['min'])}-{_fmt_s(r['max'])}",
                _fmt_s(med / (pixels / 1e6)) if pixels else "-",
                "-" if gflop is None else f"{gflop:.4g}",
                "-" if rate is None else f"{rate:.0f}",
                "-" if rate is None or not conv else f"{100 * rate / conv:.0f}%",
                mem_s,
                f"{_fmt_load(r.get('load_before'))}/{_fmt_load(r.get('load_after'))}",
                "-" if r.get("others_cpu") is None else f"{r['others_cpu']:.2f}",
                _fmt_s(official),
                "-" if ratio is None else f"{ratio:.2f}x",
            ]
        )
    return out


def format_table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(line.rstrip() for line in lines)


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if flags and not cpu.startswith(platform.machine()):
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "cpu": cpu,
        "isa": " ".join(isa) or None,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gib": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "dnnl_max_cpu_isa": os.environ.get("DNNL_MAX_CPU_ISA"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }
    return info


def _contended(results: Sequence[dict]) -> bool:
    others = [r.get("others_cpu") for r in results if r.get("others_cpu") is not None]
    return bool(others) and max(others) > 0.25


def _busy(*rs: dict) -> str:
    """A warning when other processes used the CPU during a measurement (or threads differ from
    the official measurements' 2)."""
    others = max((r.get("others_cpu") or 0.0) for r in rs)
    note = f"; measured while other processes used {others:.1f} cores: not conclusive" if others > 0.25 else ""
    threads = rs[0].get("threads")
    if threads and threads != 2 and rs[0].get("device", "cpu") == "cpu":
        note += f"; ours with {threads} thread(s), the official numbers with 2"
    return note


def _targets(results: Sequence[dict], device: str) -> list[str]:
    """Issue 6's targets with the measured value next to each (only those measured in this run)."""
    by = {}
    for r in results:
        if r.get("error") or r.get("skip"):
            continue
        key = (r.get("preset"), r.get("op"), r.get("batch") if r.get("op") == "train" else None)
        if not _is_variant(r):
            by[key] = r
    lines = []
    cpu = not str(device).startswith("cuda")
    for name in ("hcflow_sr_x4", "hcflow_sr_x8", "hcflow_rescaling_x4"):
        ref = OFFICIAL[name]
        for op in ("encode", "decode"):
            r = by.get((name, op, None))
            if r is None or not cpu:
                continue
            ratio = r["median"] / ref[op]
            ok = "met" if ratio <= 1.0 else "NOT met"
            lines.append(
                f"- {PRESETS[name].title} {op} no slower than official: {r['median']:.2f} s vs {ref[op]:.2f} s "
                f"= {ratio:.2f}x ({ok}{_busy(r)})"
            )
    for name in ("hcflow_sr_x4", "hcflow_sr_x8", "hcflow_rescaling_x4", "srflow_x4", "irn_x4"):
        r = by.get((name, "samples", None))
        if r is None or not cpu:
            continue
        n = r.get("samples")
        ref = _mid(OFFICIAL[name]["decode"]) * n
        ratio = r["median"] / ref
        base = by.get((name, "samples_repeat", None))
        gain = ""
        if base:
            gain = f"; without sharing the LR features {base['median']:.2f} s"
            if base.get("flop") and r.get("flop"):
                gain += f", {base['flop'] / r['flop'] - 1:.0%} more FLOPs"
        ok = ("met" if ratio <= SAMPLES_TARGET else "NOT met") + _busy(r)
        lines.append(
            f"- {PRESETS[name].title}: N = {n} samples of one LR in <= {SAMPLES_TARGET}x of {n} official reverse calls "
            f"({ref:.1f} s): {r['median']:.2f} s = {ratio:.2f}x ({ok}{gain})"
        )
    r = by.get(("hcflow_sr_x4", "tiled", None))
    if r is not None:
        mem = r.get("gpu_peak_mib") or r.get("peak_rss_mib")
        ok = ("met" if mem is not None and mem <= TILED_TARGET_MIB else "NOT met") + _busy(r)
        lines.append(
            f"- Tiled HCFlow SR x4 512x512 -> 2048x2048 within {TILED_TARGET_MIB} MiB peak: {mem:.0f} MiB "
            f"({ok}), {r['median']:.0f} s; seams (tiled vs whole image at temperature 0) are tested in "
            f"tests/test_cli.py, not here"
        )
    r = by.get(("hcflow_sr_x4", "train", 4))
    if r is not None:
        lines.append(
            f"- HCFlow SR x4 NLL training step, batch of 4 160x160 patches: {r['median']:.2f} s (reported{_busy(r)})"
        )
    for r in results:
        if r.get("error") or r.get("skip") or not _is_variant(r):
            continue
        base = by.get((r.get("preset"), r.get("op"), r.get("batch") if r.get("op") == "train" else None))
        if base is None:
            continue
        speed = base["median"] / r["median"]
        dev = r.get("deviation")
        dev_s = f", max / mean |output - float32 eager| = {dev['max_abs']:.2g} / {dev['mean_abs']:.2g}" if dev else ""
        first = f", first call {r['first_call_s']:.1f} s" if r.get("first_call_s") else ""
        verdict = ("helps" if speed > 1.05 else ("no gain" if speed > 0.95 else "slower")) + _busy(r, base)
        lines.append(
            f"- {PRESETS[r['preset']].title} {_label(r)} on {device}: {r['median']:.2f} s vs {base['median']:.2f} s "
            f"float32 eager = {speed:.2f}x speed-up ({verdict}){first}{dev_s}"
        )
    for r in results:
        if r.get("error") and _is_variant(r):
            lines.append(f"- {PRESETS[r['preset']].title} {_label(r)}: failed: {r['error']}")
    lines.append(
        "- Numerics unchanged: checked by the golden-fixture tests (`pytest tests/test_hcflow_golden.py`), not here"
    )
    return lines


def markdown_report(results: Sequence[dict], calib: dict | None, info: dict, meta: dict, table: list[list[str]]) -> str:
    threads = meta.get("threads")
    lines = [
        "# flowsr benchmarks",
        "",
        "Generated by `flowsr bench` (`flowsr/bench.py`); regenerate this file with",
        "",
        "```",
        "python -m flowsr.bench --all --markdown docs/benchmarks.md",
        "```",
        "",
    ]
    if _contended(results):
        lines += [
            "> **Taken while other jobs were running on this machine** "
            f"(other processes used up to {max(r.get('others_cpu') or 0 for r in results):.2f} cores' worth of "
            "CPU during the timed calls; see the *others' CPU* column): these timings are inflated and noisy. "
            "Re-run the command above on an idle machine for the real numbers.",
            "",
        ]
    if meta.get("note"):
        lines += [f"> **Note.** {meta['note']}", ""]
    isa = info.get("dnnl_max_cpu_isa")
    lines += [
        "## Setup",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']} (run took {meta['elapsed_s'] / 60:.1f} min)",
        f"- Machine: {info['cpu']}"
        + (f" ({info['isa']})" if info.get("isa") else "")
        + f", {info['cores']} logical cores ({info['usable_cores']} usable)"
        + (f", {info['memory_gib']:.0f} GiB RAM" if info.get("memory_gib") else "")
        + (f", GPU {info['cuda']}" if info.get("cuda") else ""),
        f"- Software: torch {info['torch']}, Python {info['python']}, oneDNN (mkldnn) {info['mkldnn']}"
        + (f", DNNL_MAX_CPU_ISA={isa}" if isa else "")
        + f"; {info['platform']}",
        f"- Device {meta['device']}, {threads} torch threads (`torch.set_num_threads`), float32 unless marked "
        f"bf16 (autocast) or compile (`torch.compile`)",
        f"- Load averages (1/5/15 min) at start {_fmt_loads(meta.get('load_start'))}, "
        f"at end {_fmt_loads(meta.get('load_end'))}",
        f"- Method: {meta['warmup']} warm-up call(s), then {meta['repeats']} timed calls: median (min-max); "
        "each row runs in a fresh process (peak = that process's `ru_maxrss`, Python + torch runtime "
        "included; CUDA: `max_memory_allocated`); FLOPs of one call from `torch.utils.flop_counter` "
        "(conv/matmul only, 1 MAC = 2 FLOP, backward included for training); *% conv peak* = achieved "
        "GFLOP/s over the 3x3-conv throughput below; *others' CPU* = cores' worth of CPU used by other "
        "processes during the timed calls (0 = idle machine); *s / MP* = seconds per megapixel of HR output",
        "- Inputs: 160x160 HR crops (butterfly at (48, 48) with its 40x40 bicubic LR; face 16.png with "
        "its 20x20 LR), batch 1 (training: batch as marked); heats 0.9 (x4 SR), 0.8 (x8), 1.0 (rescaling)",
        "- Weights: random, non-trivial, numerically like a trained net (`flowsr.bench.make_nontrivial`: "
        "1x1-conv weights += N(0, 0.05^2) as the official measurements, ActNorms data-initialised on the "
        "input crop, zero-initialised layers drawn for 0.1 output std (SRFlow 0.01), other zero parameters "
        "N(0, 0.01^2)); timings do not depend on the values. Training: Adam, forward + backward + step. "
        "*samples*: N diverse samples of one LR in one batched call (LR-only features computed once); "
        "*samples_repeat*: the same with the LR repeated N times (the old way, for the gain); "
        "*bf16-features*: bf16 autocast of the conditioning networks only (RRDB features / SRFlow encoder), "
        "the flow in float32",
        "",
        "## Convolution / GEMM throughput (same run)",
        "",
        "Peak GFLOP/s (fastest call) measured at the start and at the end of the run; the better of the "
        "two is the reference of the *% conv peak* column.",
        "",
        format_table(
            ["kernel", "at start", "at end", "used"],
            [
                [k, *(f"{c[k]:.0f}" if k in c else "-" for c in _pad2(meta.get("calibrations"))), f"{v:.0f}"]
                for k, v in (calib or {}).items()
            ]
            or [["(not measured)", "-", "-", "-"]],
            markdown=True,
        ),
        "",
        "## Results",
        "",
        format_table(COLUMNS, table, markdown=True),
        "",
        "*official s*: the official code on this machine kind (CPU, 2 threads, idle; hcflow-spec.md section 8, "
        "srflow-irn-spec.md part C); for *samples* it is N official reverse calls. Official GFLOP per pass / "
        "peak RSS (MiB, forward / reverse): "
        + "; ".join(f"{PRESETS[k].title} {v['gflop']} / {v['rss'][0]}, {v['rss'][1]}" for k, v in OFFICIAL.items())
        + ".",
        "",
        "## Targets of issue 6",
        "",
        *_targets(results, meta["device"]),
        "",
        "## Reading the numbers",
        "",
        "- *samples* vs *samples_repeat*: the deepest level's conditioning features depend only on the LR "
        "image, so `HierarchicalFlow.decode` computes them once per LR and expands them over the N samples "
        "(bit-identical to decoding each sample alone in float64, `tests/test_diverse_sampling.py`). The "
        "saving is that feature network's share of the FLOPs: large for HCFlow SR x4 (LR 40x40 features), "
        "small for x8 (20x20), none for SRFlow (whose `sample` already encodes the LR once) and IRN (nothing "
        "depends on the LR alone).",
        "- *% conv peak* can exceed 100%: the reference is a 64 -> 64 3x3 convolution, while most of the "
        "models' FLOPs are in RRDB convolutions with 96-192 input channels, which run faster per FLOP.",
        "- Deviations of variants: for inference rows max / mean |output - float32 eager output| (images "
        "clamped to [0, 1]); for training rows |loss - float32 loss| in bits per pixel, which for these "
        "untrained SR models is dominated by the LR term (sigma = e^-6), so a change of the LR branch shows "
        "up strongly and a change of the conditioning features may vanish below float32 resolution.",
        "- `torch.compile` rows include nothing of the compilation in the timed calls; the first call "
        "(compilation) is listed in the targets above.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _pad2(calibrations) -> list[dict]:
    calibrations = list(calibrations or [])
    return (calibrations + [{}, {}])[:2]


def _fmt_loads(v) -> str:
    return "-" if not v else " / ".join(f"{x:.2f}" for x in v)


# -- command line -----------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on an ``argparse`` sub-parser collection (``flowsr bench``)."""
    p = subparsers.add_parser(
        "bench",
        help="Benchmark the model presets (time, GFLOP/s, peak memory) against the official numbers",
        description=__doc__.split("\n\n")[0].replace("``", "'"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  flowsr bench --all --markdown docs/benchmarks.md\n"
            "  flowsr bench --preset hcflow_sr_x4 --ops decode samples --repeats 5\n"
            "  flowsr bench --preset tiny_hcflow_sr --repeats 1 --warmup 0   # seconds\n"
            "  flowsr bench --preset hcflow_sr_x4 --ops decode train --device cuda --amp bf16 --compile"
        ),
    )
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help="preset to measure (repeatable; default hcflow_sr_x4)",
    )
    p.add_argument("--all", action="store_true", help="every full preset, plus the extra rows of docs/benchmarks.md")
    p.add_argument("--ops", nargs="+", choices=OPS, default=None, help=f"operations (default: {' '.join(DEFAULT_OPS)})")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as the official timings)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    p.add_argument("--samples", "-n", type=int, default=8, help="N of the diverse-samples operation (default 8)")
    p.add_argument("--train-batch", type=int, default=1, help="batch of the training step (default 1)")
    p.add_argument(
        "--amp",
        choices=("none", "bf16", "bf16-features"),
        default=None,
        help="bf16 autocast for every row: of everything, or of the conditioning networks only (the flow in float32)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile every measured function")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (weights and inputs)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and latents")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP counting pass")
    p.add_argument("--calib-seconds", type=float, default=1.0, help="time per throughput kernel (default 1 s)")
    p.add_argument("--in-process", action="store_true", help="no fresh process per row (faster; peak RSS not isolated)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per row before giving up")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write a Markdown report")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the raw results as JSON")
    p.add_argument("--note", default=None, help="a sentence added to the Markdown report's header")
    p.add_argument(
        "--from-json", metavar="FILE", default=None, help="measure nothing: re-render the report of a --json file"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    """Run the benchmark described by ``args`` (see :func:`add_parser`); prints the table."""
    if getattr(args, "from_json", None):
        data = json.loads(Path(args.from_json).read_text())
        meta = data["meta"]
        meta.update({k: tuple(v) for k, v in meta.items() if k.startswith("load_") and v})
        return _report(data["results"], data["calibration"], data["machine"], meta, args)
    started = time.perf_counter()
    meta = {
        "command": getattr(args, "command_line", None) or _command_line(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load_start": _loadavg(),
        "device": args.device,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "note": args.note,
    }
    info = machine_info()
    jobs = plan(args)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"flowsr bench: {len(jobs)} measurements on {args.device}, {args.threads} threads; {info['cpu']}")
    calib_job = {
        "op": "calibrate",
        "device": args.device,
        "threads": args.threads,
        "amp": "bf16" if args.all else None,  # also measure the bf16 convolution
        "calib_seconds": args.calib_seconds,
    }
    calibrations = [_calibration(calib_job, args, say, "at start")]
    results = []
    for job in jobs:
        if job.get("skip"):
            results.append(job)
            say(f"  {job['preset']}: skipped ({job['skip']})")
            continue
        res = _run_job(job, args.in_process, args.timeout)
        results.append(res)
        if res.get("error"):
            say(f"  {job['preset']} {_label(job)}: ERROR {res['error']}")
        else:
            say(
                f"  {job['preset']} {_label(res)}: {res['median']:.3f} s (min {res['min']:.3f}, max {res['max']:.3f}), "
                f"peak {res.get('gpu_peak_mib') or res.get('peak_rss_mib') or 0:.0f} MiB, "
                f"load {_fmt_load(res.get('load_before'))}->{_fmt_load(res.get('load_after'))}, "
                f"others' CPU {res.get('others_cpu', float('nan')):.2f}"
            )
    calibrations.append(_calibration(calib_job, args, say, "at end"))
    # the machine's throughput: the better of the two (a busy machine lowers one of them)
    calib = {k: max(c.get(k, 0.0) for c in calibrations) for c in calibrations for k in c} or None
    meta["calibrations"] = calibrations
    meta["load_end"] = _loadavg()
    meta["elapsed_s"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "machine": info, "calibration": calib, "results": results}, indent=1)
        )
    return _report(results, calib, info, meta, args)


def _report(results: list[dict], calib: dict | None, info: dict, meta: dict, args) -> int:
    for r in results:
        for key in ("load_before", "load_after"):
            if r.get(key):
                r[key] = tuple(r[key])
    table = rows(results, calib)
    print()
    print(format_table(COLUMNS, table, markdown=False))
    print()
    for line in _targets(results, args.device):
        print(line)
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown_report(results, calib, info, meta, table))
        if not args.quiet:
            print(f"wrote {path}")
    return 1 if any(r.get("error") for r in results) else 0


def _calibration(job: dict, args, say, when: str) -> dict[str, float]:
    res = _run_job(job, args.in_process, args.timeout)
    calib = res.get("calibration") or {}
    if calib:
        say(f"throughput {when}: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in calib.items()))
    else:
        say(f"throughput calibration {when} failed: {res.get('error')}")
    return calib


def _command_line() -> str:
    argv = sys.argv[1:]
    prog = "flowsr bench" if Path(sys.argv[0]).name in ("flowsr", "__main__.py") else "python -m flowsr.bench"
    if argv and argv[0] == "bench":
        argv = argv[1:]
    return " ".join([prog, *map(shlex.quote, argv)])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flowsr.bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1])
    parser = argparse.ArgumentParser(
        prog="python -m flowsr.bench", description=__doc__.split("\n\n")[0].replace("``", "'")
    )
    _add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m flowsr.bench", *map(shlex.quote, argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
