"""Sequential composition of invertible layers, and the inverse of a layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from FrEIA.framework import SequenceINN
from FrEIA.modules import InvertibleModule
from torch import Tensor, nn

from flowsr.layers.base import FlowModule, batch_logdet, check_finite, format_shape

__all__ = ["FlowSequence", "Inverse"]

Shape = tuple[int, ...]


def _shape(s: Sequence[int]) -> Shape:
    return tuple(int(d) for d in s)


class FlowSequence(SequenceINN):
    """A chain of single-input, single-output invertible layers (FrEIA ``SequenceINN``, fixed).

    **Forward**: ``z = f_n(... f_1(x))``; **inverse**: the layers' inverses in reverse order;
    **log-det**: the sum of the layers' log-dets (a ``(B,)`` tensor).

    Fixes over FrEIA 0.2's ``SequenceINN``:

    * pre-built layers can be appended with :meth:`add` (0.2 only constructs layers from a class
      in ``append``), with a check that the layer's ``dims_in`` is the current shape and that
      its conditions match the ones already registered under the same index;
    * :meth:`output_dims` returns the true output shape (0.2 returns the *input* dims, or
      raises unless ``force_tuple_output=True``);
    * the log-det is always a ``(B,)`` tensor (0.2 returns the integer 0 for an empty sequence
      and passes through whatever scalar type its layers return);
    * the output is always a tuple, and the input may be a list / tuple (or a bare tensor) --
      0.2 returns a bare tensor unless ``force_tuple_output=True``, which downstream code then
      iterates over the batch dimension by mistake.

    Conditions: a layer added with ``cond=i`` receives ``c=[c[i]]`` (``cond`` may also be a
    sequence of indices, giving ``c=[c[i] for i in cond]``). ``dims_c`` lists the condition
    shapes by index as they are registered.

    Shapes: ``[(B, *dims)] -> [(B, *shapes[-1])]``; ``shapes`` holds every intermediate shape.
    """

    #: whether the sequence rejects NaN / Inf inputs (see :func:`flowsr.layers.base.set_finite_checks`).
    check_finite_inputs: bool = True

    def __init__(self, *dims: int):
        super().__init__(*dims, force_tuple_output=True)
        self.dims_in = [_shape(dims)]
        self.shapes = [_shape(dims)]
        self.dims_c: list[Shape] = []

    # -- building --------------------------------------------------------------------------------
    def _register_conditions(self, module: nn.Module, cond: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
        module_c = [_shape(s) for s in (getattr(module, "dims_c", None) or [])]
        name = type(module).__name__
        if cond is None:
            if module_c:
                raise ValueError(f"FlowSequence.add: {name} expects conditions {module_c}; pass cond=<index>")
            return None
        indices = (cond,) if isinstance(cond, int) else tuple(int(i) for i in cond)
        if not indices:
            return self._register_conditions(module, None)
        if any(i < 0 for i in indices):
            raise ValueError(f"FlowSequence.add: condition indices must be >= 0, got {indices}")
        if len(module_c) != len(indices):
            raise ValueError(
                f"FlowSequence.add: {name} declares {len(module_c)} condition(s) {module_c} but cond={cond!r} "
                f"gives {len(indices)}"
            )
        known = dict(enumerate(self.dims_c))
        for i, shape in zip(indices, module_c):
            if i in known and known[i] is not None and known[i] != shape:
                raise ValueError(
                    f"FlowSequence.add: condition {i} was registered with shape {known[i]}, {name} expects {shape}"
                )
            known[i] = shape
        self.dims_c = [known.get(i) for i in range(max(known) + 1)]
        return cond if isinstance(cond, int) else indices

    def add(self, module: InvertibleModule, cond: int | Sequence[int] | None = None) -> FlowSequence:
        """Append a pre-built layer (any FrEIA ``InvertibleModule`` with one input and one output).

        Args:
            module: the layer; its ``dims_in`` must be ``[self.shapes[-1]]``.
            cond: index (or indices) into the ``c`` list passed to :meth:`forward`, or ``None``.

        Returns:
            ``self``, for chaining.

        Raises:
            ValueError: shape or condition mismatch, or a layer with several outputs.
        """
        if not isinstance(module, InvertibleModule):
            raise TypeError(f"FlowSequence.add: expected a FrEIA InvertibleModule, got {type(module).__name__}")
        name = type(module).__name__
        current = self.shapes[-1]
        dims_in = [_shape(s) for s in module.dims_in]
        if dims_in != [current]:
            raise ValueError(
                f"FlowSequence.add: {name} has dims_in={dims_in}, but the sequence's current shape is {current}"
            )
        out = module.output_dims(dims_in)
        if len(out) != 1:
            raise ValueError(f"FlowSequence.add: {name} has {len(out)} outputs; a sequence needs exactly one")
        cond = self._register_conditions(module, cond)
        self.module_list.append(module)
        self.conditions.append(cond)
        self.shapes.append(_shape(out[0]))
        return self

    def append(self, module_class: Any, cond: int | None = None, cond_shape: Sequence[int] | None = None, **kwargs):
        """FrEIA-style: construct ``module_class([current_shape], dims_c=[cond_shape], **kwargs)`` and add it."""
        if cond is not None:
            if cond_shape is None:
                raise ValueError("FlowSequence.append: cond_shape is required with cond")
            kwargs["dims_c"] = [_shape(cond_shape)]
        return self.add(module_class([self.shapes[-1]], **kwargs), cond)

    # -- shapes ----------------------------------------------------------------------------------
    def output_dims(self, input_dims: Sequence[Sequence[int]] | None = None) -> list[Shape]:
        """Output shape for ``input_dims`` (default ``dims_in``), chained through every layer."""
        dims = [_shape(s) for s in (self.dims_in if input_dims is None else input_dims)]
        if len(dims) != 1 or len(dims[0]) != len(self.shapes[0]) or dims[0][:1] != self.shapes[0][:1]:
            raise ValueError(f"FlowSequence: input_dims must be [{self.shapes[0]}]-like (same channels), got {dims}")
        for module in self.module_list:
            dims = [_shape(s) for s in module.output_dims(dims)]
        return dims

    # -- running ---------------------------------------------------------------------------------
    def forward(
        self,
        x_or_z: Tensor | Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        """Run the sequence (``rev=True``: the inverse); returns ``((out,), log_det (B,))``."""
        xs = (x_or_z,) if isinstance(x_or_z, Tensor) else tuple(x_or_z)
        if len(xs) != 1:
            raise ValueError(f"FlowSequence: expected one input tensor, got {len(xs)}")
        expected = self.shapes[-1] if rev else self.shapes[0]
        t = xs[0]
        if t.dim() != len(expected) + 1 or t.shape[1] != expected[0]:
            raise ValueError(
                f"FlowSequence: {'reverse ' if rev else ''}input must have shape {format_shape(expected)}, "
                f"got {tuple(t.shape)}"
            )
        if self.check_finite_inputs:
            check_finite("FlowSequence", "reverse input" if rev else "input", t)
        c = [] if c is None else list(c)
        if len(c) != len(self.dims_c):  # a condition the sequence does not take is a mistake, not a no-op
            raise ValueError(f"FlowSequence: expected {len(self.dims_c)} condition(s), got {len(c)}")
        log_det = xs[0].new_zeros(xs[0].shape[0])
        order = range(len(self.module_list))
        for i in reversed(order) if rev else order:
            module, cond = self.module_list[i], self.conditions[i]
            if cond is None:
                xs, j = module(xs, rev=rev, jac=jac)
            else:
                indices = (cond,) if isinstance(cond, int) else cond
                xs, j = module(xs, c=[c[k] for k in indices], rev=rev, jac=jac)
            xs = (xs,) if isinstance(xs, Tensor) else tuple(xs)
            if j is not None:
                log_det = log_det + batch_logdet(j, xs[0])
        return xs, log_det


class Inverse(FlowModule):
    """The inverse of an invertible layer: forward runs the wrapped layer's reverse and vice versa.

    **Forward**: ``x = f^{-1}(z)``; **inverse**: ``z = f(x)``; **log-det**: the wrapped layer's
    reverse log-det ``log|det df^{-1}/dz|`` forward, its forward log-det in reverse.

    Shapes: ``dims_in`` = the wrapped layer's output dims, ``output_dims`` = its ``dims_in``
    (e.g. ``Inverse(module=Squeeze([(C, H, W)]))`` maps ``(4C, H/2, W/2) -> (C, H, W)``).
    Conditions are passed through (``dims_c`` = the wrapped layer's).

    Usage: ``Inverse(module=layer)`` or ``Inverse(layer)``; as a FrEIA graph node
    ``Node(prev, Inverse, {"module": layer})`` (the node's input shapes are checked against the
    layer's output dims). Layers with several outputs become an ``Inverse`` with several inputs;
    :meth:`output_dims` of non-nominal spatial sizes needs a single-input wrapped layer.
    """

    def __init__(
        self,
        dims_in: Sequence[Sequence[int]] | InvertibleModule | None = None,
        dims_c: Sequence[Sequence[int]] | None = None,
        *,
        module: InvertibleModule | None = None,
    ):
        if isinstance(dims_in, nn.Module):
            if module is not None:
                raise ValueError("Inverse: pass the wrapped layer once (positionally or as module=)")
            dims_in, module = None, dims_in
        if not isinstance(module, InvertibleModule):
            raise TypeError(f"Inverse: module must be a FrEIA InvertibleModule, got {type(module).__name__}")
        inner_out = [_shape(s) for s in module.output_dims([_shape(s) for s in module.dims_in])]
        inner_c = [_shape(s) for s in (module.dims_c or [])]
        if dims_in is not None and [_shape(s) for s in dims_in] != inner_out:
            raise ValueError(f"Inverse: dims_in {list(dims_in)} must be the wrapped layer's output dims {inner_out}")
        if dims_c is not None and [_shape(s) for s in dims_c] != inner_c:
            raise ValueError(f"Inverse: dims_c {list(dims_c)} must be the wrapped layer's dims_c {inner_c}")
        super().__init__(inner_out, inner_c)
        self.module = module

    @property
    def _name(self) -> str:
        return f"Inverse({type(self.module).__name__})"

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] | None = None, rev: bool = False, jac: bool = True
    ) -> tuple[tuple[Tensor, ...], Tensor]:
        self._check_input(x, rev)
        c = self._check_conditions(c, x[0])
        if c:
            out, j = self.module(list(x), c=c, rev=not rev, jac=jac)
        else:
            out, j = self.module(list(x), rev=not rev, jac=jac)
        out = (out,) if isinstance(out, Tensor) else tuple(out)
        return out, batch_logdet(0.0 if j is None else j, out[0])

    def output_dims(self, input_dims: Sequence[Sequence[int]]) -> list[Shape]:
        dims = [_shape(s) for s in input_dims]
        nominal_out = [_shape(s) for s in self.dims_in]
        if dims == nominal_out:
            return [_shape(s) for s in self.module.dims_in]
        # Fully convolutional layers: scale the wrapped input dims by the actual / nominal spatial ratio.
        inner_in = [_shape(s) for s in self.module.dims_in]
        if len(dims) != len(nominal_out) or len(inner_in) != 1 or len(dims[0]) != len(nominal_out[0]):
            raise ValueError(f"Inverse: cannot infer output dims for {dims} (nominal input {nominal_out})")
        ratio = [a / n for a, n in zip(dims[0][1:], nominal_out[0][1:])]
        return [(inner_in[0][0], *(int(round(r * s)) for r, s in zip(ratio, inner_in[0][1:])))]

    def extra_repr(self) -> str:
        return ""
