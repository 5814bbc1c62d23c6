"""Sub-networks for couplings and conditioning encoders (HCFlow, SRFlow, IRN, ESRGAN).

Coupling subnets are constructors ``(c_in, c_out, **hyper) -> nn.Module`` mapping
``(B, c_in, H, W) -> (B, c_out, H, W)``; bind hyper-parameters with :func:`functools.partial`
(e.g. ``functools.partial(FCN, hidden=64)``), never with a lambda, so models pickle.
Parameter names follow the official checkpoints (see ``docs/architecture.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowsr.layers.actnorm import ActNorm
from flowsr.layers.fastpath import cached_inference, inference_key
from flowsr.layers.registry import register_subnet

__all__ = ["FCN", "RRDB", "ConvActNorm", "DenseBlock", "ResidualDenseBlock", "ZeroConv2d"]


def _xavier_scaled_(conv: nn.Conv2d, scale: float = 0.1) -> None:
    """``xavier_normal_`` weights times ``scale``, zero bias (HCFlow / IRN / ESRGAN-style init)."""
    nn.init.xavier_normal_(conv.weight)
    with torch.no_grad():
        conv.weight.mul_(scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _inplace_ok(module: nn.Module) -> bool:
    """Whether ``module`` may run its inference fast path (in-place activations, no ``cat``)."""
    return inference_key(module, ()) is not None and not torch.is_grad_enabled()


class ConvActNorm(nn.Conv2d):
    r"""Bias-free convolution followed by an ActNorm (Glow's ``Conv2d`` with ``do_actnorm``).

    :math:`y = (W * x + b) \odot e^{s}` where ``actnorm.bias`` :math:`b` and ``actnorm.logs``
    :math:`s` are per output channel and initialised from the first training batch
    (:meth:`ActNorm.normalize`; no log-det, this is a normalisation inside a subnet).

    Shapes: ``(B, c_in, H, W) -> (B, c_out, H, W)`` ("same" padding ``kernel_size // 2``, stride 1).

    Parameters ``weight`` ``(c_out, c_in, k, k)``, ``actnorm.bias``, ``actnorm.logs``
    ``(1, c_out, 1, 1)``. Init: ``xavier_normal_ * 0.1`` (HCFlow's FCN) or, with
    ``weight_std``, :math:`\mathcal N(0, \mathrm{std}^2)` (Glow / SRFlow use 0.05).

    Papers: Glow (Kingma & Dhariwal, 2018); HCFlow, SRFlow coupling networks.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, *, weight_std: float | None = None):
        super().__init__(c_in, c_out, kernel_size, stride=1, padding=kernel_size // 2, bias=False)
        if weight_std is None:
            _xavier_scaled_(self)
        else:
            nn.init.normal_(self.weight, 0.0, weight_std)
        self.actnorm = ActNorm([(c_out, 1, 1)])

    def forward(self, x: Tensor) -> Tensor:
        if _inplace_ok(self):
            # inference: the same operations in place on the fresh conv output, exp(logs) cached.
            # Not folded into the conv weights: that changes the rounding, and SRFlow's sigmoid
            # couplings amplify it past 1e-5 (tests/test_srflow.py golden fixtures).
            scale = cached_inference(self, "scale", (self.actnorm.logs,), self._scale)
            return super().forward(x).add_(self.actnorm.bias).mul_(self._scale() if scale is None else scale)
        return self.actnorm.normalize(super().forward(x))

    def _scale(self) -> Tensor:
        return torch.exp(self.actnorm.logs)


class ZeroConv2d(nn.Conv2d):
    r"""Zero-initialised convolution with a learned output scale (Glow's ``Conv2dZeros``).

    :math:`y = (W * x + b) \odot \exp(\lambda \cdot \mathrm{logs})` with ``logs`` ``(c_out, 1, 1)``
    and ``logscale_factor`` :math:`\lambda` (3 in Glow / SRFlow / HCFlow). ``weight``, ``bias``
    and ``logs`` all start at zero, so the output is 0 and a coupling using it starts as the
    identity (or a constant, for SRFlow's sigmoid scale).

    Shapes: ``(B, c_in, H, W) -> (B, c_out, H, W)`` (padding ``kernel_size // 2``).

    Papers: Glow (Kingma & Dhariwal, 2018); SRFlow, HCFlow (coupling outputs and priors).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, logscale_factor: float = 3.0):
        super().__init__(c_in, c_out, kernel_size, stride=1, padding=kernel_size // 2, bias=True)
        self.logscale_factor = float(logscale_factor)
        self.logs = nn.Parameter(torch.zeros(c_out, 1, 1))
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def _scale(self) -> Tensor:
        return torch.exp(self.logs * self.logscale_factor)

    def forward(self, x: Tensor) -> Tensor:
        if _inplace_ok(self):  # inference: scale the fresh conv output in place, exp cached (exact)
            scale = cached_inference(self, "scale", (self.logs,), self._scale)
            return super().forward(x).mul_(self._scale() if scale is None else scale)
        return super().forward(x) * self._scale()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, logscale_factor={self.logscale_factor}"


class FCN(nn.Module):
    r"""The coupling network of HCFlow / SRFlow (Glow's ``NN``).

    ::

        h   = ReLU(conv1(x))     conv1 = ConvActNorm(c_in -> hidden, 3x3)
        h   = ReLU(conv2(h))     conv2 = ConvActNorm(hidden -> hidden, 1x1)
        out = conv3(h)           conv3 = ZeroConv2d(hidden -> c_out, 3x3, logscale_factor 3)

    Shapes: ``(B, c_in, H, W) -> (B, c_out, H, W)``. Output is zero at initialisation.
    State-dict names: ``conv1.weight``, ``conv1.actnorm.{bias,logs}``, ``conv2.*``,
    ``conv3.{weight,bias,logs}`` (HCFlow's ``affine.f.*``; SRFlow's ``fAffine.{0,2,4}``).

    Args:
        c_in, c_out: channels.
        hidden: hidden width (64 in every official config).
        weight_std: init of the hidden convs: ``None`` = ``xavier_normal_ * 0.1`` (HCFlow),
            a float = :math:`\mathcal N(0, \mathrm{std}^2)` (SRFlow: 0.05).

    Papers: Glow (Kingma & Dhariwal, 2018); SRFlow (Lugmayr et al., 2020); HCFlow (Liang et al., 2021).
    """

    def __init__(self, c_in: int, c_out: int, hidden: int = 64, *, weight_std: float | None = None):
        super().__init__()
        self.conv1 = ConvActNorm(c_in, hidden, 3, weight_std=weight_std)
        self.conv2 = ConvActNorm(hidden, hidden, 1, weight_std=weight_std)
        self.conv3 = ZeroConv2d(hidden, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        # in inference the activations are fresh tensors nobody else holds: ReLU in place
        inplace = _inplace_ok(self)
        h = F.relu(self.conv1(x), inplace=inplace)
        h = F.relu(self.conv2(h), inplace=inplace)
        return self.conv3(h)


class DenseBlock(nn.Module):
    r"""Five-layer densely connected block, no residual (IRN's ``DenseBlock``; HCFlow rescaling).

    ::

        x1 = lrelu(conv1(x));  x2 = lrelu(conv2([x, x1]));  x3 = lrelu(conv3([x, x1, x2]))
        x4 = lrelu(conv4([x, x1, x2, x3]));  out = conv5([x, x1, x2, x3, x4])

    All convs 3x3, padding 1, with bias; ``lrelu`` = LeakyReLU(0.2); ``[...]`` is channel
    concatenation in that order. ``conv1..4`` output ``gc`` channels, ``conv5`` ``c_out``.
    Init: ``xavier_normal_ * 0.1``, biases 0, then ``conv5`` all zeros if ``zero_init``
    (the coupling starts as the identity).

    Shapes: ``(B, c_in, H, W) -> (B, c_out, H, W)``. State-dict names ``conv1..conv5.{weight,bias}``.

    Papers: IRN (Xiao et al., ECCV 2020); HCFlow rescaling (Liang et al., 2021); the dense
    connectivity is ESRGAN's RDB (Wang et al., 2018) without the residual.
    """

    def __init__(self, c_in: int, c_out: int, gc: int = 32, zero_init: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(c_in + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(c_in + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(c_in + 4 * gc, c_out, 3, 1, 1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            _xavier_scaled_(conv)
        if zero_init:
            nn.init.zeros_(self.conv5.weight)
            nn.init.zeros_(self.conv5.bias)

    def forward(self, x: Tensor) -> Tensor:
        if _inplace_ok(self):
            return self._forward_buffered(x)
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1))

    def _forward_buffered(self, x: Tensor) -> Tensor:
        """The same values without ``torch.cat``: ``[x, x1, x2, x3, x4]`` are written once into one
        buffer and every conv reads a leading channel slice of it (inference only: no autograd
        through the in-place writes)."""
        c, gc = x.shape[1], self.conv1.out_channels
        buf = x.new_empty((x.shape[0], c + 4 * gc, *x.shape[2:]))
        buf[:, :c] = x
        for i, conv in enumerate((self.conv1, self.conv2, self.conv3, self.conv4)):
            start = c + i * gc
            # F.leaky_relu has no out=; its ATen op writes straight into the slice (no extra copy)
            torch._C._nn.leaky_relu(conv(buf[:, :start]), 0.2, out=buf[:, start : start + gc])
        return self.conv5(buf)


class ResidualDenseBlock(DenseBlock):
    r"""ESRGAN's residual dense block: a :class:`DenseBlock` on ``nf`` channels plus a scaled skip.

    :math:`y = 0.2 \cdot \mathrm{DenseBlock}(x) + x` (``conv5`` is **not** zeroed; init
    ``xavier_normal_ * 0.1``, biases 0).

    Shapes: ``(B, nf, H, W) -> (B, nf, H, W)``. State-dict names ``conv1..conv5.{weight,bias}``.

    Papers: ESRGAN (Wang et al., ECCVW 2018); the RRDB encoders of SRFlow and HCFlow.
    """

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__(nf, nf, gc, zero_init=False)

    def forward(self, x: Tensor) -> Tensor:
        if _inplace_ok(self):  # the same operations in place on the block's fresh output
            return self._forward_buffered(x).mul_(0.2).add_(x)
        return super().forward(x) * 0.2 + x


class RRDB(nn.Module):
    r"""Residual-in-residual dense block (ESRGAN).

    :math:`y = 0.2 \cdot \mathrm{rdb3}(\mathrm{rdb2}(\mathrm{rdb1}(x))) + x` with three
    :class:`ResidualDenseBlock` children ``rdb1``, ``rdb2``, ``rdb3`` (official names ``RDB1..3``).

    Shapes: ``(B, nf, H, W) -> (B, nf, H, W)``.

    Papers: ESRGAN (Wang et al., ECCVW 2018); SRFlow's LR encoder and HCFlow's conditional
    feature extractors.
    """

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: Tensor) -> Tensor:
        if _inplace_ok(self):
            return self.rdb3(self.rdb2(self.rdb1(x))).mul_(0.2).add_(x)
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


register_subnet("fcn", FCN, width="hidden")
register_subnet("dense", DenseBlock, width="gc")
