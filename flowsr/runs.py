"""Finding models on disk: is a file a flowsr checkpoint, which checkpoint of a training run to use.

Used by ``flowsr test`` (a recipe instead of a checkpoint evaluates the run's best model) and
anything else that is handed "a model or a run". Nothing here loads weights or imports torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["file_kind", "looks_like_checkpoint", "run_checkpoint"]

#: First bytes of the image formats a user may hand over by mistake (a PNG given as a config).
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def looks_like_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.safetensors`` file by name or by content (a little-endian 8-byte
    header length that fits in the file, then the JSON header's ``{``), without parsing it."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = os.path.getsize(path)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= size - 8


def run_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The weights to evaluate in a training run folder.

    ``checkpoints/best.safetensors`` (picked on the validation metric) if it exists, else the
    weights named by ``checkpoints/latest.json`` (the newest complete checkpoint), else the newest
    ``.safetensors`` under the folder. Raises ``FileNotFoundError`` when there is none.
    """
    run = Path(run_dir)
    ckdir = run / "checkpoints"
    best = ckdir / "best.safetensors"
    if best.is_file():
        return best
    pointer = ckdir / "latest.json"
    if pointer.is_file():
        try:
            weights = ckdir / json.loads(pointer.read_text())["weights"]
        except (ValueError, KeyError, TypeError, OSError):
            weights = None
        if weights is not None and weights.is_file():
            return weights
    found = sorted(run.glob("**/*.safetensors"), key=os.path.getmtime) if run.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no checkpoint in the run folder {run} (train first, or give --checkpoint)")
    return found[-1]


def file_kind(path: str | os.PathLike) -> str:
    """What an existing path holds, for commands that take "a model, a run or a config":
    ``"run"`` (a folder with ``checkpoints/``), ``"model"`` (another folder, or a ``.safetensors``
    file), ``"image"``, ``"binary"`` (not UTF-8 text), ``"text"`` (a YAML / JSON config, to be
    parsed), or ``"special"`` (a FIFO, socket or device: never opened, reading it could block)."""
    import stat

    p = Path(path)
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        return "run" if (p / "checkpoints").is_dir() else "model"
    if not stat.S_ISREG(mode):
        return "special"
    if looks_like_checkpoint(p):
        return "model"
    with open(p, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a multi-byte character cut at the end of the block
            return "binary"
    return "binary" if b"\x00" in head else "text"
