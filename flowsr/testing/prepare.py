"""Setting property tests up: float64 modules, non-trivial weights, reproducible tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["default_dtype", "perturb_parameters", "tensors"]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """Temporarily set ``torch``'s default dtype (build float64 modules for exact checks).

    Building under float64 is better than ``module.double()`` afterwards: modules that
    precompute inverses or log-dets at construction would otherwise keep float32 precision.

    Example:
        >>> import torch
        >>> with default_dtype(torch.float64):
        ...     conv = torch.nn.Conv2d(2, 2, 1)
        >>> conv.weight.dtype
        torch.float64
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def perturb_parameters(module: nn.Module, *, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add seeded ``N(0, scale^2)`` noise to every trainable floating-point parameter, in place.

    Why: flows initialise their last subnet convolution to zero (Glow's / SRFlow's
    ``Conv2dZeros``, FrEIA's ``AllInOneBlock`` with ``gin``-style init, IRN), which makes every
    coupling the identity with log-det 0 -- invertibility and log-det tests then pass whatever
    the coupling maths is. Perturbing all weights (zero tensors included) makes the tests
    exercise the real transformation.

    * Parameters that are not floating point or have ``requires_grad=False`` (FrEIA's
      ``PermuteRandom`` permutation, Haar weights) are left alone; buffers are not touched.
    * The noise comes from a CPU ``torch.Generator`` seeded with ``seed`` and is drawn in
      ``named_parameters()`` order, so it is reproducible for a given module structure (note
      that FrEIA 0.2 ``GraphINN`` registers parallel branches in a process-dependent order).
    * Data-dependent initialisation is switched off, so no ``ActNorm`` re-initialises itself
      from the first test batch: sub-modules with an ``initialized`` attribute or buffer (flowsr's
      ActNorm) are marked initialised, FrEIA 0.2 ``ActNorm.init_on_next_batch`` is set ``False``.

    Args:
        module: the module to modify (in place).
        seed: generator seed.
        scale: noise standard deviation.

    Returns:
        ``module`` itself (for chaining).

    Example:
        >>> import torch
        >>> layer = torch.nn.Conv2d(2, 2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.zero_()
        >>> bool(perturb_parameters(layer, seed=0).weight.abs().sum() > 0)
        True
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            if not p.is_floating_point() or not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale
            p.add_(noise.to(device=p.device, dtype=p.dtype))
        for m in module.modules():
            flag = getattr(m, "initialized", None)
            if isinstance(flag, Tensor):
                flag.fill_(True)
            elif isinstance(flag, bool):
                m.initialized = True
            if getattr(m, "init_on_next_batch", None) is True:
                m.init_on_next_batch = False
    return module


def tensors(
    shape: Sequence[int],
    seed: int,
    dtype: torch.dtype = torch.float64,
    *,
    scale: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """A reproducible ``N(0, scale^2)`` tensor from ``seed`` (CPU generator, then moved to ``device``).

    Use this with a Hypothesis-drawn seed instead of drawing tensors element-wise (far too slow).

    Example:
        >>> torch.equal(tensors((2, 3), seed=7), tensors((2, 3), seed=7))
        True
    """
    generator = torch.Generator().manual_seed(int(seed))
    t = torch.randn(tuple(int(s) for s in shape), generator=generator, dtype=torch.float64) * scale
    return t.to(dtype=dtype, device=device)
