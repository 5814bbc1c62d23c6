"""Evaluate SR and rescaling models on image sets: metric rows, Markdown/CSV tables, comparison grids.

Used by ``flowsr test`` and ``flowsr demo`` (:mod:`flowsr.cli`); the metrics are those of
:mod:`flowsr.metrics` with the official conventions (8-bit rounding, border crop = scale, BT.601 Y,
MATLAB-style SSIM), the bicubic baselines use the MATLAB-exact :func:`flowsr.data.imresize`.

* SR (:func:`evaluate_sr`): for every image, the bicubic upscale of the LR image and ``samples``
  SR samples at each temperature; PSNR/SSIM (RGB and Y) against the HR image averaged over the
  samples, LR-consistency PSNR, diversity (``samples >= 2``), LPIPS (when given) and the NLL of
  the HR image (bits per pixel, the official unit; the same for every temperature).
* Rescaling (:func:`evaluate_rescaling`): bicubic down + up against the model's downscale (8-bit
  LR) + upscale at each temperature; ``lr_psnr`` / ``lr_psnr_y`` are the model LR against the
  bicubic LR (RGB / Y); :func:`reconstruction_quality` gives the same numbers for one image.
* Test images: :func:`test_pairs` finds them (a folder with ``HR/`` and ``LR/``, a folder of HR
  images, a bundled set name) by file name only, :func:`read_pair` reads one, and
  :func:`lr_size_problems` checks the LR sizes from the file headers, so a caller can refuse a
  mismatched set before any work and skip a bad image without losing the others.
  :func:`output_files` names what the evaluation of one image writes.

A model that overflows (NaN at a high temperature) raises
:class:`~flowsr.models.NonFiniteOutputError` naming the image and the temperature.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from flowsr.data import SAMPLE_KINDS, from_uint8, imresize, read_image, sample_images, to_uint8, write_image
from flowsr.data.pairs import ImagePair, pair_folders
from flowsr.inference import downscale, super_resolve
from flowsr.metrics import diversity, lr_consistency_psnr, psnr, ssim
from flowsr.models.base import GeneratorNoise, NonFiniteOutputError
from flowsr.visualize import save_grid

__all__ = [
    "COLUMNS",
    "NLL_NOTE",
    "Pair",
    "bicubic_down",
    "bicubic_up",
    "evaluate_rescaling",
    "evaluate_sr",
    "format_value",
    "image_quality",
    "lr_size_problems",
    "markdown_table",
    "modcrop",
    "output_files",
    "read_pair",
    "reconstruction_quality",
    "summarize",
    "test_pairs",
    "write_csv",
]

#: Every metric column, in table order, with its header.
COLUMNS: dict[str, str] = {
    "image": "image",
    "method": "method",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "psnr_y": "PSNR-Y",
    "ssim_y": "SSIM-Y",
    "lr_psnr": "LR-PSNR",
    "lr_psnr_y": "LR-PSNR-Y",
    "diversity": "diversity",
    "lpips": "LPIPS",
    "nll": "NLL (bits/px, see note)",
}

#: What the NLL column is (printed under tables that have it; docs/metrics.md says the same).
NLL_NOTE = (
    "NLL: -log2 p(HR | LR) of the 8-bit HR image given the LR image, divided by the number of HR pixels "
    "(channels not counted; the official HCFlow / SRFlow unit); lower is better. HCFlow dequantises with "
    "uniform noise, SRFlow does not: the model's density of a continuous image can exceed 1, so the bits "
    "can be negative."
)


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


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _t_label(t: float) -> str:
    return f"T={t:g}"


def _file_t(t: float) -> str:
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
            images += [(f"{pair.name}_t{_file_t(t)}_s{k}.png", o) for k, o in enumerate(outs[: 1 if t == 0 else None])]
            qualities = [image_quality(o, hr, scale) for o in outs]
            row = {"image": pair.name, "method": _t_label(t)}
            for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
                row[key] = _mean([q[key] for q in qualities])
            row["lr_psnr"] = _mean([lr_consistency_psnr(o, lr, scale) for o in outs])
            row["diversity"] = diversity(torch.stack(outs)) if samples >= 2 else math.nan
            row["lpips"] = _mean([_lpips_value(lpips, o, hr) for o in outs]) if lpips is not None else math.nan
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
                    grid_dir / f"{pair.name}_samples_t{_file_t(t_last)}.png",
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
            + [(f"{pair.name}_rec_t{_file_t(t)}.png", r) for t, r in zip(temperatures, recs)],
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


def output_files(
    task: str, name: str, temperatures: Sequence[float], samples: int = 1, *, images: bool = False
) -> list[str]:
    """The files (relative to the output folder) that evaluating image ``name`` writes:
    ``grids/...`` always, ``images/...`` with ``images=True`` (the ``image_dir`` of ``flowsr test``)."""
    out = [f"grids/{name}.png"]
    if task == "sr":
        if samples >= 2 and temperatures:
            out.append(f"grids/{name}_samples_t{_file_t(temperatures[-1])}.png")
        if images:
            out += [
                f"images/{name}_t{_file_t(t)}_s{k}.png" for t in temperatures for k in range(1 if t == 0 else samples)
            ]
    elif images:
        out += [f"images/{name}_lr.png"] + [f"images/{name}_rec_t{_file_t(t)}.png" for t in temperatures]
    return out


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


# -- test images -------------------------------------------------------------------------------------


def test_pairs(data: str | os.PathLike, scale: int) -> list[ImagePair]:
    """The test images of ``data``, by file name only (nothing is read):

    * a folder with ``HR/`` and optional ``LR/`` subfolders (LR files paired by
      :func:`flowsr.data.pairs.pair_folders`: ``<stem>`` or ``<stem>x<scale>``);
    * a folder of HR images (no LR files: the caller makes bicubic ones);
    * the name of a bundled sample set (:data:`flowsr.data.SAMPLE_KINDS`; its LR files are used
      when their scale is the model's).

    Raises ``ValueError`` for anything else, or a folder without images.
    """
    p = Path(data)
    if not p.exists() and str(data) in SAMPLE_KINDS:
        use_lr = SAMPLE_KINDS[str(data)] == scale
        return [ImagePair(n, hr, lr if use_lr else None) for n, hr, lr in sample_images(str(data))]
    if not p.is_dir():
        raise ValueError(f"--data {data}: no such folder (or bundled set: {', '.join(SAMPLE_KINDS)})")
    hr_dir = p / "HR" if (p / "HR").is_dir() else p
    lr_dir = p / "LR" if (p / "LR").is_dir() else None
    pairs = pair_folders(hr_dir, lr_dir, scale)
    if not pairs:
        raise ValueError(f"no images in {hr_dir}")
    return pairs


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(H, W)`` from the file header (no decoding), or ``None`` when the header cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # noqa: BLE001 - reported when the image is read
        return None


def lr_size_problems(pairs: Sequence[ImagePair], scale: int, task: str = "sr") -> list[str]:
    """The pairs whose LR file cannot be the HR image (cropped to the scale) divided by ``scale``,
    judged from the headers (either orientation passes: the reader may apply EXIF rotation)."""
    problems = []
    for pair in pairs:
        if pair.lr is None or task != "sr":
            continue
        hr, lr = _header_size(pair.hr), _header_size(pair.lr)
        if hr is None or lr is None:
            continue
        want = (hr[0] // scale, hr[1] // scale)
        if lr != want and lr[::-1] != want:
            problems.append(
                f"{pair.lr}: LR image is {lr[1]}x{lr[0]}, expected {want[1]}x{want[0]} (the HR image "
                f"{hr[1]}x{hr[0]} divided by the model's scale {scale})"
            )
    return problems


def read_pair(pair: ImagePair, scale: int) -> Pair:
    """Read one test image (``ValueError`` naming the file when it cannot be read or is smaller than
    the scale)."""
    hr = read_image(pair.hr)
    if min(hr.shape[-2:]) < scale:
        raise ValueError(f"{pair.hr}: HR image {hr.shape[-1]}x{hr.shape[-2]} is smaller than the scale x{scale}")
    return Pair(pair.name, hr, read_image(pair.lr) if pair.lr is not None else None)


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One ``image="mean"`` row per method: the mean of each metric over the images (NaN ignored)."""
    methods: list[str] = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    out = []
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        row = {"image": "mean", "method": m}
        for key in COLUMNS:
            if key in ("image", "method"):
                continue
            vals = [r.get(key, math.nan) for r in sel]
            row[key] = _mean(vals)
        out.append(row)
    return out


def _columns(rows: Sequence[dict]) -> list[str]:
    """The columns that have at least one finite value (plus image and method)."""
    keep = ["image", "method"]
    for key in COLUMNS:
        if key in keep:
            continue
        if any(isinstance(r.get(key), float) and not math.isnan(r[key]) for r in rows):
            keep.append(key)
    return keep


def format_value(key: str, v) -> str:
    """Table formatting: PSNRs with 2 decimals, SSIM/LPIPS with 4, NaN as ``-``."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if key in ("ssim", "ssim_y", "lpips"):
        return f"{v:.4f}"
    if key == "nll":
        return f"{v:.3f}"
    return f"{v:.2f}"


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (columns without any value are left out)."""
    columns = list(columns) if columns is not None else _columns(rows)
    lines = [
        "| " + " | ".join(COLUMNS.get(c, c) for c in columns) + " |",
        "|" + "|".join("---" if c in ("image", "method") else "---:" for c in columns) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(format_value(c, r.get(c, math.nan)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV (full precision; empty cells for missing values)."""
    columns = list(columns) if columns is not None else _columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            cells = []
            for c in columns:
                v = r.get(c, math.nan)
                cells.append("" if isinstance(v, float) and math.isnan(v) else v)
            writer.writerow(cells)
    return path
