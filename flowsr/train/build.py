"""Model construction from a :class:`~flowsr.train.config.ModelConfig` (presets, specs, shrinking)."""

from __future__ import annotations

from pathlib import Path

import torch

from flowsr.models import checkpoint as ckpt
from flowsr.models.base import FlowSRModel, get_family
from flowsr.train.config import ConfigError, ModelConfig

__all__ = ["build_model", "model_spec"]


def model_spec(cfg: ModelConfig):
    """The architecture named by ``cfg`` (``spec`` dict, else ``preset``, or a preset with
    ``spec`` overrides), shrunk to tiny widths if asked; the family says what its presets are."""
    family = get_family(cfg.family)
    try:
        if cfg.preset is None:
            spec = family.spec_from_dict(cfg.spec)
        else:
            if cfg.preset not in family.presets:
                raise ConfigError(
                    f"config: model.preset for {cfg.family} must be one of {list(family.presets)}, got {cfg.preset!r}"
                )
            spec = family.preset_spec(cfg.preset)
            if cfg.spec is not None:
                spec = family.spec_from_dict(_deep_merge(spec.to_dict(), cfg.spec, "model.spec"))
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"config: model.spec is invalid: {err}") from None
    return family.shrink_spec(spec) if cfg.shrink else spec


def _deep_merge(base: dict, update: dict, where: str) -> dict:
    out = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"config: unknown key '{where}.{key}' (the preset's keys: {sorted(base)})")
        if isinstance(value, dict) and isinstance(base[key], dict) and base[key]:
            out[key] = _deep_merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def build_model(cfg: ModelConfig) -> FlowSRModel:
    """A freshly initialised model (seed the RNGs first for reproducible weights); with
    ``cfg.init_from`` the weights of that flowsr checkpoint are loaded (architectures must match)."""
    spec = model_spec(cfg)
    options = dict(cfg.options)
    try:
        model = get_family(cfg.family)(spec, **options)
    except TypeError as err:
        raise ConfigError(f"config: model.options {sorted(options)} are not valid for {cfg.family}: {err}") from None
    if cfg.init_from:
        load_init_weights(model, cfg.init_from)
    return model


def load_init_weights(model: FlowSRModel, path: str) -> None:
    """Copy the weights of a flowsr checkpoint into ``model`` (family and shapes must match)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: model.init_from {str(path)!r} does not exist")
    try:
        meta = ckpt.read_metadata(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a config problem
        raise ConfigError(f"config: model.init_from {str(path)!r} is not a flowsr checkpoint: {err}") from None
    if not meta.get("family"):
        raise ConfigError(f"config: model.init_from {str(path)!r} has no 'family' metadata (not written by flowsr)")
    if meta.get("family") != model.family:
        raise ConfigError(
            f"config: model.init_from {str(path)!r} holds a {meta.get('family')!r} model, not {model.family!r}"
        )
    try:
        source = ckpt.load(path)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"config: model.init_from {str(path)!r} cannot be loaded: {err}") from None
    state = source.state_dict()
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise ConfigError(f"config: model.init_from {str(path)!r} holds non-finite weights (NaN or Inf in {bad})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(
            f"config: model.init_from {str(path)!r} has a different architecture: {str(err).splitlines()[0]}"
        ) from None
