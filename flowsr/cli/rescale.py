"""``flowsr rescale``: downscale HR images with a rescaling model and reconstruct them from the 8-bit LR."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from flowsr.cli import images, inputs, plan
from flowsr.cli.base import command
from flowsr.cli.batch import Batch
from flowsr.cli.console import NoteLog, TileProgress, say
from flowsr.cli.errors import CLIError
from flowsr.cli.modelref import as_model_input, bundled_names, load_task_model, model_temperatures
from flowsr.cli.options import (
    DEFAULT_OVERLAP,
    add_device,
    add_model,
    add_output,
    add_seed,
    add_temperatures,
    add_tiling,
    model_ref,
    resolve_device,
    temperatures,
    tiling,
)

__all__ = ["OUTPUT_TAG", "add_parser", "run"]

HELP = "Downscale HR images with a rescaling model and reconstruct them from the 8-bit LR"
#: What ``rescale`` adds to an input's name (``_lr``, ``_rec``, ``_rec_t0.5``).
OUTPUT_TAG = r"lr|rec(?:_t\d+(?:\.\d+)?(?:e[+-]?\d+)?)?"

EPILOG = """\
Outputs: OUT/<name>_lr.<ext> (the model's 8-bit LR image) and OUT/<name>_rec.<ext> (the HR image
reconstructed from that 8-bit LR; <name>_rec_t<T> for each of several temperatures), and per image
the reconstruction PSNR (RGB and Y, border = scale), the bicubic down+up PSNR for comparison, and
the LR image's PSNR against the bicubic LR. --mode down writes only the LR; --mode up treats the
inputs as LR images made by the model and writes OUT/<name>_rec.<ext>. Without -t the model's
recommended temperatures are used (its metadata or model card), else its family's default (1).

--tile and --overlap are in pixels of the input: HR pixels (LR pixels with --mode up); the
upscaling step uses the same tiles divided by the scale. Inputs are never written, existing outputs
only with --overwrite; a bad image is reported and skipped (exit status 2 at the end).

Examples:
  flowsr rescale photo.png -m hcflow_rescaling_x4_demo
  flowsr rescale photos/ -c rescaling.safetensors -o out/ --ext webp
  flowsr rescale out/photo_lr.png --mode up -m hcflow_rescaling_x4_demo -o photo_up.png"""


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "rescale", HELP, EPILOG, parents)
    p.add_argument("images", nargs="+", metavar="HR_IMAGE", help="HR image files or folders of images")
    add_model(p, "the rescaling model", bundled_names())
    add_temperatures(
        p,
        "temperature(s) of the latent when upscaling (default: the model's recommended ones)",
    )
    p.add_argument(
        "--mode",
        choices=("both", "down", "up"),
        default="both",
        help="both: HR -> LR -> HR; down: HR -> LR only; up: LR (made by the model) -> HR",
    )
    add_output(p, "results")
    add_device(p)
    add_seed(p)
    add_tiling(p, "input (HR; LR with --mode up)")
    p.set_defaults(func=run)
    return p


def _size(x) -> str:
    return f"{x.shape[-1]}x{x.shape[-2]}"


def _rec_tag(t: float, several: bool) -> str:
    return f"rec_t{t:g}" if several else "rec"


def run(args: argparse.Namespace) -> int:
    import torch

    from flowsr.evaluate import format_value, reconstruction_quality
    from flowsr.inference import downscale, hr_multiple, upscale
    from flowsr.models import NonFiniteOutputError

    suffix = plan.check_suffix(args.suffix)
    found = inputs.collect(args.images, OUTPUT_TAG)
    device = resolve_device(args.device)
    model, path = load_task_model(model_ref(args), device, "rescaling", "'flowsr sr'")
    scale = int(model.scale)
    if args.mode == "up":  # input: LR pixels
        lr_tile, lr_overlap = args.tile, tiling(args.tile, args.overlap, DEFAULT_OVERLAP, model.lr_multiple, "LR")
        hr_overlap = None
    else:  # input: HR pixels; the upscaling step tiles the LR with the same tiles / scale
        hr_overlap = tiling(args.tile, args.overlap, DEFAULT_OVERLAP * scale, hr_multiple(model), "HR")
        lr_tile = None if args.tile is None else args.tile // scale
        lr_overlap = min(math.ceil(hr_overlap / scale), (lr_tile or 2 * DEFAULT_OVERLAP) // 2)
    temps: list[float] = []
    if args.mode != "down":
        temps = temperatures(args.temperature or [])
        if not temps:
            temps, source = model_temperatures(model, path)
            say(f"temperatures {', '.join(f'{t:g}' for t in temps)} (from {source}; -t to choose)")
    several = len(temps) > 1
    tags = (["lr"] if args.mode != "up" else []) + [_rec_tag(t, several) for t in temps]
    target = plan.target(args.out, images.extensions(), len(found.files) * len(tags), "LR and reconstructions")
    names = {
        f: [target.file or target.folder / plan.name(f.stem, tag, suffix, args.ext) for tag in tags]
        for f in found.files
    }
    plan.check([plan.Output(p, f) for f, ps in names.items() for p in ps], found.files, args.overwrite, found.skipped)
    notes = NoteLog()

    def up(lr, f: Path, t: float):
        bar = TileProgress(f"{f.name} up T={t:g}")
        try:
            gen = torch.Generator().manual_seed(args.seed)
            return upscale(model, lr, t, gen, tile=lr_tile, overlap=lr_overlap, progress=bar)
        except NonFiniteOutputError:
            raise CLIError(f"model produced non-finite values for {f} at T={t:g}; try a lower temperature") from None
        finally:
            bar.close()

    def one(f: Path) -> None:
        img = images.read(f)
        notes.add(img.notes)
        x = as_model_input(img.rgb, model, f).to(device)
        results = []
        if args.mode == "up":
            recs = [up(x, f, t) for t in temps]
            results = [r[0].cpu() for r in recs]
        else:
            bar = TileProgress(f"{f.name} down")
            try:
                lr = downscale(model, x, tile=args.tile, overlap=hr_overlap, progress=bar)  # 8-bit values
            finally:
                bar.close()
            results.append(lr[0].cpu())
            recs = [up(lr, f, t)[..., : x.shape[-2], : x.shape[-1]] for t in temps]
            results += [r[0].cpu() for r in recs]
        for dst, out in zip(names[f], results):  # everything computed: write (nothing partial)
            notes.add(images.write(dst, out, img))
        written = ", ".join(str(p) for p in names[f])
        if args.mode == "up":
            say(f"{f.name}: LR {_size(x)} -> HR {_size(results[0])} (T={', '.join(f'{t:g}' for t in temps)})")
        elif args.mode == "down":
            say(f"{f.name}: HR {_size(x)} -> LR {_size(results[0])}")
        else:
            say(f"{f.name}: HR {_size(x)} -> LR {_size(results[0])} -> HR {_size(results[1])}")
            q = reconstruction_quality(x[0].cpu(), results[0], results[1:], scale)
            v = format_value
            for t, rq in zip(temps, q["reconstructions"]):
                say(
                    f"  T={t:g}: reconstruction PSNR {v('psnr', rq['psnr'])} dB, Y-PSNR {v('psnr', rq['psnr_y'])} dB "
                    f"(bicubic down+up: {v('psnr', q['bicubic']['psnr'])} dB, {v('psnr', q['bicubic']['psnr_y'])} dB); "
                    f"LR vs bicubic LR: {v('psnr', q['lr_psnr'])} dB"
                )
        say(f"  wrote {written}")

    batch = Batch(found.files, label=str)
    batch.run(one)
    notes.summary()
    batch.finish()
    return 0
