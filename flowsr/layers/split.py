"""Learned Gaussian priors as bijections: whitening and the conditional Gaussian split.

A learned prior ``z ~ N(mu(c), exp(l(c))^2)`` is the same as a standard-normal ``eps`` pushed
through ``z = mu + exp(l) * eps``. Writing the prior as the invertible map ``z -> eps`` makes it
an ordinary layer: whole models have an N(0, I) base distribution, log-det tests apply
unchanged, and temperature sampling is ``eps * T``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from flowsr.layers.base import FlowModule, sum_except_batch
from flowsr.layers.scales import ScaleFunction, get_scale_function

__all__ = ["GaussianWhitening", "ConditionalGaussianSplit"]


class GaussianWhitening(FlowModule):
    r"""Whiten ``a`` with a mean and log-scale computed from the condition(s).

    ``h = prior(cat(c_1, ..., c_m))``, :math:`\mu = h[:, 0::2]`, :math:`l = \mathrm{scale}(h[:, 1::2])`
    (``scale="exp"``: unbounded, HCFlow SR; ``"atan"``: ``0.318 atan(2 s)``, HCFlow rescaling).

    **Forward**: :math:`\epsilon = (a - \mu)\,e^{-l}`; **inverse**: :math:`a = \mu + e^{l}\epsilon`;
    **log-det**: :math:`-\sum_{c,h,w} l`. So ``log N(a; mu, e^l) = log N(eps; 0, I) + log-det``.

    Shapes: ``a (B, C, H, W)``, conditions ``(B, C_i, H, W)`` (at least one) -> ``eps (B, C, H, W)``;
    ``prior`` maps ``sum(C_i)`` to ``2 C`` channels (HCFlow: a zero-initialised 3x3 conv).

    Paper: Liang et al., HCFlow (ICCV 2021): the prior of each level's split-off part.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: Callable[[int, int], nn.Module],
        scale: str | ScaleFunction = "exp",
    ):
        super().__init__(dims_in, dims_c)
        if not self.dims_c:
            raise ValueError("GaussianWhitening: needs at least one condition (dims_c)")
        self.scale = get_scale_function(scale)
        self.prior = subnet_constructor(sum(s[0] for s in self.dims_c), 2 * self.dims_in[0][0])

    def mean_and_log_scale(self, c) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, l)`` of the Gaussian for conditions ``c``."""
        h = self.prior(torch.cat(list(c), 1) if len(c) > 1 else c[0])
        return h[:, 0::2], self.scale.log_scale(h[:, 1::2])

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        mu, log_scale = self.mean_and_log_scale(c)
        logdet = sum_except_batch(log_scale)
        if not rev:
            return ((x[0] - mu) * torch.exp(-log_scale),), -logdet
        return (mu + torch.exp(log_scale) * x[0],), logdet


class ConditionalGaussianSplit(FlowModule):
    r"""Split off channels and whiten them with a prior computed from the kept part (and conditions).

    ``h = x[:, :n_keep]``, ``z = x[:, n_keep:]``; ``(mu, l)`` from
    ``prior(cat(h, c_1, ..., c_m))`` as in :class:`GaussianWhitening` (``use_kept=False``: from
    the conditions only).

    **Forward**: ``[x] -> [h, eps]`` with :math:`\epsilon = (z - \mu)\,e^{-l}`;
    **inverse**: :math:`x = \mathrm{cat}(h, \mu + e^{l}\epsilon)`; **log-det**: :math:`-\sum l`.

    Shapes: ``(B, C, H, W) -> [(B, n_keep, H, W), (B, C - n_keep, H, W)]``; default
    ``n_keep = C - round(C / 2)`` (Glow / SRFlow ``Split2d``).

    Papers: Kingma & Dhariwal (Glow) 2018 and Lugmayr et al. (SRFlow) 2020 (learned-prior split);
    the whitening form follows the FrEIA-on-0.2 pattern of flowsr's design notes.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        subnet_constructor: Callable[[int, int], nn.Module],
        n_keep: int | None = None,
        scale: str | ScaleFunction = "exp",
        use_kept: bool = True,
    ):
        super().__init__(dims_in, dims_c)
        channels, *spatial = self.dims_in[0]
        self.n_keep = channels - round(channels * 0.5) if n_keep is None else int(n_keep)
        if not 0 < self.n_keep < channels:
            raise ValueError(f"ConditionalGaussianSplit: n_keep must be in 1..{channels - 1}, got {self.n_keep}")
        self.use_kept = bool(use_kept)
        prior_c = ([(self.n_keep, *spatial)] if self.use_kept else []) + list(self.dims_c)
        if not prior_c:
            raise ValueError("ConditionalGaussianSplit: use_kept=False needs at least one condition")
        self.whitening = GaussianWhitening(
            [(channels - self.n_keep, *spatial)], prior_c, subnet_constructor=subnet_constructor, scale=scale
        )

    def _prior_conditions(self, h, c):
        return ([h] if self.use_kept else []) + list(c)

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        if not rev:
            h, z = x[0][:, : self.n_keep], x[0][:, self.n_keep :]
            (eps,), logdet = self.whitening([z], c=self._prior_conditions(h, c))
            return (h, eps), logdet
        h, eps = x
        (z,), logdet = self.whitening([eps], c=self._prior_conditions(h, c), rev=True)
        return (torch.cat([h, z], 1),), logdet

    def output_dims(self, input_dims):
        if len(input_dims) != 1:
            raise ValueError(f"ConditionalGaussianSplit: expected exactly one input, got {len(input_dims)}")
        c, *spatial = input_dims[0]
        return [(self.n_keep, *spatial), (c - self.n_keep, *spatial)]
