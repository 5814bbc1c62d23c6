"""Typed values from YAML: a dict becomes a tree of dataclasses, with errors that name the key.

Used by :mod:`flowsr.train.config`; knows nothing about training. A value must have its field's
type (``int``, ``float``, ``bool``, ``str``, ``list``, ``dict``, a nested dataclass, or ``None`` for
optional fields); numbers must be finite; YAML 1.1 number strings (``1e-5``) are read as numbers.
Overrides (``--set section.key=value``) are dotted keys applied to the dict first.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, Union

import yaml

from flowsr.train.errors import ConfigError

__all__ = ["apply_overrides", "from_dict"]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str) -> Any:
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config: {key} must not be null")
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config: {key} must be a mapping, got {type(value).__name__} {value!r}")
        return from_dict(base, value, key)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config: {key} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config: {key} must be an integer, got {value!r}")
    if base is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"config: {key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"config: {key} must be a finite number, got {value!r}")
        return number
    if base is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if key.endswith("progress") and isinstance(value, bool):
            return str(value).lower()
        raise ConfigError(f"config: {key} must be a string, got {value!r}")
    if base is list:
        if isinstance(value, (list, tuple)):
            return [_list_item(v, f"{key}[{i}]") for i, v in enumerate(value)]
        raise ConfigError(f"config: {key} must be a list, got {value!r}")
    if base is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"config: {key} must be a mapping, got {value!r}")
    return value


def _list_item(value: Any, key: str) -> Any:
    """List entries are kept as they are (strings stay strings: image names like "36"), but
    numbers must be finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config: {key} must be a finite number, got {value!r}")
    return value


def from_dict(cls: type, d: dict, prefix: str = "") -> Any:
    """An instance of the dataclass ``cls`` from ``d`` (unknown keys and wrong types: :class:`ConfigError`)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"config: unknown key {path!r} (known keys{' of ' + prefix if prefix else ''}: {names})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"config: override {item!r} must look like 'section.key=value'")
    key, text = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"config: override {item!r}: the value is not valid YAML ({detail})") from None


def apply_overrides(d: dict, overrides: dict | list | None) -> dict:
    """Set dotted keys in a config dict: ``{"train.iterations": 10}`` or ``["train.iterations=10"]``
    (values parsed as YAML). Unknown keys are reported when the config is built."""
    if not overrides:
        return d
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    d = dict(d)
    for key, value in items:
        parts = key.split(".")
        node = d
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return d
