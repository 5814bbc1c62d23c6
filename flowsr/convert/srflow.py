"""Official SRFlow (andreas128/SRFlow) options and state dicts -> flowsr :class:`~flowsr.models.srflow.SRFlow`.

Written from the re-implementation spec (``srflow-irn-spec.md``, Part A), not from the official
code. The official generator is ``RRDB.*`` (the LR encoder) + ``flowUpsamplerNet.*`` whose
``layers`` list is flat: per level ``[squeeze, additionalFlowNoAffine x (actnorm+invconv),
K x (actnorm+invconv+affine), split (all levels but the last two)]``. flowsr keeps each level
together (``flow.levels.<l>.body`` = squeeze + steps, ``flow.levels.<l>.latent`` = the split
prior); this module translates the names::

    RRDB.conv_first.*                         encoder.conv_first.*
    RRDB.RRDB_trunk.<b>.RDB<j>.conv<k>.*      encoder.trunk.<b>.rdb<j>.conv<k>.*
    RRDB.trunk_conv.*                         encoder.trunk_conv.*
    RRDB.upconv<n>.*                          encoder.upconvs.<n-1>.*
    RRDB.HRconv.* / RRDB.conv_last.*          encoder.hr_conv.* / encoder.conv_last.*
    flowUpsamplerNet.layers.<i>.actnorm.*     flow.levels.<l>.body.module_list.<p>.actnorm.*
    flowUpsamplerNet.layers.<i>.invconv.weight              ....permute.weight
    flowUpsamplerNet.layers.<i>.affine.fFeatures.{0,2,4}.*  ....injector.subnet.conv{1,2,3}.*
    flowUpsamplerNet.layers.<i>.affine.fAffine.{0,2,4}.*    ....coupling.subnet.conv{1,2,3}.*
    flowUpsamplerNet.layers.<i>.conv.*        flow.levels.<l>.latent.module_list.0.prior.*   (split prior)
    flowUpsamplerNet.f.0.*                    unused_conv.*   (constructed, never called)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowsr.convert.base import OfficialConverter, register_converter, state_keys
from flowsr.models.srflow import SRFlow, SRFlowSpec, make_srflow_spec

__all__ = ["OFFICIAL_OPTIONS", "SRFlowConverter"]

_SUBNET_INDEX = {"0": "conv1", "2": "conv2", "4": "conv3"}


def _network_options(opt: Mapping[str, Any]) -> tuple[Mapping, Mapping]:
    try:
        net = opt["network_G"]
        flow = net["flow"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"official SRFlow options need network_G.flow; missing {e}") from None
    if not isinstance(flow, Mapping):
        raise ValueError(f"official SRFlow options: network_G.flow must be a mapping, got {type(flow).__name__}")
    return net, flow


def _unsupported(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"official SRFlow option {name}={value!r} is not supported (expected {expected})")


def _spec_from_opt(opt: Mapping[str, Any]) -> SRFlowSpec:
    """Translate the official options (``scale``, ``network_G``) into an :class:`SRFlowSpec`.

    Options that change the architecture in ways the spec does not describe (another coupling,
    a conditional split prior, ``correct_splits``, no ``fea_up0``, no stacked-block
    concatenation, a permutation other than invconv) raise a :class:`ValueError`.
    """
    net, flow = _network_options(opt)
    try:
        levels = int(flow["L"])
        K = flow["K"]
        split = flow["split"]
        blocks = list(flow["stackRRDB"]["blocks"])
        nb = int(net["nb"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"official SRFlow options: missing network_G.flow / network_G option {e}") from None
    scale = opt.get("scale", net.get("upscale"))
    if scale is None:
        raise ValueError("official SRFlow options: need scale (or network_G.upscale)")
    if 2 ** (levels - 1) != int(scale):
        raise ValueError(f"official SRFlow options: scale {scale} does not match L={levels} (scale must be 2^(L-1))")
    if net.get("upscale") is not None and int(net["upscale"]) != int(scale):
        raise ValueError(f"official SRFlow options: network_G.upscale {net['upscale']} differs from scale {scale}")
    coupling = flow.get("coupling", "CondAffineSeparatedAndCond")
    if coupling != "CondAffineSeparatedAndCond":
        raise _unsupported("network_G.flow.coupling", coupling, "'CondAffineSeparatedAndCond'")
    if flow.get("flow_permutation", "invconv") != "invconv":
        raise _unsupported("network_G.flow.flow_permutation", flow["flow_permutation"], "'invconv'")
    if not flow.get("fea_up0", False):
        raise _unsupported("network_G.flow.fea_up0", flow.get("fea_up0"), "true")
    if flow.get("fea_up-1"):
        raise _unsupported("network_G.flow.fea_up-1", flow["fea_up-1"], "false or absent")
    if not flow["stackRRDB"].get("concat", False):
        raise _unsupported("network_G.flow.stackRRDB.concat", flow["stackRRDB"].get("concat"), "true")
    if not isinstance(split, Mapping) or "enable" not in split:
        raise ValueError("official SRFlow options: need network_G.flow.split.enable")
    for name, ok in (("correct_splits", lambda v: not v), ("conditional", lambda v: not v)):
        if name in split and not ok(split[name]):
            raise _unsupported(f"network_G.flow.split.{name}", split[name], "false or absent")
    if "consume_ratio" in split and float(split["consume_ratio"]) != 0.5:
        raise _unsupported("network_G.flow.split.consume_ratio", split["consume_ratio"], "0.5")
    hidden = (flow.get("CondAffineSeparatedAndCond") or {}).get("hidden_channels") or 64
    in_nc, out_nc = int(net.get("in_nc", 3)), int(net.get("out_nc", 3))
    if in_nc != out_nc:
        raise _unsupported("network_G.in_nc/out_nc", (in_nc, out_nc), "equal channel counts")
    if isinstance(K, (list, tuple)):
        if len(K) != levels:
            raise ValueError(f"official SRFlow options: K must be an int or a list of {levels} ints, got {K!r}")
        K = [int(k) for k in K]
    else:
        K = int(K)
    return make_srflow_spec(
        int(scale),
        K=K,
        extra_steps=int(flow.get("additionalFlowNoAffine", 0)),
        hidden=int(hidden),
        nf=int(net.get("nf", 64)),
        nb=nb,
        gc=int(net.get("gc", 32)),
        blocks=blocks,
        split=bool(split["enable"]),
        in_channels=in_nc,
    )


def _quant(opt: Mapping[str, Any]) -> int:
    datasets = opt.get("datasets") or {}
    train = datasets.get("train") or {} if isinstance(datasets, Mapping) else {}
    return int(train.get("quant", 255))


def _layer_index(model: SRFlow) -> dict[int, tuple[int, int | None]]:
    """Official flat ``flowUpsamplerNet.layers`` index -> (level, body position | None = split)."""
    flow = model.spec.flow
    steps, keeps, channels = flow.level_steps(), flow.kept_channels(), flow.channels()
    out: dict[int, tuple[int, int | None]] = {}
    start = 0
    for l in range(flow.levels):
        n = 1 + flow.extra_steps + steps[l]  # squeeze, plain steps, conditional steps
        for p in range(n):
            out[start + p] = (l, p)
        start += n
        if keeps[l] < channels[l]:
            out[start] = (l, None)
            start += 1
    return out


def _step_part(rest: str) -> str | None:
    """Official names inside a flow step -> flowsr names (``None``: not a step entry)."""
    m = re.fullmatch(r"(actnorm\.(?:bias|logs))", rest)
    if m:
        return m.group(1)
    if rest == "invconv.weight":
        return "permute.weight"
    m = re.fullmatch(r"affine\.(fFeatures|fAffine)\.([024])\.(.+)", rest)
    if m:
        part = "injector" if m.group(1) == "fFeatures" else "coupling"
        return f"{part}.subnet.{_SUBNET_INDEX[m.group(2)]}.{m.group(3)}"
    return None


def _encoder_part(model: SRFlow, rest: str) -> str | None:
    """Official ``RRDB.*`` names -> names inside flowsr's encoder (``None``: unknown)."""
    n_up = model.scale.bit_length() - 1  # log2(scale) upconvs
    r = re.fullmatch(r"RRDB_trunk\.(\d+)\.RDB([123])\.(conv[1-5]\.(?:weight|bias))", rest)
    if r and int(r.group(1)) < model.spec.encoder.nb:
        return f"trunk.{r.group(1)}.rdb{r.group(2)}.{r.group(3)}"
    r = re.fullmatch(r"(conv_first|trunk_conv|conv_last)\.(weight|bias)", rest)
    if r:
        return f"{r.group(1)}.{r.group(2)}"
    r = re.fullmatch(r"HRconv\.(weight|bias)", rest)
    if r:
        return f"hr_conv.{r.group(1)}"
    r = re.fullmatch(r"upconv(\d+)\.(weight|bias)", rest)
    if r and 1 <= int(r.group(1)) <= n_up:
        return f"upconvs.{int(r.group(1)) - 1}.{r.group(2)}"
    return None


@register_converter
class SRFlowConverter(OfficialConverter):
    """Official SRFlow options and weights -> :class:`~flowsr.models.SRFlow`."""

    name = "srflow"

    @classmethod
    def matches(cls, opt: Mapping[str, Any]) -> bool:
        try:
            return opt["network_G"]["which_model_G"] == "SRFlowNet"
        except (KeyError, TypeError):
            return False

    @classmethod
    def spec_from_opt(cls, opt: Mapping[str, Any]) -> SRFlowSpec:
        """Translate the official options (``scale``, ``network_G``) into an :class:`SRFlowSpec`.

        Options that change the architecture in ways the spec does not describe (another
        coupling, a conditional split prior, ``correct_splits``, no ``fea_up0``, no stacked-block
        concatenation, a permutation other than invconv) raise a :class:`ValueError`.
        """
        return _spec_from_opt(opt)

    @classmethod
    def model_from_opt(cls, opt: Mapping[str, Any]) -> SRFlow:
        """``quant`` comes from ``datasets.train.quant`` (255 when absent, as in the official code)."""
        return SRFlow(_spec_from_opt(opt), quant=_quant(opt))

    @classmethod
    def key_map(cls, model: SRFlow, official_keys: list[str]) -> dict[str, str]:
        layers, levels, at = _layer_index(model), model.flow.levels, state_keys(model)
        out: dict[str, str] = {}
        for key in official_keys:
            new = None
            m = re.fullmatch(r"RRDB\.(.+)", key)
            if m and (part := _encoder_part(model, m.group(1))) is not None:
                new = at(model.encoder, part)
            m = re.fullmatch(r"flowUpsamplerNet\.layers\.(\d+)\.(.+)", key)
            if m and int(m.group(1)) in layers:
                l, p = layers[int(m.group(1))]
                if p is None:
                    r = re.fullmatch(r"conv\.(weight|bias|logs)", m.group(2))
                    if r:
                        level = levels[l]
                        new = at(level.latent_layer(len(level.latent.module_list) - 1), f"prior.{r.group(1)}")
                elif p > 0 and (part := _step_part(m.group(2))) is not None:
                    new = at(levels[l].body_layer(p), part)
            m = re.fullmatch(r"flowUpsamplerNet\.f\.0\.(weight|bias)", key)
            if m and model.unused_conv is not None:
                new = at(model.unused_conv, m.group(1))
            if new is None:
                raise ValueError(f"unexpected key in official SRFlow state dict: {key!r}")
            out[key] = new
        return out


def _official(scale: int, nb: int, blocks: list[int]) -> dict:
    return {
        "model": "SRFlow",
        "distortion": "sr",
        "scale": scale,
        "datasets": {"train": {"quant": 32}},
        "heat": 0.9,
        "network_G": {
            "which_model_G": "SRFlowNet",
            "in_nc": 3,
            "out_nc": 3,
            "nf": 64,
            "nb": nb,
            "upscale": scale,
            "train_RRDB": False,
            "train_RRDB_delay": 0.5,
            "flow": {
                "K": 16,
                "L": {4: 3, 8: 4}[scale],
                "noInitialInj": True,
                "coupling": "CondAffineSeparatedAndCond",
                "additionalFlowNoAffine": 2,
                "split": {"enable": True},
                "fea_up0": True,
                "stackRRDB": {"blocks": blocks, "concat": True},
            },
        },
    }


#: Network options of the official configurations (``code/confs/SRFlow_*.yml``), in the
#: structure the converter reads (``scale``, ``datasets.train.quant``, ``heat``, ``network_G``).
OFFICIAL_OPTIONS: dict[str, dict] = {
    "DF2K_4X": _official(4, 23, [1, 8, 15, 22]),
    "CelebA_8X": _official(8, 8, [1, 3, 5, 7]),
    "DF2K_8X": _official(8, 23, [1, 3, 5, 7]),
}

SRFlowConverter.OFFICIAL_OPTIONS = OFFICIAL_OPTIONS
