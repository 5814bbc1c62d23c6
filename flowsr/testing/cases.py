"""The registry of layer cases: how to build each layer for the contract run.

A :class:`LayerCase` says how to build a layer for drawn input shapes (and which inputs it
accepts); the layer contract (:mod:`flowsr.testing.contract`) runs every case in
:func:`layer_cases` through the same checks. Adding a layer to the run is one line::

    register_layer_case("my_layer", LayerCase(MyLayer, conditions=1))

Every coupling registered with :func:`flowsr.layers.register_coupling` joins the run without a
line of its own: :func:`layer_cases` adds a ``"coupling:<name>"`` case that builds it the way
the hierarchy builder does (:meth:`~flowsr.layers.CouplingBase.for_step` with a registered
subnet and a drawn step), including couplings registered after this module was imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from flowsr.layers.registry import COUPLINGS, SUBNETS, StepInfo
from flowsr.testing.strategies import import_strategies

if TYPE_CHECKING:  # pragma: no cover - typing only
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "LAYER_CASES",
    "Draw",
    "LayerCase",
    "as_case",
    "coupling_case",
    "layer_cases",
    "register_layer_case",
    "seeded",
]

T = TypeVar("T")
#: ``draw(strategy) -> value``: Hypothesis' ``data.draw``, handed to a case's ``build`` so it can
#: draw its hyper-parameters (they shrink with the rest of a failing example).
Draw = Callable[["SearchStrategy[T]"], T]


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """How to build one layer (or one family of configurations of it) for the contract checks.

    Attributes:
        build: ``build(dims_in, dims_c=None, *, seed, draw) -> module``, called like a FrEIA node
            calls a module class (``dims_c`` only when there are conditions); ``seed`` (an int
            for layers with a seeded init) and ``draw`` (to draw hyper-parameters) are passed
            only if ``build`` accepts them, so a layer class itself is a valid ``build``.
        layer: the class under test (default: ``build`` when it is a class); every layer class
            of :mod:`flowsr.layers` must be the ``layer`` of some case.
        conditions: number of condition tensors, or an inclusive range ``(low, high)``.
        min_channels, max_channels: input channel counts drawn.
        channel_multiple: channel counts are rounded up to a multiple of this.
        factor: spatial sizes must be divisible by this (2 for squeezes).
        sizes: spatial sizes drawn (default ``2, 4, 6, 8`` for ``factor=2``, else ``1 .. 7``).
        max_dims: largest ``C * H * W`` of one sample (the autograd log-det check builds a
            ``D x D`` Jacobian).
        condition_channels: inclusive range of each condition's channel count.
        perturb_scale: std of the weight noise that moves zero-initialised layers off the identity.
        name: what the layer's error messages start with (default: the built module's class name).
        odd_name: the name in the "not divisible by 2" message, if another layer inside raises it.
        nontrivial: whether the perturbed layer must change its input (an identity passes every
            other check), or a predicate on the built module deciding it.
    """

    build: Callable[..., nn.Module]
    layer: type | None = None
    conditions: int | tuple[int, int] = 0
    min_channels: int = 1
    max_channels: int = 8
    channel_multiple: int = 1
    factor: int = 1
    sizes: Sequence[int] | None = None
    max_dims: int = 512
    condition_channels: tuple[int, int] = (1, 4)
    perturb_scale: float = 0.2
    name: str = ""
    odd_name: str = ""
    nontrivial: bool | Callable[[nn.Module], bool] = True

    def __post_init__(self) -> None:
        if self.layer is None and isinstance(self.build, type):
            object.__setattr__(self, "layer", self.build)
        low, high = self.condition_range
        if not 0 <= low <= high:
            raise ValueError(f"LayerCase: conditions must be an int >= 0 or a range (low, high), got {self.conditions}")
        if self.min_channels < 1 or self.max_channels < self.min_channels:
            raise ValueError(
                f"LayerCase: need 1 <= min_channels <= max_channels, got {self.min_channels}, {self.max_channels}"
            )

    @property
    def condition_range(self) -> tuple[int, int]:
        """``(low, high)`` number of conditions."""
        if isinstance(self.conditions, int):
            return self.conditions, self.conditions
        return int(self.conditions[0]), int(self.conditions[1])

    def make(
        self, dims_in: Sequence[Sequence[int]], dims_c: Sequence[Sequence[int]], seed: int, draw: Draw
    ) -> nn.Module:
        """The module for these shapes, built with the global RNG seeded from ``seed`` (subnets
        initialise from it; the RNG is restored afterwards)."""
        build = self.factory(seed=seed, draw=draw)
        with seeded(seed):
            return build(list(dims_in), list(dims_c) or None)

    def factory(self, *, seed: int, draw: Draw) -> Callable[..., nn.Module]:
        """``build`` as a FrEIA node's module type ``(dims_in, dims_c=None) -> module``, with
        ``seed % 1000`` and ``draw`` bound where it takes them."""
        accepted = _keyword_arguments(self.build)
        extras = {k: v for k, v in (("seed", seed % 1000), ("draw", draw)) if accepted is None or k in accepted}

        def build(dims_in, dims_c=None):
            # dims_c only when there are conditions, as a FrEIA node passes it
            return self.build(dims_in, **({"dims_c": dims_c} if dims_c else {}), **extras)

        build.__name__ = build.__qualname__ = getattr(self.build, "__name__", "build")
        return build

    def error_name(self, module: nn.Module) -> str:
        """What the layer's error messages start with."""
        return self.name or getattr(module, "_name", None) or type(module).__name__

    def is_nontrivial(self, module: nn.Module) -> bool:
        """Whether the contract requires the perturbed ``module`` to change its input."""
        return self.nontrivial(module) if callable(self.nontrivial) else bool(self.nontrivial)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global torch RNG seeded with ``seed`` inside, restored afterwards (layer construction
    draws initial weights from it; a fixed seed makes a drawn example reproducible)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _keyword_arguments(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword argument names of ``fn`` (``None``: it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


#: case name -> :class:`LayerCase`; :mod:`flowsr.testing` registers flowsr's own layers
#: (:mod:`flowsr.testing.builtin_cases`) when it is imported.
LAYER_CASES: dict[str, LayerCase] = {}


def register_layer_case(name: str, case: LayerCase | type) -> LayerCase:
    """Add a case to the contract run (a class is wrapped as ``LayerCase(cls)``); returns the case.

    Re-registering a name replaces the case only if it builds the same way (a re-imported test
    module); another case under a taken name is an error.
    """
    case = case if isinstance(case, LayerCase) else LayerCase(case)
    old = LAYER_CASES.get(name)
    if old is not None and _qualname(old.build) != _qualname(case.build):
        raise ValueError(f"a layer case named {name!r} is already registered (built by {_qualname(old.build)})")
    LAYER_CASES[name] = case
    return case


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def coupling_case(cls: type, *, options: Mapping[str, Any] | None = None) -> LayerCase:
    """The case of a registered-style coupling: built like the hierarchy builder builds it.

    ``cls.for_step(dims_in, dims_c, subnet_constructor=..., step=StepInfo(index, lr_channels),
    options=options)`` with a drawn registered subnet of width 4, a drawn step index (0 or 1)
    and LR channel count (``1 .. min(3, C - 1)``), and 0 to 2 conditions.
    """
    options = dict(options or {})

    def build(dims_in, dims_c=None, *, draw: Draw) -> nn.Module:
        st = import_strategies()
        channels = dims_in[0][0]
        constructor, width = SUBNETS[draw(st.sampled_from(sorted(SUBNETS)), label="subnet")]
        step = StepInfo(
            index=draw(st.integers(0, 1), label="step index"),
            lr_channels=draw(st.integers(1, max(1, min(3, channels - 1))), label="lr_channels"),
        )
        subnet = functools.partial(constructor, **{width: 4})
        return cls.for_step(dims_in, dims_c, subnet_constructor=subnet, step=step, options=options)

    build.__name__ = build.__qualname__ = f"{cls.__name__}.for_step"
    return LayerCase(
        build,
        layer=cls,
        conditions=(0, 2),
        min_channels=2,
        max_channels=9,
        sizes=range(1, 6),
        max_dims=320,
        condition_channels=(1, 3),
        perturb_scale=0.15,
    )


def layer_cases() -> dict[str, LayerCase]:
    """Every case of the contract run: :data:`LAYER_CASES` and one ``"coupling:<name>"`` case per
    coupling registered in :data:`flowsr.layers.COUPLINGS` (read now, so later registrations count)."""
    cases = dict(LAYER_CASES)
    for name, cls in sorted(COUPLINGS.items()):
        cases.setdefault(f"coupling:{name}", coupling_case(cls))
    return cases


def as_case(layer: LayerCase | str | type, **case_options: Any) -> LayerCase:
    """A case from a case, a registered case name, a coupling class (:func:`coupling_case`) or any
    other layer class (``LayerCase(cls, **case_options)``)."""
    if isinstance(layer, LayerCase):
        return dataclasses.replace(layer, **case_options) if case_options else layer
    if isinstance(layer, str):
        cases = layer_cases()
        if layer not in cases:
            raise ValueError(f"unknown layer case {layer!r}; registered: {sorted(cases)}")
        return as_case(cases[layer], **case_options)
    if isinstance(layer, type) and hasattr(layer, "for_step"):
        options = case_options.pop("options", None)
        return as_case(coupling_case(layer, options=options), **case_options)
    if callable(layer):
        return LayerCase(layer, **case_options)
    raise TypeError(f"expected a LayerCase, a case name or a layer class, got {type(layer).__name__}")
