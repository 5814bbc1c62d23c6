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
* Test images: :func:`evaluation_pairs` finds them (a folder with ``HR/`` and ``LR/``, a folder of HR
  images, a bundled set name) by file name only, :func:`read_pair` reads one, and
  :func:`lr_size_problems` checks the LR sizes from the file headers, so a caller can refuse a
  mismatched set before any work and skip a bad image without losing the others.
  :func:`output_files` names what the evaluation of one image writes.

A model that overflows (NaN at a high temperature) raises
:class:`~flowsr.models.NonFiniteOutputError` naming the image and the temperature.

Modules: :mod:`~flowsr.evaluate.rows` (metric rows, bicubic baselines), :mod:`~flowsr.evaluate.tables`
(columns, means, Markdown / CSV), :mod:`~flowsr.evaluate.images` (test images, output names).
"""

from flowsr.evaluate.images import evaluation_pairs, lr_size_problems, output_files, read_pair
from flowsr.evaluate.rows import (
    Pair,
    bicubic_down,
    bicubic_up,
    evaluate_rescaling,
    evaluate_sr,
    image_quality,
    modcrop,
    reconstruction_quality,
)
from flowsr.evaluate.tables import COLUMNS, NLL_NOTE, format_value, markdown_table, summarize, write_csv

__all__ = [
    "COLUMNS",
    "NLL_NOTE",
    "Pair",
    "bicubic_down",
    "bicubic_up",
    "evaluate_rescaling",
    "evaluate_sr",
    "evaluation_pairs",
    "format_value",
    "image_quality",
    "lr_size_problems",
    "markdown_table",
    "modcrop",
    "output_files",
    "read_pair",
    "reconstruction_quality",
    "summarize",
    "write_csv",
]
