"""Where the random numbers of training come from.

* :func:`seed_everything`, :func:`rng_state`, :func:`set_rng_state`: the global generators
  (python, numpy, torch, CUDA), seeded once before the model is built and saved in checkpoints.
* :class:`StepNoise`: the :class:`~flowsr.models.base.NoiseSource` of one training iteration.
  Every named draw has its own stream seeded by ``(seed, iteration, name)``, so the noise of an
  iteration does not depend on the device, the number of processes, or where a run was resumed.
* :class:`ReplayNoise`: a noise source that hands back recorded tensors in order (checking kind
  and shape), e.g. the draws of the official HCFlow code in a parity fixture.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ReplayNoise",
    "StepNoise",
    "VAL_TAG",
    "derive_seed",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

# Tags of the per-iteration streams. The numbers are part of every run's reproducibility: a run
# resumed by a later flowsr repeats the uninterrupted one only if they never change.
_DEQUANT, _PIXEL, _SAMPLE, _RESCALE, _IRN = 1, 2, 3, 4, 5
#: the stream of the validation latents (per image)
VAL_TAG = 6
#: the stream of each named draw (families name theirs; the SR phases use "pixel" and "sample")
_TAGS = {"dequant": _DEQUANT, "pixel": _PIXEL, "sample": _SAMPLE, "rescale": _RESCALE, "irn": _IRN}


def _tag(name: str | int) -> int:
    if isinstance(name, int):
        return name
    # a name no family used before the redesign gets a stable stream of its own
    return _TAGS.get(name, 0x100 + zlib.crc32(name.encode()) % 0xFFFF)


def derive_seed(*parts: int) -> int:
    """A 64-bit seed derived from integers (numpy's ``SeedSequence``: nearby inputs give
    unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global numpy RNG is what third-party code uses
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """The global RNG states as plain containers and tensors (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


class StepNoise:
    """The random tensors of one iteration (a :class:`~flowsr.models.base.NoiseSource`).

    Each draw is made for the whole global batch on the CPU from a generator seeded with
    ``(seed, iteration, name)`` and then sliced to ``slots`` (this process's samples) and moved
    to ``device``, so it is the same whatever the device, the number of processes or where
    the run was resumed. Drawing the same name twice in one iteration gives the same tensor.
    """

    def __init__(
        self, seed: int, step: int, batch: int, slots: range, device: torch.device, dtype: torch.dtype = torch.float32
    ):
        self.seed, self.step, self.batch, self.slots, self.device = seed, step, batch, slots, device
        self.dtype = dtype

    def _generator(self, name: str | int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.seed, 0x5EED, self.step, _tag(name)))

    def _slice(self, t: Tensor) -> Tensor:
        return t[self.slots.start : self.slots.stop].to(self.device, self.dtype)

    def uniform(self, name: str | int, shape: Sequence[int]) -> Tensor:
        """``U[0, 1)`` of per-sample ``shape``."""
        return self._slice(torch.rand((self.batch, *shape), generator=self._generator(name)))

    def normal(self, name: str | int, shapes: Sequence[Sequence[int]], temperature: float) -> list[Tensor]:
        """``N(0, temperature^2)`` tensors of the per-sample ``shapes`` (zeros at temperature 0)."""
        if temperature == 0:
            return [torch.zeros((len(self.slots), *s), device=self.device, dtype=self.dtype) for s in shapes]
        g = self._generator(name)
        return [self._slice(torch.randn((self.batch, *s), generator=g)) * temperature for s in shapes]


class ReplayNoise:
    """A noise source that returns recorded tensors in the order they were recorded.

    Args:
        draws: the tensors, each with its batch dimension.
        kinds: ``"uniform"`` or ``"normal"`` for each tensor. A ``normal`` draw of ``n`` shapes
            takes the next ``n`` tensors (one per level, as recorded); they are returned as
            recorded, i.e. already scaled by the temperature the recording used.
        device, dtype: where the tensors are moved.

    Every draw checks the kind and the shape of what it takes (a :class:`ValueError` says which
    draw differs), and :meth:`finish` that nothing is left over, so a replay that calls the
    noise in another order than the recording fails instead of silently using wrong tensors.
    """

    def __init__(
        self,
        draws: Sequence[Tensor],
        kinds: Sequence[str],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if len(draws) != len(kinds):
            raise ValueError(f"ReplayNoise: {len(draws)} draws but {len(kinds)} kinds")
        self._draws, self._kinds = list(draws), list(kinds)
        self.device, self.dtype = torch.device(device), dtype
        self._next = 0

    def _take(self, kind: str, name: str, shape: tuple[int, ...]) -> Tensor:
        i = self._next
        if i >= len(self._draws):
            raise ValueError(f"ReplayNoise: draw {i} ({kind} {name!r}) asked for, but only {len(self._draws)} recorded")
        t, recorded = self._draws[i], self._kinds[i]
        if recorded != kind:
            raise ValueError(f"ReplayNoise: draw {i} ({name!r}) is {kind}, the recording has {recorded} there")
        if tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"ReplayNoise: draw {i} ({kind} {name!r}) has per-sample shape {shape}, "
                f"the recording {tuple(t.shape[1:])}"
            )
        self._next += 1
        return t.to(self.device, self.dtype)

    def uniform(self, name: str, shape: Sequence[int]) -> Tensor:
        """The next recorded tensor, which must be a ``uniform`` draw of per-sample ``shape``."""
        return self._take("uniform", name, tuple(int(s) for s in shape))

    def normal(self, name: str, shapes: Sequence[Sequence[int]], temperature: float) -> list[Tensor]:
        """The next ``len(shapes)`` recorded tensors (``normal`` draws of those shapes). At
        temperature 0 they must be zeros, as every sampler records them."""
        out = [self._take("normal", name, tuple(int(d) for d in s)) for s in shapes]
        if temperature == 0 and any(bool(t.any()) for t in out):
            raise ValueError(f"ReplayNoise: the draw {name!r} is at temperature 0 but the recorded tensors are not 0")
        return out

    @property
    def remaining(self) -> int:
        """How many recorded tensors are not used yet."""
        return len(self._draws) - self._next

    def finish(self) -> None:
        """``ValueError`` unless every recorded tensor was used."""
        if self.remaining:
            raise ValueError(
                f"ReplayNoise: {self.remaining} of {len(self._draws)} recorded draws were not used "
                f"(next: {self._kinds[self._next]} of per-sample shape {tuple(self._draws[self._next].shape[1:])})"
            )
