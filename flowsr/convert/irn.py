"""Official IRN (pkuxmq/Invertible-Image-Rescaling) options and state dicts -> flowsr :class:`~flowsr.models.irn.IRN`.

Written from the re-implementation spec (``srflow-irn-spec.md``, Part B), not from the official
code. The official generator ``InvRescaleNet`` keeps one flat list ``operations``: per x2 stage
``s`` a Haar layer followed by ``block_num[s]`` InvBlockExp blocks, so stage ``s`` starts at
``sum_{m<s} (block_num[m] + 1)``. flowsr keeps each stage as one hierarchy level
(``flow.levels.<s>.body`` = Haar + blocks); this module translates the names::

    operations.<i>.haar_weights            flow.levels.<s>.body.module_list.0.haar_weights
    operations.<i>.F.conv<k>.{weight,bias}  flow.levels.<s>.body.module_list.<p>.coupling.phi.conv<k>.*
    operations.<i>.G.conv<k>.{weight,bias}  ....coupling.eta.conv<k>.*
    operations.<i>.H.conv<k>.{weight,bias}  ....coupling.rho.conv<k>.*

with ``p = i - start(s)`` (0 = the Haar layer, 1..block_num[s] = the blocks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from flowsr.convert.base import OfficialConverter, flat_body_index, register_converter, state_keys
from flowsr.models.irn import IRN, irn_spec
from flowsr.models.spec import HierarchySpec

__all__ = ["OFFICIAL_OPTIONS", "IRNConverter"]

_SUBNETS = {"F": "phi", "G": "eta", "H": "rho"}


def _is_irn_options(opt: Mapping[str, Any]) -> bool:
    """Whether ``opt`` describes an IRN generator (``network_G.which_model_G`` is ``{subnet_type: ...}``)."""
    try:
        which = opt["network_G"]["which_model_G"]
    except (KeyError, TypeError):
        return False
    return isinstance(which, Mapping) and "subnet_type" in which


def _spec_from_opt(opt: Mapping[str, Any]) -> HierarchySpec:
    """Translate the official options (``scale``, ``network_G``) into the IRN :class:`HierarchySpec`.

    Uses ``network_G.{which_model_G.subnet_type, scale, block_num, in_nc, out_nc, gc}``
    (``gc`` defaults to the official 32). Only the ``DBNet`` subnet exists officially.
    """
    try:
        net = opt["network_G"]
        which = net["which_model_G"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"official IRN options need network_G.which_model_G; missing {e}") from None
    if not isinstance(which, Mapping) or which.get("subnet_type") != "DBNet":
        raise ValueError(
            f"official IRN option network_G.which_model_G={which!r} is not supported "
            "(expected {'subnet_type': 'DBNet'})"
        )
    scale = net.get("scale", opt.get("scale"))
    if scale is None:
        raise ValueError("official IRN options need network_G.scale (or scale)")
    scale = int(scale)
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"official IRN options: scale must be a power of two >= 2, got {scale}")
    if "scale" in opt and int(opt["scale"]) != scale:
        raise ValueError(f"official IRN options: scale {opt['scale']} differs from network_G.scale {scale}")
    if "block_num" not in net:
        raise ValueError("official IRN options need network_G.block_num")
    levels = int(math.log2(scale))
    blocks = net["block_num"]
    if isinstance(blocks, int):
        blocks = [blocks] * levels
    if not isinstance(blocks, (list, tuple)) or len(blocks) != levels or any(int(b) < 0 for b in blocks):
        raise ValueError(
            f"official IRN option network_G.block_num must be a list of {levels} block counts for scale {scale}, "
            f"got {net['block_num']!r}"
        )
    return irn_spec(
        scale,
        block_num=[int(b) for b in blocks],
        gc=int(net.get("gc", 32)),
        in_channels=int(net.get("in_nc", 3)),
        out_channels=int(net.get("out_nc", 3)),
    )


@register_converter
class IRNConverter(OfficialConverter):
    """Official IRN options and weights -> :class:`~flowsr.models.IRN`."""

    name = "irn"

    @classmethod
    def matches(cls, opt: Mapping[str, Any]) -> bool:
        return _is_irn_options(opt)

    @classmethod
    def spec_from_opt(cls, opt: Mapping[str, Any]) -> HierarchySpec:
        return _spec_from_opt(opt)

    @classmethod
    def model_from_opt(cls, opt: Mapping[str, Any]) -> IRN:
        return IRN(_spec_from_opt(opt))

    @classmethod
    def key_map(cls, model: IRN, official_keys: list[str]) -> dict[str, str]:
        flat = flat_body_index(model, 0)  # official ``operations``: per level the Haar layer, then the blocks
        at = state_keys(model)
        out: dict[str, str] = {}
        for key in official_keys:
            m = re.fullmatch(r"operations\.(\d+)\.(.+)", key)
            if m and int(m.group(1)) in flat:
                layer, rest = flat[int(m.group(1))], m.group(2)
                if rest == "haar_weights" and hasattr(layer, "haar_weights"):
                    out[key] = at(layer, "haar_weights")
                    continue
                r = re.fullmatch(r"([FGH])\.(conv[1-5]\.(?:weight|bias))", rest)
                if r and getattr(layer, "coupling", None) is not None:
                    out[key] = at(layer.coupling, f"{_SUBNETS[r.group(1)]}.{r.group(2)}")
                    continue
            raise ValueError(f"unexpected key in official IRN state dict: {key!r}")
        return out


def _official(scale: int) -> dict:
    levels = int(math.log2(scale))
    return {
        "model": "IRN",
        "scale": scale,
        "network_G": {
            "which_model_G": {"subnet_type": "DBNet"},
            "in_nc": 3,
            "out_nc": 3,
            "block_num": [8] * levels,
            "scale": scale,
            "init": "xavier",
        },
    }


#: Network options of the official test configurations ``test_IRN_x{2,4,8}.yml`` (the train
#: configurations, IRN+ included, build the same generator).
OFFICIAL_OPTIONS: dict[str, dict] = {"IRN_x2": _official(2), "IRN_x4": _official(4), "IRN_x8": _official(8)}

IRNConverter.OFFICIAL_OPTIONS = OFFICIAL_OPTIONS
