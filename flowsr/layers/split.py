"""Learned Gaussian priors as bijections: whitening and the conditional Gaussian split.

A learned prior ``z ~ N(mu(c), exp(l(c))^2)`` is the same as a standard-normal ``eps`` pushed
through ``z = mu + exp(l) * eps``. Writing the prior as the invertible map ``z -> eps`` makes it
an ordinary layer: whole models have an N(0, I) base distribution, log-det tests apply
unchanged, and temperature sampling is ``eps * T``.

Operation order (for bit-level agreement with official code): the inverse is always
``mu + exp(l) * eps``; the forward is ``(z - mu) * exp(-l)`` (HCFlow rescaling) or, with
``divide=True``, ``(z - mu) / exp(l)`` (SRFlow ``Split2d``; also how HCFlow's SR reference
latents are formed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from flowsr.layers.base import FlowModule, sum_except_batch
from flowsr.layers.scales import ScaleFunction, get_scale_function

__all__ = ["GaussianWhitening", "ConditionalGaussianSplit"]

ScaleArg = str | ScaleFunction | Callable[[Tensor], Tensor]


def _prior_params(layer: FlowModule, prior: nn.Module, scale: ScaleFunction, inputs: Sequence[Tensor], channels: int):
    """``(mu, l)`` from ``h = prior(cat(inputs))``: ``mu = h[:, 0::2]``, ``l = scale(h[:, 1::2])``."""
    inp = torch.cat(list(inputs), 1) if len(inputs) > 1 else inputs[0]
    h = layer.run_subnet(prior, inp, 2 * channels, "prior")
    return h[:, 0::2], scale.log_scale(h[:, 1::2])


def _whiten(z: Tensor, mu: Tensor, log_scale: Tensor, divide: bool) -> Tensor:
    return (z - mu) / torch.exp(log_scale) if divide else (z - mu) * torch.exp(-log_scale)


def _color(eps: Tensor, mu: Tensor, log_scale: Tensor) -> Tensor:
    return mu + torch.exp(log_scale) * eps


class GaussianWhitening(FlowModule):
    r"""Whiten ``a`` with a mean and log-scale computed from the condition(s).

    ``h = prior(cat(c_1, ..., c_m))``, :math:`\mu = h[:, 0::2]`, :math:`l = \mathrm{scale}(h[:, 1::2])`
    (``scale="exp"``: unbounded, HCFlow SR / Glow; ``"atan"``: ``0.318 atan(2 s)``, HCFlow rescaling).

    **Forward**: :math:`\epsilon = (a - \mu)\,e^{-l}` (``divide=True``: :math:`(a - \mu) / e^{l}`,
    the same value up to round-off); **inverse**: :math:`a = \mu + e^{l}\epsilon`;
    **log-det**: :math:`-\sum_{c,h,w} l`. So ``log N(a; mu, e^l) = log N(eps; 0, I) + log-det``.

    Shapes: ``a (B, C, H, W)``, conditions ``(B, C_i, H, W)`` (at least one) -> ``eps (B, C, H, W)``;
    ``prior`` maps ``sum(C_i)`` to ``2 C`` channels (HCFlow: a zero-initialised 3x3 conv).

    Paper: Liang et al., HCFlow (ICCV 2021): the prior ``f`` of each level's conditional flow.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: Callable[[int, int], nn.Module],
        scale: ScaleArg = "exp",
        divide: bool = False,
    ):
        super().__init__(dims_in, dims_c)
        if not self.dims_c:
            raise ValueError("GaussianWhitening: needs at least one condition (dims_c)")
        self.scale = get_scale_function(scale)
        self.divide = bool(divide)
        self.prior = subnet_constructor(sum(s[0] for s in self.dims_c), 2 * self.dims_in[0][0])

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}, divide={self.divide}"

    def mean_and_log_scale(self, c: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """``(mu, l)`` of the Gaussian for conditions ``c`` (not validated)."""
        return _prior_params(self, self.prior, self.scale, c, self.dims_in[0][0])

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        mu, log_scale = self.mean_and_log_scale(c)
        logdet = sum_except_batch(log_scale)
        if not rev:
            return (_whiten(x[0], mu, log_scale, self.divide),), -logdet
        return (_color(x[0], mu, log_scale),), logdet


class ConditionalGaussianSplit(FlowModule):
    r"""Split off channels and whiten them with a prior computed from the kept part (and conditions).

    ``h = x[:, :n_keep]``, ``z = x[:, n_keep:]``; ``p = prior(cat(h, c_1, ..., c_m))``
    (``use_kept=False``: ``prior(cat(c_1, ..., c_m))``), :math:`\mu = p[:, 0::2]`,
    :math:`l = \mathrm{scale}(p[:, 1::2])` (default ``"exp"``: unbounded ``logs``).

    **Forward**: ``[x] -> [h, eps]`` with :math:`\epsilon = (z - \mu) / e^{l}` (SRFlow's order;
    ``divide=False``: :math:`(z - \mu)\,e^{-l}`); **inverse**:
    :math:`x = \mathrm{cat}(h, \mu + e^{l}\epsilon)`; **log-det**: :math:`-\sum l`.

    Shapes: ``(B, C, H, W) -> [(B, n_keep, H, W), (B, C - n_keep, H, W)]``; default
    ``n_keep = C - round(C / 2)`` (Glow / SRFlow ``Split2d``: consume ``round(C * 0.5)``, Python
    rounding); ``prior`` maps ``n_keep + sum(C_i)`` (or ``sum(C_i)``) to ``2 (C - n_keep)``
    channels (SRFlow: a zero-initialised 3x3 conv, official ``conv``).

    Papers: Kingma & Dhariwal (Glow) 2018 and Lugmayr et al. (SRFlow) 2020 (learned-prior split).
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: Callable[[int, int], nn.Module],
        n_keep: int | None = None,
        scale: ScaleArg = "exp",
        use_kept: bool = True,
        divide: bool = True,
    ):
        super().__init__(dims_in, dims_c)
        channels = self.dims_in[0][0]
        self.n_keep = channels - round(channels * 0.5) if n_keep is None else int(n_keep)
        if not 0 < self.n_keep < channels:
            raise ValueError(
                f"ConditionalGaussianSplit: n_keep must be in 1..{channels - 1} for C={channels}, got {self.n_keep}"
            )
        self.use_kept, self.divide = bool(use_kept), bool(divide)
        if not self.use_kept and not self.dims_c:
            raise ValueError("ConditionalGaussianSplit: use_kept=False needs at least one condition (dims_c)")
        self.scale = get_scale_function(scale)
        prior_in = (self.n_keep if self.use_kept else 0) + sum(s[0] for s in self.dims_c)
        self.prior = subnet_constructor(prior_in, 2 * (channels - self.n_keep))

    def extra_repr(self) -> str:
        return f"n_keep={self.n_keep}, scale={self.scale!r}, use_kept={self.use_kept}, divide={self.divide}"

    def mean_and_log_scale(self, h: Tensor, c: Sequence[Tensor] = ()) -> tuple[Tensor, Tensor]:
        """``(mu, l)`` of the split-off part's Gaussian given the kept part ``h`` and conditions ``c``."""
        inputs = ([h] if self.use_kept else []) + list(c)
        return _prior_params(self, self.prior, self.scale, inputs, self.dims_in[0][0] - self.n_keep)

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        if not rev:
            h, z = x[0][:, : self.n_keep], x[0][:, self.n_keep :]
            mu, log_scale = self.mean_and_log_scale(h, c)
            return (h, _whiten(z, mu, log_scale, self.divide)), -sum_except_batch(log_scale)
        h, eps = x
        mu, log_scale = self.mean_and_log_scale(h, c)
        return (torch.cat([h, _color(eps, mu, log_scale)], 1),), sum_except_batch(log_scale)

    def output_dims(self, input_dims):
        if len(input_dims) != 1:
            raise ValueError(f"ConditionalGaussianSplit: expected exactly one input, got {len(input_dims)}")
        c, *spatial = input_dims[0]
        return [(self.n_keep, *spatial), (c - self.n_keep, *spatial)]
