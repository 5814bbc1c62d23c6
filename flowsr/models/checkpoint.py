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

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from flowsr.fileio import atomic_write
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR
from flowsr.models.irn import IRN
from flowsr.models.srflow import SRFlow

__all__ = ["FAMILIES", "register_family", "save", "load", "read_metadata"]

FORMAT = "flowsr/1"

#: model family name -> class with ``family``, ``config()`` and ``from_config(config)``.
FAMILIES: dict[str, type[nn.Module]] = {}


def register_family(cls: type[nn.Module]) -> type[nn.Module]:
    """Make a model class loadable by :func:`load` (usable as a class decorator)."""
    FAMILIES[cls.family] = cls
    return cls


register_family(HCFlowSR)
register_family(HCFlowRescaling)
register_family(SRFlow)
register_family(IRN)


def save(model: nn.Module, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` (weights + architecture) to ``path`` atomically; returns the path.

    ``extra`` adds string metadata (e.g. the training iteration or a model card line).
    """
    if getattr(model, "family", None) not in FAMILIES:
        raise ValueError(f"cannot save {type(model).__name__}: not a registered flowsr model family")
    path = Path(path)
    metadata = {"format": FORMAT, "family": model.family, "config": json.dumps(model.config()), **(extra or {})}
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
    family = metadata["family"]
    if family not in FAMILIES:
        raise ValueError(f"{path}: unknown model family {family!r}; known: {sorted(FAMILIES)}")
    model = FAMILIES[family].from_config(json.loads(metadata["config"]))
    state = {}
    with safe_open(os.fspath(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            state[key] = f.get_tensor(key)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
