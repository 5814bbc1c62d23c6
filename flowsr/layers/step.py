"""A Glow-style flow step: ActNorm -> permutation -> [affine injector] -> coupling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flowsr.layers.actnorm import ActNorm
from flowsr.layers.base import FlowModule
from flowsr.layers.coupling import AffineInjector
from flowsr.layers.fastpath import cached_inference, step_folding_enabled
from flowsr.layers.invconv import FixedPermutation, InvConv1x1

__all__ = ["FlowStep"]


class FlowStep(FlowModule):
    r"""One flow step, the unit of Glow, SRFlow and HCFlow main flows.

    **Forward**: :math:`y = \mathrm{coupling}(\mathrm{injector}(P(\mathrm{actnorm}(x)) \mid c) \mid c)`;
    **inverse**: the parts' inverses in the opposite order; **log-det**: the sum of the parts'.
    Every part is optional: ``actnorm=False``, ``permutation="none"``, no ``injector_kwargs``,
    ``coupling=None``.

    Args:
        actnorm: start with an :class:`~flowsr.layers.actnorm.ActNorm` (child ``actnorm``).
        permutation: child ``permute``: ``"invconv"`` (:class:`InvConv1x1`), ``"lu"`` (its LU
            parametrisation), ``"reverse"`` / ``"random"`` (:class:`FixedPermutation`) or ``"none"``.
        coupling: a coupling class (e.g. :class:`AffineCoupling`, :class:`ThreeShiftCoupling`,
            :class:`InvBlockExp`) or factory, built as ``coupling([shape], dims_c, **coupling_kwargs)``
            after the other parts (so parameter initialisation draws from the RNG in the order
            ActNorm, permutation, injector, coupling), child ``coupling``; or ``None`` (SRFlow's
            ``noCoupling`` steps: ActNorm + 1x1 conv).
        coupling_kwargs: keyword hyper-parameters of the coupling (e.g. ``subnet_constructor``).
        injector_kwargs: if given, an :class:`AffineInjector` (child ``injector``) built with
            these keyword arguments and conditioned on the step's conditions runs before the
            coupling (SRFlow's ``CondAffineSeparatedAndCond``).
        seed: seed of the random permutation / 1x1-conv initialisation.

    Shapes: ``(B, C, H, W)`` (and conditions ``(B, C_i, H, W)``) -> ``(B, C, H, W)``.
    """

    def __init__(
        self,
        dims_in,
        dims_c=None,
        *,
        actnorm: bool = True,
        permutation: str = "invconv",
        coupling: Callable[..., FlowModule] | None = None,
        coupling_kwargs: dict[str, Any] | None = None,
        injector_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
    ):
        super().__init__(dims_in, dims_c)
        dims = [self.dims_in[0]]
        cond = list(self.dims_c) or None
        self.actnorm = ActNorm(dims) if actnorm else None
        if permutation in ("invconv", "lu"):
            self.permute = InvConv1x1(dims, seed=seed, lu=permutation == "lu")
        elif permutation in ("reverse", "random"):
            self.permute = FixedPermutation(dims, kind=permutation, seed=seed)
        elif permutation == "none":
            self.permute = None
        else:
            raise ValueError(
                f"FlowStep: unknown permutation {permutation!r}; expected invconv, lu, reverse, random or none"
            )
        if coupling is None and coupling_kwargs:
            raise ValueError("FlowStep: coupling_kwargs given but coupling is None")
        if injector_kwargs is not None and not cond:
            raise ValueError("FlowStep: an affine injector needs conditions (dims_c)")
        self.injector = AffineInjector(dims, cond, **injector_kwargs) if injector_kwargs is not None else None
        self.coupling = coupling(dims, cond, **(coupling_kwargs or {})) if coupling is not None else None

    def _parts(self):
        parts = [(self.actnorm, False), (self.permute, False), (self.injector, True), (self.coupling, True)]
        return [(m, conditional) for m, conditional in parts if m is not None]

    def _folded(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """ActNorm folded into the 1x1 conv: forward ``conv(x, W diag(e^s)) + W (b e^s)``, reverse
        ``conv(y, diag(e^-s) W^-1) - b`` (the same maps; only the rounding differs)."""
        an, inv = self.actnorm, self.permute
        s, b = an.logs.reshape(-1), an.bias.reshape(-1)
        w = inv.matrix()
        w_fwd = w * torch.exp(s)[None, :]
        b_fwd = w @ (b * torch.exp(s))
        w_rev = torch.exp(-s)[:, None] * inv.inverse_matrix()
        return w_fwd[:, :, None, None], b_fwd, w_rev[:, :, None, None], -b

    def _fused_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """The folded ActNorm + 1x1 conv in inference with step folding on (``flowsr.layers.fastpath``,
        opt-in), else ``None``."""
        if not step_folding_enabled() or self.actnorm is None or not isinstance(self.permute, InvConv1x1):
            return None
        an, inv = self.actnorm, self.permute
        return cached_inference(self, "actnorm_invconv", (an.bias, an.logs, *inv._tensors()), self._folded)

    def _fused_mix(self, folded, x: Tensor, logdet: Tensor, rev: bool) -> tuple[Tensor, Tensor]:
        """ActNorm + 1x1 conv as one conv; the log-det adds the parts' terms in the plain order."""
        w_fwd, b_fwd, w_rev, b_rev = folded
        hw = x.shape[2] * x.shape[3]
        j_an = (torch.sum(self.actnorm.logs) * hw).repeat(x.shape[0])
        j_inv = (self.permute.logdet_per_pixel() * hw).repeat(x.shape[0])
        if not rev:
            return F.conv2d(x, w_fwd, b_fwd), logdet + j_an + j_inv
        return F.conv2d(x, w_rev, b_rev), logdet + -j_inv + -j_an

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        logdet = self._zero_logdet(x[0])
        parts = self._parts()
        folded = self._fused_weights()
        if folded is not None:  # inference: the first two parts (actnorm, permute) as one conv
            parts = parts[2:]
            if not rev:
                mixed, logdet = self._fused_mix(folded, x[0], logdet, rev)
                x = (mixed,)
        for module, conditional in reversed(parts) if rev else parts:
            x, j = module(x, c=c if conditional and c else None, rev=rev, jac=jac)
            logdet = logdet + j
        if folded is not None and rev:
            mixed, logdet = self._fused_mix(folded, x[0], logdet, rev)
            x = (mixed,)
        return tuple(x), logdet
