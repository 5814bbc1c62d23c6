"""The training recipes by name, in a checkout and after a wheel install.

The recipes are package data: ``flowsr/recipes/*.yaml``, with the training images of the demo
recipes in ``flowsr/recipes/data/train``, so a checkout and an installed wheel hold them in the
same place relative to the package.

* :func:`recipes_dir` -> that folder;
* :func:`list_recipes` -> the recipe names (``"hcflow_rescaling_x4_tiny"``, ...);
* :func:`recipe_path` -> the YAML file of a name (``flowsr train hcflow_rescaling_x4_tiny``), of a
  path that exists, or of a path ``recipes/<name>.yaml`` / ``flowsr/recipes/<name>.yaml`` that
  does not exist in the current folder (so documented commands work from any folder);
* :func:`resolve_recipe_data` -> a relative data path written in a recipe (``data/train``), found
  relative to the current folder first, else relative to the recipe's folder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = ["list_recipes", "recipe_path", "recipes_dir", "resolve_recipe_data"]

_SUFFIXES = (".yaml", ".yml")


def recipes_dir() -> Path:
    """The folder of the bundled recipes (``flowsr/recipes``)."""
    return Path(__file__).resolve().parents[1] / "recipes"


def list_recipes() -> list[str]:
    """The names of the bundled recipes (file stems), sorted."""
    folder = recipes_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """The recipe file for ``name_or_path``: an existing file as it is; else a bundled recipe by name
    (``"irn_x4_tiny"``, ``"irn_x4_tiny.yaml"`` or ``"recipes/irn_x4_tiny.yaml"``).

    Raises ``FileNotFoundError`` naming the closest bundled recipes.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[: -len(path.suffix)] if path.suffix in _SUFFIXES else path.name
    # Only a bare name or a path inside a folder called "recipes" refers to the bundled recipes.
    if len(path.parts) == 1 or path.parent.name == "recipes":
        for suffix in _SUFFIXES:
            candidate = recipes_dir() / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    names = list_recipes()
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    listing = f" (bundled recipes: {', '.join(names)})" if names else " (no bundled recipes found)"
    raise FileNotFoundError(f"recipe not found: {os.fspath(name_or_path)!r}{hint}{listing}")


def resolve_recipe_data(value: str | os.PathLike, recipe: str | os.PathLike | None = None) -> Path:
    """A relative data path written in a recipe (e.g. ``data.hr_dir: data/train``).

    Absolute paths and paths that exist relative to the current folder are returned as they are.
    Otherwise the path is looked up relative to the folder of ``recipe`` (default: the bundled
    recipes' folder), so the bundled recipes find their bundled data from any folder. The path is
    returned unchanged when nothing exists (the caller reports it).
    """
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    candidate = (Path(recipe).resolve().parent if recipe is not None else recipes_dir()) / path
    return candidate if candidate.exists() else path
