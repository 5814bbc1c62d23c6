"""Adapters that turn bijections from other libraries into flowsr / FrEIA layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nflows.transforms.base import Transform
from torch import Tensor

from flowsr.layers.base import FlowModule, batch_logdet

__all__ = ["NflowsTransform"]


class NflowsTransform(FlowModule):
    r"""Any nflows ``Transform`` as a FrEIA node.

    **Forward**: ``y, J = transform(x, context)``; **inverse**: ``x, J' = transform.inverse(y, context)``;
    **log-det**: nflows' ``logabsdet`` (``(B,)``; nflows' inverse already returns the negative,
    the same sign convention as FrEIA's ``rev=True``).

    ``context`` is ``torch.cat(c, dim=1)`` of the conditions (FrEIA passes a list, nflows takes
    one tensor), or ``None`` without conditions.

    Shapes: ``[(B, *dims_in[0])] -> [(B, *output_shape)]``; ``output_shape`` defaults to the input
    shape and must be given for shape-changing transforms (e.g. nflows' ``SqueezeTransform``:
    ``(4C, H/2, W/2)``). For a shape-changing transform :meth:`output_dims` only knows the nominal
    shapes.

    Example::

        from nflows.transforms import OneByOneConvolution
        layer = NflowsTransform([(4, 8, 8)], transform=OneByOneConvolution(4))

    Note: nflows 0.14's data-dependent ``ActNorm`` initialises on the first training-mode
    forward call, and its LU / QR inverses use deprecated torch solvers.

    Papers: nflows (Durkan et al., 2020, software).
    """

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]],
        dims_c: Sequence[Sequence[int]] | None = None,
        *,
        transform: Transform,
        output_shape: Sequence[int] | None = None,
    ):
        super().__init__(dims_in, dims_c)
        if len(self.dims_in) != 1:
            raise ValueError(f"NflowsTransform: nflows transforms take one input, got dims_in={self.dims_in}")
        if not isinstance(transform, Transform):
            raise TypeError(f"NflowsTransform: transform must be an nflows Transform, got {type(transform).__name__}")
        self.transform = transform
        self.output_shape = None if output_shape is None else tuple(int(d) for d in output_shape)

    @property
    def _name(self) -> str:
        return f"NflowsTransform({type(self.transform).__name__})"

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor], Tensor]:
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        context = torch.cat(list(c), dim=1) if c else None
        if not rev:
            y, logabsdet = self.transform(x[0], context)
        else:
            y, logabsdet = self.transform.inverse(x[0], context)
        return (y,), batch_logdet(logabsdet, y)

    def output_dims(self, input_dims: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        if len(input_dims) != 1:
            raise ValueError(f"NflowsTransform: expected exactly one input, got {len(input_dims)}")
        dims = tuple(int(d) for d in input_dims[0])
        if self.output_shape is None:
            return [dims]
        if dims != self.dims_in[0]:
            raise ValueError(
                f"NflowsTransform: output_shape {self.output_shape} is given for the input {self.dims_in[0]}; "
                f"cannot infer the output for {dims}"
            )
        return [self.output_shape]
