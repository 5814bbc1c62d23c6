"""Training losses and training-only networks.

* :func:`pixel_loss`: L1 / L2 (means over all elements, ``nn.L1Loss`` / ``nn.MSELoss``).

(The likelihood and rescaling objectives live with their families: ``training_losses``.)
* :class:`VGG19Features` / :class:`PerceptualLoss`: VGG19 up to conv5_4 **before** its ReLU
  (torchvision ``vgg19().features[:35]``), ImageNet-normalised [0, 1] input, weights from a
  local file (a torchvision ``vgg19`` state dict; nothing is downloaded).
* :class:`VGGDiscriminator` (official ``Discriminator_VGG_160`` generalised to any input size
  and width) and :class:`GANLoss` (vanilla BCE-with-logits or LSGAN).

All batch reductions are means over equally sized per-process batches, so data-parallel
training (gradient averaging) equals single-process training on the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GANLoss",
    "PerceptualLoss",
    "VGG19Features",
    "VGGDiscriminator",
    "load_vgg19_state",
    "pixel_loss",
]


def pixel_loss(x: Tensor, target: Tensor, criterion: str = "l1") -> Tensor:
    """Mean absolute (``l1``) or squared (``l2``) error over all elements."""
    if criterion == "l1":
        return F.l1_loss(x, target)
    if criterion == "l2":
        return F.mse_loss(x, target)
    raise ValueError(f"pixel_loss: criterion must be 'l1' or 'l2', got {criterion!r}")


# -- perceptual loss ---------------------------------------------------------------------------

#: torchvision's VGG19 ``features`` configuration (numbers: conv output channels, "M": max-pool).
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
#: index of conv5_4 in ``features``; ``features[:35]`` ends with it (before its ReLU).
VGG19_CONV5_4 = 34
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_layers(last: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers[: last + 1])


def load_vgg19_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a VGG19 state dict (torchvision ``vgg19`` ``.pth``, or ``.safetensors``) from a local file.

    Accepts the plain state dict, one nested under ``"state_dict"``, and a ``module.`` prefix.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        raise FileNotFoundError(
            f"perceptual loss: VGG19 weights {str(path)!r} not found. flowsr never downloads weights: put a "
            "torchvision vgg19 ImageNet state dict there (e.g. vgg19-dcbb9e9d.pth) and name it in "
            "losses.perceptual_weights"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(os.fspath(path))
        else:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"perceptual loss: cannot read VGG19 weights {str(path)!r}: {err}") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"perceptual loss: {str(path)!r} does not hold a state dict")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


class VGG19Features(nn.Module):
    """VGG19 ``features[: last + 1]`` (default: up to conv5_4, before its ReLU) with ImageNet
    input normalisation; input RGB in [0, 1]. Parameter names ``features.N.weight`` /
    ``features.N.bias`` are torchvision's, so a torchvision ``vgg19`` state dict loads directly
    (its ``classifier.*`` keys are ignored). Frozen (no gradients for its weights)."""

    def __init__(self, weights: str | os.PathLike | Mapping[str, Tensor] | None = None, last: int = VGG19_CONV5_4):
        super().__init__()
        self.features = _vgg19_layers(last)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_weights(weights)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def load_weights(self, weights: str | os.PathLike | Mapping[str, Tensor]) -> None:
        state = load_vgg19_state(weights) if not isinstance(weights, Mapping) else dict(weights)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(
                f"perceptual loss: the VGG19 weights lack {len(missing)} keys, e.g. {missing[:3]} "
                "(expected a torchvision vgg19 state dict with features.N.weight / features.N.bias)"
            )
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"perceptual loss: VGG19 weight {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} "
                    "(is this a vgg19 without batch norm?)"
                )
        self.load_state_dict({k: state[k] for k in own}, strict=True)

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always in eval mode (no dropout/BN anyway)

    def forward(self, x: Tensor) -> Tensor:
        return self.features((x - self.mean) / self.std)


class PerceptualLoss(nn.Module):
    """``criterion(VGG(sr), VGG(hr).detach())`` with :class:`VGG19Features` (official HCFlow++:
    L1 on conv5_4 features)."""

    def __init__(self, weights: str | os.PathLike | Mapping[str, Tensor], criterion: str = "l1"):
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"PerceptualLoss: criterion must be 'l1' or 'l2', got {criterion!r}")
        self.criterion = criterion
        self.vgg = VGG19Features(weights)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            real = self.vgg(hr)
        return pixel_loss(self.vgg(sr), real.detach(), self.criterion)


# -- GAN ---------------------------------------------------------------------------------------


class VGGDiscriminator(nn.Module):
    """VGG-style discriminator: the official ``Discriminator_VGG_160`` (ESRGAN family) for any
    input size divisible by 32 and any width ``nf``.

    conv0_0 (3x3, bias) -> LeakyReLU; then conv0_1, conv1_0, conv1_1, ..., conv4_1 (3x3 stride 1
    / 4x4 stride 2, no bias), each with BatchNorm and LeakyReLU(0.2); flatten; linear1 (-> 100),
    LeakyReLU, linear2 (-> 1 logit). ``nf = 64`` and ``input_size = 160`` give the official
    network (14,960,201 parameters); the parameter names are the official ones.
    """

    def __init__(self, in_nc: int = 3, nf: int = 64, input_size: int = 160):
        super().__init__()
        if input_size % 32 or input_size < 32:
            raise ValueError(f"VGGDiscriminator: input_size must be a positive multiple of 32, got {input_size}")
        self.input_size = int(input_size)
        chans = [nf, nf * 2, nf * 4, nf * 8, nf * 8]
        self.conv0_0 = nn.Conv2d(in_nc, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf, affine=True)
        c_in = nf
        for i in range(1, 5):
            c = chans[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(c_in, c, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(c, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(c, c, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(c, affine=True))
            c_in = c
        side = input_size // 32
        self.linear1 = nn.Linear(chans[4] * side * side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGDiscriminator: input must be {self.input_size}x{self.input_size} (discriminator.input_size), "
                f"got {tuple(x.shape[-2:])}"
            )
        fea = self.lrelu(self.conv0_0(x))
        fea = self.lrelu(self.bn0_1(self.conv0_1(fea)))
        for i in range(1, 5):
            fea = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(fea)))
            fea = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(fea)))
        fea = self.lrelu(self.linear1(fea.flatten(1)))
        return self.linear2(fea)


class GANLoss(nn.Module):
    """Vanilla GAN (``BCEWithLogits`` against 1 / 0) or LSGAN (``MSE`` against 1 / 0) on logits."""

    def __init__(self, gan_type: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if gan_type not in ("vanilla", "lsgan"):
            raise ValueError(f"GANLoss: gan_type must be 'vanilla' or 'lsgan', got {gan_type!r}")
        self.gan_type, self.real_label, self.fake_label = gan_type, float(real_label), float(fake_label)

    def forward(self, logits: Tensor, target_is_real: bool) -> Tensor:
        target = torch.full_like(logits, self.real_label if target_is_real else self.fake_label)
        if self.gan_type == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)
