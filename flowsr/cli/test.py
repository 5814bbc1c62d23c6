"""``flowsr test``: evaluate a model on test images (metrics table, comparison grids, output images)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from flowsr.cli import plan
from flowsr.cli.base import command
from flowsr.cli.batch import Batch
from flowsr.cli.console import say
from flowsr.cli.errors import CLIError
from flowsr.cli.inputs import path_problem
from flowsr.cli.modelref import bundled_names, load_model, model_temperatures, resolve
from flowsr.cli.options import (
    DEFAULT_OVERLAP,
    add_device,
    add_model,
    add_seed,
    add_temperatures,
    add_tiling,
    count,
    model_ref,
    resolve_device,
    temperatures,
    tiling,
)
from flowsr.cli.train import config_path, recipe_path

__all__ = ["add_parser", "run"]

HELP = "Evaluate a model on test images: metrics table (Markdown, CSV), comparison grids, output images"

EPILOG = """\
The model: -m NAME_OR_PATH (bundled name, .safetensors file, model folder), or as the positional
argument; or a training config / recipe name: then its validation images are used unless --data
is given, the run folder's best checkpoint unless -m/-c is given, and its val.temperature unless
-t is given. A run folder (runs/<name>/) also works.

Test images (--data): a folder with HR/ and optional LR/ subfolders (LR files named <stem> or
<stem>x<scale>, as DIV2K's 0801x4.png), a folder of HR images (LR images made with MATLAB-exact
bicubic), or a bundled set name (open_x4, general_x4, face_x8). SR: HR images are cropped to a
multiple of the scale (as the official test). --tile/--overlap: LR pixels for SR models, HR
pixels for rescaling models (the pixels the model starts from).

Writes OUT/metrics.md and OUT/metrics.csv (per image and mean rows), OUT/grids/<name>.png (LR |
bicubic | first sample at each temperature | HR; rescaling: bicubic LR | model LR | bicubic up |
reconstructions | HR), for SR with --samples >= 2 the strip of samples at the last temperature,
and with --save-images the outputs themselves in OUT/images/. Existing files are replaced only
with --overwrite. A bad image is reported and skipped; the table holds the others (exit status 2).
Metrics: PSNR/SSIM on RGB and Y (BT.601) of 8-bit images with border = scale (MATLAB-style SSIM),
LR-PSNR, diversity over the samples, LPIPS (weights found locally, never downloaded), and the NLL
in bits per HR pixel: -log2 p(HR | LR) / pixels; with dequantisation the model's density can
exceed 1, so it can be negative (docs/metrics.md).

Examples:
  flowsr test -m hcflow_sr_x4_demo --data general_x4 --samples 4 --save-images
  flowsr test model.safetensors --data datasets/Set5 -t 0 0.9 -o test_out/
  flowsr test hcflow_rescaling_x4_tiny            # the recipe's run: best checkpoint, val images"""


def add_parser(sub, parents: list) -> argparse.ArgumentParser:
    p = command(sub, "test", HELP, EPILOG, parents)
    p.add_argument(
        "target", nargs="?", default=None, metavar="MODEL_OR_CONFIG", help="a model, a run folder or a training config"
    )
    add_model(p, "the model to evaluate", bundled_names(), required=False)
    p.add_argument("--data", "-d", default=None, metavar="DIR", help="test images (see below)")
    add_temperatures(
        p,
        "temperatures (default: the model's recommended ones; else 0 and the family default for SR, "
        "the family default for rescaling)",
    )
    p.add_argument(
        "--samples", "-n", type=count(1), default=1, metavar="N", help="SR samples per temperature (>= 2: diversity)"
    )
    p.add_argument("--max-images", type=count(1), default=None, metavar="K", help="evaluate the first K images only")
    p.add_argument("--no-nll", action="store_true", help="skip the NLL (SR)")
    p.add_argument("--lpips-alexnet", default=None, metavar="PATH", help="torchvision AlexNet weights for LPIPS")
    p.add_argument("--lpips-lin", default=None, metavar="PATH", help="LPIPS v0.1 lin weights (alex.pth)")
    p.add_argument("--save-images", action="store_true", help="also write the output images to OUT/images/")
    p.add_argument("--out", "-o", default="test_results", metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in OUT")
    add_device(p)
    add_seed(p)
    add_tiling(p, "LR (SR) or HR (rescaling)")
    p.set_defaults(func=run)
    return p


def _target(args) -> tuple[str | None, Any]:
    """``(model reference, training config or None)`` from the positional argument and -m/-c."""
    from flowsr.runs import file_kind, run_checkpoint

    ref, target = model_ref(args), args.target
    if target is None:
        if ref is None:
            raise CLIError("give the model to test: -m NAME_OR_PATH (or a training config)")
        return ref, None
    p = Path(target)
    if p.exists():
        kind = file_kind(p)
        if kind == "special":
            raise CLIError(f"{target} is not a regular file (a FIFO, socket or device)")
        if kind == "image":
            raise CLIError(f"{target} is an image, not a model or a training config (test images go to --data)")
        if kind == "binary":
            raise CLIError(f"{target} is neither a flowsr checkpoint (.safetensors) nor a YAML training config")
        if kind == "run":
            if ref is not None:
                raise CLIError(f"two models given: the run folder {target} and {ref}")
            try:
                return str(run_checkpoint(p)), None
            except FileNotFoundError as err:
                raise CLIError(str(err)) from None
        if kind == "model":
            if ref is not None:
                raise CLIError(f"two models given: {target} and {ref}")
            return target, None
        return ref, _load_config(config_path(target))
    if recipe_path(target) is not None:
        return ref, _load_config(config_path(target))
    if ref is not None:
        raise CLIError(f"no such file: {target}")
    try:
        resolve(target)
    except CLIError:
        raise CLIError(f"no such file: {target} (nor a bundled model or recipe name)") from None
    return target, None


def _load_config(path: Path):
    try:
        from flowsr.train.config import load_config
    except ImportError:
        raise CLIError(f"{path} is not a flowsr checkpoint and configs need flowsr.train") from None
    return load_config(path)


def _config_pairs(cfg, scale: int) -> list:
    from flowsr.data.pairs import ImagePair

    try:
        from flowsr.train.data import list_images
    except ImportError:
        raise CLIError("reading the test images from a config needs flowsr.train; give --data DIR") from None
    data = cfg.val.data if getattr(cfg.val, "data", None) is not None else cfg.data
    return [ImagePair(r.name, Path(r.hr), Path(r.lr) if r.lr is not None else None) for r in list_images(data, scale)]


def _lpips(args, device):
    from flowsr.metrics import LPIPS, lpips_available

    ok, msg = lpips_available(args.lpips_alexnet, args.lpips_lin)
    if not ok:
        return None, "LPIPS skipped: " + msg.removeprefix("LPIPS unavailable: ")
    try:
        return LPIPS(args.lpips_alexnet, args.lpips_lin).to(device), "LPIPS (AlexNet) computed"
    except (ValueError, OSError) as err:
        return None, f"LPIPS skipped: {' '.join(str(err).split())}"


def run(args: argparse.Namespace) -> int:
    from flowsr.evaluate import (
        NLL_NOTE,
        evaluate_rescaling,
        evaluate_sr,
        evaluation_pairs,
        lr_size_problems,
        markdown_table,
        output_files,
        read_pair,
        summarize,
        write_csv,
    )
    from flowsr.fileio import atomic_write
    from flowsr.inference import hr_multiple
    from flowsr.runs import run_checkpoint

    ref, cfg = _target(args)
    if ref is None:  # a config without -m/-c: its run folder's checkpoint
        try:
            ref = str(run_checkpoint(cfg.run_dir()))
        except FileNotFoundError as err:
            raise CLIError(str(err)) from None
    device = resolve_device(args.device)
    model, ckpt = load_model(ref, device)
    scale, task = int(model.scale), model.task
    if task == "sr":
        overlap = tiling(args.tile, args.overlap, DEFAULT_OVERLAP, model.lr_multiple, "LR")
    else:
        overlap = tiling(args.tile, args.overlap, DEFAULT_OVERLAP * scale, hr_multiple(model), "HR")
    if args.data:
        problem = path_problem(args.data, "folder")
        if problem and not (problem == "does not exist" and not Path(args.data).suffix):  # else a bundled set name
            raise CLIError(f"--data {args.data} {problem}")
        try:
            pairs = evaluation_pairs(args.data, scale)
        except ValueError as err:
            raise CLIError(str(err)) from None
    elif cfg is not None:
        pairs = _config_pairs(cfg, scale)
    else:
        raise CLIError(
            "give the test images with --data DIR (HR/ and optional LR/ subfolders, or a folder of HR images)"
        )
    pairs = pairs[: args.max_images]
    problems = lr_size_problems(pairs, scale, task)
    if problems:
        more = f" (and {len(problems) - 1} more LR files)" if len(problems) > 1 else ""
        raise CLIError(f"{problems[0]}{more}; remove LR/ to make bicubic LR images")
    temps = temperatures(args.temperature or [])
    if not temps and cfg is not None and getattr(cfg.val, "temperature", None) is not None:
        temps = [float(cfg.val.temperature)]
    if not temps:
        fallback = [0.0, float(model.default_temperature)] if task == "sr" else None
        temps, _ = model_temperatures(model, ckpt, fallback)
    samples = args.samples if task == "sr" else 1
    out = Path(args.out)
    files = ["metrics.md", "metrics.csv"] + [
        f for pair in pairs for f in output_files(task, pair.name, temps, samples, images=args.save_images)
    ]
    target = plan.target(str(out), (), len(files), "tables and grids")
    planned = [plan.Output(target.folder / f) for f in files]
    sources = [p for pair in pairs for p in (pair.hr, pair.lr) if p is not None]
    plan.check(planned, sources, args.overwrite)
    lpips, lpips_msg = _lpips(args, device)
    say(
        f"{ckpt}: {model.family} x{scale}, {len(pairs)} image(s), T = {', '.join(f'{t:g}' for t in temps)}; {lpips_msg}"
    )
    common = dict(
        seed=args.seed,
        tile=args.tile,
        overlap=overlap,
        lpips=lpips,
        device=device,
        grid_dir=out / "grids",
        image_dir=out / "images" if args.save_images else None,
        log=say,
    )
    rows: list[dict] = []

    def one(pair) -> None:
        p = read_pair(pair, scale)
        if task == "sr":
            rows.extend(evaluate_sr(model, [p], temperatures=temps, samples=samples, nll=not args.no_nll, **common))
        else:
            rows.extend(evaluate_rescaling(model, [p], temperatures=temps, **common))

    batch = Batch(pairs, label=lambda pair: str(pair.hr))
    batch.run(one)
    if rows:
        mean = summarize(rows)
        failed = f"; {len(batch.failed)} image(s) failed and are not in the table" if batch.failed else ""
        has_nll = any(isinstance(r.get("nll"), float) and math.isfinite(r["nll"]) for r in rows)
        header = (
            f"# flowsr test: {ckpt.name}\n\n{model.family} x{scale}; {len(pairs)} image(s){failed}; temperatures "
            f"{', '.join(f'{t:g}' for t in temps)}; samples {samples}; seed {args.seed}; "
            f"PSNR/SSIM on 8-bit images, border {scale}, Y = BT.601; {lpips_msg}.\n\n"
        )
        note = f"\n{NLL_NOTE}\n" if has_nll else ""
        out.mkdir(parents=True, exist_ok=True)
        text = header + markdown_table(mean + rows) + note
        atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(text))
        write_csv(out / "metrics.csv", mean + rows)
        say(markdown_table(mean), end="")
        if has_nll:
            say(NLL_NOTE)
        grids = len(pairs) - len(batch.failed)
        say(f"wrote {out / 'metrics.md'}, {out / 'metrics.csv'} and {grids} grid(s) in {out / 'grids'}")
    batch.finish()
    return 0
