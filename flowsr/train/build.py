"""Model construction from a :class:`~flowsr.train.config.ModelConfig` (presets, specs, shrinking)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from flowsr.models import checkpoint as ckpt
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR, hcflow_rescaling_spec, hcflow_sr_spec
from flowsr.models.irn import IRN, irn_spec
from flowsr.models.spec import HierarchySpec
from flowsr.models.srflow import SRFLOW_PRESETS, SRFlow, SRFlowSpec, make_srflow_spec, srflow_spec
from flowsr.train.config import ConfigError, ModelConfig

__all__ = ["build_model", "model_spec", "shrink_spec"]

_SCALES = {"x2": 2, "x4": 4, "x8": 8, "x16": 16}


def _scale_preset(family: str, preset: str) -> int:
    if preset not in _SCALES:
        raise ConfigError(f"config: model.preset for {family} must be one of {sorted(_SCALES)}, got {preset!r}")
    return _SCALES[preset]


def model_spec(cfg: ModelConfig) -> HierarchySpec | SRFlowSpec:
    """The architecture named by ``cfg`` (``spec`` dict, else ``preset``), shrunk if asked."""
    family = cfg.family
    try:
        if cfg.spec is not None and cfg.preset is None:
            spec = SRFlowSpec.from_dict(cfg.spec) if family == "srflow" else HierarchySpec.from_dict(cfg.spec)
        elif family == "hcflow_sr":
            spec = hcflow_sr_spec(_scale_preset(family, cfg.preset))
        elif family == "hcflow_rescaling":
            spec = hcflow_rescaling_spec(_scale_preset(family, cfg.preset))
        elif family == "irn":
            spec = irn_spec(_scale_preset(family, cfg.preset))
        elif family == "srflow":
            if cfg.preset not in SRFLOW_PRESETS:
                raise ConfigError(f"config: model.preset for srflow must be one of {sorted(SRFLOW_PRESETS)}")
            spec = srflow_spec(cfg.preset)
        else:
            raise ConfigError(f"config: unknown model.family {family!r}")
        if cfg.spec is not None and cfg.preset is not None:
            merged = _deep_merge(spec.to_dict(), cfg.spec, "model.spec")
            spec = SRFlowSpec.from_dict(merged) if family == "srflow" else HierarchySpec.from_dict(merged)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"config: model.spec is invalid: {err}") from None
    return shrink_spec(family, spec) if cfg.shrink else spec


def _deep_merge(base: dict, update: dict, where: str) -> dict:
    out = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"config: unknown key '{where}.{key}' (the preset's keys: {sorted(base)})")
        if isinstance(value, dict) and isinstance(base[key], dict):
            out[key] = _deep_merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def shrink_spec(family: str, spec: HierarchySpec | SRFlowSpec) -> HierarchySpec | SRFlowSpec:
    """The same topology (levels, squeeze, couplings, splits) with tiny widths and depths."""
    if family == "srflow":
        return make_srflow_spec(spec.scale, K=1, extra_steps=1, hidden=8, nf=8, nb=2, gc=4, blocks=(0, 1))
    if family == "irn":
        return dataclasses.replace(spec, steps=1, coupling=dataclasses.replace(spec.coupling, hidden=4))
    rep = dataclasses.replace
    return rep(
        spec,
        steps=2,
        coupling=rep(spec.coupling, hidden=8),
        latent=rep(spec.latent, steps=1, coupling=rep(spec.latent.coupling, hidden=8)),
        features=rep(spec.features, nf=8, gc=4, nb=[1] * len(spec.features.nb)),
    )


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model (seed the RNGs first for reproducible weights); with
    ``cfg.init_from`` the weights of that flowsr checkpoint are loaded (architectures must match)."""
    spec = model_spec(cfg)
    options = dict(cfg.options)
    try:
        if cfg.family == "hcflow_sr":
            model = HCFlowSR(spec, **options)
        elif cfg.family == "hcflow_rescaling":
            model = HCFlowRescaling(spec, **options)
        elif cfg.family == "irn":
            model = IRN(spec, **options)
        else:
            model = SRFlow(spec, **options)
    except TypeError as err:
        raise ConfigError(f"config: model.options {sorted(options)} are not valid for {cfg.family}: {err}") from None
    if cfg.init_from:
        load_init_weights(model, cfg.init_from)
    return model


def load_init_weights(model: nn.Module, path: str) -> None:
    """Copy the weights of a flowsr checkpoint into ``model`` (family and shapes must match)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: model.init_from {str(path)!r} does not exist")
    try:
        meta = ckpt.read_metadata(path)
        source = ckpt.load(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a config problem
        raise ConfigError(f"config: model.init_from {str(path)!r} is not a flowsr checkpoint: {err}") from None
    if meta.get("family") != model.family:
        raise ConfigError(
            f"config: model.init_from {str(path)!r} holds a {meta.get('family')!r} model, not {model.family!r}"
        )
    try:
        model.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as err:
        raise ConfigError(
            f"config: model.init_from {str(path)!r} has a different architecture: {str(err).splitlines()[0]}"
        ) from None
