"""Hypothesis strategies for layer tests: image shapes, batch sizes, seeds and whole layer inputs.

Hypothesis is a test dependency: it is imported only when a strategy is requested.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from flowsr.testing.prepare import tensors

if TYPE_CHECKING:  # pragma: no cover - typing only
    from hypothesis.strategies import SearchStrategy

__all__ = ["LayerInputs", "batch_sizes", "image_shapes", "import_strategies", "layer_inputs", "seeds"]


def import_strategies() -> Any:
    """``hypothesis.strategies``, with an ``ImportError`` that says how to install it."""
    try:
        from hypothesis import strategies as st
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "flowsr.testing strategies need the 'hypothesis' package (a test dependency): pip install hypothesis"
        ) from e
    return st


def image_shapes(
    channels: SearchStrategy[int] | None = None,
    sizes: SearchStrategy[int] | None = None,
    divisible_by: int = 1,
    max_dims: int = 512,
    *,
    square: bool = False,
) -> SearchStrategy[tuple[int, int, int]]:
    """Strategy for per-sample image shapes ``(C, H, W)``.

    Args:
        channels: strategy for ``C`` (default ``st.integers(1, 8)``).
        sizes: strategy for ``H`` and ``W`` (default ``st.sampled_from([2, 4, 8])``), drawn independently
            unless ``square``.
        divisible_by: ``C`` is rounded up to a multiple of this (2 for couplings that split channels).
        max_dims: only shapes with ``C*H*W <= max_dims`` (keeps autograd log-det checks fast).
        square: draw ``W = H``.

    Example:
        >>> from hypothesis import given
        >>> @given(image_shapes(divisible_by=2))
        ... def test_shape(shape):
        ...     assert shape[0] % 2 == 0 and shape[0] * shape[1] * shape[2] <= 512
        >>> test_shape()
    """
    st = import_strategies()
    channels = st.integers(1, 8) if channels is None else channels
    sizes = st.sampled_from([2, 4, 8]) if sizes is None else sizes
    if divisible_by < 1:
        raise ValueError(f"divisible_by must be >= 1, got {divisible_by}")

    @st.composite
    def _shapes(draw: Any) -> tuple[int, int, int]:
        c = draw(channels)
        c = divisible_by * max(1, -(-c // divisible_by))
        h = draw(sizes)
        w = h if square else draw(sizes)
        return (c, h, w)

    return _shapes().filter(lambda s: s[0] * s[1] * s[2] <= max_dims)


def batch_sizes(max_batch: int = 3) -> SearchStrategy[int]:
    """Strategy for batch sizes ``1..max_batch``.

    Example:
        >>> from hypothesis import given
        >>> @given(batch_sizes(2))
        ... def test_batch(b):
        ...     assert 1 <= b <= 2
        >>> test_batch()
    """
    return import_strategies().integers(1, max_batch)


def seeds() -> SearchStrategy[int]:
    """Strategy for generator seeds (``0 .. 2**31 - 1``), for :func:`tensors` and :func:`perturb_parameters`."""
    return import_strategies().integers(0, 2**31 - 1)


@dataclasses.dataclass(frozen=True)
class LayerInputs:
    """A drawn test case: per-sample input shape, batch size, condition shapes and a seed.

    Attributes:
        shape: ``(C, H, W)`` of the input.
        batch: batch size.
        condition_shapes: ``[(Cc, H, W), ...]``, same spatial size as the input.
        seed: seed for the input and conditions (see :meth:`make`) and for parameter noise.
    """

    shape: tuple[int, ...]
    batch: int
    condition_shapes: tuple[tuple[int, ...], ...]
    seed: int

    @property
    def dims_in(self) -> list[tuple[int, ...]]:
        """``[shape]`` -- the ``dims_in`` argument of a layer constructor."""
        return [self.shape]

    @property
    def dims_c(self) -> list[tuple[int, ...]]:
        """The ``dims_c`` argument of a layer constructor."""
        return list(self.condition_shapes)

    def make(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Reproducible tensors ``([x], [c1, ...])`` with batch dimension, from ``seed``."""
        x = tensors((self.batch, *self.shape), self.seed, dtype, device=device)
        cs = [
            tensors((self.batch, *s), self.seed + 1 + i, dtype, device=device)
            for i, s in enumerate(self.condition_shapes)
        ]
        return [x], cs


def layer_inputs(
    shapes: SearchStrategy[tuple[int, ...]] | None = None,
    batch: SearchStrategy[int] | None = None,
    n_conditions: int | SearchStrategy[int] = 0,
    condition_channels: SearchStrategy[int] | None = None,
) -> SearchStrategy[LayerInputs]:
    """Composite strategy: input shape + batch size + condition shapes + seed -> :class:`LayerInputs`.

    Args:
        shapes: strategy for the per-sample input shape (default :func:`image_shapes`).
        batch: strategy for the batch size (default :func:`batch_sizes`).
        n_conditions: number of condition tensors (an int or a strategy).
        condition_channels: strategy for each condition's channel count (default ``st.integers(1, 4)``);
            conditions share the input's spatial size.

    Example:
        >>> from hypothesis import given
        >>> @given(layer_inputs(n_conditions=1))
        ... def test_inputs(case):
        ...     x, c = case.make()
        ...     assert c[0].shape[2:] == x[0].shape[2:] and c[0].shape[0] == case.batch
        >>> test_inputs()
    """
    st = import_strategies()
    shapes = image_shapes() if shapes is None else shapes
    batch = batch_sizes() if batch is None else batch
    n_cond = st.just(n_conditions) if isinstance(n_conditions, int) else n_conditions
    condition_channels = st.integers(1, 4) if condition_channels is None else condition_channels

    @st.composite
    def _inputs(draw: Any) -> LayerInputs:
        shape = tuple(draw(shapes))
        b = draw(batch)
        n = draw(n_cond)
        conds = tuple((draw(condition_channels), *shape[1:]) for _ in range(n))
        return LayerInputs(shape=shape, batch=b, condition_shapes=conds, seed=draw(seeds()))

    return _inputs()
