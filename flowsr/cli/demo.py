"""``flowsr demo``: the README's main job on the bundled images and models (:mod:`flowsr.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowsr.cli.base import command
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError
from flowsr.cli.options import add_device, add_seed, count, resolve_device

__all__ = ["add_parser", "run"]

HELP = "Run the README demo on the bundled images and models"

EPILOG = """\
Rescales the bundled sample images (downscale, then upscale from the 8-bit LR) with the bundled
rescaling model and super-resolves their LR images with the bundled SR model. The images are the
redistributable ones (open_x4: CC0 / public-domain crops) unless --images reference (the Set5
butterfly and CelebA-HQ faces that the model cards and the README report on); prints
PSNR/SSIM next to bicubic down+up and writes comparison grids and metrics tables to --out.
Models come from flowsr/data/models/*.safetensors (each with a model card), or from --models DIR
(a missing folder, or an unreadable model in it, is an error). Without bundled models, or with
--untrained, a freshly initialised tiny model is used and the output says so: its numbers only
show that the pipeline runs. --retrain first trains the models again with their recipes
(flowsr/recipes/hcflow_rescaling_x4_demo.yaml, flowsr/recipes/hcflow_sr_x4_demo.yaml; about an
hour each on 2 CPU cores) into OUT/runs/ and uses their last checkpoints.

Examples:
  flowsr demo                                   # or: make demo
  flowsr demo --out my_demo --device cuda
  flowsr demo --images reference                # the numbers of the model cards
  flowsr demo --retrain                         # or: make demo-retrain
  flowsr demo --retrain --retrain-iterations 10 --max-images 1   # quick pipeline check"""


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "demo", HELP, EPILOG, parents)
    p.add_argument("--out", "-o", default="demo_out", metavar="DIR", help="output folder for grids and tables")
    p.add_argument("--models", default=None, metavar="DIR", help="folder of models (default: the bundled ones)")
    p.add_argument("--untrained", action="store_true", help="use freshly initialised tiny models (pipeline check)")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="first retrain the models with their recipes (flowsr/recipes/*_demo.yaml, about an hour each on 2 cores)",
    )
    p.add_argument(
        "--retrain-iterations", type=count(1), default=None, metavar="N", help="with --retrain: train N iterations only"
    )
    p.add_argument(
        "--images",
        choices=("open", "reference"),
        default="open",
        help="open: the redistributable sample images (CC0 / public domain); reference: the Set5 butterfly and "
        "CelebA-HQ faces the model cards report on (not redistributable)",
    )
    p.add_argument("--max-images", type=count(1), default=None, metavar="K", help="use the first K images of each part")
    add_device(p)
    add_seed(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from flowsr import demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder")
    device = resolve_device(args.device)
    try:
        return demo.run(
            out=out,
            models_dir=Path(args.models) if args.models else None,
            device=device,
            retrain=args.retrain,
            retrain_iterations=args.retrain_iterations,
            untrained=args.untrained,
            seed=args.seed,
            max_images=args.max_images,
            images=args.images,
            log=say,
        )
    except ValueError as err:
        raise CLIError(" ".join(str(err).split())) from None
