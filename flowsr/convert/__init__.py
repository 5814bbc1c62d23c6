"""Load official HCFlow, SRFlow and IRN checkpoints into flowsr models.

>>> model = load_official("SR_DF2K_X4_HCFlow++.pth", opt)     # doctest: +SKIP

``opt`` is the official network options: the structure of the official YAML with ``scale``,
``quant`` (SR) and ``network_G``. Files are read with ``torch.load(..., weights_only=True)``,
so a checkpoint can never run code; a leading ``module.`` (DataParallel) is stripped.
Every official key must be consumed exactly once: a missing, unexpected or mis-shaped key is
a :class:`ValueError` that names it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.convert.hcflow import hcflow_from_opt, hcflow_key_map
from flowsr.convert.irn import irn_from_opt, irn_key_map, is_irn_options
from flowsr.convert.srflow import srflow_from_opt, srflow_key_map

__all__ = ["load_official", "read_state_dict"]


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A plain ``{key: tensor}`` dict from a ``.pth`` path or a mapping, ``module.`` stripped."""
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


def _family(opt: Mapping[str, Any]) -> str:
    try:
        which = opt["network_G"]["which_model_G"]
    except (KeyError, TypeError):
        raise ValueError("official options must contain network_G.which_model_G") from None
    if is_irn_options(opt):  # IRN: which_model_G is a mapping {subnet_type: DBNet}
        return "irn"
    if which in ("HCFlowNet_SR", "HCFlowNet_Rescaling"):
        return "hcflow"
    if which == "SRFlowNet":
        return "srflow"
    raise ValueError(f"unsupported official model {which!r}")


def load_into(model: nn.Module, state: Mapping[str, Tensor], mapping: Mapping[str, str]) -> nn.Module:
    """Copy ``state`` into ``model`` through ``mapping`` (official key -> flowsr key), strictly."""
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
        renamed[new] = value
    missing = [k for k in target if k not in renamed]
    if missing:
        raise ValueError(
            f"official checkpoint is missing {len(missing)} key(s): no official key fills flowsr's {missing[:5]}"
        )
    model.load_state_dict(renamed, strict=True)
    return model


def load_official(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], opt: Mapping[str, Any]) -> nn.Module:
    """Build the flowsr model described by the official ``opt`` and load the official weights.

    Returns the model in eval mode (ActNorms count as initialised).
    """
    state = read_state_dict(path_or_state_dict)
    family = _family(opt)
    if family == "hcflow":
        model = hcflow_from_opt(opt)
        mapping = hcflow_key_map(opt, list(state))
    elif family == "srflow":
        model = srflow_from_opt(opt)
        mapping = srflow_key_map(opt, list(state))
    elif family == "irn":
        model = irn_from_opt(opt)
        mapping = irn_key_map(opt, list(state))
    return load_into(model, state, mapping).eval()
