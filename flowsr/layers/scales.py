"""Scale functions of affine couplings: raw subnet output ``s`` -> multiplicative scale.

A coupling computes ``y = x * e`` (plus a shift) with a scale ``e = exp(l)`` made from a raw
subnet output ``s``; the log-scale ``l`` is the log-det contribution. Every function here gives
``e`` and ``l`` and undoes the scaling the way its paper's code does, so that models reproduce
official outputs to round-off:

==============  =====================================  ==========================  =================
name            log-scale ``l``                        inverse of ``y = x * e``    used by
==============  =====================================  ==========================  =================
``atan``        ``0.318 * atan(2 s)`` (|l| < 0.4995)    ``y * exp(-l)``             HCFlow
``exp``         ``s`` (unbounded)                      ``y * exp(-l)``             Glow priors
``sigmoid``     ``log(sigmoid(s + 2) + 1e-4)``         ``y / e``                   Glow, SRFlow
``tanh_clamp``  ``clamp * (2 sigmoid(s) - 1)``         ``y / exp(l)``              IRN
==============  =====================================  ==========================  =================

Interface (:class:`ScaleFunction`): ``log_scale(s)``, ``scale(s)``, ``params(s) -> (e, l)``
(both at once, computed the way the paper does: SRFlow forms ``e`` first and takes its log, HCFlow
and IRN form ``l`` first and exponentiate), and ``unscale(y, e, l)`` (the inverse of ``y = x * e``
in the paper's operation order: multiplication by ``exp(-l)`` or division by ``e``).

Functions are small picklable objects (no lambdas are stored on modules);
:func:`get_scale_function` resolves names, passes instances through and wraps a plain
(module-level) function ``s -> l`` in a :class:`CallableScale`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "ScaleFunction",
    "AtanScale",
    "CallableScale",
    "ExpScale",
    "SigmoidScale",
    "TanhClampScale",
    "get_scale_function",
    "SCALE_FUNCTIONS",
]


class ScaleFunction:
    """Base class: maps a raw subnet output ``s`` to a scale ``e = exp(l)`` and its log ``l``.

    Subclasses override :meth:`log_scale` (and :meth:`params` / :meth:`unscale` where their
    paper computes ``e`` first or inverts by division). The base behaviour is the unbounded
    ``l = s`` with ``e = exp(l)`` and inverse ``y * exp(-l)``.
    """

    name = "exp"

    def log_scale(self, s: Tensor) -> Tensor:
        """The log-scale ``l`` (log-det contribution per element)."""
        return s

    def scale(self, s: Tensor) -> Tensor:
        """The multiplicative scale ``e`` (as the forward pass computes it)."""
        return self.params(s)[0]

    def params(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """``(e, l)``: scale and log-scale, each computed in the paper's order of operations."""
        ls = self.log_scale(s)
        return torch.exp(ls), ls

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        """Undo ``y = x * scale``: here ``y * exp(-log_scale)`` (HCFlow / Glow order)."""
        return y * torch.exp(-log_scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExpScale(ScaleFunction):
    """Unbounded log-scale ``l = s``, ``e = exp(s)``, inverse ``y * exp(-s)`` (Glow / HCFlow SR priors)."""

    name = "exp"


class AtanScale(ScaleFunction):
    """HCFlow's soft-bounded log-scale ``l = 0.318 * atan(2 s)`` (the literal 0.318 of the official code).

    ``e = exp(l)``, inverse ``y * exp(-l)``; ``|l| < 0.318 * pi / 2 = 0.4995``.
    """

    name = "atan"

    def log_scale(self, s: Tensor) -> Tensor:
        return 0.318 * torch.atan(2 * s)


class SigmoidScale(ScaleFunction):
    """Glow / SRFlow: ``e = sigmoid(s + 2) + 1e-4`` in (1e-4, 1.0001), ``l = log(e)``; undone by ``y / e``.

    At ``s = 0`` (zero-initialised subnets) the scale is ``sigmoid(2) + 1e-4 = 0.880897``.
    """

    name = "sigmoid"

    def params(self, s: Tensor) -> tuple[Tensor, Tensor]:
        scale = torch.sigmoid(s + 2.0) + 1e-4
        return scale, torch.log(scale)

    def log_scale(self, s: Tensor) -> Tensor:
        return self.params(s)[1]

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        return y / scale


class TanhClampScale(ScaleFunction):
    """IRN: ``l = clamp * (2 sigmoid(s) - 1) = clamp * tanh(s / 2)``, ``e = exp(l)``; undone by ``y / exp(l)``.

    Computed literally as ``clamp * (sigmoid(s) * 2 - 1)`` like the official code.
    """

    name = "tanh_clamp"

    def __init__(self, clamp: float = 1.0):
        if not clamp > 0:
            raise ValueError(f"TanhClampScale: clamp must be positive, got {clamp}")
        self.clamp = float(clamp)

    def log_scale(self, s: Tensor) -> Tensor:
        return self.clamp * (torch.sigmoid(s) * 2 - 1)

    def unscale(self, y: Tensor, scale: Tensor, log_scale: Tensor) -> Tensor:
        return y / scale

    def __repr__(self) -> str:
        return f"TanhClampScale(clamp={self.clamp})"


class CallableScale(ScaleFunction):
    """Wrap a function ``s -> log_scale`` (``e = exp(l)``, inverse ``y * exp(-l)``).

    Use a module-level function or a picklable callable object (not a lambda) if the module
    holding it must pickle.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        if not callable(fn):
            raise ValueError(f"CallableScale: expected a callable s -> log_scale, got {fn!r}")
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def log_scale(self, s: Tensor) -> Tensor:
        return self.fn(s)

    def __repr__(self) -> str:
        return f"CallableScale({self.name})"


SCALE_FUNCTIONS: dict[str, Callable[[], ScaleFunction]] = {
    "exp": ExpScale,
    "atan": AtanScale,
    "sigmoid": SigmoidScale,
    "tanh_clamp": TanhClampScale,
}


def get_scale_function(scale: str | ScaleFunction | Callable[[Tensor], Tensor]) -> ScaleFunction:
    """Resolve a scale function.

    Args:
        scale: a name (``"atan"``, ``"exp"``, ``"sigmoid"``, ``"tanh_clamp"`` with clamp 1), a
            :class:`ScaleFunction` instance (returned as is, e.g. ``TanhClampScale(2.0)``) or a
            plain function ``s -> log_scale`` (wrapped in :class:`CallableScale`).

    Raises:
        ValueError: unknown name or an object that is neither a name nor callable.
    """
    if isinstance(scale, ScaleFunction):
        return scale
    if isinstance(scale, str):
        if scale not in SCALE_FUNCTIONS:
            raise ValueError(
                f"unknown scale function {scale!r}; expected one of {sorted(SCALE_FUNCTIONS)}, "
                "a ScaleFunction instance or a function s -> log_scale"
            )
        return SCALE_FUNCTIONS[scale]()
    if callable(scale):
        return CallableScale(scale)
    raise ValueError(f"scale must be a name, a ScaleFunction or a callable, got {scale!r}")
