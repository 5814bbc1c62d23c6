"""Scale functions of affine couplings: raw subnet output ``s`` -> multiplicative scale.

Each function gives the scale and its log (the log-det contribution) and undoes the scaling
in the way its paper's code does, so that models reproduce official outputs to round-off:

==============  =====================================  ==========================  =================
name            log-scale                              inverse of ``y = x * e``    used by
==============  =====================================  ==========================  =================
``atan``        ``0.318 * atan(2 s)`` (|.| < 0.4995)    ``y * exp(-log_scale)``     HCFlow
``exp``         ``s`` (unbounded)                      ``y * exp(-s)``             Glow priors
``sigmoid``     ``log(sigmoid(s + 2) + 1e-4)``         ``y / scale``               Glow, SRFlow
``tanh_clamp``  ``clamp * (2 sigmoid(s) - 1)``         ``y / exp(log_scale)``      IRN
==============  =====================================  ==========================  =================

Functions are small objects (not lambdas) so modules holding them pickle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ScaleFunction", "AtanScale", "ExpScale", "SigmoidScale", "TanhClampScale", "get_scale_function"]


class ScaleFunction:
    """Base: ``params(s) -> (scale, log_scale)`` and ``unscale(y, scale, log_scale) -> y / scale``."""

    name = "exp"

    def log_scale(self, s: Tensor) -> Tensor:
        return s

    def params(self, s: Tensor) -> tuple[Tensor, Tensor]:
        ls = self.log_scale(s)
        return torch.exp(ls), ls

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        return y * torch.exp(-log_scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExpScale(ScaleFunction):
    """Unbounded log-scale: ``log_scale = s``."""

    name = "exp"


class AtanScale(ScaleFunction):
    """HCFlow's soft-bounded log-scale ``0.318 * atan(2 s)`` (the literal 0.318 of the official code)."""

    name = "atan"

    def log_scale(self, s: Tensor) -> Tensor:
        return 0.318 * torch.atan(2 * s)


class SigmoidScale(ScaleFunction):
    """Glow / SRFlow: ``scale = sigmoid(s + 2) + 1e-4`` in (1e-4, 1.0001); undone by division."""

    name = "sigmoid"

    def params(self, s: Tensor) -> tuple[Tensor, Tensor]:
        scale = torch.sigmoid(s + 2.0) + 1e-4
        return scale, torch.log(scale)

    def log_scale(self, s: Tensor) -> Tensor:
        return self.params(s)[1]

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        return y / scale


class TanhClampScale(ScaleFunction):
    """IRN: ``log_scale = clamp * (2 sigmoid(s) - 1) = clamp * tanh(s / 2)``; undone by ``/ exp``."""

    name = "tanh_clamp"

    def __init__(self, clamp: float = 1.0):
        self.clamp = float(clamp)

    def log_scale(self, s: Tensor) -> Tensor:
        return self.clamp * (torch.sigmoid(s) * 2 - 1)

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        return y / scale

    def __repr__(self) -> str:
        return f"TanhClampScale(clamp={self.clamp})"


_NAMED: dict[str, Callable[[], ScaleFunction]] = {
    "exp": ExpScale,
    "atan": AtanScale,
    "sigmoid": SigmoidScale,
    "tanh_clamp": TanhClampScale,
}


def get_scale_function(scale: str | ScaleFunction) -> ScaleFunction:
    """Resolve a scale function by name (``"atan"``, ``"exp"``, ``"sigmoid"``, ``"tanh_clamp"``) or pass one through."""
    if isinstance(scale, ScaleFunction):
        return scale
    if scale not in _NAMED:
        raise ValueError(f"unknown scale function {scale!r}; expected one of {sorted(_NAMED)} or a ScaleFunction")
    return _NAMED[scale]()
