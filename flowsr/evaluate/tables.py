"""Metric tables: column names, mean rows, Markdown and CSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

from flowsr.evaluate.rows import mean

__all__ = ["COLUMNS", "NLL_NOTE", "format_value", "markdown_table", "summarize", "write_csv"]

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
    "NLL: bits per HR pixel, -log2 of the model's density of the HR image (dequantised with uniform noise "
    "where the family trains so) given the LR image, per pixel, in the official HCFlow / SRFlow convention; "
    "a density can exceed 1, so the bits can be negative (docs/metrics.md). Lower is better; compare only "
    "models with the same quantisation and dequantisation."
)


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
            row[key] = mean(vals)
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
