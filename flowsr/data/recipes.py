"""The training recipes by name, in a checkout and after a wheel install.

The recipes live once, in the repository's top-level ``recipes/`` folder (YAML files, and the
training images of the demo recipes in ``recipes/data/train``). The wheel ships that folder as the
package ``flowsr.recipes`` (``setup.py`` maps ``flowsr.recipes`` to ``recipes/``), so after
``pip install flowsr`` the same files are in ``site-packages/flowsr/recipes/``. This module finds
them in either place:

* :func:`recipes_dir` -> the folder (installed package data first, else the checkout's ``recipes/``);
* :func:`list_recipes` -> the recipe names (``"hcflow_rescaling_x4_tiny"``, ...);
* :func:`recipe_path` -> the YAML file of a name (``flowsr train hcflow_rescaling_x4_tiny``), of a
  path that exists, or of a documentation-style path ``recipes/<name>.yaml`` that does not exist
  in the current folder (so the commands in the docs work from any folder);
* :func:`resolve_recipe_data` -> a data path written in a recipe (``recipes/data/train``), found
  relative to the current folder first, else relative to the recipes folder.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from pathlib import Path

__all__ = ["list_recipes", "recipe_path", "recipes_dir", "resolve_recipe_data"]

_SUFFIXES = (".yaml", ".yml")


def recipes_dir() -> Path | None:
    """The folder holding the recipe YAML files, or None if neither an installed copy nor a checkout has one."""
    try:
        spec = importlib.util.find_spec("flowsr.recipes")
    except (ImportError, ValueError):
        spec = None
    candidates = list(spec.submodule_search_locations or []) if spec is not None else []
    # A source checkout (or an editable install that does not map flowsr.recipes): <repo>/recipes.
    candidates.append(os.fspath(Path(__file__).resolve().parents[2] / "recipes"))
    for folder in candidates:
        path = Path(folder)
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    return None


def list_recipes() -> list[str]:
    """The names of the bundled recipes (file stems), sorted."""
    folder = recipes_dir()
    if folder is None:
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
        folder = recipes_dir()
        if folder is not None:
            for suffix in _SUFFIXES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    names = list_recipes()
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    listing = f" (bundled recipes: {', '.join(names)})" if names else " (no bundled recipes found)"
    raise FileNotFoundError(f"recipe not found: {os.fspath(name_or_path)!r}{hint}{listing}")


def resolve_recipe_data(value: str | os.PathLike, recipe: str | os.PathLike | None = None) -> Path:
    """A relative data path written in a recipe (e.g. ``data.hr_dir: recipes/data/train``).

    Absolute paths and paths that exist relative to the current folder are returned as they are
    (today's behaviour). Otherwise a path starting with ``recipes/`` is looked up in the folder of
    ``recipe`` (or :func:`recipes_dir`), and any other relative path relative to ``recipe``'s folder,
    so the bundled recipes find their bundled data from any folder. The path is returned unchanged
    when nothing exists (the caller reports it).
    """
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    base = Path(recipe).resolve().parent if recipe is not None else recipes_dir()
    if base is None:
        return path
    parts = path.parts
    candidates = [base.joinpath(*parts[1:])] if parts and parts[0] == "recipes" else []
    candidates.append(base / path)
    return next((c for c in candidates if c.exists()), path)
