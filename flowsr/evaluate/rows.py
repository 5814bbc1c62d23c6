"""Metric rows of SR and rescaling models on image pairs (the numbers of ``flowsr test`` and
``flowsr demo``), and the bicubic baselines they are compared with."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from flowsr.data import from_uint8, imresize, to_uint8, write_image
from flowsr.inference import downscale, super_resolve
from flowsr.metrics import diversity, lr_consistency_psnr, psnr, ssim
from flowsr.models.base import GeneratorNoise, NonFiniteOutputError
from flowsr.visualize import save_grid

__all__ = [
    "Pair",
    "bicubic_down",
    "bicubic_up",
    "evaluate_rescaling",
    "evaluate_sr",
    "file_t",
    "image_quality",
    "mean",
    "modcrop",
    "reconstruction_quality",
]


@dataclass
class Pair:
    """One test image: ``hr`` and/or ``lr`` as ``(3, H, W)`` float tensors in [0, 1]."""

    name: str
    hr: Tensor | None = None
    lr: Tensor | None = None


def modcrop(img: Tensor, multiple: int) -> Tensor:
    """Crop the bottom/right of ``(..., H, W)`` to multiples of ``multiple`` (the official ``modcrop``)."""
    h, w = img.shape[-2] // multiple * multiple, img.shape[-1] // multiple * multiple
    if h == 0 or w == 0:
        raise ValueError(f"image of size {tuple(img.shape[-2:])} is smaller than the scale {multiple}")
    return img[..., :h, :w]


def bicubic_down(hr: Tensor, scale: int) -> Tensor:
    """The 8-bit MATLAB-bicubic LR image of ``hr`` (as the benchmark LR files are made), floats ``k / 255``."""
    return from_uint8(imresize(to_uint8(hr), 1.0 / scale))


def bicubic_up(lr: Tensor, scale: int, size: Sequence[int] | None = None) -> Tensor:
    """MATLAB-bicubic upscale of ``lr`` by ``scale``, clamped to [0, 1], cropped to ``size`` if given."""
    up = imresize(lr.float(), float(scale)).clamp(0, 1)
    return up[..., : size[0], : size[1]] if size is not None else up


def _border(hr: Tensor, scale: int) -> int:
    return scale if min(hr.shape[-2:]) > 2 * scale else 0


def image_quality(img: Tensor, hr: Tensor, scale: int) -> dict[str, float]:
    """PSNR/SSIM on RGB and Y (8-bit rounded, border crop = ``scale``); SSIM is NaN below 11x11."""
    border = _border(hr, scale)
    out = {"psnr": psnr(img, hr, border), "psnr_y": psnr(img, hr, border, y_channel=True)}
    if min(hr.shape[-2:]) - 2 * border >= 11:
        out["ssim"] = ssim(img, hr, border)
        out["ssim_y"] = ssim(img, hr, border, y_channel=True)
    else:
        out["ssim"] = out["ssim_y"] = math.nan
    return out


def mean(values: list[float]) -> float:
    """The mean of the non-NaN values (NaN when there are none)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _t_label(t: float) -> str:
    return f"T={t:g}"


def file_t(t: float) -> str:
    """A temperature as it appears in file names (``0.8``, ``0``, ``1e+30``)."""
    return f"{t:g}"


def _lpips_value(lpips: nn.Module | None, img: Tensor, hr: Tensor) -> float:
    if lpips is None:
        return math.nan
    with torch.no_grad():
        return float(lpips(img[None].float(), hr[None].float())[0])


@torch.no_grad()
def evaluate_sr(
    model: nn.Module,
    pairs: Sequence[Pair],
    *,
    temperatures: Sequence[float] = (0.0, 0.8),
    samples: int = 1,
    seed: int = 0,
    tile: int | None = None,
    overlap: int = 16,
    lpips: nn.Module | None = None,
    nll: bool = True,
    device: torch.device | str = "cpu",
    grid_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Metric rows ``{"image", "method", "psnr", ...}`` of an SR model (see the module docstring).

    Every pair needs an ``hr`` (cropped to a multiple of the scale); a missing ``lr`` is made with
    :func:`bicubic_down`. Samples of temperature ``T`` are drawn from a CPU generator seeded with
    ``seed`` (the same noise at every temperature). With ``grid_dir``, writes ``<name>.png``
    (LR | bicubic | first sample at each temperature | HR) and, for ``samples >= 2``,
    ``<name>_samples_t<T>.png`` (the strip of samples at the last temperature); with ``image_dir``
    every sample, ``<name>_t<T>_s<k>.png`` (T=0 once: its samples are equal). Files of an image are
    written after all of its results were computed (:func:`output_files` lists them).
    """
    scale = int(model.scale)
    rows: list[dict] = []
    for pair in pairs:
        if pair.hr is None:
            raise ValueError(f"{pair.name}: evaluation needs the HR image")
        hr = modcrop(pair.hr, scale)
        lr = pair.lr if pair.lr is not None else bicubic_down(hr, scale)
        expected = (hr.shape[-2] // scale, hr.shape[-1] // scale)
        if tuple(lr.shape[-2:]) != expected:
            raise ValueError(
                f"{pair.name}: LR image is {lr.shape[-1]}x{lr.shape[-2]}, expected {expected[1]}x{expected[0]} "
                f"(the HR image {hr.shape[-1]}x{hr.shape[-2]} divided by the model's scale {scale})"
            )
        bic = bicubic_up(lr, scale, hr.shape[-2:])
        rows.append(
            {
                "image": pair.name,
                "method": "bicubic",
                **image_quality(bic, hr, scale),
                "lr_psnr": lr_consistency_psnr(bic, lr, scale),
                "lpips": _lpips_value(lpips, bic, hr),
            }
        )
        nll_value = math.nan
        if nll and lr.shape[-1] % model.lr_multiple == 0 and lr.shape[-2] % model.lr_multiple == 0:
            # the NLL the family trains with (its own dequantisation, if any), noise seeded
            noise = GeneratorNoise(1, torch.Generator().manual_seed(seed), device=device)
            terms = model.training_losses(hr[None].to(device), lr[None].to(device), noise, {"nll": 1.0})
            nll_value = float(terms["nll"])
        firsts, strip, images = [], [], []
        lr_dev = lr[None].to(device)
        for t in temperatures:
            gen = torch.Generator().manual_seed(seed)
            outs = [_sample(model, lr_dev, t, gen, tile, overlap, pair.name)[0].cpu() for _ in range(samples)]
            images += [(f"{pair.name}_t{file_t(t)}_s{k}.png", o) for k, o in enumerate(outs[: 1 if t == 0 else None])]
            qualities = [image_quality(o, hr, scale) for o in outs]
            row = {"image": pair.name, "method": _t_label(t)}
            for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
                row[key] = mean([q[key] for q in qualities])
            row["lr_psnr"] = mean([lr_consistency_psnr(o, lr, scale) for o in outs])
            row["diversity"] = diversity(torch.stack(outs)) if samples >= 2 else math.nan
            row["lpips"] = mean([_lpips_value(lpips, o, hr) for o in outs]) if lpips is not None else math.nan
            row["nll"] = nll_value
            rows.append(row)
            firsts.append(outs[0])
            strip = outs
        if log is not None:
            best = max(rows[-len(temperatures) :], key=lambda r: r["psnr_y"])
            log(
                f"{pair.name}: bicubic {rows[-len(temperatures) - 1]['psnr_y']:.2f} dB Y-PSNR, "
                f"model {best['psnr_y']:.2f} dB at {best['method']}"
            )
        _write_images(image_dir, images)
        if grid_dir is not None:
            grid_dir = Path(grid_dir)
            labels = ["LR", "bicubic", *[_t_label(t) for t in temperatures], "HR"]
            save_grid(grid_dir / f"{pair.name}.png", [[lr, bic, *firsts, hr]], labels)
            if samples >= 2:
                t_last = temperatures[-1]
                save_grid(
                    grid_dir / f"{pair.name}_samples_t{file_t(t_last)}.png",
                    [strip],
                    [f"{_t_label(t_last)} #{k}" for k in range(samples)],
                )
    return rows


@torch.no_grad()
def evaluate_rescaling(
    model: nn.Module,
    pairs: Sequence[Pair],
    *,
    temperatures: Sequence[float] = (1.0,),
    seed: int = 0,
    tile: int | None = None,
    overlap: int | None = None,
    lpips: nn.Module | None = None,
    device: torch.device | str = "cpu",
    grid_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Metric rows of a rescaling model: bicubic down+up, then the model's 8-bit LR upscaled at each
    temperature. ``lr_psnr`` / ``lr_psnr_y``: the LR image against the bicubic LR, RGB / Y (the model
    LR should look like it).

    HR images are padded to the model's multiple for the model (and the outputs cropped back), so
    any size works; the bicubic baseline uses the same HR image. With ``grid_dir`` writes
    ``<name>.png``: bicubic LR | model LR | bicubic up | reconstruction at each temperature | HR;
    with ``image_dir`` the model LR ``<name>_lr.png`` and the reconstructions ``<name>_rec_t<T>.png``.
    ``tile`` and ``overlap`` are in HR pixels (the upscaling tiles are those divided by the scale;
    default overlap: 16 LR pixels).
    """
    if model.task != "rescaling":
        raise ValueError(f"{type(model).__name__} is an SR model, not a rescaling model")
    scale = int(model.scale)
    overlap = 16 * scale if overlap is None else overlap
    rows: list[dict] = []
    for pair in pairs:
        if pair.hr is None:
            raise ValueError(f"{pair.name}: rescaling evaluation needs the HR image")
        hr = pair.hr
        size = hr.shape[-2:]
        lr_bic = bicubic_down(hr, scale)
        bic = bicubic_up(lr_bic, scale, size)
        rows.append(
            {
                "image": pair.name,
                "method": "bicubic",
                **image_quality(bic, hr, scale),
                "lr_psnr": math.nan,  # the bicubic LR itself
                "lr_psnr_y": math.nan,
                "lpips": _lpips_value(lpips, bic, hr),
            }
        )
        lr = downscale(model, hr[None].to(device), tile=tile, overlap=overlap)
        lr_cpu = lr[0].cpu()
        same = lr_cpu.shape == lr_bic.shape
        lr_vs_bic = psnr(lr_cpu, lr_bic) if same else math.nan
        lr_vs_bic_y = psnr(lr_cpu, lr_bic, y_channel=True) if same else math.nan
        recs = []
        for t in temperatures:
            gen = torch.Generator().manual_seed(seed)
            lr_tile = None if tile is None else max(1, tile // scale)
            lr_overlap = min(-(-overlap // scale), (lr_tile or 2 * overlap) // 2)
            rec = _sample(model, lr, t, gen, lr_tile, lr_overlap, pair.name)
            rec = rec[0, :, : size[0], : size[1]].cpu()
            rows.append(
                {
                    "image": pair.name,
                    "method": _t_label(t),
                    **image_quality(rec, hr, scale),
                    "lr_psnr": lr_vs_bic,
                    "lr_psnr_y": lr_vs_bic_y,
                    "lpips": _lpips_value(lpips, rec, hr),
                }
            )
            recs.append(rec)
        _write_images(
            image_dir,
            [(f"{pair.name}_lr.png", lr_cpu)]
            + [(f"{pair.name}_rec_t{file_t(t)}.png", r) for t, r in zip(temperatures, recs)],
        )
        if log is not None:
            log(
                f"{pair.name}: bicubic down+up {rows[-len(temperatures) - 1]['psnr_y']:.2f} dB Y-PSNR, "
                f"model {rows[-1]['psnr_y']:.2f} dB ({rows[-1]['method']}), "
                f"model LR vs bicubic LR {lr_vs_bic_y:.2f} dB Y-PSNR"
            )
        if grid_dir is not None:
            labels = ["bicubic LR", "model LR", "bicubic up", *[f"rec. {_t_label(t)}" for t in temperatures], "HR"]
            save_grid(Path(grid_dir) / f"{pair.name}.png", [[lr_bic, lr_cpu, bic, *recs, hr]], labels)
    return rows


def _sample(model: nn.Module, lr: Tensor, t: float, gen, tile, overlap, name: str) -> Tensor:
    """:func:`super_resolve`, with an overflow reported for this image and temperature."""
    try:
        return super_resolve(model, lr, t, gen, tile=tile, overlap=overlap)
    except NonFiniteOutputError:
        raise NonFiniteOutputError(
            f"model produced non-finite values for {name} at T={t:g}; try a lower temperature"
        ) from None


def _write_images(folder: str | os.PathLike | None, images: Sequence[tuple[str, Tensor]]) -> None:
    if folder is not None:
        for file_name, img in images:
            write_image(Path(folder) / file_name, img)


def reconstruction_quality(hr: Tensor, lr: Tensor, recs: Sequence[Tensor], scale: int) -> dict:
    """What ``flowsr rescale`` prints for one image: ``{"reconstructions": [image_quality of each
    rec], "bicubic": image_quality of bicubic down+up, "lr_psnr": model LR vs bicubic LR}``.
    One-channel images get PSNR only."""
    if hr.shape[0] != 3:
        nan = {"psnr_y": math.nan, "ssim": math.nan, "ssim_y": math.nan}
        return {
            "reconstructions": [{"psnr": psnr(r, hr), **nan} for r in recs],
            "bicubic": {"psnr": math.nan, **nan},
            "lr_psnr": math.nan,
        }
    lr_bic = bicubic_down(hr, scale)
    return {
        "reconstructions": [image_quality(r, hr, scale) for r in recs],
        "bicubic": image_quality(bicubic_up(lr_bic, scale, hr.shape[-2:]), hr, scale),
        "lr_psnr": psnr(lr, lr_bic) if lr.shape[-2:] == lr_bic.shape[-2:] else math.nan,
    }
