"""Training data: paired or HR-only image folders and the bundled samples, cut into random
aligned HR/LR patches with the official augmentations, deterministically.

Every random choice is a pure function of ``(seed, iteration, slot)`` -- the image order of an
epoch of ``(seed, epoch)``, the crop position and flips of the sample in position ``slot`` of the
global batch of iteration ``i`` of ``(seed, i, slot)`` -- so batches do not depend on the number
of DataLoader workers, on where a run was interrupted and resumed, or on how the global batch is
sharded across data-parallel processes (:class:`StepBatchSampler` hands process ``r`` of ``w``
the slots ``r*b/w .. (r+1)*b/w - 1``).

LR images: the files of ``lr_dir`` (the HR image is cropped to ``scale x`` the LR size, like the
official ``GTLQ`` loaders), or made on the fly from the 8-bit HR image with the MATLAB-exact
bicubic :func:`flowsr.data.resize.imresize` (HR first cropped to a multiple of the scale, the
LR made from the whole image and then cropped, as pre-computed LR folders are).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from flowsr.data.pairs import images_by_stem, match_lr
from flowsr.train.config import ConfigError, DataConfig

__all__ = [
    "ImageRecord",
    "PatchDataset",
    "StepBatchSampler",
    "ValDataset",
    "list_images",
    "collate",
    "make_train_loader",
]

# Distinct seed-sequence tags so the data streams never reuse the model's or the noise's seeds.
_ORDER_TAG = 0x0D474
_AUG_TAG = 0xA06


@dataclass(frozen=True)
class ImageRecord:
    """One training image: its stem, HR path and LR path (``None``: LR made on the fly)."""

    name: str
    hr: Path
    lr: Path | None


def _images_in(folder: Path, what: str) -> dict[str, Path]:
    """``{stem: path}`` of the images of ``folder`` (flowsr.data's one rule and extension list)."""
    try:
        return images_by_stem(folder)
    except ValueError as err:
        raise ConfigError(f"data: {what}: {err}") from None


def _sample_folders(kind: str) -> tuple[Path, Path, int]:
    """HR and LR folders of a bundled sample set and its scale."""
    try:
        from flowsr.data import SAMPLE_KINDS, sample_images
    except ImportError:  # pragma: no cover - flowsr.data is part of the package
        sample_images = None
        SAMPLE_KINDS = {"face_x8": 8, "general_x4": 4}
    if kind not in SAMPLE_KINDS:
        raise ConfigError(f"config: data.samples must be one of {sorted(SAMPLE_KINDS)}, got {kind!r}")
    if sample_images is not None:
        pairs = sample_images(kind)
        return pairs[0][1].parent, pairs[0][2].parent, SAMPLE_KINDS[kind]
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / kind  # pragma: no cover
    return root / "HR", root / "LR", SAMPLE_KINDS[kind]  # pragma: no cover


def list_images(cfg: DataConfig, scale: int) -> list[ImageRecord]:
    """The images of a dataset config, sorted by stem, with the LR files to use (if any)."""
    if cfg.source == "samples":
        hr_dir, lr_dir, sample_scale = _sample_folders(cfg.samples)
        if cfg.lr == "files" and sample_scale != scale:
            raise ConfigError(
                f"data: the bundled {cfg.samples!r} LR images are x{sample_scale}, the model is x{scale}; "
                "use lr: bicubic (or auto)"
            )
        use_files = cfg.lr == "files" or (cfg.lr == "auto" and sample_scale == scale)
    else:
        hr_dir = Path(os.path.expanduser(cfg.hr_dir))
        lr_dir = Path(os.path.expanduser(cfg.lr_dir)) if cfg.lr_dir else None
        if cfg.lr == "files" and lr_dir is None:
            raise ConfigError("data: lr: files needs an lr_dir")
        use_files = lr_dir is not None and cfg.lr != "bicubic"
    hrs = _images_in(hr_dir, "hr_dir")
    lrs = _images_in(lr_dir, "lr_dir") if use_files else {}
    names = sorted(hrs)
    if cfg.names is not None:
        wanted = [str(n) for n in cfg.names]
        missing = [n for n in wanted if n not in hrs]
        if missing:
            raise ConfigError(f"data: names {missing} are not images of {str(hr_dir)!r} (has {names})")
        names = [n for n in names if n in set(wanted)]
    if cfg.exclude:
        names = [n for n in names if n not in {str(e) for e in cfg.exclude}]
    if not names:
        raise ConfigError(f"data: no images in {str(hr_dir)!r} (after names/exclude)")
    records = []
    for n in names:
        lr_path = None
        if use_files:
            lr_path = match_lr(n, lrs, scale)  # same stem, or BasicSR's "<stem>x<scale>"
            if lr_path is None:
                raise ConfigError(f"data: no LR image for {str(hrs[n])!r} in {str(lr_dir)!r}")
        records.append(ImageRecord(n, hrs[n], lr_path))
    return records


def _bicubic_lr(hr: torch.Tensor, scale: int, uint8: bool = True) -> torch.Tensor:
    from flowsr.data.image_io import from_uint8, to_uint8
    from flowsr.data.resize import imresize

    if uint8:
        return from_uint8(imresize(to_uint8(hr), 1.0 / scale))
    return imresize(hr, 1.0 / scale)


class _Images:
    """Loads (and caches) aligned HR/LR image pairs as float32 ``(3, H, W)`` tensors in [0, 1]."""

    def __init__(self, records: list[ImageRecord], scale: int, cache: bool, bicubic_uint8: bool = True):
        self.records, self.scale, self.cache, self.uint8 = records, scale, cache, bicubic_uint8
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index in self._cache:
            return self._cache[index]
        from flowsr.data.image_io import read_image

        rec, s = self.records[index], self.scale
        hr = read_image(rec.hr)
        if rec.lr is not None:
            lr = read_image(rec.lr)
            h, w = lr.shape[1] * s, lr.shape[2] * s
            if hr.shape[1] < h or hr.shape[2] < w:
                raise ValueError(
                    f"data: HR image {str(rec.hr)!r} ({hr.shape[2]}x{hr.shape[1]}) is smaller than x{s} its LR "
                    f"image {str(rec.lr)!r} ({lr.shape[2]}x{lr.shape[1]})"
                )
            hr = hr[:, :h, :w]
        else:
            h, w = hr.shape[1] - hr.shape[1] % s, hr.shape[2] - hr.shape[2] % s
            if h == 0 or w == 0:
                raise ValueError(f"data: HR image {str(rec.hr)!r} is smaller than the scale {s}")
            hr = hr[:, :h, :w].contiguous()
            lr = _bicubic_lr(hr, s, self.uint8)
        if self.cache:
            self._cache[index] = (hr, lr)
        return hr, lr


def _augment(t: torch.Tensor, hflip: bool, vflip: bool, rot90: bool) -> torch.Tensor:
    # BasicSR `augment`: img[:, ::-1] (horizontal), img[::-1] (vertical), transpose(1, 0, 2).
    if hflip:
        t = t.flip(-1)
    if vflip:
        t = t.flip(-2)
    if rot90:
        t = t.transpose(-1, -2)
    return t.contiguous()


class PatchDataset(Dataset):
    """Random aligned HR/LR patches with random flips.

    Items are addressed by ``(index, iteration, slot)`` keys (see :class:`StepBatchSampler`);
    the crop and flips come from a generator seeded with ``(seed, iteration, slot)``. An item is
    ``{"hr": (3, P, P), "lr": (3, P/s, P/s), "index": int}``.
    """

    def __init__(self, cfg: DataConfig, scale: int, seed: int, records: list[ImageRecord] | None = None):
        self.cfg, self.scale, self.seed = cfg, int(scale), int(seed)
        self.records = records if records is not None else list_images(cfg, scale)
        self.images = _Images(self.records, self.scale, cfg.cache, cfg.bicubic_uint8)
        p = cfg.patch_size
        if p is not None and p % self.scale:
            raise ConfigError(f"config: data.patch_size {p} must be a multiple of the scale {self.scale}")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        index, step, slot = (int(k) for k in key)
        hr, lr = self.images.load(index)
        rng = np.random.default_rng([self.seed, _AUG_TAG, step, slot])
        s, p = self.scale, self.cfg.patch_size
        if p is not None:
            lp = p // s
            lh, lw = lr.shape[1], lr.shape[2]
            if lh < lp or lw < lp:
                raise ValueError(
                    f"data: image {str(self.records[index].hr)!r} (LR {lw}x{lh}) is smaller than the patch "
                    f"(HR {p}, LR {lp})"
                )
            y, x = int(rng.integers(0, lh - lp + 1)), int(rng.integers(0, lw - lp + 1))
            lr = lr[:, y : y + lp, x : x + lp]
            hr = hr[:, y * s : (y + lp) * s, x * s : (x + lp) * s]
        hf = self.cfg.hflip and rng.random() < 0.5
        vf = self.cfg.vflip and rng.random() < 0.5
        rt = self.cfg.rot90 and rng.random() < 0.5
        return {"hr": _augment(hr, hf, vf, rt), "lr": _augment(lr, hf, vf, rt), "index": index}


class StepBatchSampler(Sampler):
    """Yields, for iterations ``start + 1 .. end``, this process's keys of the global batch.

    The global batch of iteration ``i`` (1-based) holds positions ``(i-1)*B .. i*B - 1`` of an
    endless stream of epochs, each a permutation of the images seeded by ``(seed, epoch)``.
    Process ``rank`` of ``world`` gets slots ``rank*B/world .. (rank+1)*B/world - 1``.
    """

    def __init__(self, n_images: int, batch_size: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ConfigError(f"config: data.batch_size {batch_size} is not divisible by the {world} processes")
        self.n, self.batch, self.seed = int(n_images), int(batch_size), int(seed)
        self.start, self.end, self.rank, self.world = int(start), int(end), int(rank), int(world)
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, _ORDER_TAG, epoch]).permutation(self.n)
        return self._perms[epoch]

    def keys(self, step: int, slots: range | None = None) -> list[tuple[int, int, int]]:
        """The keys of iteration ``step`` (all slots of the global batch unless ``slots``)."""
        out = []
        for slot in slots if slots is not None else range(self.batch):
            pos = (step - 1) * self.batch + slot
            out.append((int(self._perm(pos // self.n)[pos % self.n]), step, slot))
        return out

    def local_slots(self) -> range:
        b = self.batch // self.world
        return range(self.rank * b, (self.rank + 1) * b)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for step in range(self.start + 1, self.end + 1):
            yield self.keys(step, self.local_slots())

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def collate(items: list[dict]) -> dict:
    """Stack items into ``{"hr": (B, 3, H, W), "lr": (B, 3, h, w), "index": (B,)}``."""
    shapes = {tuple(it["hr"].shape) for it in items}
    if len(shapes) > 1:
        raise ValueError(f"data: images of different sizes {sorted(shapes)} cannot form a batch; set data.patch_size")
    return {
        "hr": torch.stack([it["hr"] for it in items]),
        "lr": torch.stack([it["lr"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }


def make_train_loader(dataset: PatchDataset, sampler: StepBatchSampler, workers: int = 0) -> DataLoader:
    """A DataLoader over ``sampler``'s batches (deterministic whatever ``workers``)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )


class ValDataset(Dataset):
    """Whole validation images (HR cropped to a multiple of ``multiple``), no augmentation."""

    def __init__(self, cfg: DataConfig, scale: int, multiple: int, max_images: int | None = None):
        self.scale, self.multiple = int(scale), int(multiple)
        self.records = list_images(cfg, scale)
        if max_images is not None:
            self.records = self.records[:max_images]
        self.images = _Images(self.records, self.scale, cfg.cache, cfg.bicubic_uint8)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        hr, lr = self.images.load(index)
        m, s = self.multiple, self.scale
        h, w = hr.shape[1] - hr.shape[1] % m, hr.shape[2] - hr.shape[2] % m
        if h == 0 or w == 0:
            raise ValueError(f"data: validation image {str(self.records[index].hr)!r} is smaller than {m} px")
        return {"hr": hr[:, :h, :w], "lr": lr[:, : h // s, : w // s], "name": self.records[index].name}
