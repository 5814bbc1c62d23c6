"""flowsr's own checkpoint format: one ``.safetensors`` file per model.

The tensors are the model's ``state_dict``; the safetensors metadata holds the model family and
its configuration (the :class:`~flowsr.models.spec.HierarchySpec` and family options) as JSON,
so :func:`load` rebuilds the architecture without any other file. Files are written atomically
(temporary file, then rename), so an interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from flowsr.fileio import atomic_write
from flowsr.models.base import FAMILIES, get_family

__all__ = ["save", "load", "read_metadata", "model_info"]

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
    """The metadata of a flowsr checkpoint (``format``, ``family``, ``config`` JSON, extras)."""
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a flowsr checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})")
    return metadata


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved with :func:`save`; returned in eval mode on ``device``."""
    metadata = read_metadata(path)
    try:
        cls = get_family(metadata.get("family", "<missing>"))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    model = cls.from_config(json.loads(metadata["config"]))
    state = {}
    with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            state[key] = f.get_tensor(key)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


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
