"""Finding and reading recipes: a recipe is a path or the name of a YAML bundled in
``flowsr/recipes/`` (:func:`resolve_recipe`, :func:`list_recipes`; both located by
:mod:`flowsr.data.recipes`), read with clear errors (:func:`read_recipe`), whose relative paths
are resolved by one rule (:func:`resolve_paths`).

**The path rule.** A relative path in a recipe (``data.hr_dir`` / ``lr_dir``, the same in
``val.data``, ``model.init_from``, ``losses.perceptual_weights``, a ``train.resume`` file) means
the path relative to the current directory when it exists there, else relative to the folder
of the recipe file when it exists there (then it is made absolute); otherwise it stays as
written and the error that follows names it. ``imports`` entries that are files are looked up
the other way round: next to the recipe first, then in the current directory. Output paths
(``train.run_dir``) are always relative to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from flowsr.data.recipes import list_recipes, recipe_path, resolve_recipe_data
from flowsr.train.errors import ConfigError

__all__ = ["list_recipes", "read_recipe", "resolve_paths", "resolve_recipe"]

#: dotted keys of recipe entries that name input files or folders
PATH_KEYS = (
    "data.hr_dir",
    "data.lr_dir",
    "val.data.hr_dir",
    "val.data.lr_dir",
    "model.init_from",
    "losses.perceptual_weights",
    "train.resume",
)


def resolve_recipe(name_or_path: str | os.PathLike) -> Path:
    """The recipe file for a path or a bundled recipe name (``hcflow_sr_x4_tiny``, with or without
    ``.yaml``; :func:`flowsr.data.recipe_path`), as a :class:`ConfigError` when there is none."""
    text = os.fspath(name_or_path)
    if Path(text).expanduser().is_dir():
        raise ConfigError(f"config: {text} is a folder, not a recipe (a YAML file or a bundled recipe name)")
    try:
        return recipe_path(Path(text).expanduser())
    except FileNotFoundError as err:
        raise ConfigError(f"config: {err}") from None


def read_recipe(path: Path) -> dict[str, Any]:
    """The mapping in a recipe YAML; :class:`ConfigError` (naming the file) for anything else."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror or err}") from None
    kind = _binary_kind(raw)
    if kind:
        raise ConfigError(f"config: {path} is {kind}, not a recipe; give a YAML recipe (or a bundled recipe name)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config: {path} is not UTF-8 text (byte {err.start}); a recipe is a YAML text file"
        ) from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML: {' '.join(str(err).split())}") from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"config: {path}: the top level must be a mapping, got {type(d).__name__}")
    return d


_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a zip archive (a torch checkpoint?)",
    b"\x80\x02": "a pickle (a torch checkpoint?)",
    b"BM": "a BMP image",
}


def _binary_kind(raw: bytes) -> str | None:
    for magic, kind in _MAGIC.items():
        if raw.startswith(magic):
            return kind
    if raw[:8].startswith(b"RIFF") and raw[8:12] == b"WEBP":
        return "a WebP image"
    if len(raw) >= 8 and int.from_bytes(raw[:8], "little") < len(raw) and raw[8:9] == b"{":
        return "a safetensors checkpoint"
    if b"\x00" in raw[:4096]:
        return "a binary file"
    return None


def _get(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = d
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _resolve_one(value: str, base: Path) -> str:
    return str(resolve_recipe_data(value, base / "recipe.yaml"))


def resolve_paths(d: dict[str, Any], base: Path) -> dict[str, Any]:
    """Apply the path rule (module docstring) to the input paths of a recipe dict read from a
    file in folder ``base``; ``d`` is changed in place and returned."""
    for key in PATH_KEYS:
        value = _get(d, key)
        if isinstance(value, str) and value and value not in ("auto", "never"):
            _set(d, key, _resolve_one(value, base))
    imports = d.get("imports")
    if isinstance(imports, list):
        d["imports"] = [_resolve_import(v, base) if isinstance(v, str) else v for v in imports]
    return d


def _resolve_import(entry: str, base: Path) -> str:
    """A file entry (``*.py`` or containing a slash) as an absolute path, recipe folder first."""
    if not (entry.endswith(".py") or "/" in entry or os.sep in entry):
        return entry  # a module name
    p = Path(entry).expanduser()
    if p.is_absolute():
        return str(p)
    for candidate in (base / p, p):
        if candidate.is_file():
            return str(candidate.resolve())
    return entry
