"""Common base of flowsr's invertible layers.

Every flowsr layer is a FrEIA 0.2 :class:`~FrEIA.modules.InvertibleModule`:

* constructor ``(dims_in, dims_c=None, **hyper_parameters)`` where ``dims_in`` / ``dims_c`` are
  lists of shapes without the batch dimension, e.g. ``[(C, H, W)]``;
* ``forward(x, c=None, rev=False, jac=True) -> (tuple_of_outputs, log_jac_det)`` where the
  log-det is always a ``(B,)`` tensor: ``log|det df/dx|`` forward and ``log|det df^-1/dz|``
  (the negative at the matching point) with ``rev=True``;
* ``output_dims(input_dims)`` for shape inference when a FrEIA graph is built.

The layers are fully convolutional: the spatial sizes in ``dims_in`` are nominal (they only
feed FrEIA's shape inference). At run time any spatial size works as long as channel counts
match and the size is divisible by the layer's factor; conditions must share the input's
spatial size. Bad input raises :class:`ValueError` naming the layer and the expected shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from FrEIA.modules import InvertibleModule
from nflows.utils.torchutils import sum_except_batch
from torch import Tensor, nn

__all__ = [
    "FlowModule",
    "batch_logdet",
    "check_finite",
    "format_shape",
    "set_finite_checks",
    "sum_except_batch",
]

Shape = tuple[int, ...]


def check_finite(name: str, what: str, t: Tensor) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or Inf."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: {what} contains NaN or Inf values")


def set_finite_checks(module: nn.Module, enabled: bool, *, include_self: bool = True) -> None:
    """Turn the NaN/Inf input check of every flowsr layer in ``module`` on or off.

    A finiteness check reads the whole tensor (and synchronises a GPU). A composite that
    validates its own inputs once -- a model, or the hierarchy -- turns the checks of its inner
    layers off when it is built (``include_self=False`` keeps the composite's own check), so
    they are not repeated at every layer. Shape checks are cheap and always stay on.
    """
    for m in module.modules():
        if hasattr(m, "check_finite_inputs") and (include_self or m is not module):
            m.check_finite_inputs = enabled


def batch_logdet(j: Any, ref: Tensor) -> Tensor:
    """A log-det in any form (tensor, 0-dim, ``(1,)``, Python / numpy number) as a ``(B,)`` tensor
    of ``ref``'s dtype and device, ``B = ref.shape[0]`` (FrEIA modules and nflows transforms
    return scalars where flowsr promises per-sample values)."""
    j = torch.as_tensor(j, device=ref.device)
    if not j.is_floating_point() or (j.dim() == 0 and j.dtype != ref.dtype):
        j = j.to(ref.dtype)
    if j.numel() == 1:
        return j.reshape(()).repeat(ref.shape[0])
    return j


def _as_shapes(dims: Sequence[Sequence[int]] | None) -> list[Shape]:
    return [tuple(int(d) for d in shape) for shape in (dims or [])]


def format_shape(shape: Shape, batch: str = "B", spatial: bool = False) -> str:
    """``(B, C, H, W)``-style text for error messages; ``spatial=False`` prints H, W literally."""
    if spatial or len(shape) < 2:
        return "(" + ", ".join([batch, *map(str, shape)]) + ")"
    return "(" + ", ".join([batch, str(shape[0]), *("H", "W")[: len(shape) - 1]]) + ")"


class FlowModule(InvertibleModule):
    """Base class of flowsr layers: normalised dims, input validation, ``(B,)`` log-dets.

    Subclasses implement ``forward`` (and ``output_dims`` unless they preserve the shape of a
    single input); they call :meth:`_check_input` (and :meth:`_check_conditions` if
    conditional) at the top of ``forward``.

    Attributes:
        spatial_factor: the input's spatial size must be divisible by this (2 for squeezes).
        same_spatial_size: whether all inputs of one direction share their spatial size.
    """

    spatial_factor: int = 1
    same_spatial_size: bool = True
    #: whether ``_check_input`` / ``_check_conditions`` also reject NaN and Inf (see :func:`set_finite_checks`).
    check_finite_inputs: bool = True

    def __init__(self, dims_in: Sequence[Sequence[int]], dims_c: Sequence[Sequence[int]] | None = None):
        super().__init__(_as_shapes(dims_in), _as_shapes(dims_c))
        if not self.dims_in:
            raise ValueError(f"{self._name}: dims_in must list at least one input shape")

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _expected_shapes(self, rev: bool) -> list[Shape]:
        return self.output_dims(self.dims_in) if rev else self.dims_in

    def _check_input(self, x: Sequence[Tensor], rev: bool) -> None:
        """Validate the number of tensors, their rank, channel counts and spatial divisibility."""
        if isinstance(x, Tensor):
            raise ValueError(f"{self._name}: inputs must be a list or tuple of tensors, got a bare tensor")
        expected = self._expected_shapes(rev)
        direction = "reverse input" if rev else "input"
        if len(x) != len(expected):
            raise ValueError(f"{self._name}: expected {len(expected)} {direction} tensor(s), got {len(x)}")
        batch = x[0].shape[0] if x[0].dim() > 0 else None
        for i, (t, shape) in enumerate(zip(x, expected)):
            if t.dim() != len(shape) + 1 or t.shape[1] != shape[0]:
                raise ValueError(
                    f"{self._name}: {direction} {i} must have shape {format_shape(shape)}, got {tuple(t.shape)}"
                )
            if t.shape[0] != batch:
                raise ValueError(f"{self._name}: all {direction}s must share the batch size {batch}")
            factor = 1 if rev else self.spatial_factor
            if factor > 1 and any(s % factor for s in t.shape[2:]):
                raise ValueError(
                    f"{self._name}: spatial size {tuple(t.shape[2:])} of {direction} {i} is not divisible by {factor}"
                )
            if self.check_finite_inputs:
                check_finite(self._name, f"{direction} {i}", t)
        if self.same_spatial_size and len(x) > 1 and any(t.shape[2:] != x[0].shape[2:] for t in x[1:]):
            raise ValueError(f"{self._name}: all {direction}s must share the spatial size {tuple(x[0].shape[2:])}")

    def _check_conditions(self, c: Sequence[Tensor] | None, x: Tensor) -> list[Tensor]:
        """Validate conditions against ``dims_c`` and the input's batch and spatial size."""
        c = [] if c is None else list(c)
        if len(c) != len(self.dims_c):
            raise ValueError(
                f"{self._name}: expected {len(self.dims_c)} condition(s) of shape(s) "
                f"{[format_shape(s) for s in self.dims_c]}, got {len(c)}"
            )
        for i, (t, shape) in enumerate(zip(c, self.dims_c)):
            if t.dim() != len(shape) + 1 or t.shape[1] != shape[0]:
                raise ValueError(
                    f"{self._name}: condition {i} must have shape {format_shape(shape)}, got {tuple(t.shape)}"
                )
            if t.shape[0] != x.shape[0] or t.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"{self._name}: condition {i} must have shape {(x.shape[0], shape[0], *x.shape[2:])} "
                    f"(batch and spatial size of the input), got {tuple(t.shape)}"
                )
            if self.check_finite_inputs:
                check_finite(self._name, f"condition {i}", t)
        return c

    def output_dims(self, input_dims: Sequence[Sequence[int]]) -> list[Shape]:
        """Shape inference; this default serves shape-preserving layers (one input, same shape out)."""
        if len(input_dims) != 1:
            raise ValueError(f"{self._name}: expected exactly one input, got {len(input_dims)}")
        return [tuple(int(d) for d in input_dims[0])]

    @staticmethod
    def _zero_logdet(x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])

    def _require_no_conditions(self) -> None:
        """For unconditional layers: ``ValueError`` if ``dims_c`` was given."""
        if self.dims_c:
            raise ValueError(f"{self._name}: takes no conditions, got dims_c={list(self.dims_c)}")

    def run_subnet(self, net: nn.Module, inp: Tensor, channels: int, what: str = "subnet") -> Tensor:
        """``net(inp)``, checked to be ``(B, channels, H, W)`` at ``inp``'s batch and spatial size,
        so that a wrong subnet fails with a message naming this layer instead of deep in torch."""
        h = net(inp)
        if not isinstance(h, Tensor) or h.dim() != 4 or h.shape[1] != channels or h.shape[2:] != inp.shape[2:]:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(
                f"{self._name}: {what} must map {tuple(inp.shape)} to {(inp.shape[0], channels, *inp.shape[2:])}, "
                f"got {got}"
            )
        return h
