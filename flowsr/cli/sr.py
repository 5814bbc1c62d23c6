"""``flowsr sr``: super-resolve LR images with an SR model, N samples at each temperature."""

from __future__ import annotations

import argparse
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
    count,
    model_ref,
    resolve_device,
    temperatures,
    tiling,
)

__all__ = ["OUTPUT_TAG", "add_parser", "run", "sample_tag"]

HELP = "Super-resolve LR images with an SR model (diverse samples at chosen temperatures)"
#: What ``sr`` adds to an input's name (``_t0.8_s0``); files named so are skipped in input folders.
OUTPUT_TAG = r"t\d+(?:\.\d+)?(?:e[+-]?\d+)?_s\d+"

EPILOG = """\
Outputs: OUT/<name>_t<T>_s<k>.<ext> for every input, temperature T and sample k = 0..N-1
(<name>_<suffix>_t<T>_s<k> with --suffix); -o file.png for one input and one output writes that
file. T=0 is the mean sample: it is written once, whatever N. Temperature 0 gives the smoothest
image (highest PSNR); 0.8-0.9 gives diverse samples with realistic detail. Without -t the model's
recommended temperatures are used (its metadata or model card), else its family's default.
Sample k uses the same noise at every temperature (one generator seeded with --seed per input and
temperature), so results are reproducible on any device.

Never overwritten: inputs (always refused) and existing outputs (unless --overwrite). Files in an
input folder named like outputs of the other inputs are skipped. A bad image is reported and
skipped, the others are processed; the exit status is then 2.

Any image size works (the LR image is padded to the model's multiple and the output cropped).
For large images use --tile: overlapping S x S tiles of LR pixels (--overlap O LR pixels, at most
S/2), blended with linear ramps, so memory stays bounded by the tile size. Images are handled as
they look: EXIF orientation applied, alpha kept, grey stays grey, 16 bit stays 16 bit (where the
installed flowsr.data supports it; each conversion is printed once).

Examples:
  flowsr sr lr.png -m hcflow_sr_x4_demo
  flowsr sr lr_folder/ -m model.safetensors -t 0 0.8 -n 4 -o out/
  flowsr sr big.png -c model.safetensors --tile 128 --overlap 16 -o big_x4.png"""


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "sr", HELP, EPILOG, parents)
    p.add_argument("images", nargs="+", metavar="LR_IMAGE", help="LR image files or folders of images")
    add_model(p, "the SR model", bundled_names())
    add_temperatures(
        p,
        "one or more sampling temperatures (default: the model's recommended ones)",
    )
    p.add_argument("--samples", "-n", type=count(1), default=1, metavar="N", help="samples per image and temperature")
    add_output(p, "results")
    add_device(p)
    add_seed(p)
    add_tiling(p, "LR")
    p.set_defaults(func=run)
    return p


def sample_tag(t: float, k: int) -> str:
    """The name tag of sample ``k`` at temperature ``t``."""
    return f"t{t:g}_s{k}"


def _size(x) -> str:
    return f"{x.shape[-1]}x{x.shape[-2]}"


def run(args: argparse.Namespace) -> int:
    import torch

    from flowsr.inference import super_resolve
    from flowsr.models import NonFiniteOutputError

    suffix = plan.check_suffix(args.suffix)
    found = inputs.collect(args.images, OUTPUT_TAG)
    device = resolve_device(args.device)
    model, path = load_task_model(
        model_ref(args), device, "sr", "'flowsr rescale HR_IMAGES' (it upscales the LR images it makes itself)"
    )
    overlap = tiling(args.tile, args.overlap, DEFAULT_OVERLAP, model.lr_multiple, "LR")
    temps = temperatures(args.temperature or [])
    if not temps:
        temps, source = model_temperatures(model, path)
        say(f"temperatures {', '.join(f'{t:g}' for t in temps)} (from {source}; -t to choose)")
    jobs = [(t, k) for t in temps for k in range(1 if t == 0 else args.samples)]
    if args.samples > 1 and 0.0 in temps:
        say(f"note: T=0 is the mean sample (no noise): written once, not {args.samples} times")
    target = plan.target(args.out, images.extensions(), len(found.files) * len(jobs), "one per input, T and sample")
    outputs: dict[Path, list[tuple[float, int, Path]]] = {}
    for f in found.files:
        outputs[f] = [
            (t, k, target.file or target.folder / plan.name(f.stem, sample_tag(t, k), suffix, args.ext))
            for t, k in jobs
        ]
    plan.check(
        [plan.Output(p, f) for f, outs in outputs.items() for _, _, p in outs],
        found.files,
        args.overwrite,
        found.skipped,
    )

    notes = NoteLog()

    def one(f: Path) -> None:
        img = images.read(f)
        notes.add(img.notes)
        lr = as_model_input(img.rgb, model, f).to(device)
        results = []
        for t in temps:
            gen = torch.Generator().manual_seed(args.seed)  # sample k: the same noise at every temperature
            for k in range(1 if t == 0 else args.samples):
                bar = TileProgress(f"{f.name} T={t:g} #{k}")
                try:
                    hr = super_resolve(model, lr, t, gen, tile=args.tile, overlap=overlap, progress=bar)
                except NonFiniteOutputError:
                    raise CLIError(
                        f"model produced non-finite values for {f} at T={t:g}; try a lower temperature"
                    ) from None
                finally:
                    bar.close()
                results.append(hr[0].cpu())
        for (_, _, dst), hr in zip(outputs[f], results):  # all computed: now write (nothing partial)
            notes.add(images.write(dst, hr, img))
        where = outputs[f][0][2] if len(results) == 1 else f"{outputs[f][0][2].parent}/{f.stem}*"
        say(f"{f.name}: {_size(lr)} -> {_size(results[0])}, {len(results)} image(s) -> {where}")

    batch = Batch(found.files, label=str)
    batch.run(one)
    notes.summary()
    batch.finish()
    return 0
