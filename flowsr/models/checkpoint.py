"""flowsr's own checkpoint format: one ``.safetensors`` file per model.

The tensors are the model's ``state_dict``; the safetensors metadata holds the model family and
its configuration (the :class:`~flowsr.models.spec.HierarchySpec` and family options) as JSON,
so :func:`load` rebuilds the architecture without any other file. Files are written atomically
(temporary file, then rename), so an interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from flowsr.data.catalog import bundled_models, resolve_model
from flowsr.fileio import atomic_write
from flowsr.models.base import FAMILIES, get_family

__all__ = ["from_pretrained", "list_models", "load", "load_state", "model_info", "read_metadata", "save"]

FORMAT = "flowsr/1"


def save(model: nn.Module, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` (weights + architecture) to ``path`` atomically; returns the path.

    ``extra`` adds string metadata (e.g. the training iteration or a model card line).
    """
    if getattr(model, "family", None) not in FAMILIES:
        raise ValueError(f"cannot save {type(model).__name__}: not a registered flowsr model family")
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "family": model.family,
        "task": model.task,
        "scale": str(model.scale),
        "config": json.dumps(model.config()),
        **(extra or {}),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a flowsr checkpoint (``format``, ``family``, ``config`` JSON, extras).

    ``path`` is anything :func:`load` accepts (a ``.safetensors`` file, a model folder, a bundled
    model name). Errors as :func:`load`.
    """
    weights = _weights_file(path)
    with _open_checkpoint(weights) as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{weights}: not a flowsr checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    return metadata


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved with :func:`save`; returned in eval mode on ``device``. Nothing downloads.

    ``path`` (alias :func:`from_pretrained`) is one of

    * a bundled model name, e.g. ``"hcflow_sr_x4_demo"`` (:func:`list_models`);
    * a ``.safetensors`` file written by :func:`save`;
    * a folder holding ``model.safetensors`` (or exactly one ``.safetensors``) and its card
      ``README.md`` / ``<name>.md`` (the layout model hubs use).

    Raises:
        FileNotFoundError: no such file or folder, and not a bundled name (the bundled names are listed).
        PermissionError: ``cannot read <file>: permission denied``.
        ValueError: ``not a flowsr checkpoint or truncated: <file> (...)`` for a file safetensors
            cannot parse (empty, truncated, another format); ``<file>: not a flowsr checkpoint`` for a
            safetensors file of another program; ``<file> holds non-finite weights (...)`` for NaN/Inf
            weights; ``<file>: ...`` for an unknown family, a damaged config or mismatched weights.
    """
    weights = _weights_file(path)
    metadata = read_metadata(weights)
    family = metadata.get("family")
    if family is None:
        raise ValueError(f"{weights}: the checkpoint metadata has no model family")
    try:
        cls = get_family(family)
    except ValueError as e:
        raise ValueError(f"{weights}: {e}") from None
    try:
        config = json.loads(metadata["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{weights}: the checkpoint's architecture config is missing or damaged ({err})") from None
    model = cls.from_config(config)
    state = load_state(weights, device=device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        parts = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "with another shape"))
            if keys
        ]
        raise ValueError(f"{weights}: the weights do not fit its {family} architecture: {'; '.join(parts)}") from None
    return model.to(device).eval()


# ------------------------------------------------------------------- names, folders, errors, listing


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (any of :func:`load`'s names), checked: every tensor
    readable and every floating tensor finite. For callers that need the weights without building
    a model, e.g. to validate a checkpoint before resuming from it and fall back to an older one.

    Raises as :func:`load`: ``not a flowsr checkpoint or truncated: <file> (...)``,
    ``<file> holds non-finite weights (...)``, ``cannot read <file>: permission denied``.
    """
    weights = _weights_file(path)
    state = {}
    with _open_checkpoint(weights, device=str(device)) as f:
        try:
            for key in f.keys():
                state[key] = f.get_tensor(key)
        except Exception as err:  # noqa: BLE001 - safetensors reports damaged data as its own error type
            raise ValueError(f"not a flowsr checkpoint or truncated: {weights} ({_one_line(err)})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ValueError(
            f"{weights} holds non-finite weights (NaN or Inf in {len(bad)} of {len(state)} tensors: {shown})"
        )
    return state


#: The model-hub name for :func:`load`: ``flowsr.models.from_pretrained("hcflow_sr_x4_demo")``.
from_pretrained = load


def list_models():
    """The bundled models with their cards' metadata (:class:`flowsr.data.ModelEntry`: ``name``,
    ``path``, ``card``, ``metadata`` = the card's YAML front matter, ``title``), sorted by name."""
    return bundled_models()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _weights_file(path: str | os.PathLike) -> Path:
    """The ``.safetensors`` file named by ``path`` (file, model folder or bundled name), readable."""
    weights = resolve_model(path).path
    try:
        mode = weights.stat().st_mode
    except OSError as err:
        raise FileNotFoundError(f"cannot read {weights}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"not a flowsr checkpoint or truncated: {weights} (not a regular file)")
    try:
        with _open_for_read(weights) as fh:
            fh.read(8)
    except PermissionError:
        raise PermissionError(f"cannot read {weights}: permission denied") from None
    except OSError as err:
        raise OSError(f"cannot read {weights}: {err.strerror or err}") from None
    return weights


def _open_for_read(path: Path):
    return open(path, "rb")  # noqa: SIM115 - a seam for tests (root can read anything)


class _open_checkpoint:
    """``safe_open`` whose parse errors name the file: ``not a flowsr checkpoint or truncated: <file>``."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path, self.device, self._cm = path, device, None

    def __enter__(self):
        try:
            self._cm = safe_open(os.fspath(self.path), framework="pt", device=self.device)
            return self._cm.__enter__()
        except Exception as err:  # noqa: BLE001 - SafetensorError, OSError from the mmap, ...
            raise ValueError(f"not a flowsr checkpoint or truncated: {self.path} ({_one_line(err)})") from None

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)




def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"family", "task", "scale"}`` of a flowsr checkpoint without loading its weights.

    Files written by flowsr 0.1 carry only the family and config: the model is then built
    (untrained) from the config to answer.
    """
    metadata = read_metadata(path)
    try:
        cls = get_family(metadata.get("family", "<missing>"))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if "scale" in metadata:
        scale = int(metadata["scale"])
    else:
        scale = int(cls.from_config(json.loads(metadata["config"])).scale)
    return {"family": cls.family, "task": cls.task, "scale": scale}
