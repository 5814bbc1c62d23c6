"""Code a recipe brings along: the top-level ``imports`` list of a recipe names Python files
(``path/to/custom_coupling.py``) or modules (``my_package.layers``) to import before the model is
built, so couplings, subnets or families registered outside flowsr
(``flowsr.layers.register_coupling`` ...) can be named in ``model.spec``.

A recipe with ``imports`` runs that code: use recipes you trust, as you would a Python script.
Files are imported once per process under a name derived from their absolute path (importing
the same file again, e.g. when a run resumes, is a no-op).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from flowsr.train.errors import ConfigError

__all__ = ["import_plugins"]


def _is_file_entry(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"flowsr_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{digest}"


def _import_file(path: Path) -> ModuleType:
    name = _module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config: imports: cannot import {path} (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        del sys.modules[name]
        raise ConfigError(f"config: imports: {path} failed: {type(err).__name__}: {err}") from err
    return module


def import_plugins(entries: Sequence[str] | None, base: Path | None = None) -> list[ModuleType]:
    """Import the recipe's ``imports`` (files relative to ``base``, else as given; modules by
    name). Raises :class:`ConfigError` naming the entry that cannot be imported."""
    modules = []
    for entry in entries or ():
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"config: imports entries must be file paths or module names, got {entry!r}")
        if _is_file_entry(entry):
            path = Path(entry).expanduser()
            if not path.is_absolute() and base is not None and (base / path).is_file():
                path = base / path
            if not path.is_file():
                raise ConfigError(f"config: imports: no such file {entry!r}")
            modules.append(_import_file(path.resolve()))
            continue
        try:
            modules.append(importlib.import_module(entry))
        except ImportError as err:
            raise ConfigError(f"config: imports: cannot import module {entry!r}: {err}") from None
        except Exception as err:  # noqa: BLE001 - the module's own code failed
            raise ConfigError(f"config: imports: module {entry!r} failed: {type(err).__name__}: {err}") from err
    return modules
