"""Comparison grids of images with text labels (plain torch + Pillow; no torchvision).

    grid = comparison_grid([[lr, bicubic, sr_t0, sr_t08, hr]], ["LR", "bicubic", "T=0", "T=0.8", "HR"])
    save_grid("butterfly.png", [[lr, bicubic, sr_t0, sr_t08, hr]], ["LR", "bicubic", "T=0", "T=0.8", "HR"])

Every cell is scaled to the size of the largest cell with nearest-neighbour interpolation (an LR
image shows its pixels; integer factors stay exact), keeping its aspect ratio, and centred.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch.nn import functional as F

__all__ = ["comparison_grid", "save_grid", "text_image"]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable default font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def text_image(text: str, width: int, height: int, *, background: float = 1.0, color: float = 0.0) -> Tensor:
    """A ``(3, height, width)`` float tensor with ``text`` centred (shortened with '...' to fit)."""
    bg = int(round(background * 255))
    fg = int(round(color * 255))
    im = Image.new("L", (max(1, width), max(1, height)), color=bg)
    draw = ImageDraw.Draw(im)
    font = _font(max(8, int(height * 0.7)))
    text = str(text)

    def measure(t: str) -> tuple[int, int, int, int]:
        return draw.textbbox((0, 0), t, font=font)

    box = measure(text)
    if box[2] - box[0] > width - 2:
        while text and measure(text + "...")[2] - measure(text + "...")[0] > width - 2:
            text = text[:-1]
        text = text + "..." if text else ""
        box = measure(text)
    x = (width - (box[2] - box[0])) // 2 - box[0]
    y = (height - (box[3] - box[1])) // 2 - box[1]
    draw.text((x, y), text, fill=fg, font=font)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())[None].expand(3, -1, -1).contiguous()


def _as_image(x: Tensor | None, where: str) -> Tensor | None:
    if x is None:
        return None
    if not isinstance(x, Tensor):
        raise TypeError(f"comparison_grid: {where} must be a tensor or None, got {type(x).__name__}")
    t = x.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"comparison_grid: {where} must be (3, H, W), (1, H, W) or (H, W), got {tuple(x.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float().cpu().clamp(0, 1)
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t


def _fit(img: Tensor, h: int, w: int, background: float) -> Tensor:
    """Scale ``img`` (nearest) to fit ``h x w`` keeping its aspect ratio, centred on ``background``."""
    ih, iw = img.shape[1:]
    f = min(h / ih, w / iw)
    nh, nw = max(1, int(round(ih * f))), max(1, int(round(iw * f)))
    if (nh, nw) != (ih, iw):
        img = F.interpolate(img[None], size=(nh, nw), mode="nearest-exact")[0]
    cell = torch.full((3, h, w), float(background))
    top, left = (h - nh) // 2, (w - nw) // 2
    cell[:, top : top + nh, left : left + nw] = img
    return cell


def comparison_grid(
    rows: Sequence[Sequence[Tensor | None]],
    labels: Sequence[str] | Sequence[Sequence[str]] | None = None,
    *,
    row_labels: Sequence[str] | None = None,
    pad: int = 4,
    label_height: int = 18,
    background: float = 1.0,
    max_cell: int | None = None,
) -> Tensor:
    """Arrange images in a grid; returns a ``(3, H, W)`` float tensor in [0, 1].

    Args:
        rows: rows of images ``(3, H, W)`` / ``(1, 3, H, W)`` / ``(1, H, W)`` / ``(H, W)``, float in
            [0, 1] or ``uint8``; ``None`` leaves a cell empty. Rows may have different lengths.
        labels: column headers (one string per column, drawn above the first row) or one list of
            strings per row (drawn above every cell).
        row_labels: one string per row, drawn in a column on the left.
        pad: pixels between cells and around the grid.
        label_height: height of a text line in pixels (0: no text even if labels are given).
        background: grey level of the background and of empty cells.
        max_cell: cap the cell height and width (large images are shown smaller); ``None``: the
            largest image's size.
    """
    if not rows or not any(len(r) for r in rows):
        raise ValueError("comparison_grid: no images given")
    imgs = [[_as_image(x, f"rows[{i}][{j}]") for j, x in enumerate(r)] for i, r in enumerate(rows)]
    present = [x for r in imgs for x in r if x is not None]
    if not present:
        raise ValueError("comparison_grid: every cell is None")
    ch = max(x.shape[1] for x in present)
    cw = max(x.shape[2] for x in present)
    if max_cell is not None and max(ch, cw) > max_cell:
        f = max_cell / max(ch, cw)
        ch, cw = max(1, int(ch * f)), max(1, int(cw * f))
    ncols = max(len(r) for r in imgs)
    per_cell = labels is not None and len(labels) > 0 and not isinstance(labels[0], str)
    if labels is not None and not per_cell and len(labels) > ncols:
        raise ValueError(f"comparison_grid: {len(labels)} column labels for {ncols} columns")
    if per_cell and len(labels) != len(imgs):
        raise ValueError(f"comparison_grid: {len(labels)} label rows for {len(imgs)} image rows")
    if row_labels is not None and len(row_labels) != len(imgs):
        raise ValueError(f"comparison_grid: {len(row_labels)} row labels for {len(imgs)} rows")
    lh = label_height if labels is not None and label_height > 0 else 0
    head = lh if (lh and not per_cell) else 0
    cell_lh = lh if per_cell else 0
    left = 0
    if row_labels is not None and label_height > 0:
        left = max(len(str(s)) for s in row_labels) * max(6, label_height // 2) + pad
    height = pad + head + len(imgs) * (cell_lh + ch + pad)
    width = pad + left + ncols * (cw + pad)
    canvas = torch.full((3, height, width), float(background))
    if head:
        for j, text in enumerate(labels):
            x0 = pad + left + j * (cw + pad)
            canvas[:, pad : pad + head, x0 : x0 + cw] = text_image(text, cw, head, background=background)
    for i, row in enumerate(imgs):
        y0 = pad + head + i * (cell_lh + ch + pad)
        if left:
            canvas[:, y0 + cell_lh : y0 + cell_lh + ch, pad:left] = _row_label(
                row_labels[i], left - pad, ch, label_height, background
            )
        for j, img in enumerate(row):
            x0 = pad + left + j * (cw + pad)
            if cell_lh and j < len(labels[i]):
                canvas[:, y0 : y0 + cell_lh, x0 : x0 + cw] = text_image(
                    labels[i][j], cw, cell_lh, background=background
                )
            if img is not None:
                canvas[:, y0 + cell_lh : y0 + cell_lh + ch, x0 : x0 + cw] = _fit(img, ch, cw, background)
    return canvas


def _row_label(text: str, width: int, height: int, line: int, background: float) -> Tensor:
    out = torch.full((3, height, width), float(background))
    line = min(line, height)
    top = (height - line) // 2
    out[:, top : top + line] = text_image(text, width, line, background=background)
    return out


def save_grid(path: str | os.PathLike, rows: Sequence[Sequence[Tensor | None]], labels=None, **kwargs) -> Path:
    """:func:`comparison_grid` written to ``path`` (format from the extension; 8-bit). Returns the path."""
    from flowsr.data import write_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, comparison_grid(rows, labels, **kwargs))
