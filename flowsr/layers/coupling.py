"""Coupling layers: the :class:`CouplingBase` template, affine coupling (Glow / HCFlow / SRFlow /
RealNVP conventions), HCFlow's three-shift coupling, IRN's InvBlockExp, and SRFlow's affine
injector (not a coupling: it transforms every channel from the condition alone).

Why not FrEIA's couplings: FrEIA 0.2 computes ``x * e^s + t`` with ``(s, t)`` as halves, soft-
clamps with ``clamp * 0.636 * atan(s)`` and splits channels with ``round(C / 2)``; the official
HCFlow / SRFlow weights need ``(x + t) * scale`` with interleaved ``(t, s)`` channels and
``C // 2``, so the layers here are written from the papers' formulas, in the official order of
floating-point operations (see :mod:`flowsr.layers.scales`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.layers.base import FlowModule, sum_except_batch
from flowsr.layers.registry import StepInfo, check_options, register_coupling
from flowsr.layers.scales import ScaleFunction, TanhClampScale, get_scale_function

__all__ = ["CouplingBase", "AffineCoupling", "ThreeShiftCoupling", "AffineInjector", "InvBlockExp"]

SubnetConstructor = Callable[[int, int], nn.Module]
ScaleArg = str | ScaleFunction | Callable[[Tensor], Tensor]


def _cat(first: Tensor | None, c: Sequence[Tensor]) -> Tensor:
    """``cat([first, *c], 1)`` without a copy when there is only one tensor."""
    parts = ([first] if first is not None else []) + list(c)
    return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


def _shift_and_raw(h: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """``(shift, raw_scale)``: interleaved ``h[:, 0::2], h[:, 1::2]``; halves ``h[:, n:], h[:, :n]``."""
    if layout == "interleaved":
        return h[:, 0::2], h[:, 1::2]
    n = h.shape[1] // 2
    return h[:, n:], h[:, :n]


class CouplingBase(FlowModule):
    r"""Template of a (conditional) coupling layer: the part every coupling shares.

    The input is split into ``x1 = x[:, :split_len]`` and ``x2 = x[:, split_len:]``
    (``split_len`` defaults to ``C // 2``); a subclass maps the pair in
    :meth:`coupling_forward` and back in :meth:`coupling_inverse`, and the template checks the
    inputs and conditions, splits, dispatches on ``rev`` and concatenates the result. Inside,
    :meth:`subnet_input` concatenates a tensor with the conditions and :meth:`run_subnet`
    calls a subnet and checks its output shape.

    **Forward**: :math:`(y_1, y_2, \log|J|) = \mathrm{coupling\_forward}(x_1, x_2, c)`, output
    ``cat(y_1, y_2)``; **inverse**: ``coupling_inverse`` on the split output; **log-det**: what
    the subclass returns (``(B,)``, the inverse's log-det with ``rev=True``).

    Shapes: ``x (B, C, H, W)``, conditions ``(B, C_i, H, W)`` -> ``(B, C, H, W)``.

    To make a new coupling usable by name in a :class:`~flowsr.models.spec.HierarchySpec`,
    decorate it with :func:`~flowsr.layers.registry.register_coupling`; override
    :meth:`for_step` if it needs the step's position or the LR channel count.
    """

    def __init__(self, dims_in, dims_c=None, *, split_len: int | None = None):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        self.split_len = channels // 2 if split_len is None else int(split_len)
        if not 0 < self.split_len < channels:
            raise ValueError(f"{self._name}: split_len must be in 1..{channels - 1} for C={channels}, got {split_len}")

    @property
    def cond_channels(self) -> int:
        """Channels of all conditions together (what :meth:`subnet_input` appends)."""
        return sum(s[0] for s in self.dims_c)

    @staticmethod
    def subnet_input(t: Tensor | None, c: Sequence[Tensor]) -> Tensor:
        """``cat([t, *c], 1)`` (no copy when there is only one tensor; ``t=None``: conditions only)."""
        return _cat(t, c)

    def coupling_forward(self, x1: Tensor, x2: Tensor, c: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(y1, y2, logdet)`` of the forward map; ``c`` are the checked conditions."""
        raise NotImplementedError

    def coupling_inverse(self, y1: Tensor, y2: Tensor, c: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(x1, x2, logdet)`` of the inverse map (the log-det of the inverse)."""
        raise NotImplementedError

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        a1, a2 = x[0][:, : self.split_len], x[0][:, self.split_len :]
        b1, b2, logdet = (self.coupling_inverse if rev else self.coupling_forward)(a1, a2, c)
        return (torch.cat([b1, b2], 1),), logdet

    # The hierarchy builder's hook ---------------------------------------------------------------
    #: constructor arguments that :meth:`for_step` sets itself (not spec options).
    step_arguments: tuple[str, ...] = ("subnet_constructor",)

    @classmethod
    def for_step(
        cls, dims_in, dims_c, *, subnet_constructor: SubnetConstructor, step: StepInfo, options: Mapping[str, Any]
    ) -> CouplingBase:
        """Build this coupling for one step of a hierarchy, with the spec's ``options`` (checked
        against the constructor: an unknown option is an error)."""
        check_options(f"coupling {cls.__name__}", cls.__init__, options, cls.step_arguments)
        return cls(dims_in, dims_c, subnet_constructor=subnet_constructor, **cls._step_arguments(step), **options)

    @classmethod
    def _step_arguments(cls, step: StepInfo) -> dict[str, Any]:
        """The constructor arguments :meth:`for_step` derives from the step (besides the subnet)."""
        return {}


@register_coupling("affine")
class AffineCoupling(CouplingBase):
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
        super().__init__(dims_in, dims_c, split_len=split_len)
        if order not in ("shift_scale", "scale_shift"):
            raise ValueError(f"AffineCoupling: order must be 'shift_scale' or 'scale_shift', got {order!r}")
        if layout not in ("interleaved", "halves"):
            raise ValueError(f"AffineCoupling: layout must be 'interleaved' or 'halves', got {layout!r}")
        self.order, self.layout = order, layout
        self.scale = get_scale_function(scale)
        self._out_channels = 2 * (self.dims_in[0][0] - self.split_len)
        self.subnet = subnet_constructor(self.split_len + self.cond_channels, self._out_channels)

    def extra_repr(self) -> str:
        return f"split_len={self.split_len}, scale={self.scale!r}, order={self.order!r}, layout={self.layout!r}"

    def _params(self, x1: Tensor, c: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        h = self.run_subnet(self.subnet, self.subnet_input(x1, c), self._out_channels)
        shift, raw = _shift_and_raw(h, self.layout)
        scale, log_scale = self.scale.params(raw)
        return shift, scale, log_scale

    def coupling_forward(self, x1, x2, c):
        shift, scale, log_scale = self._params(x1, c)
        y2 = (x2 + shift) * scale if self.order == "shift_scale" else x2 * scale + shift
        return x1, y2, sum_except_batch(log_scale)

    def coupling_inverse(self, y1, y2, c):
        shift, scale, log_scale = self._params(y1, c)
        if self.order == "shift_scale":
            x2 = self.scale.unscale(y2, scale, log_scale) - shift
        else:
            x2 = self.scale.unscale(y2 - shift, scale, log_scale)
        return y1, x2, -sum_except_batch(log_scale)


@register_coupling("three_shift")
class ThreeShiftCoupling(AffineCoupling):
    r"""HCFlow's ``Affine3shift`` coupling between the leading "LR" channels and the others.

    ``x_lr = x[:, :split_len]`` (the Haar low-pass of RGB in HCFlow rescaling), ``x_o = x[:, split_len:]``.

    ``lr_to_others=True`` (even step index, "LR vs others"): exactly :class:`AffineCoupling`
    with ``split_len`` LR channels, interleaved layout and ``shift_scale`` order:
    ``h = subnet(cat(x_lr, c))``, ``t = h[:, 0::2]``, ``l = scale(h[:, 1::2])`` (default
    ``0.318 atan(2 s)``); **forward** :math:`x_o' = (x_o + t) e^{l}`, **inverse**
    :math:`x_o = x_o' e^{-l} - t`, **log-det** :math:`\sum l`.

    ``lr_to_others=False`` (odd step index): ``t = subnet(cat(x_o, c))`` with ``split_len``
    outputs; **forward** :math:`x_{lr}' = x_{lr} + t`, **inverse** :math:`x_{lr} = x_{lr}' - t`,
    **log-det** 0 (``scale`` is unused).

    The LR channels stay first in the output. Shapes: ``(B, C, H, W) -> (B, C, H, W)``
    (attribute ``subnet``). In a hierarchy, the direction alternates with the step index and
    ``split_len`` is the LR channel count.

    Paper: Liang et al., HCFlow (ICCV 2021), image rescaling.
    """

    step_arguments = ("subnet_constructor", "split_len", "lr_to_others")

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: SubnetConstructor,
        split_len: int = 3,
        lr_to_others: bool = True,
        scale: ScaleArg = "atan",
    ):
        self.lr_to_others = bool(lr_to_others)
        if self.lr_to_others:
            super().__init__(dims_in, dims_c, subnet_constructor=subnet_constructor, scale=scale, split_len=split_len)
            return
        CouplingBase.__init__(self, dims_in, dims_c, split_len=split_len)
        self.order, self.layout = "shift_scale", "interleaved"
        self.scale = get_scale_function(scale)
        self._out_channels = self.split_len
        self.subnet = subnet_constructor(self.dims_in[0][0] - self.split_len + self.cond_channels, self.split_len)

    @classmethod
    def _step_arguments(cls, step: StepInfo) -> dict[str, Any]:
        return {"split_len": step.lr_channels, "lr_to_others": step.index % 2 == 0}

    def extra_repr(self) -> str:
        return f"split_len={self.split_len}, lr_to_others={self.lr_to_others}, scale={self.scale!r}"

    def _shift(self, x_o: Tensor, c: list[Tensor]) -> Tensor:
        return self.run_subnet(self.subnet, self.subnet_input(x_o, c), self._out_channels)

    def coupling_forward(self, x1, x2, c):
        if self.lr_to_others:
            return super().coupling_forward(x1, x2, c)
        return x1 + self._shift(x2, c), x2, self._zero_logdet(x1)

    def coupling_inverse(self, y1, y2, c):
        if self.lr_to_others:
            return super().coupling_inverse(y1, y2, c)
        return y1 - self._shift(y2, c), y2, self._zero_logdet(y1)


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
        self.subnet = subnet_constructor(sum(s[0] for s in self.dims_c), self._out_channels)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        h = self.run_subnet(self.subnet, _cat(None, c), self._out_channels)
        shift, raw = _shift_and_raw(h, "interleaved")
        scale, log_scale = self.scale.params(raw)
        logdet = sum_except_batch(log_scale)
        if not rev:
            return ((x[0] + shift) * scale,), logdet
        return (self.scale.unscale(x[0], scale, log_scale) - shift,), -logdet


@register_coupling("inv_block_exp")
class InvBlockExp(CouplingBase):
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

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``. In a hierarchy ``split_len`` is the LR channel count.

    Paper: Xiao et al., "Invertible Image Rescaling" (IRN), ECCV 2020.
    """

    step_arguments = ("subnet_constructor", "split_len")

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: SubnetConstructor,
        split_len: int = 3,
        clamp: float = 1.0,
    ):
        super().__init__(dims_in, dims_c, split_len=split_len)
        self.scale = TanhClampScale(clamp)
        cc = self.cond_channels
        rest = self.dims_in[0][0] - self.split_len
        self.phi = subnet_constructor(rest + cc, self.split_len)
        self.eta = subnet_constructor(self.split_len + cc, rest)
        self.rho = subnet_constructor(self.split_len + cc, rest)

    @classmethod
    def _step_arguments(cls, step: StepInfo) -> dict[str, Any]:
        return {"split_len": step.lr_channels}

    def extra_repr(self) -> str:
        return f"split_len={self.split_len}, clamp={self.scale.clamp}"

    def _scale_and_shift(self, y1: Tensor, c: list[Tensor], rest: int) -> tuple[Tensor, Tensor, Tensor]:
        inp = self.subnet_input(y1, c)
        scale, log_scale = self.scale.params(self.run_subnet(self.rho, inp, rest, "rho"))
        return scale, log_scale, self.run_subnet(self.eta, inp, rest, "eta")

    def coupling_forward(self, x1, x2, c):
        y1 = x1 + self.run_subnet(self.phi, self.subnet_input(x2, c), self.split_len, "phi")
        scale, log_scale, shift = self._scale_and_shift(y1, c, x2.shape[1])
        return y1, x2 * scale + shift, sum_except_batch(log_scale)

    def coupling_inverse(self, y1, y2, c):
        scale, log_scale, shift = self._scale_and_shift(y1, c, y2.shape[1])
        x2 = self.scale.unscale(y2 - shift, scale, log_scale)
        x1 = y1 - self.run_subnet(self.phi, self.subnet_input(x2, c), self.split_len, "phi")
        return x1, x2, -sum_except_batch(log_scale)
