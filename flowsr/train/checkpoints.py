"""The checkpoints of a run folder: write (atomically, weights then state then the ``latest.json``
pointer), keep the last N, keep the best, and find a checkpoint to resume from -- falling back
to the previous one when the newest is damaged.

``checkpoints/`` holds ``iter_<N>.safetensors`` (weights + architecture, a normal flowsr
checkpoint), ``iter_<N>.pt`` (iteration, optimiser / schedule / RNG states, ...), ``latest.json``
(names the newest complete pair), ``best.*`` and ``best.json``. A pair that cannot be read (a
truncated or empty file, non-finite weights or optimiser state) is moved to ``damaged/`` when a
run resumes, with a log line naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.fileio import atomic_write, remove_stale_temporaries
from flowsr.models import checkpoint as model_checkpoint
from flowsr.train.runlog import write_errors

__all__ = ["STATE_FORMAT", "CheckpointStore", "DamagedCheckpoint", "latest_checkpoint"]

STATE_FORMAT = "flowsr-train/1"
_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")
#: entries every training state has (a file without one of them is not usable)
_REQUIRED = ("format", "iteration", "family", "weights", "optimizer_g", "scheduler_g", "rng")


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be used: ``path`` and a one-line ``reason``."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} {reason}")
        self.path, self.reason = Path(path), reason


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The training-state ``.pt`` of the newest complete checkpoint of a run folder, or ``None``.

    ``checkpoints/latest.json`` names it (written last, atomically, after the weights and the
    state); without it (or if its files are gone) the highest ``iter_N.pt`` whose weights exist.
    """
    candidates = CheckpointStore(Path(run_dir) / "checkpoints").candidates()
    return candidates[0] if candidates else None


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a function of its own: tests inject failures here)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _non_finite(tensors: Iterable[tuple[str, Any]]) -> str | None:
    for key, t in tensors:
        if isinstance(t, Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return key
    return None


def _optimizer_tensors(state: Mapping, prefix: str) -> Iterable[tuple[str, Any]]:
    for index, entry in (state.get("state") or {}).items():
        for name, value in entry.items():
            yield f"{prefix}.state.{index}.{name}", value


class CheckpointStore:
    """The ``checkpoints/`` folder of a run.

    Args:
        folder: the folder (created on the first save).
        keep_last: periodic checkpoints kept (older ones deleted after a save; 0 keeps all).
        log: where log lines go.
    """

    def __init__(self, folder: Path, keep_last: int = 0, log: Callable[[str], None] | None = None):
        self.folder, self.keep_last = Path(folder), keep_last
        self.log = log or (lambda message: None)

    # -- writing -------------------------------------------------------------------------------
    def save(self, tag: str | None, model: nn.Module, state: dict, iteration: int, recipe: str) -> Path:
        """Write ``<tag>.safetensors`` (the model) and ``<tag>.pt`` (``state``), each atomically;
        periodic checkpoints (``tag`` None: ``iter_<N>``) then update ``latest.json`` and prune.
        A failed write raises :class:`TrainingError` naming the file; the previous checkpoint is
        untouched."""
        periodic = tag is None
        tag = tag or f"iter_{iteration:08d}"
        weights, state_path = self.folder / f"{tag}.safetensors", self.folder / f"{tag}.pt"
        with self._naming(weights):
            model_checkpoint.save(model, weights, extra={"iteration": str(iteration), "recipe": recipe})
        # the state records the weights' checksum: a resume notices any change of the weights file
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        state = {**state, "format": STATE_FORMAT, "iteration": iteration, "weights": weights.name}
        buffer = io.BytesIO()  # serialised in memory: a full disk then fails in a plain write
        torch.save({**state, "weights_sha256": digest}, buffer)
        try:
            with self._naming(state_path):
                _write_bytes(state_path, buffer.getvalue())
        except BaseException:
            # no half pair is left behind (it would hold disk space and, for best.*, not match)
            stale = [weights] + ([state_path, self.folder / f"{tag}.json"] if not periodic else [])
            for p in stale:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
        if periodic:
            info = {"iteration": iteration, "weights": weights.name, "state": state_path.name}
            self.write_json("latest.json", info)
            self.prune()
        return state_path

    def write_json(self, name: str, info: dict) -> None:
        path = self.folder / name
        with self._naming(path):
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1) + "\n"))

    def _naming(self, path: Path) -> contextlib.AbstractContextManager:
        """A failed write becomes one line naming the file and the checkpoint that is still intact."""
        previous = self.candidates()
        return write_errors(path, f"; the previous checkpoint {previous[0].name} is intact" if previous else "")

    def prune(self) -> None:
        """Delete all but the ``keep_last`` newest periodic checkpoints."""
        if self.keep_last <= 0:
            return
        iterations = sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _ITER_RE.match(p.name)))
        for it in iterations[: -self.keep_last]:
            for suffix in (".pt", ".safetensors"):
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / f"iter_{it:08d}{suffix}").unlink()

    def clean_temp_files(self, *also: Path) -> None:
        """Remove what a killed run's writes left behind here and in the folders ``also``: the
        temporary folders of :func:`~flowsr.fileio.atomic_write` whose process is gone, and
        temporary files of earlier flowsr versions (``.<name>.<random>.tmp``)."""
        for folder in (self.folder, *also):
            if Path(folder).is_dir():
                remove_stale_temporaries(folder)
                for p in Path(folder).glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()

    # -- reading -------------------------------------------------------------------------------
    def candidates(self) -> list[Path]:
        """The ``.pt`` files to resume from, best first: the one ``latest.json`` names, then every
        ``iter_<N>.pt`` with its weights, newest first."""
        if not self.folder.is_dir():
            return []
        out: list[Path] = []
        pointer = self.folder / "latest.json"
        if pointer.is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                info = json.loads(pointer.read_text())
                state, weights = self.folder / info["state"], self.folder / info["weights"]
                if state.is_file() and weights.is_file():
                    out.append(state)
        found = sorted(
            ((int(m.group(1)), p) for p in self.folder.iterdir() if (m := _ITER_RE.match(p.name))), reverse=True
        )
        out += [p for _, p in found if p.with_suffix(".safetensors").is_file() and p not in out]
        return out

    def read(self, path: Path, device: torch.device | str = "cpu") -> tuple[dict, dict[str, Tensor], dict[str, str]]:
        """``(state, weights, weights metadata)`` of the checkpoint whose state is ``path``, checked:
        both files readable, the state complete, weights and optimiser moments finite. Raises
        :class:`DamagedCheckpoint` naming the file at fault."""
        path = Path(path)
        if not path.is_file():
            raise DamagedCheckpoint(path, "does not exist")
        if path.stat().st_size == 0:
            raise DamagedCheckpoint(path, "is empty")
        try:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means the file is unusable
            raise DamagedCheckpoint(path, f"cannot be read, it is truncated or damaged ({_first_line(err)})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise DamagedCheckpoint(path, f"is not a flowsr training state ({STATE_FORMAT})")
        missing = [k for k in _REQUIRED if k not in state]
        if missing:
            raise DamagedCheckpoint(path, f"lacks the entries {missing}")
        weights_path = path.parent / str(state["weights"])
        if not weights_path.is_file():
            raise DamagedCheckpoint(weights_path, "is missing (its training state is " + path.name + ")")
        if weights_path.stat().st_size == 0:
            raise DamagedCheckpoint(weights_path, "is empty")
        data = weights_path.read_bytes()
        try:
            from safetensors.torch import load as load_safetensors

            metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
            weights = {k: v.to(device) for k, v in load_safetensors(data).items()}
        except Exception as err:  # noqa: BLE001
            raise DamagedCheckpoint(
                weights_path, f"cannot be read, it is truncated or damaged ({_first_line(err)})"
            ) from None
        recorded = state.get("weights_sha256")
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
            raise DamagedCheckpoint(
                weights_path, f"does not match the checksum recorded in {path.name} (it was damaged)"
            )
        if not metadata.get("family"):
            raise DamagedCheckpoint(weights_path, "has no 'family' metadata (it was not written by flowsr)")
        bad = _non_finite(weights.items())
        if bad is not None:
            raise DamagedCheckpoint(weights_path, f"holds non-finite weights (NaN or Inf in {bad})")
        bad = _non_finite(_optimizer_tensors(state["optimizer_g"], "optimizer_g"))
        if bad is None and isinstance(state.get("optimizer_d"), Mapping):
            bad = _non_finite(_optimizer_tensors(state["optimizer_d"], "optimizer_d"))
        if bad is None and isinstance(state.get("discriminator"), Mapping):
            bad = _non_finite(state["discriminator"].items())
        if bad is not None:
            raise DamagedCheckpoint(path, f"holds a non-finite training state (NaN or Inf in {bad})")
        return state, weights, metadata

    def set_aside(self, damaged: Iterable[DamagedCheckpoint]) -> Path | None:
        """Move the files of damaged checkpoints (both of each pair) to ``damaged/``; returns it."""
        target = self.folder / "damaged"
        moved = False
        for d in damaged:
            stem = d.path.name.rsplit(".", 1)[0]
            for suffix in (".pt", ".safetensors"):
                p = self.folder / f"{stem}{suffix}"
                if p.is_file():
                    target.mkdir(exist_ok=True)
                    os.replace(p, target / p.name)
                    moved = True
        return target if moved else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
