"""Image-quality metrics with the official HCFlow / SRFlow evaluation conventions.

Images are torch tensors in ``[0, 1]``, RGB, shaped ``(C, H, W)`` (one image -> a Python float) or
``(B, C, H, W)`` (a batch -> a float64 tensor of ``B`` values, one per image, as the official
per-image loop). ``(H, W)`` is taken as one grey channel.

Conventions (HCFlow spec §7; see ``docs/metrics.md``):

* ``quantize=True`` (default, like the official scripts): both images are first rounded to
  8 bits as ``tensor2img`` does — clamp to [0, 1], ``round(x * 255)`` (ties to even), back to
  ``k / 255`` in float64 — see :func:`quantize_for_metrics`. ``quantize=False`` uses the floats as
  they are (no clamping). ``uint8`` images are always taken as ``k / 255``.
* then ``crop_border`` pixels are removed on every side (the official test uses
  ``crop_border = scale``), then, with ``y_channel=True``, RGB -> BT.601 luma (:func:`rgb_to_y`),
  and the metric is computed in float64 on values ``x 255``.
* **PSNR** ``= 20 log10(255 / sqrt(MSE))``, ``inf`` for identical images.
* **SSIM**: MATLAB-style, 11x11 Gaussian window (sigma 1.5, normalised to sum 1), statistics over
  the *valid* region only (no padding: the SSIM map is ``(H-10) x (W-10)``), ``C1 = (0.01*255)^2``,
  ``C2 = (0.03*255)^2``; a colour image's SSIM is the mean of its per-channel SSIMs.
* **bicHR** (:func:`bic_hr_psnr`, :func:`bic_hr_ssim`): the metric between MATLAB-bicubic
  downscales (:func:`flowsr.data.imresize`, float path) of the rounded SR and HR images, no crop.
* **Diversity**: mean over pixels and channels of the unbiased std (x255) over ``N >= 2`` samples.
* **LPIPS** (AlexNet, v0.1) on the float images, see :class:`LPIPS`; its two weight files are
  found without being asked for (:func:`find_lpips_weights`: an installed ``lpips`` or torchmetrics
  package, torch's hub cache); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flowsr.data.image_io import to_uint8
from flowsr.data.resize import imresize

__all__ = [
    "LPIPS",
    "LPIPSWeights",
    "bic_hr_psnr",
    "bic_hr_ssim",
    "diversity",
    "find_lpips_weights",
    "gaussian_window",
    "lpips_available",
    "lr_consistency_psnr",
    "psnr",
    "quantize_for_metrics",
    "rgb_to_y",
    "ssim",
]

#: BT.601 luma weights on [0, 1] RGB, as in the official ``bgr2ycbcr(only_y=True)`` / MATLAB ``rgb2ycbcr``.
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0


def quantize_for_metrics(img: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits like the official ``tensor2img`` and return float64 ``k / 255``.

    Float input: ``round(clamp(img, 0, 1) * 255) / 255`` (rounding in the input's dtype, ties to even);
    ``uint8`` input: ``img / 255``. The result is float64, as the official ``uint8 / 255.`` in numpy.
    """
    return to_uint8(img).to(torch.float64) / 255.0


def _unit_float64(x: torch.Tensor, quantize: bool, fn: str) -> torch.Tensor:
    """[0, 1] float64 values: rounded to 8 bits when ``quantize``; ``uint8`` input is always ``k / 255``."""
    if x.dtype == torch.uint8 or quantize:
        return quantize_for_metrics(x)
    if not x.is_floating_point():
        raise ValueError(f"{fn}: expected floating images in [0, 1] or uint8 images, got {x.dtype}")
    return x.to(torch.float64)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of ``[0, 1]`` RGB: ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    ``img`` is ``(3, H, W)`` or ``(B, 3, H, W)`` (floating); returns ``(1, H, W)`` / ``(B, 1, H, W)`` in
    the same dtype, values in ``[16/255, 235/255]`` for inputs in [0, 1]. No rounding (the official
    metric code computes Y in floating point too).
    """
    if not img.is_floating_point():
        raise ValueError(f"rgb_to_y: expected a floating tensor in [0, 1], got {img.dtype}")
    if img.dim() not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected shape (3, H, W) or (B, 3, H, W), got {tuple(img.shape)}")
    r, g, b = img.unbind(dim=-3)
    y = (Y_WEIGHTS[0] * r + Y_WEIGHTS[1] * g + Y_WEIGHTS[2] * b) / 255.0 + Y_OFFSET / 255.0
    return y.unsqueeze(-3)


def _as_batch(a: torch.Tensor, name: str, fn: str) -> tuple[torch.Tensor, bool]:
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(a).__name__}")
    if a.dim() == 2:
        return a[None, None], False
    if a.dim() == 3:
        return a[None], False
    if a.dim() == 4:
        return a, True
    raise ValueError(f"{fn}: {name} must have shape (C, H, W), (B, C, H, W) or (H, W), got {tuple(a.shape)}")


def _prepare(a, b, crop_border: int, y_channel: bool, quantize: bool, fn: str):
    """-> (a, b) as float64 (B, C, H, W) on the x255 scale, and whether the input was batched."""
    a4, batched = _as_batch(a, "a", fn)
    b4, _ = _as_batch(b, "b", fn)
    if a4.shape != b4.shape:
        raise ValueError(f"{fn}: images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    crop_border = int(crop_border)
    if crop_border < 0:
        raise ValueError(f"{fn}: crop_border must be >= 0, got {crop_border}")
    h, w = a4.shape[-2:]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"{fn}: crop_border={crop_border} leaves nothing of a {h}x{w} image")
    a4, b4 = _unit_float64(a4, quantize, fn), _unit_float64(b4, quantize, fn)
    if crop_border:
        c = crop_border
        a4, b4 = a4[..., c:-c, c:-c], b4[..., c:-c, c:-c]
    if y_channel:
        if a4.shape[1] != 3:
            raise ValueError(f"{fn}: y_channel=True needs RGB images (3 channels), got {a4.shape[1]}")
        a4, b4 = rgb_to_y(a4), rgb_to_y(b4)
    return a4 * 255.0, b4 * 255.0, batched


def _result(values: torch.Tensor, batched: bool):
    return values if batched else float(values[0])


def psnr(a: torch.Tensor, b: torch.Tensor, crop_border: int = 0, y_channel: bool = False, *, quantize: bool = True):
    """PSNR in dB, ``20 log10(255 / sqrt(MSE))`` on values x255 (float64); ``inf`` for identical images.

    ``a``, ``b``: ``(C, H, W)`` / ``(H, W)`` -> float, or ``(B, C, H, W)`` -> float64 tensor ``(B,)``.
    ``crop_border`` pixels are removed on each side; ``y_channel`` compares BT.601 luma;
    ``quantize`` rounds both to 8 bits first (default, as the official scripts). See the module docstring.
    """
    x, y, batched = _prepare(a, b, crop_border, y_channel, quantize, "psnr")
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    values = torch.where(mse == 0, torch.full_like(mse, math.inf), 20.0 * torch.log10(255.0 / torch.sqrt(mse)))
    return _result(values.cpu(), batched)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The SSIM window: outer product of the normalised 1-D Gaussian ``exp(-(i - (size-1)/2)^2 / (2 sigma^2))``.

    The same numbers as OpenCV's ``getGaussianKernel(11, 1.5)`` used by the official code. float64.
    """
    i = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(i * i) / (2.0 * sigma * sigma))
    g /= g.sum()
    return torch.from_numpy(np.outer(g, g))


def _ssim_per_channel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float64 on the x255 scale -> (B, C) mean SSIM over the valid region."""
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    bsz, ch, h, w = x.shape
    if h < 11 or w < 11:
        raise ValueError(f"ssim: images must be at least 11x11 after cropping (the window size), got {h}x{w}")
    window = gaussian_window().to(device=x.device)[None, None]
    x = x.reshape(bsz * ch, 1, h, w)
    y = y.reshape(bsz * ch, 1, h, w)
    mu_x = F.conv2d(x, window)
    mu_y = F.conv2d(y, window)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_x2 = F.conv2d(x * x, window) - mu_x2
    sigma_y2 = F.conv2d(y * y, window) - mu_y2
    sigma_xy = F.conv2d(x * y, window) - mu_xy
    ssim_map = ((2.0 * mu_xy + c1) * (2.0 * sigma_xy + c2)) / ((mu_x2 + mu_y2 + c1) * (sigma_x2 + sigma_y2 + c2))
    return ssim_map.flatten(1).mean(dim=1).reshape(bsz, ch)


def ssim(a: torch.Tensor, b: torch.Tensor, crop_border: int = 0, y_channel: bool = False, *, quantize: bool = True):
    """MATLAB-style SSIM (Wang et al. 2004) with the official conventions; RGB = mean of per-channel SSIMs.

    Gaussian window 11x11, sigma 1.5, valid region only, ``C1 = (0.01*255)^2``, ``C2 = (0.03*255)^2``,
    float64 on values x255. Arguments and return type as :func:`psnr`. The image must be at least
    11x11 after cropping.
    """
    x, y, batched = _prepare(a, b, crop_border, y_channel, quantize, "ssim")
    return _result(_ssim_per_channel(x, y).mean(dim=1).cpu(), batched)


def _downscale_pair(sr, other, scale, quantize: bool, fn: str, other_name: str, other_is_lr: bool):
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"{fn}: scale must be a positive integer, got {scale}")
    sr4, batched = _as_batch(sr, "sr", fn)
    ot4, _ = _as_batch(other, other_name, fn)
    sr4, ot4 = _unit_float64(sr4, quantize, fn), _unit_float64(ot4, quantize, fn)
    sr_lr = imresize(sr4, 1.0 / scale)
    ot_lr = ot4 if other_is_lr else imresize(ot4, 1.0 / scale)
    if sr_lr.shape != ot_lr.shape:
        raise ValueError(
            f"{fn}: sr downscaled by {scale} has shape {tuple(sr_lr.shape[1:])}, "
            f"{other_name} gives {tuple(ot_lr.shape[1:])}"
        )
    if not batched:
        sr_lr, ot_lr = sr_lr[0], ot_lr[0]
    return sr_lr, ot_lr


def bic_hr_psnr(sr: torch.Tensor, hr: torch.Tensor, scale: int, *, quantize: bool = True):
    """The official "bicHR" PSNR: PSNR between ``imresize(SR, 1/scale)`` and ``imresize(HR, 1/scale)``.

    Both images are rounded to 8 bits first (``quantize``), downscaled with the MATLAB bicubic
    float path (no rounding of the downscales), no border crop. Measures LR consistency against the
    HR's own bicubic downscale.
    """
    a, b = _downscale_pair(sr, hr, scale, quantize, "bic_hr_psnr", "hr", other_is_lr=False)
    return psnr(a, b, quantize=False)


def bic_hr_ssim(sr: torch.Tensor, hr: torch.Tensor, scale: int, *, quantize: bool = True):
    """SSIM counterpart of :func:`bic_hr_psnr` (the official "bicHR" SSIM)."""
    a, b = _downscale_pair(sr, hr, scale, quantize, "bic_hr_ssim", "hr", other_is_lr=False)
    return ssim(a, b, quantize=False)


def lr_consistency_psnr(sr: torch.Tensor, lr: torch.Tensor, scale: int, *, quantize: bool = True):
    """LR-PSNR: PSNR between ``imresize(SR, 1/scale)`` (MATLAB bicubic, float) and the given LR image.

    ``sr`` is ``scale`` times the size of ``lr``. With ``quantize`` both are rounded to 8 bits first; the
    downscaled SR is not rounded again. No border crop. (The official code's "bicHR" compares to the
    HR's downscale instead — :func:`bic_hr_psnr`; the two agree when the LR file is the 8-bit
    bicubic downscale of the HR.)
    """
    a, b = _downscale_pair(sr, lr, scale, quantize, "lr_consistency_psnr", "lr", other_is_lr=True)
    return psnr(a, b, quantize=False)


def diversity(samples: torch.Tensor | Sequence[torch.Tensor], *, quantize: bool = False) -> float:
    """Sample diversity: ``mean_{pixels, channels}( std_N(255 * samples) )``, unbiased std (``N - 1``).

    ``samples``: a tensor ``(N, ...)`` (e.g. ``(N, C, H, W)``) or a sequence of ``N`` equally shaped
    images, the ``N`` SR samples of one LR image. ``N >= 2`` is required: the official code reports NaN
    for its ``n_sample = 1`` test setting; here that is a ``ValueError``. Computed in float64 on the
    float samples (``quantize=True`` rounds them to 8 bits first).
    """
    if isinstance(samples, torch.Tensor):
        stack = samples
    else:
        samples = list(samples)
        if not samples:
            raise ValueError("diversity: need at least 2 samples, got 0")
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) != 1:
            raise ValueError(f"diversity: samples must all have the same shape, got {sorted(shapes)}")
        stack = torch.stack(list(samples))
    if stack.dim() < 1 or stack.shape[0] < 2:
        n = stack.shape[0] if stack.dim() else 0
        raise ValueError(f"diversity: need at least 2 samples for an unbiased std, got {n}")
    stack = _unit_float64(stack, quantize, "diversity")
    return float((stack * 255.0).std(dim=0, unbiased=True).mean())


# --------------------------------------------------------------------------------------------- LPIPS


class _AlexNetFeatures(nn.Module):
    """AlexNet's convolutional trunk with torchvision's layer indices (``features.{0,3,6,8,10}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(inplace=False),  # 1 -> relu1
            nn.MaxPool2d(kernel_size=3, stride=2),  # 2
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(inplace=False),  # 4 -> relu2
            nn.MaxPool2d(kernel_size=3, stride=2),  # 5
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(inplace=False),  # 7 -> relu3
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(inplace=False),  # 9 -> relu4
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(inplace=False),  # 11 -> relu5
        )

    TAPS = (1, 4, 7, 9, 11)
    CHANNELS = (64, 192, 384, 256, 256)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                feats.append(x)
        return feats


def _load_state(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS: {what} weights not found at '{path}' (flowsr never downloads them)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS: {what} weights at '{path}' are not a state_dict")
    return state


#: Where the LPIPS v0.1 AlexNet linear weights sit inside packages that ship them (package, path).
LPIPS_LIN_LOCATIONS = (
    ("lpips", "weights/v0.1/alex.pth"),  # the reference implementation (Zhang et al.)
    ("torchmetrics", "functional/image/lpips_models/alex.pth"),  # torchmetrics' copy (the same file)
)
#: torchvision's file name pattern for the ImageNet AlexNet weights in torch's hub cache.
ALEXNET_PATTERN = "alexnet-owt-*.pth"


@dataclass
class LPIPSWeights:
    """The two LPIPS weight files (``None`` when not found) and every place that was searched."""

    alexnet: Path | None
    lin: Path | None
    searched: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.alexnet is not None and self.lin is not None


def _package_dir(name: str) -> Path | None:
    """The folder of an installed top-level package, without importing it (lpips would import torchvision)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_lpips_weights(
    alexnet_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None
) -> LPIPSWeights:
    """Locate the LPIPS weight files; nothing is downloaded.

    * linear ("lin") weights: ``lin_path`` if given, else ``weights/v0.1/alex.pth`` of an installed
      ``lpips`` package, else torchmetrics' copy (``functional/image/lpips_models/alex.pth``); the
      packages are found with ``importlib.util.find_spec``, not imported;
    * AlexNet: ``alexnet_path`` if given, else ``alexnet-owt-*.pth`` in torch's hub cache,
      ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, where torchvision and
      ``lpips`` keep it once downloaded).

    A path that is given is used as it is (and reported missing if it is not a file): an explicit
    choice is never silently replaced by a found file.
    """
    searched: list[str] = []
    lin = None
    if lin_path is not None:
        searched.append(f"{lin_path} (given)")
        lin = Path(lin_path) if Path(lin_path).is_file() else None
    else:
        for package, rel in LPIPS_LIN_LOCATIONS:
            folder = _package_dir(package)
            if folder is None:
                searched.append(f"{package}/{rel} (package {package!r} not installed)")
                continue
            candidate = folder / rel
            searched.append(os.fspath(candidate))
            if candidate.is_file():
                lin = candidate
                break
    alex = None
    if alexnet_path is not None:
        searched.append(f"{alexnet_path} (given)")
        alex = Path(alexnet_path) if Path(alexnet_path).is_file() else None
    else:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        searched.append(os.fspath(cache / ALEXNET_PATTERN))
        found = sorted(cache.glob(ALEXNET_PATTERN)) if cache.is_dir() else []
        alex = found[0] if found else None
    return LPIPSWeights(alex, lin, searched)


def _missing_message(weights: LPIPSWeights) -> str:
    missing = [w for w, p in (("AlexNet", weights.alexnet), ("LPIPS lin", weights.lin)) if p is None]
    return (
        f"LPIPS unavailable: {' and '.join(missing)} weights not found (flowsr never downloads them); looked in: "
        + "; ".join(weights.searched)
        + ". Install the `lpips` or `torchmetrics` package for the lin weights, put torchvision's "
        "alexnet-owt-7be5be79.pth into torch.hub.get_dir()/checkpoints, or give both paths"
    )


class LPIPS(nn.Module):
    """LPIPS distance (Zhang et al. 2018, "v0.1", AlexNet backbone) from local weight files, without torchvision.

    ``d(x0, x1) = sum_l mean_{h,w}( w_l . (n(f_l(x0)) - n(f_l(x1)))^2 )`` where ``f_l`` are AlexNet's
    relu1..relu5 activations of the inputs mapped to ``[-1, 1]`` (``2x - 1``) and then normalised by the
    fixed ``shift = (-0.030, -0.088, -0.188)`` / ``scale = (0.458, 0.448, 0.450)``, ``n`` divides every
    feature vector by its channel L2 norm (``+ 1e-10``), and ``w_l`` are the learnt non-negative
    1x1 "lin" weights.

    Two local files are needed (nothing is downloaded); without arguments they are found by
    :func:`find_lpips_weights`:

    * ``alexnet_path``: torchvision's ImageNet AlexNet state dict (``alexnet-owt-7be5be79.pth``; only
      the ``features.*`` entries are used); default: torch's hub cache;
    * ``lin_path``: the LPIPS v0.1 linear-layer weights for AlexNet (``alex.pth`` of the ``lpips``
      package; keys ``lin{0..4}.model.1.weight`` or ``lin{0..4}.weight``); default: an installed
      ``lpips`` or torchmetrics package.

    Input: ``(B, 3, H, W)`` or ``(3, H, W)`` floats in ``[0, 1]`` (not rounded; the official HCFlow test
    applies LPIPS to the float images, whole image, no crop). Returns ``(B,)`` distances.

    Verified (``tests/test_lpips.py``): equal to the reference ``lpips`` package's ``LPIPS(net='alex')``
    (its own code and its real v0.1 lin weights) given the same AlexNet weights — random ones, as
    the ImageNet AlexNet weights cannot be fetched here; ``flowsr.metrics`` and ``lpips`` load that
    state dict the same way, so the real weights change nothing in the comparison.

    Raises ``FileNotFoundError`` listing every place searched when a file is missing.
    """

    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(
        self, alexnet_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None
    ) -> None:
        super().__init__()
        weights = find_lpips_weights(alexnet_path, lin_path)
        if not weights.complete:
            raise FileNotFoundError(_missing_message(weights))
        alexnet_path, lin_path = weights.alexnet, weights.lin
        self.alexnet_path, self.lin_path = alexnet_path, lin_path
        self.net = _AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _AlexNetFeatures.CHANNELS)
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))
        alex = _load_state(alexnet_path, "AlexNet")
        feats = {k: v for k, v in alex.items() if k.startswith("features.")}
        try:
            self.net.load_state_dict(feats, strict=True)
        except RuntimeError as err:
            raise ValueError(f"LPIPS: '{alexnet_path}' is not a torchvision AlexNet state dict: {err}") from None
        lin = _load_state(lin_path, "LPIPS lin")
        for i, conv in enumerate(self.lins):
            key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.weight") if k in lin), None)
            if key is None:
                raise ValueError(f"LPIPS: '{lin_path}' has no weight for lin{i} (keys: {sorted(lin)[:8]} ...)")
            if tuple(lin[key].shape) != tuple(conv.weight.shape):
                raise ValueError(f"LPIPS: {key} has shape {tuple(lin[key].shape)}, expected {tuple(conv.weight.shape)}")
            conv.weight.data.copy_(lin[key])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        if x0.dim() == 3:
            x0, x1 = x0[None], x1[None]
        if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
            raise ValueError(f"LPIPS: expected two (B, 3, H, W) images, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        f0 = self.net(((2.0 * x0 - 1.0) - self.shift) / self.scale)
        f1 = self.net(((2.0 * x1 - 1.0) - self.shift) / self.scale)
        total = 0.0
        for a, b, lin in zip(f0, f1, self.lins):
            a = a / (torch.sqrt((a * a).sum(dim=1, keepdim=True)) + 1e-10)
            b = b / (torch.sqrt((b * b).sum(dim=1, keepdim=True)) + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(2, 3))
        return total.reshape(-1)


def lpips_available(
    alexnet_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None
) -> tuple[bool, str]:
    """Whether :class:`LPIPS` can be built: ``(ok, message)``; the message names the files used, or
    every place searched (:func:`find_lpips_weights`). Never downloads."""
    weights = find_lpips_weights(alexnet_path, lin_path)
    if not weights.complete:
        return False, _missing_message(weights)
    return True, f"LPIPS available (AlexNet: {weights.alexnet}; lin: {weights.lin})"
