"""The layer contract: the checks every flowsr layer passes, run on Hypothesis-drawn cases.

Each check is a function ``check(case, data)`` of a :class:`~flowsr.testing.cases.LayerCase`
and Hypothesis' ``data`` (it draws the input shapes, the batch, the conditions, the seed and,
through the case's ``build``, the hyper-parameters):

* ``"properties"`` (float64): :func:`~flowsr.testing.checks.check_all` -- exact inverse, log-det
  against the autograd Jacobian, reverse log-det negates, batch independence, ``output_dims``,
  no input mutation -- in training and in eval mode; the perturbed layer is not the identity.
* ``"graph_node"`` (float64): the layer as a node of a FrEIA 0.2 ``GraphINN`` (built by the node
  from the inferred shapes, with ``ConditionNode``s), checked the same way and equal to the
  layer called directly.
* ``"float32"``: invertible to ``rtol=1e-5`` and reverse log-det negates, at the drawn size and
  at 16 x 12.
* ``"bad_input"``: ``ValueError`` naming the layer for a wrong channel count or rank, a bare
  tensor, NaN / Inf (forward and reverse), an indivisible size, missing or mis-shaped reverse
  inputs;
* ``"bad_conditions"``: the same for missing, extra, mis-shaped or non-finite conditions, and for
  a condition given to a layer built without any.

:func:`check_layer` runs them all on one layer with one call; ``tests/test_contract_layers.py``
runs them over every case of :func:`~flowsr.testing.cases.layer_cases`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from FrEIA.framework import ConditionNode, GraphINN, InputNode, Node, OutputNode
from torch import Tensor, nn

from flowsr.layers.base import FlowModule
from flowsr.testing.calling import run_module
from flowsr.testing.cases import LayerCase, as_case, seeded
from flowsr.testing.checks import assert_invertible, assert_reverse_logdet_negates, check_all
from flowsr.testing.prepare import default_dtype, perturb_parameters, tensors
from flowsr.testing.strategies import LayerInputs, image_shapes, import_strategies, layer_inputs

__all__ = [
    "LAYER_CHECKS",
    "check_layer",
    "check_layer_bad_conditions",
    "check_layer_bad_input",
    "check_layer_float32",
    "check_layer_in_graph",
    "check_layer_properties",
    "draw_layer_inputs",
    "run_hypothesis",
]

#: float32 round trips also run at this spatial size (beyond the autograd check's sizes).
LARGE_SIZE = (16, 12)


def draw_layer_inputs(
    case: LayerCase,
    data: Any,
    *,
    sizes: Sequence[int] | None = None,
    conditions: tuple[int, int] | None = None,
    batch: tuple[int, int] = (1, 3),
) -> LayerInputs:
    """Draw an input shape, batch, condition shapes and seed that ``case`` accepts."""
    st = import_strategies()
    if sizes is None:
        sizes = case.sizes if case.sizes is not None else ((2, 4, 6, 8) if case.factor == 2 else range(1, 8))
    low, high = case.condition_range if conditions is None else conditions
    shapes = image_shapes(
        channels=st.integers(case.min_channels, case.max_channels),
        sizes=st.sampled_from(list(sizes)),
        divisible_by=case.channel_multiple,
        max_dims=case.max_dims,
    )
    strategy = layer_inputs(
        shapes=shapes,
        batch=st.integers(*batch),
        n_conditions=st.integers(low, high),
        condition_channels=st.integers(*case.condition_channels),
    )
    return data.draw(strategy, label="inputs")


def _perturbed(case: LayerCase, inputs: LayerInputs, data: Any, scale: float) -> nn.Module:
    module = case.make(inputs.dims_in, inputs.dims_c, inputs.seed, data.draw)
    return perturb_parameters(module, seed=inputs.seed, scale=scale)


def _changes_input(module: nn.Module, x: list[Tensor], c: list[Tensor]) -> bool:
    outs, _ = run_module(module, x, c)
    if [o.shape for o in outs] != [t.shape for t in x]:
        return True  # a reshaping layer (squeeze, split) changes its input by definition
    return not all(torch.allclose(o, t, atol=1e-6) for o, t in zip(outs, x))


def check_layer_properties(case: LayerCase, data: Any) -> None:
    """float64: every :func:`check_all` property (the autograd log-det included) in training and
    eval mode, and a perturbed layer that really transforms its input."""
    with default_dtype(torch.float64):
        inputs = draw_layer_inputs(case, data)
        module = _perturbed(case, inputs, data, case.perturb_scale)
        x, c = inputs.make()
        ran = check_all(module, x, c)
        if "logdet_matches_autograd" not in ran:
            raise AssertionError(f"{type(module).__name__}: the autograd log-det check did not run ({ran})")
        if case.is_nontrivial(module) and not _changes_input(module, x, c):
            raise AssertionError(
                f"{type(module).__name__}: the perturbed layer is the identity; every other check passes "
                "for an identity, so the case must build a layer that transforms (or set nontrivial=False)"
            )
        module.eval()  # eval mode (cached inverses of the 1x1 convs) must give the same results
        assert_invertible(module, x, c)
        assert_reverse_logdet_negates(module, x, c)


def check_layer_in_graph(case: LayerCase, data: Any) -> None:
    """float64: the layer built by a FrEIA 0.2 ``GraphINN`` node (``ConditionNode``s for its
    conditions) passes :func:`check_all` and equals the layer called directly."""
    with default_dtype(torch.float64):
        inputs = draw_layer_inputs(case, data)
        inp = InputNode(*inputs.shape, name="in")
        conds = [ConditionNode(*s, name=f"cond{i}") for i, s in enumerate(inputs.dims_c)]
        build = case.factory(seed=inputs.seed, draw=data.draw)
        with seeded(inputs.seed):
            node = Node(inp, build, {}, conditions=conds or None, name="layer")
        module = node.module
        dims = (list(getattr(module, "dims_in", inputs.dims_in)), list(getattr(module, "dims_c", inputs.dims_c)))
        if [[tuple(d) for d in ds] for ds in dims] != [inputs.dims_in, inputs.dims_c]:
            raise AssertionError(f"{type(module).__name__}: built with dims {dims}, the graph inferred {inputs}")
        outs = [OutputNode((node, i), name=f"out{i}") for i in range(len(node.outputs))]
        graph = GraphINN([inp, *conds, node, *outs], force_tuple_output=True)
        perturb_parameters(graph, seed=inputs.seed, scale=case.perturb_scale)
        x, c = inputs.make()
        check_all(graph, x, c)
        z_graph, j_graph = run_module(graph, x, c)
        z_mod, j_mod = run_module(module, x, c)
        if len(z_graph) != len(z_mod) or not all(torch.equal(a, b) for a, b in zip(z_graph, z_mod)):
            raise AssertionError(f"{type(module).__name__}: outputs differ between the GraphINN and a direct call")
        torch.testing.assert_close(j_graph, j_mod, rtol=0, atol=1e-12)


def check_layer_float32(case: LayerCase, data: Any) -> None:
    """float32 (built in float32): invertible to ``rtol=1e-5`` and reverse log-det negates, at the
    drawn size and at 16 x 12 (the layers are fully convolutional)."""
    inputs = draw_layer_inputs(case, data)
    with default_dtype(torch.float32):
        module = _perturbed(case, inputs, data, 0.1)
    x, c = inputs.make(dtype=torch.float32)
    big_x = [tensors((2, inputs.shape[0], *LARGE_SIZE), seed=inputs.seed, dtype=torch.float32)]
    big_c = [
        tensors((2, s[0], *LARGE_SIZE), seed=inputs.seed + 1 + i, dtype=torch.float32)
        for i, s in enumerate(inputs.dims_c)
    ]
    for xs, cs in ((x, c), (big_x, big_c)):
        assert_invertible(module, xs, cs, rtol=1e-5)
        assert_reverse_logdet_negates(module, xs, cs)


class _BadInput:
    """Calls a module with one kind of bad input and asserts a ``ValueError`` whose message starts
    with the layer's name and matches what the input did wrong."""

    def __init__(self, module: nn.Module, name: str):
        self.module, self.name = module, name

    def __call__(self, what: str, pattern: str, x: Any, c: Any, rev: bool = False, name: str | None = None) -> None:
        expected = "^" + re.escape(name or self.name) + pattern
        try:
            self.module(x, c=c, rev=rev)
        except ValueError as e:
            if not re.search(expected, str(e)):
                raise AssertionError(f"{self.name}, {what}: ValueError {str(e)!r} does not match {expected!r}") from e
            return
        except Exception as e:
            raise AssertionError(f"{self.name}, {what}: raised {type(e).__name__} instead of ValueError: {e}") from e
        raise AssertionError(f"{self.name}, {what}: no error (expected a ValueError matching {expected!r})")


def _with_value(t: Tensor, value: float, index: tuple[int, ...]) -> Tensor:
    bad = t.clone()
    bad[index] = value
    return bad


def _bad_input_setup(
    case: LayerCase, data: Any
) -> tuple[nn.Module, _BadInput, Tensor, list[Tensor], tuple[Tensor, ...]]:
    """A perturbed float64 layer on 4 x 4 inputs with a batch of at least 2, its input, conditions
    and forward outputs."""
    with default_dtype(torch.float64):
        inputs = draw_layer_inputs(case, data, sizes=(4,), batch=(2, 3))
        module = _perturbed(case, inputs, data, case.perturb_scale)
        (x,), c = inputs.make()
        outs, _ = run_module(module, [x], c)
    return module, _BadInput(module, case.error_name(module)), x, c, outs


def check_layer_bad_input(case: LayerCase, data: Any) -> None:
    """``ValueError("<Layer>: ...")`` for a wrong channel count or rank, a bare tensor, NaN / Inf
    forward or reverse, an indivisible spatial size, and missing / mis-shaped reverse inputs."""
    module, raises, x, c, outs = _bad_input_setup(case, data)
    batch, channels = x.shape[:2]
    cond = c or None
    raises("wrong channel count", ".*must have shape", [torch.randn(batch, channels + 1, 4, 4)], cond)
    raises("wrong rank", ".*must have shape", [torch.randn(batch, channels, 4)], cond)
    if isinstance(module, FlowModule):  # FrEIA's sequences take a bare tensor by design
        raises("bare tensor", ".*bare tensor", x, cond)
    for value in (float("nan"), float("inf")):
        raises(f"{value} in the input", ".*NaN or Inf", [_with_value(x, value, (1, 0, 2, 3))], cond)
        bad_out = _with_value(outs[0], value, (1, 0, 0, 0))
        raises(f"{value} in the reverse input", ".*NaN or Inf", [bad_out, *outs[1:]], cond, rev=True)
    if case.factor > 1:
        odd = [torch.randn(batch, channels, 4, 5)]
        raises("odd spatial size", f".*not divisible by {case.factor}", odd, cond, name=case.odd_name or None)
    if len(outs) > 1:
        k, last = len(outs), outs[-1]
        raises("a missing reverse input", f".*expected {k} reverse input", list(outs[:-1]), cond, rev=True)
        wider = [*outs[:-1], torch.cat([last, last[:, :1]], 1)]
        raises(
            "reverse input with another channel count",
            f".*reverse input {k - 1} must have shape",
            wider,
            cond,
            rev=True,
        )
        smaller = [*outs[:-1], last[:, :, :2]]
        raises("reverse inputs of different spatial sizes", ".*spatial size", smaller, cond, rev=True)


def check_layer_bad_conditions(case: LayerCase, data: Any) -> None:
    """``ValueError("<Layer>: ...")`` for missing, extra, mis-shaped (spatial size, channels,
    batch) and NaN / Inf conditions, and for a condition given to a layer built without any."""
    _, raises, x, c, _ = _bad_input_setup(case, data)
    if not c:
        raises("an unexpected condition", ".*expected 0 condition", [x], [torch.randn(x.shape[0], 2, 4, 4)])
        return
    n, c0, rest = len(c), c[0], c[1:]
    raises("missing conditions", f".*expected {n} condition", [x], None)
    raises("an extra condition", f".*expected {n} condition", [x], [*c, c0])
    raises("condition of another spatial size", ".*condition 0 must have shape", [x], [c0[:, :, :2, :2], *rest])
    wider = torch.cat([c0, c0[:, :1]], 1)
    raises("condition with another channel count", ".*condition 0 must have shape", [x], [wider, *rest])
    raises("condition of another batch size", ".*condition 0 must have shape", [x], [c0[:1], *rest])
    for value in (float("nan"), float("inf")):
        bad = [_with_value(c0, value, (0, 0, 0, 0)), *rest]
        raises(f"{value} in a condition", ".*condition 0 contains NaN or Inf", [x], bad)


LayerCheck = Callable[[LayerCase, Any], None]

#: the layer contract, by name: ``check(case, data)`` with Hypothesis' ``data``.
LAYER_CHECKS: dict[str, LayerCheck] = {
    "properties": check_layer_properties,
    "graph_node": check_layer_in_graph,
    "float32": check_layer_float32,
    "bad_input": check_layer_bad_input,
    "bad_conditions": check_layer_bad_conditions,
}


def run_hypothesis(check: Callable[[Any], None], *, max_examples: int | None = None) -> None:
    """Run ``check(data)`` as a Hypothesis test (``deadline=None``, no example database; other
    settings from the active profile, ``max_examples`` if given)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    overrides: dict[str, Any] = {"deadline": None, "database": None}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    suppress = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    test = given(data=st.data())(check)
    settings(parent=settings.default, suppress_health_check=suppress, **overrides)(test)()


def _bound(check: LayerCheck, case: LayerCase) -> Callable[[Any], None]:
    def run(data: Any) -> None:
        check(case, data)

    run.__name__ = run.__qualname__ = check.__name__
    return run


def check_layer(
    layer: LayerCase | str | type,
    *,
    checks: Sequence[str] | None = None,
    max_examples: int = 25,
    **case_options: Any,
) -> list[str]:
    """Run the layer contract on one layer; returns the names of the checks that ran.

    Args:
        layer: a coupling class (built like the hierarchy builder builds it, see
            :func:`~flowsr.testing.cases.coupling_case`), any other layer class (built as
            ``cls(dims_in, dims_c)``), a :class:`~flowsr.testing.cases.LayerCase`, or the name of a
            registered case.
        checks: names from :data:`LAYER_CHECKS` (default: all).
        max_examples: Hypothesis examples per check (25, as flowsr's CI; more for a thorough search).
        case_options: :class:`~flowsr.testing.cases.LayerCase` fields, e.g. ``conditions=1`` or
            ``options={...}`` (a coupling's own options).

    Raises:
        AssertionError: from the first failing check, after Hypothesis has shrunk the example
            (the falsifying example is printed).

    Example:
        >>> from flowsr.layers import AffineCoupling
        >>> check_layer(AffineCoupling, max_examples=2)
        ['properties', 'graph_node', 'float32', 'bad_input', 'bad_conditions']
    """
    case = as_case(layer, **case_options)
    names = list(LAYER_CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in LAYER_CHECKS]
    if unknown:
        raise ValueError(f"check_layer: unknown checks {unknown}; known: {list(LAYER_CHECKS)}")
    for name in names:
        run_hypothesis(_bound(LAYER_CHECKS[name], case), max_examples=max_examples)
    return names
