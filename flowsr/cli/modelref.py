"""Models named on the command line: bundled names, files, model folders; loading them with
messages that say what is wrong; the temperatures a model recommends.

The bundled names are listed without importing torch (``--help`` shows them). A model folder
follows the model-hub layout (``model.safetensors`` beside its card), as ``flowsr.models.load``
does.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import flowsr
from flowsr.cli.errors import CLIError, one_line

__all__ = ["as_model_input", "bundled_dir", "bundled_names", "load_model", "model_temperatures", "resolve"]


def bundled_dir() -> Path:
    """``flowsr/data/models`` of this installation (found without importing flowsr.data, i.e. torch)."""
    return Path(flowsr.__file__).resolve().parent / "data" / "models"


def bundled_names() -> list[str]:
    """Names of the bundled models (file stems), sorted."""
    folder = bundled_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def _open_for_read(path: Path):
    """A seam for tests: root reads every file, so 'permission denied' is simulated through it."""
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _not_found(ref: str) -> CLIError:
    names = ", ".join(bundled_names()) or "none installed"
    return CLIError(
        f"checkpoint not found: {ref} is not a file or folder, nor the name of a bundled model "
        f"({names}; see 'flowsr info --list')"
    )


def _resolve_here(ref: str) -> Path:
    path = Path(ref)
    if path.is_dir():
        weights = path / "model.safetensors"
        if weights.is_file():
            return weights
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        what = "no .safetensors file" if not found else "several .safetensors files and no model.safetensors"
        raise CLIError(f"model folder {ref} holds {what}")
    if os.path.lexists(path):
        return path
    key = ref[: -len(".safetensors")] if ref.endswith(".safetensors") else ref
    if "/" not in ref and os.sep not in ref and key in bundled_names():
        return bundled_dir() / f"{key}.safetensors"
    raise _not_found(ref)


def resolve(ref: str) -> Path:
    """The ``.safetensors`` file a model reference names: a file, a model folder (``model.safetensors``
    or its only ``.safetensors``) or a bundled name (paths win). ``CLIError`` when there is none,
    when it is not a regular file, or when it cannot be read."""
    path = _resolve_here(ref)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CLIError(f"checkpoint not found: {path} (a broken link?)") from None
    except OSError as err:
        raise CLIError(f"cannot read checkpoint {path}: {one_line(err.strerror or err)}") from None
    if stat.S_ISDIR(mode):
        return resolve(str(path))
    if not stat.S_ISREG(mode):
        raise CLIError(f"checkpoint {path} is not a regular file (a FIFO, socket or device)")
    try:
        with _open_for_read(path) as fh:
            fh.read(8)
    except PermissionError:
        raise CLIError(f"cannot read checkpoint {path}: permission denied") from None
    except OSError as err:
        raise CLIError(f"cannot read checkpoint {path}: {one_line(err.strerror or err)}") from None
    return path


def load_model(ref: str, device: Any = "cpu") -> tuple[Any, Path]:
    """``(model, path)`` for a model reference (see :func:`resolve`), in eval mode on ``device``."""
    from flowsr.models import load

    path = resolve(ref)
    try:
        return load(path, device=device), path
    except Exception as err:  # safetensors, JSON, spec and state-dict errors all mean "bad checkpoint"
        hint = ""
        if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
            hint = "; official .pth checkpoints must be converted first: flowsr convert OFFICIAL.pth --config ..."
        text = one_line(err)
        if len(text) > 400:  # e.g. torch's list of every missing state-dict key
            text = text[:400] + " ..."
        raise CLIError(f"cannot load checkpoint {path}: {text}{hint}") from None


def load_task_model(ref: str, device: Any, task: str, other_command: str) -> tuple[Any, Path]:
    """:func:`load_model` for a command that runs models of one ``task`` (``"sr"`` / ``"rescaling"``);
    a model of the other task is refused with the command that runs it (``other_command``)."""
    model, path = load_model(ref, device)
    if model.task != task:
        kind = "an SR model" if model.task == "sr" else "a rescaling model"
        wanted = "an SR model" if task == "sr" else "a rescaling model"
        raise CLIError(f"{path} is {kind} ({model.family}), not {wanted}: use {other_command}")
    return model, path


def _parse_temperatures(value: Any) -> list[float] | None:
    try:
        if isinstance(value, str):
            values = [float(t) for t in value.replace(",", " ").split()]
        elif isinstance(value, (list, tuple)):
            values = [float(t) for t in value]
        else:
            return None
    except (TypeError, ValueError):
        return None
    return [t for t in values if t >= 0 and t == t and t != float("inf")] or None


def _card_temperatures(path: Path) -> list[float] | None:
    """``demo_temperatures`` from the model card's front matter (``flowsr:`` block or top level)."""
    try:
        from flowsr.data import read_card
    except ImportError:
        return None
    for card in (path.with_suffix(".md"), path.parent / "README.md"):
        if card.is_file():
            try:
                meta, _ = read_card(card)
            except (ValueError, OSError):
                return None
            block = meta.get("flowsr") if isinstance(meta.get("flowsr"), dict) else {}
            return _parse_temperatures(block.get("demo_temperatures", meta.get("demo_temperatures")))
    return None


def model_temperatures(model: Any, path: Path | None, default: list[float] | None = None) -> tuple[list[float], str]:
    """The temperatures a model recommends, and where they come from: the checkpoint's
    ``demo_temperatures`` metadata, else its model card's, else ``default`` (the caller's rule),
    else the family's ``default_temperature``."""
    if path is not None:
        try:
            from flowsr.models.checkpoint import read_metadata

            found = _parse_temperatures(read_metadata(path).get("demo_temperatures"))
        except (ValueError, OSError, json.JSONDecodeError):
            found = None
        if found:
            return found, "the model's demo_temperatures"
        found = _card_temperatures(path)
        if found:
            return found, "the model card"
    if default:
        return list(default), "the default"
    return [float(model.default_temperature)], f"the {type(model).__name__} default"


def as_model_input(rgb: Any, model: Any, path: Path) -> Any:
    """``(3, H, W)`` RGB -> ``(1, C, H, W)`` with the model's channel count (grey models: one channel)."""
    channels = int(model.in_channels)
    if channels == 3:
        return rgb[None]
    if channels == 1:
        if not (rgb[0] == rgb[1]).all() or not (rgb[0] == rgb[2]).all():
            raise CLIError(f"{path}: the model takes grey (1-channel) images, this image has colour")
        return rgb[None, :1]
    raise CLIError(f"{path}: the model takes {channels}-channel images; flowsr reads images as RGB")
