"""Official HCFlow (JingyunLiang/HCFlow) options and state dicts -> flowsr models.

The official generator keeps the main flow of all levels in one flat list
``flow.layers.<i>`` (per level: squeeze or Haar, ``K_l - A_l`` steps, split) and each level's
conditional part in ``flow.level<l>_condFlow``. flowsr keeps each level together
(``flow.levels.<l>.{body,features,latent}``); this module translates the names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowsr.convert.base import OfficialConverter, flat_body_index, register_converter, state_keys
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec

__all__ = ["OFFICIAL_OPTIONS", "HCFlowConverter"]

_COUPLINGS = {"Affine": "affine", "Affine3shift": "three_shift"}
_SUBNETS = {"FCN": "fcn", "DenseBlock": "dense"}
_PERMUTATIONS = {"invconv": "invconv", "none": "none", None: "none"}
_MODELS = {"HCFlowNet_SR": HCFlowSR, "HCFlowNet_Rescaling": HCFlowRescaling}


def _per_level(v: Any, levels: int, name: str) -> list[int]:
    if isinstance(v, int):
        return [v] * levels
    if isinstance(v, (list, tuple)) and len(v) == levels:
        return [int(x) for x in v]
    raise ValueError(f"official option {name} must be an int or a list of {levels} ints, got {v!r}")


def _compact(values: list[int]) -> int | list[int]:
    """A per-level list with one repeated value is written as that value (as the presets do)."""
    return values[0] if len(set(values)) == 1 else values


def _lookup(table: Mapping, value: Any, name: str) -> Any:
    if value not in table:
        raise ValueError(
            f"official option {name}={value!r} is not supported; expected one of {sorted(map(str, table))}"
        )
    return table[value]


def _network_options(opt: Mapping[str, Any]) -> tuple[Mapping, Mapping, Mapping]:
    try:
        net = opt["network_G"]
        down = net["flowDownsampler"]
        split = down["splitOff"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"official HCFlow options need network_G.flowDownsampler.splitOff; missing {e}") from None
    return net, down, split


def _spec_from_opt(opt: Mapping[str, Any]) -> HierarchySpec:
    net, down, split = _network_options(opt)
    sr = net.get("which_model_G") == "HCFlowNet_SR"
    levels = int(down["L"])
    if "scale" in opt and int(opt["scale"]) != 2**levels:
        raise ValueError(f"official options: scale {opt['scale']} does not match L={levels} (scale must be 2^L)")
    K = _per_level(down["K"], levels, "flowDownsampler.K")
    A = _per_level(split.get("after_flowstep", 0), levels, "splitOff.after_flowstep")
    if any(a > k for a, k in zip(A, K)):
        raise ValueError(f"official options: after_flowstep {A} exceeds K {K}")
    nb = list(split["RRDB_nb"])
    return HierarchySpec(
        in_channels=int(net.get("in_nc", 3)),
        out_channels=int(net.get("out_nc", 3)),
        levels=levels,
        steps=_compact([k - a for k, a in zip(K, A)]),
        squeeze="haar" if down.get("squeeze") == "haar" else "checkerboard",
        permutation=_lookup(_PERMUTATIONS, down.get("flow_permutation"), "flowDownsampler.flow_permutation"),
        coupling=CouplingSpec(
            kind=_lookup(_COUPLINGS, down["flow_coupling"], "flowDownsampler.flow_coupling"),
            subnet=_lookup(_SUBNETS, down["nn_module"], "flowDownsampler.nn_module"),
            hidden=int(down["hidden_channels"]),
            scale="atan",
        ),
        latent=LatentSpec(
            steps=_compact(A),
            permutation=_lookup(_PERMUTATIONS, split.get("flow_permutation"), "splitOff.flow_permutation"),
            coupling=CouplingSpec(
                kind=_lookup(_COUPLINGS, split.get("flow_coupling", "Affine"), "splitOff.flow_coupling"),
                subnet=_lookup(_SUBNETS, split.get("nn_module", "FCN"), "splitOff.nn_module"),
                hidden=int(split["hidden_channels"]),
                scale="atan",
            ),
            prior="exp" if sr else "atan",
        ),
        features=FeatureSpec(kind="rrdb", nf=int(split["RRDB_nf"]), gc=int(split["RRDB_gc"]), nb=nb, concat=sr),
    )


def _step_part(rest: str) -> str:
    """Official names inside a flow step -> flowsr names (only the coupling's subnet differs)."""
    return re.sub(r"^affine\.f\.", "coupling.subnet.", rest)


@register_converter
class HCFlowConverter(OfficialConverter):
    """Official HCFlow options and weights -> :class:`~flowsr.models.HCFlowSR` /
    :class:`~flowsr.models.HCFlowRescaling`."""

    name = "hcflow"

    @classmethod
    def matches(cls, opt: Mapping[str, Any]) -> bool:
        try:
            return opt["network_G"]["which_model_G"] in _MODELS
        except (KeyError, TypeError):
            return False

    @classmethod
    def spec_from_opt(cls, opt: Mapping[str, Any]) -> HierarchySpec:
        """Translate the official network options (``scale``, ``network_G``) into a spec."""
        return _spec_from_opt(opt)

    @classmethod
    def model_from_opt(cls, opt: Mapping[str, Any]) -> HCFlowSR | HCFlowRescaling:
        net, _, _ = _network_options(opt)
        which = net.get("which_model_G")
        if which not in _MODELS:
            raise ValueError(f"official HCFlow options: unknown which_model_G {which!r}")
        spec = _spec_from_opt(opt)
        if which == "HCFlowNet_SR":
            return HCFlowSR(spec, quant=int(opt.get("quant", 64)))
        return HCFlowRescaling(spec)

    @classmethod
    def key_map(cls, model: HCFlowSR | HCFlowRescaling, official_keys: list[str]) -> dict[str, str]:
        levels = model.flow.levels
        flat = flat_body_index(model, 1)  # per level: squeeze / Haar, steps, the parameter-free split
        at = state_keys(model)
        out: dict[str, str] = {}
        for key in official_keys:
            m = re.fullmatch(r"flow\.layers\.(\d+)\.(.+)", key)
            if m and int(m.group(1)) in flat:
                out[key] = at(flat[int(m.group(1))], _step_part(m.group(2)))
                continue
            m = re.fullmatch(r"flow\.level(\d+)_condFlow\.(.+)", key)
            if m and int(m.group(1)) < len(levels) and levels[int(m.group(1))].features is not None:
                level, rest = levels[int(m.group(1))], m.group(2)
                r = re.fullmatch(r"RRDB_trunk(\d)\.(\d+)\.RDB(\d)\.(.+)", rest)
                if r:
                    out[key] = at(level.features, f"trunk{r.group(1)}.{r.group(2)}.rdb{r.group(3)}.{r.group(4)}")
                    continue
                r = re.fullmatch(r"(conv_first|trunk_conv1)\.(.+)", rest)
                if r:
                    name = "trunk_conv" if r.group(1) == "trunk_conv1" else "conv_first"
                    out[key] = at(level.features, f"{name}.{r.group(2)}")
                    continue
                r = re.fullmatch(r"additional_flow_steps\.(\d+)\.(.+)", rest)
                if r:
                    out[key] = at(level.latent_layer(int(r.group(1))), _step_part(r.group(2)))
                    continue
                r = re.fullmatch(r"f\.(weight|bias|logs)", rest)
                if r:
                    prior = level.latent_layer(len(level.latent.module_list) - 1)
                    out[key] = at(prior, f"prior.{r.group(1)}")
                    continue
            raise ValueError(f"unexpected key in official HCFlow state dict: {key!r}")
        return out


def _official_net(which: str, down: dict, split: dict) -> dict:
    return {
        "which_model_G": which,
        "in_nc": 3,
        "out_nc": 3,
        "act_norm_start_step": 100,
        "flowDownsampler": {**down, "splitOff": split},
    }


_SR_DOWN = {
    "flow_permutation": "invconv",
    "flow_coupling": "Affine",
    "nn_module": "FCN",
    "hidden_channels": 64,
    "cond_channels": None,
}
_SR_SPLIT = {
    "enable": True,
    "flow_permutation": "invconv",
    "flow_coupling": "Affine",
    "nn_module": "FCN",
    "nn_module_last": "Conv2dZeros",
    "hidden_channels": 64,
    "RRDB_nf": 64,
    "RRDB_gc": 32,
}

#: Network options of the official test/train configurations (the train ymls of HCFlow, HCFlow+
#: and HCFlow++ build the same network as the test yml of their task).
OFFICIAL_OPTIONS: dict[str, dict] = {
    "SR_DF2K_4X": {
        "scale": 4,
        "quant": 64,
        "network_G": _official_net(
            "HCFlowNet_SR", {"K": 26, "L": 2, **_SR_DOWN}, {**_SR_SPLIT, "after_flowstep": [13, 13], "RRDB_nb": [7, 7]}
        ),
    },
    "SR_CelebA_8X": {
        "scale": 8,
        "quant": 256,
        "network_G": _official_net(
            "HCFlowNet_SR",
            {"K": 26, "L": 3, **_SR_DOWN},
            {**_SR_SPLIT, "after_flowstep": [13, 13, 13], "RRDB_nb": [5, 5]},
        ),
    },
    "Rescaling_DF2K_4X": {
        "scale": 4,
        "network_G": _official_net(
            "HCFlowNet_Rescaling",
            {
                "K": 14,
                "L": 2,
                "squeeze": "haar",
                "flow_permutation": "none",
                "flow_coupling": "Affine3shift",
                "nn_module": "DenseBlock",
                "hidden_channels": 32,
                "cond_channels": None,
            },
            {**_SR_SPLIT, "after_flowstep": [6, 6], "RRDB_nb": [2, 1], "RRDB_gc": 16},
        ),
    },
}

HCFlowConverter.OFFICIAL_OPTIONS = OFFICIAL_OPTIONS
