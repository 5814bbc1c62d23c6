"""The converter interface, its registry, and what every converter shares.

A converter turns the options and state dict of one official implementation into a flowsr
model. It implements :class:`OfficialConverter`:

* ``name`` and ``OFFICIAL_OPTIONS`` (the network options of the official configurations);
* ``matches(opt)``: whether ``opt`` describes one of its networks;
* ``spec_from_opt(opt)`` and ``model_from_opt(opt)``: the flowsr architecture (options are
  parsed once, here);
* ``key_map(model, official_keys)``: official key -> flowsr key, built from the model's own
  accessors (:meth:`~flowsr.models.hierarchy.Level.body_layer` and friends, turned into
  state-dict keys by :func:`state_keys`), never from container attribute names.

:func:`load_official` picks the converter whose ``matches`` accepts the options.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowsr.models.base import FlowSRModel

__all__ = [
    "CONVERTERS",
    "OfficialConverter",
    "converter_for",
    "load_into",
    "flat_body_index",
    "load_official",
    "official_presets",
    "read_state_dict",
    "register_converter",
    "state_keys",
]

#: converter name -> converter class.
CONVERTERS: dict[str, type[OfficialConverter]] = {}


class OfficialConverter:
    """Interface of a converter from one official implementation (see the module docstring)."""

    name: ClassVar[str] = ""
    #: preset name -> the official network options of that configuration.
    OFFICIAL_OPTIONS: ClassVar[dict[str, dict]] = {}

    @classmethod
    def matches(cls, opt: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    @classmethod
    def spec_from_opt(cls, opt: Mapping[str, Any]) -> Any:
        """The flowsr spec of the network the options describe."""
        raise NotImplementedError

    @classmethod
    def model_from_opt(cls, opt: Mapping[str, Any]) -> FlowSRModel:
        """An untrained flowsr model with the architecture of the options."""
        raise NotImplementedError

    @classmethod
    def key_map(cls, model: FlowSRModel, official_keys: list[str]) -> dict[str, str]:
        """Every official key -> the flowsr key of ``model`` it loads into (``ValueError`` on an
        unknown key)."""
        raise NotImplementedError


def register_converter(cls: type[OfficialConverter]) -> type[OfficialConverter]:
    """Class decorator: make a converter available to :func:`load_official` and the CLI."""
    if not cls.name:
        raise ValueError(f"register_converter: {cls.__name__} needs a name")
    CONVERTERS[cls.name] = cls
    return cls


def converter_for(opt: Mapping[str, Any]) -> type[OfficialConverter]:
    """The registered converter that understands ``opt``."""
    if not isinstance(opt, Mapping):
        raise ValueError(f"official options must be a mapping, got {type(opt).__name__}")
    for conv in CONVERTERS.values():
        if conv.matches(opt):
            return conv
    try:
        which = opt["network_G"]["which_model_G"]
    except (KeyError, TypeError):
        raise ValueError("official options must contain network_G.which_model_G") from None
    raise ValueError(f"unsupported official model {which!r}; converters: {', '.join(sorted(CONVERTERS))}")


def official_presets() -> dict[str, dict]:
    """``{"converter:preset": options}`` for every official configuration of every converter."""
    return {
        f"{name}:{preset}": opt for name, conv in CONVERTERS.items() for preset, opt in conv.OFFICIAL_OPTIONS.items()
    }


def flat_body_index(model: FlowSRModel, parameter_free_after: int) -> dict[int, nn.Module]:
    """Official flat layer index -> flowsr layer, for official code that keeps the main flow of all
    levels in one list: per level the squeeze (index 0 of the level), its steps, then
    ``parameter_free_after`` layers without parameters (HCFlow's split: 1; IRN: 0)."""
    flat: dict[int, nn.Module] = {}
    start = 0
    for level in model.flow.levels:
        n = len(level.body.module_list)
        for p in range(n):
            flat[start + p] = level.body_layer(p)
        start += n + parameter_free_after
    return flat


def state_keys(root: nn.Module) -> Callable[[nn.Module, str], str]:
    """``key(module, name)``: the state-dict key of entry ``name`` of ``module`` inside ``root``
    (e.g. ``key(level.body_layer(3), "actnorm.bias")`` -> ``"flow.levels.0.body.module_list.3.actnorm.bias"``)."""
    prefixes = {id(m): p for p, m in root.named_modules()}

    def key(module: nn.Module, name: str) -> str:
        if id(module) not in prefixes:
            raise ValueError(f"{type(module).__name__} is not a submodule of {type(root).__name__}")
        prefix = prefixes[id(module)]
        return f"{prefix}.{name}" if prefix else name

    return key


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A plain ``{key: tensor}`` dict from a ``.pth`` path or a mapping, ``module.`` stripped.

    Files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
    """
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
    else:
        try:
            state = torch.load(os.fspath(path_or_state_dict), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"{path_or_state_dict}: not a plain checkpoint of tensors; refusing to unpickle other objects "
                f"({str(e).splitlines()[0]})"
            ) from None
        if not isinstance(state, Mapping):
            raise ValueError(f"{path_or_state_dict}: expected a state dict, found {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if not isinstance(v, Tensor):
            raise ValueError(f"official checkpoint entry {k!r} is not a tensor ({type(v).__name__})")
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def load_into(model: nn.Module, state: Mapping[str, Tensor], mapping: Mapping[str, str]) -> nn.Module:
    """Copy ``state`` into ``model`` through ``mapping`` (official key -> flowsr key), strictly:
    every key once, shapes equal, values finite."""
    target = model.state_dict()
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        new = mapping[key]
        if new in renamed:
            raise ValueError(f"official keys map twice onto {new!r} (second: {key!r})")
        if new not in target:
            raise ValueError(f"official key {key!r} has no counterpart in the flowsr model (looked for {new!r})")
        if tuple(target[new].shape) != tuple(value.shape):
            raise ValueError(
                f"official key {key!r} has shape {tuple(value.shape)}, the model expects {tuple(target[new].shape)}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"official checkpoint entry {key!r} holds NaN or Inf values: the checkpoint is damaged")
        renamed[new] = value
    missing = [k for k in target if k not in renamed]
    if missing:
        raise ValueError(
            f"official checkpoint is missing {len(missing)} key(s): no official key fills flowsr's {missing[:5]}"
        )
    model.load_state_dict(renamed, strict=True)
    return model


def load_official(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], opt: Mapping[str, Any]) -> FlowSRModel:
    """Build the flowsr model described by the official ``opt`` and load the official weights.

    ``opt`` is the official network options: the structure of the official YAML with ``scale``,
    ``quant`` (SR) and ``network_G``. A missing, unexpected, mis-shaped or non-finite entry is a
    :class:`ValueError` that names it. Returns the model in eval mode (ActNorms count as
    initialised).
    """
    conv = converter_for(opt)
    state = read_state_dict(path_or_state_dict)
    model = conv.model_from_opt(opt)
    return load_into(model, state, conv.key_map(model, list(state))).eval()
