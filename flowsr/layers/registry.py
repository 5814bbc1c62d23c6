"""Registries that let the hierarchy builder use layers by name, including layers defined
outside flowsr.

A :class:`~flowsr.models.spec.HierarchySpec` names its coupling (``coupling.kind``) and subnet
(``coupling.subnet``) as strings, so that specs stay plain data (YAML, JSON, checkpoint
metadata). A coupling class becomes nameable with::

    @register_coupling("additive")
    class AdditiveCoupling(CouplingBase): ...

and a subnet constructor with ``register_subnet("name", cls, width="hidden")``. Registering
is all a new layer needs: nothing in flowsr is edited. The module that registers must be
imported before a spec naming it is built (e.g. ``imports:`` in a training recipe).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = [
    "COUPLINGS",
    "SUBNETS",
    "StepInfo",
    "check_options",
    "get_coupling",
    "get_subnet",
    "register_coupling",
    "register_subnet",
]

#: coupling name -> coupling class (a :class:`~flowsr.layers.coupling.CouplingBase` subclass).
COUPLINGS: dict[str, type] = {}
#: subnet name -> ``(constructor class, name of its width argument)``.
SUBNETS: dict[str, tuple[Callable[..., nn.Module], str]] = {}


@dataclass(frozen=True)
class StepInfo:
    """What the hierarchy builder tells a coupling about the step it is built for.

    Attributes:
        index: position of the step in its flow (0-based); HCFlow's three-shift coupling
            alternates its direction with it.
        lr_channels: channels of the LR image (``HierarchySpec.out_channels``); couplings that
            treat the leading "LR" channels specially split there.
    """

    index: int
    lr_channels: int


def register_coupling(name: str) -> Callable[[type], type]:
    """Class decorator: make a coupling usable as ``CouplingSpec(kind=name)``.

    Re-registering a name with another class is an error (two plugins would silently shadow
    each other); registering the same class again (a re-imported module) is allowed.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_coupling: name must be a non-empty string, got {name!r}")

    def decorate(cls: type) -> type:
        if not hasattr(cls, "for_step"):
            raise TypeError(f"register_coupling({name!r}): {cls.__name__} must subclass CouplingBase (for_step)")
        _register(COUPLINGS, "coupling", name, cls)
        return cls

    return decorate


def register_subnet(name: str, constructor: Callable[..., nn.Module], width: str = "hidden") -> None:
    """Make ``constructor(c_in, c_out, **{width: hidden})`` usable as ``CouplingSpec(subnet=name)``."""
    if width not in inspect.signature(constructor).parameters:
        raise ValueError(f"register_subnet({name!r}): {constructor!r} has no argument {width!r}")
    _register(SUBNETS, "subnet", name, (constructor, width))


def _register(table: dict, what: str, name: str, value: Any) -> None:
    old = table.get(name)
    if old is not None and _qualname(old) != _qualname(value):
        raise ValueError(f"a {what} named {name!r} is already registered ({_qualname(old)})")
    table[name] = value


def _qualname(value: Any) -> str:
    obj = value[0] if isinstance(value, tuple) else value
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def get_coupling(name: str) -> type:
    """The coupling class registered as ``name``."""
    if name not in COUPLINGS:
        raise ValueError(
            f"unknown coupling kind {name!r}; registered: {sorted(COUPLINGS)} "
            "(a coupling defined elsewhere must be imported before it is used)"
        )
    return COUPLINGS[name]


def get_subnet(name: str) -> tuple[Callable[..., nn.Module], str]:
    """``(constructor, width argument)`` registered as ``name``."""
    if name not in SUBNETS:
        raise ValueError(f"unknown subnet {name!r}; registered: {sorted(SUBNETS)}")
    return SUBNETS[name]


def check_options(
    owner: str, constructor: Callable[..., Any], options: Mapping[str, Any], fixed: tuple[str, ...] = ()
) -> None:
    """``ValueError`` unless every key of ``options`` is a keyword argument of ``constructor``
    that the caller does not set itself (``fixed``): an option a layer would ignore, or one it
    does not have, is a mistake in the spec, not something to drop silently."""
    params = inspect.signature(constructor).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = None
    else:
        accepted = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        accepted -= {"self", "dims_in", "dims_c", *fixed}
    for key in options:
        if key in fixed or (accepted is not None and key not in accepted):
            allowed = "none" if not accepted else ", ".join(sorted(accepted))
            raise ValueError(f"{owner} takes no option {key!r} (its options: {allowed})")
