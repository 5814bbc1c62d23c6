"""Test images for an evaluation: found by file name, checked from their headers, read one at a
time; and the names of the files an evaluation writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from flowsr.data import SAMPLE_SETS, read_image, sample_images
from flowsr.data.pairs import ImagePair, pair_folders
from flowsr.evaluate.rows import Pair, file_t

__all__ = ["evaluation_pairs", "lr_size_problems", "output_files", "read_pair"]


def output_files(
    task: str, name: str, temperatures: Sequence[float], samples: int = 1, *, images: bool = False
) -> list[str]:
    """The files (relative to the output folder) that evaluating image ``name`` writes:
    ``grids/...`` always, ``images/...`` with ``images=True`` (the ``image_dir`` of ``flowsr test``)."""
    out = [f"grids/{name}.png"]
    if task == "sr":
        if samples >= 2 and temperatures:
            out.append(f"grids/{name}_samples_t{file_t(temperatures[-1])}.png")
        if images:
            out += [
                f"images/{name}_t{file_t(t)}_s{k}.png" for t in temperatures for k in range(1 if t == 0 else samples)
            ]
    elif images:
        out += [f"images/{name}_lr.png"] + [f"images/{name}_rec_t{file_t(t)}.png" for t in temperatures]
    return out


def evaluation_pairs(data: str | os.PathLike, scale: int) -> list[ImagePair]:
    """The test images of ``data``, by file name only (nothing is read):

    * a folder with ``HR/`` and optional ``LR/`` subfolders (LR files paired by
      :func:`flowsr.data.pairs.pair_folders`: ``<stem>`` or ``<stem>x<scale>``);
    * a folder of HR images (no LR files: the caller makes bicubic ones);
    * the name of a bundled sample set (:data:`flowsr.data.SAMPLE_SETS`; its LR files are used
      when their scale is the model's).

    Raises ``ValueError`` for anything else, or a folder without images.
    """
    p = Path(data)
    if not p.exists() and str(data) in SAMPLE_SETS:
        use_lr = SAMPLE_SETS[str(data)].scale == scale
        return [ImagePair(n, hr, lr if use_lr else None) for n, hr, lr in sample_images(str(data))]
    if not p.is_dir():
        raise ValueError(f"--data {data}: no such folder (or bundled set: {', '.join(SAMPLE_SETS)})")
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
