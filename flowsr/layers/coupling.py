"""Coupling layers: affine coupling (Glow / HCFlow / SRFlow / RealNVP conventions), HCFlow's
three-shift coupling, SRFlow's affine injector and IRN's InvBlockExp.

Why not FrEIA's couplings: FrEIA 0.2 computes ``x * e^s + t`` with ``(s, t)`` as halves, soft-
clamps with ``clamp * 0.636 * atan(s)`` and splits channels with ``round(C / 2)``; the official
HCFlow / SRFlow weights need ``(x + t) * scale`` with interleaved ``(t, s)`` channels and
``C // 2``, so the layers here are written from the papers' formulas, in the official order of
floating-point operations (see :mod:`flowsr.layers.scales`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowsr.layers.base import FlowModule, sum_except_batch
from flowsr.layers.scales import ScaleFunction, TanhClampScale, get_scale_function

__all__ = ["AffineCoupling", "ThreeShiftCoupling", "AffineInjector", "InvBlockExp"]

SubnetConstructor = Callable[[int, int], nn.Module]
ScaleArg = str | ScaleFunction | Callable[[Tensor], Tensor]


def _cat(first: Tensor | None, c: Sequence[Tensor]) -> Tensor:
    """``cat([first, *c], 1)`` without a copy when there is only one tensor."""
    parts = ([first] if first is not None else []) + list(c)
    return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


def _run_subnet(layer: FlowModule, net: nn.Module, inp: Tensor, channels: int, what: str = "subnet") -> Tensor:
    """``net(inp)``, checked to be ``(B, channels, H, W)`` so a wrong subnet fails with a clear message."""
    h = net(inp)
    if not isinstance(h, Tensor) or h.dim() != 4 or h.shape[1] != channels or h.shape[2:] != inp.shape[2:]:
        got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(
            f"{layer._name}: {what} must map {tuple(inp.shape)} to {(inp.shape[0], channels, *inp.shape[2:])}, "
            f"got {got}"
        )
    return h


def _shift_and_raw(h: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """``(shift, raw_scale)``: interleaved ``h[:, 0::2], h[:, 1::2]``; halves ``h[:, n:], h[:, :n]``."""
    if layout == "interleaved":
        return h[:, 0::2], h[:, 1::2]
    n = h.shape[1] // 2
    return h[:, n:], h[:, :n]


def _cond_channels(layer: FlowModule) -> int:
    return sum(s[0] for s in layer.dims_c)


class AffineCoupling(FlowModule):
    r"""Affine coupling, optionally conditional.

    With ``x1 = x[:, :k]``, ``x2 = x[:, k:]`` (``k = split_len``, default ``C // 2``) and
    ``h = subnet(cat(x1, c_1, ..., c_m))`` split into a shift ``t`` and a raw scale ``s``
    (``layout="interleaved"``: ``t = h[:, 0::2]``, ``s = h[:, 1::2]``, the Glow / HCFlow / SRFlow
    layout; ``"halves"``: ``s = h[:, :n]``, ``t = h[:, n:]``, FrEIA's order), and a scale
    function ``e = exp(l)``, ``l = scale(s)`` (:mod:`flowsr.layers.scales`):

    **Forward**: ``order="shift_scale"`` (Glow, HCFlow, SRFlow): :math:`y_2 = (x_2 + t)\,e`;
    ``order="scale_shift"`` (RealNVP): :math:`y_2 = x_2\,e + t`; :math:`y_1 = x_1`.

    **Inverse**: :math:`x_2 = y_2 / e - t` or :math:`x_2 = (y_2 - t) / e`, where ``/ e`` is
    evaluated the way the scale function's paper does (``* exp(-l)`` for ``atan`` / ``exp``,
    a division for ``sigmoid`` / ``tanh_clamp``).

    **Log-det**: :math:`\sum_{c,h,w} l`.

    Shapes: ``x (B, C, H, W)``, conditions ``(B, C_i, H, W)`` -> ``(B, C, H, W)``; the subnet
    maps ``k + sum(C_i)`` to ``2 (C - k)`` channels (attribute ``subnet``).

    Papers: Dinh et al. (RealNVP) 2017; Kingma & Dhariwal (Glow) 2018; Lugmayr et al. (SRFlow)
    2020 (``scale="sigmoid"``); Liang et al. (HCFlow) 2021 (``scale="atan"``: ``0.318 atan(2 s)``).
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: SubnetConstructor,
        scale: ScaleArg = "atan",
        order: str = "shift_scale",
        layout: str = "interleaved",
        split_len: int | None = None,
    ):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        self.split_len = channels // 2 if split_len is None else int(split_len)
        if not 0 < self.split_len < channels:
            raise ValueError(
                f"AffineCoupling: split_len must be in 1..{channels - 1} for C={channels}, got {split_len}"
            )
        if order not in ("shift_scale", "scale_shift"):
            raise ValueError(f"AffineCoupling: order must be 'shift_scale' or 'scale_shift', got {order!r}")
        if layout not in ("interleaved", "halves"):
            raise ValueError(f"AffineCoupling: layout must be 'interleaved' or 'halves', got {layout!r}")
        self.order, self.layout = order, layout
        self.scale = get_scale_function(scale)
        self._out_channels = 2 * (channels - self.split_len)
        self.subnet = subnet_constructor(self.split_len + _cond_channels(self), self._out_channels)

    def extra_repr(self) -> str:
        return f"split_len={self.split_len}, scale={self.scale!r}, order={self.order!r}, layout={self.layout!r}"

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        x1, x2 = x[0][:, : self.split_len], x[0][:, self.split_len :]
        h = _run_subnet(self, self.subnet, _cat(x1, c), self._out_channels)
        shift, raw = _shift_and_raw(h, self.layout)
        scale, log_scale = self.scale.params(raw)
        logdet = sum_except_batch(log_scale)
        if not rev:
            y2 = (x2 + shift) * scale if self.order == "shift_scale" else x2 * scale + shift
            return (torch.cat([x1, y2], 1),), logdet
        if self.order == "shift_scale":
            y2 = self.scale.unscale(x2, scale, log_scale) - shift
        else:
            y2 = self.scale.unscale(x2 - shift, scale, log_scale)
        return (torch.cat([x1, y2], 1),), -logdet


class ThreeShiftCoupling(FlowModule):
    r"""HCFlow's ``Affine3shift`` coupling between the leading "LR" channels and the others.

    ``x_lr = x[:, :n_lr]`` (the Haar low-pass of RGB in HCFlow rescaling), ``x_o = x[:, n_lr:]``.

    ``lr_to_others=True`` (even step index, "LR vs others"): ``h = subnet(cat(x_lr, c))`` with
    ``2 (C - n_lr)`` outputs, ``t = h[:, 0::2]``, ``l = 0.318 atan(2 h[:, 1::2])`` (``scale``);
    **forward** :math:`x_o' = (x_o + t) e^{l}`, **inverse** :math:`x_o = x_o' e^{-l} - t`,
    **log-det** :math:`\sum l`.

    ``lr_to_others=False`` (odd step index): ``t = subnet(cat(x_o, c))`` with ``n_lr`` outputs;
    **forward** :math:`x_{lr}' = x_{lr} + t`, **inverse** :math:`x_{lr} = x_{lr}' - t`, **log-det** 0.

    The LR channels stay first in the output. Shapes: ``(B, C, H, W) -> (B, C, H, W)``
    (attribute ``subnet``).

    Paper: Liang et al., HCFlow (ICCV 2021), image rescaling.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: SubnetConstructor,
        n_lr: int = 3,
        lr_to_others: bool = True,
        scale: ScaleArg = "atan",
    ):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        if not 0 < n_lr < channels:
            raise ValueError(f"ThreeShiftCoupling: n_lr must be in 1..{channels - 1} for C={channels}, got {n_lr}")
        self.n_lr, self.lr_to_others = int(n_lr), bool(lr_to_others)
        self.scale = get_scale_function(scale)
        others = channels - self.n_lr
        if self.lr_to_others:
            self._out_channels = 2 * others
            self.subnet = subnet_constructor(self.n_lr + _cond_channels(self), self._out_channels)
        else:
            self._out_channels = self.n_lr
            self.subnet = subnet_constructor(others + _cond_channels(self), self._out_channels)

    def extra_repr(self) -> str:
        return f"n_lr={self.n_lr}, lr_to_others={self.lr_to_others}, scale={self.scale!r}"

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        x_lr, x_o = x[0][:, : self.n_lr], x[0][:, self.n_lr :]
        if not self.lr_to_others:
            shift = _run_subnet(self, self.subnet, _cat(x_o, c), self._out_channels)
            x_lr = x_lr - shift if rev else x_lr + shift
            return (torch.cat([x_lr, x_o], 1),), self._zero_logdet(x_lr)
        h = _run_subnet(self, self.subnet, _cat(x_lr, c), self._out_channels)
        shift, raw = _shift_and_raw(h, "interleaved")
        scale, log_scale = self.scale.params(raw)
        logdet = sum_except_batch(log_scale)
        if not rev:
            return (torch.cat([x_lr, (x_o + shift) * scale], 1),), logdet
        return (torch.cat([x_lr, self.scale.unscale(x_o, scale, log_scale) - shift], 1),), -logdet


class AffineInjector(FlowModule):
    r"""SRFlow's affine injector: an element-wise affine map of all channels conditioned only on
    the condition(s).

    ``h = subnet(cat(c_1, ..., c_m))``, ``t = h[:, 0::2]``, ``e = scale(h[:, 1::2])`` (default
    ``sigmoid(s + 2) + 1e-4``). **Forward** :math:`y = (x + t)\,e`; **inverse** :math:`x = y / e - t`;
    **log-det** :math:`\sum \log e`.

    Shapes: ``x (B, C, H, W)``, conditions ``(B, C_i, H, W)`` (at least one) -> ``(B, C, H, W)``;
    the subnet maps ``sum(C_i)`` to ``2 C`` channels (attribute ``subnet``).

    Paper: Lugmayr et al., SRFlow (ECCV 2020): ``fFeatures`` of ``CondAffineSeparatedAndCond``.
    """

    def __init__(self, dims_in, dims_c=None, *, subnet_constructor: SubnetConstructor, scale: ScaleArg = "sigmoid"):
        super().__init__(dims_in, dims_c)
        if not self.dims_c:
            raise ValueError("AffineInjector: needs at least one condition (dims_c)")
        self.scale = get_scale_function(scale)
        self._out_channels = 2 * self.dims_in[0][0]
        self.subnet = subnet_constructor(_cond_channels(self), self._out_channels)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        h = _run_subnet(self, self.subnet, _cat(None, c), self._out_channels)
        shift, raw = _shift_and_raw(h, "interleaved")
        scale, log_scale = self.scale.params(raw)
        logdet = sum_except_batch(log_scale)
        if not rev:
            return ((x[0] + shift) * scale,), logdet
        return (self.scale.unscale(x[0], scale, log_scale) - shift,), -logdet


class InvBlockExp(FlowModule):
    r"""IRN's invertible block: an additive update of the leading channels and an affine update
    of the rest.

    ``x1 = x[:, :k]`` (``k = split_len``, 3 = the LR image), ``x2 = x[:, k:]``; subnets
    ``phi: (C - k) -> k``, ``rho, eta: k -> (C - k)`` (official names F, H, G); conditions, if
    any, are appended to every subnet input (after the layer's own tensor).

    **Forward**: :math:`y_1 = x_1 + \phi(x_2)`, :math:`s = \mathrm{clamp}\,(2\sigma(\rho(y_1)) - 1)`,
    :math:`y_2 = x_2 e^{s} + \eta(y_1)`.

    **Inverse**: :math:`x_2 = (y_2 - \eta(y_1)) / e^{s}`, :math:`x_1 = y_1 - \phi(x_2)` (the
    official operation order, a division by ``exp(s)``).

    **Log-det**: :math:`\sum s` per sample (the official code returns a batch mean).

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.

    Paper: Xiao et al., "Invertible Image Rescaling" (IRN), ECCV 2020.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: SubnetConstructor,
        split_len: int = 3,
        clamp: float = 1.0,
    ):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        if not 0 < split_len < channels:
            raise ValueError(f"InvBlockExp: split_len must be in 1..{channels - 1} for C={channels}, got {split_len}")
        self.split_len = int(split_len)
        self.scale = TanhClampScale(clamp)
        cc = _cond_channels(self)
        rest = channels - self.split_len
        self.phi = subnet_constructor(rest + cc, self.split_len)
        self.eta = subnet_constructor(self.split_len + cc, rest)
        self.rho = subnet_constructor(self.split_len + cc, rest)

    def extra_repr(self) -> str:
        return f"split_len={self.split_len}, clamp={self.scale.clamp}"

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        k, rest = self.split_len, x[0].shape[1] - self.split_len
        a1, a2 = x[0][:, :k], x[0][:, k:]
        if not rev:
            y1 = a1 + _run_subnet(self, self.phi, _cat(a2, c), k, "phi")
            scale, log_scale = self.scale.params(_run_subnet(self, self.rho, _cat(y1, c), rest, "rho"))
            y2 = a2 * scale + _run_subnet(self, self.eta, _cat(y1, c), rest, "eta")
            return (torch.cat([y1, y2], 1),), sum_except_batch(log_scale)
        scale, log_scale = self.scale.params(_run_subnet(self, self.rho, _cat(a1, c), rest, "rho"))
        x2 = self.scale.unscale(a2 - _run_subnet(self, self.eta, _cat(a1, c), rest, "eta"), scale, log_scale)
        x1 = a1 - _run_subnet(self, self.phi, _cat(x2, c), k, "phi")
        return (torch.cat([x1, x2], 1),), -sum_except_batch(log_scale)
