"""``flowsr demo``: the README's main job on the bundled sample images and models.

1. Rescaling: every bundled HR image is downscaled by the bundled rescaling model to an 8-bit LR
   image and upscaled back from it; PSNR/SSIM (Y, border = scale) against the HR image are printed
   next to bicubic down + up, with the model LR's PSNR against the bicubic LR.
2. Super-resolution: the bundled LR images of the SR model's scale (and the bicubic LR of the other
   bundled HR images) are super-resolved (temperature 0 and 0.8, three samples); PSNR/SSIM next to
   bicubic upscaling of the same LR images.

Models are the ``*.safetensors`` files in ``flowsr/data/models/`` (each with a model card
``<name>.md`` beside it). When there are none (or with ``untrained=True``), freshly initialised
tiny models are used and the output says, on every table, that they are untrained: the numbers
then only show that the pipeline runs end to end.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
from torch import nn

from flowsr.data import SAMPLE_KINDS, read_image, sample_images
from flowsr.evaluate import Pair, evaluate_rescaling, evaluate_sr, markdown_table, summarize, write_csv
from flowsr.models import CouplingSpec, FeatureSpec, HCFlowRescaling, HCFlowSR, HierarchySpec, LatentSpec
from flowsr.models.checkpoint import load, model_info, read_metadata

__all__ = [
    "bundled_models_dir",
    "find_models",
    "rescaling_pairs",
    "sr_pairs",
    "tiny_rescaling_model",
    "tiny_sr_model",
    "run",
]

UNTRAINED = "UNTRAINED"


def bundled_models_dir() -> Path:
    """``flowsr/data/models`` of the installed package (it may not exist yet)."""
    return Path(str(files("flowsr.data").joinpath("models")))


def find_models(models_dir: Path | None = None) -> dict[str, Path]:
    """``{"rescaling": path, "sr": path}`` of the first model of each task in ``models_dir`` (sorted by
    name; rescaling prefers x4). Unreadable files are skipped."""
    models_dir = models_dir if models_dir is not None else bundled_models_dir()
    found: dict[str, list[tuple[int, Path]]] = {"rescaling": [], "sr": []}
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.safetensors")):
            try:
                info = model_info(path)
            except Exception:  # not a flowsr checkpoint: ignore
                continue
            task, scale = info["task"], info["scale"]
            found[task].append((0 if (task == "sr" or scale == 4) else 1, path))
    return {task: sorted(items, key=lambda t: t[0])[0][1] for task, items in found.items() if items}


def tiny_rescaling_model(scale: int = 4, seed: int = 0) -> HCFlowRescaling:
    """A freshly initialised (untrained) tiny HCFlow rescaling model (about 50k parameters)."""
    levels = int(round(math.log2(scale)))
    torch.manual_seed(seed)
    spec = HierarchySpec(
        levels=levels,
        steps=2,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=8, scale="atan"),
        latent=LatentSpec(
            steps=1, coupling=CouplingSpec(kind="affine", subnet="fcn", hidden=16, scale="atan"), prior="atan"
        ),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=False),
    )
    return HCFlowRescaling(spec).eval()


def tiny_sr_model(scale: int = 8, seed: int = 0) -> HCFlowSR:
    """A freshly initialised (untrained) tiny HCFlow SR model."""
    levels = int(round(math.log2(scale)))
    torch.manual_seed(seed)
    fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=16, scale="atan")
    spec = HierarchySpec(
        levels=levels,
        steps=2,
        coupling=fcn,
        latent=LatentSpec(steps=1, coupling=fcn, prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=True),
    )
    return HCFlowSR(spec, quant=256).eval()


#: Recipes (in ``flowsr/recipes``) used by ``--retrain`` when a model does not name its own.
DEFAULT_RECIPES = {"rescaling": "hcflow_rescaling_x4_demo", "sr": "hcflow_sr_x4_demo"}


def recipes_dir() -> Path:
    """The bundled recipes (``flowsr/recipes``, package data)."""
    return Path(__file__).resolve().parent / "recipes"


def retrain_models(
    runs: Path, found: dict[str, Path], log: Callable[[str], None] = print, iterations: int | None = None
) -> dict[str, Path]:
    """Train each demo model again with its recipe (the ``recipe`` metadata of the bundled model,
    else :data:`DEFAULT_RECIPES`) into ``runs/<recipe>``; returns the last checkpoint of each by
    task (as shipped: never one picked on the validation image, which the demo evaluates on).
    ``iterations`` overrides ``train.iterations`` (quick checks)."""
    try:
        from flowsr.train import Trainer
    except ImportError:
        raise ValueError("--retrain needs flowsr.train, which this installation does not have") from None
    overrides = None if iterations is None else [f"train.iterations={int(iterations)}"]
    out = {}
    for task, default in DEFAULT_RECIPES.items():
        name = default
        if task in found:
            name = read_metadata(found[task]).get("recipe", default)
        recipe = recipes_dir() / f"{name}.yaml"
        if not recipe.is_file():
            raise ValueError(f"--retrain: recipe {recipe} not found (run the demo from a flowsr checkout)")
        log(f"retraining the {task} model with {recipe} into {runs / name} ...")
        trainer = Trainer(recipe, run_dir=runs / name, overrides=overrides)
        trainer.run()
        latest = trainer.run_dir / "checkpoints" / "latest.json"
        if not latest.is_file():
            raise ValueError(f"--retrain: training {recipe.name} left no checkpoint in {latest.parent}")
        out[task] = latest.parent / json.loads(latest.read_text())["weights"]
    return out


def _card(path: Path) -> str:
    card = path.with_suffix(".md")
    if not card.is_file():
        return f"{path.name} (no model card)"
    for line in card.read_text().splitlines():
        if line.strip():
            return f"{path.name}: {line.strip().lstrip('# ')} (card: {card})"
    return path.name


def rescaling_pairs() -> list[Pair]:
    """Every bundled HR image (the rescaling part of the demo)."""
    pairs = []
    for kind in SAMPLE_KINDS:
        for name, hr, _ in sample_images(kind):
            pairs.append(Pair(name, read_image(hr)))
    return pairs


def sr_pairs(scale: int) -> tuple[list[Pair], str]:
    """The bundled LR images of ``scale`` (MATLAB bicubic of their HR), then the other bundled HR
    images with their bicubic LR made here."""
    pairs, names = [], []
    for kind, s in SAMPLE_KINDS.items():
        if s == scale:
            pairs += [Pair(name, read_image(hr), read_image(lr)) for name, hr, lr in sample_images(kind)]
            names.append(f"bundled {kind} LR")
    bundled = {p.name for p in pairs}
    pairs += [Pair(p.name, p.hr, None) for p in rescaling_pairs() if p.name not in bundled]
    names.append(f"bicubic x{scale} LR of the other bundled HR images")
    return pairs, "images (" + "; ".join(names) + ")"


def _temperature(meta: dict | None, default: list[float]) -> list[float]:
    if meta and "demo_temperatures" in meta:
        try:
            return [float(t) for t in str(meta["demo_temperatures"]).replace(",", " ").split()]
        except ValueError:
            pass
    return default


def _gain_lines(mean_rows: list[dict]) -> list[str]:
    base = next((r for r in mean_rows if r["method"] == "bicubic"), None)
    if base is None:
        return []
    out = []
    for r in mean_rows:
        if r["method"] == "bicubic":
            continue
        line = (
            f"  {r['method']}: Y-PSNR {r['psnr_y']:.2f} dB vs bicubic {base['psnr_y']:.2f} dB "
            f"({r['psnr_y'] - base['psnr_y']:+.2f} dB); Y-SSIM {r['ssim_y']:.4f} vs {base['ssim_y']:.4f}"
        )
        if math.isfinite(r.get("lr_psnr_y", math.nan)):
            line += f"; model LR vs bicubic LR {r['lr_psnr_y']:.2f} dB Y-PSNR"
        out.append(line)
    return out


def run(
    out: Path,
    models_dir: Path | None = None,
    device: torch.device | str = "cpu",
    *,
    retrain: bool = False,
    retrain_iterations: int | None = None,
    untrained: bool = False,
    seed: int = 0,
    max_images: int | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the demo (see the module docstring); writes ``out/{rescaling,sr}/*.png`` and
    ``out/metrics.{md,csv}``. ``retrain``: first train the models again with their recipes
    (:func:`retrain_models`, ``retrain_iterations`` of them); ``max_images``: the first K images of
    each part. Returns 0."""
    out = Path(out)
    found = {} if untrained else find_models(models_dir)
    if retrain and not untrained:
        found = retrain_models(out / "runs", found, log, retrain_iterations)
    report: list[str] = []
    sections: list[tuple[str, list[dict], bool]] = []

    # -- rescaling ----------------------------------------------------------------------------
    def pick(kind: str, label: str, untrained_model, untrained_name: str):
        """The bundled model of ``kind``, or an untrained stand-in that says so: ``(model, meta, trained)``."""
        path = found.get(kind)
        if path is not None:
            log(f"{label} model: {_card(path)}")
            return load(path, device), read_metadata(path), True
        why = "--untrained" if untrained else f"no {label} model in {models_dir or bundled_models_dir()}"
        log(f"{label} model: {UNTRAINED} {untrained_name} ({why}); its numbers are NOT results")
        return untrained_model().to(device), None, False

    model: nn.Module
    fallback = functools.partial(tiny_rescaling_model, 4, seed)
    model, meta, trained = pick("rescaling", "rescaling", fallback, "tiny HCFlow rescaling x4")
    pairs = rescaling_pairs()[:max_images]
    temps = _temperature(meta, [1.0])
    log(f"rescaling {len(pairs)} bundled HR images x{model.scale} (downscale, 8-bit LR, upscale at T={temps}) ...")
    rows = evaluate_rescaling(
        model, pairs, temperatures=temps, seed=seed, device=device, grid_dir=out / "rescaling", log=log
    )
    sections.append(("rescaling" + ("" if trained else f" ({UNTRAINED} model)"), rows, trained))

    # -- SR -----------------------------------------------------------------------------------
    sr_model, meta, trained = pick("sr", "SR", functools.partial(tiny_sr_model, 8, seed), "tiny HCFlow SR x8")
    assert sr_model.task == "sr"
    pairs, what = sr_pairs(int(sr_model.scale))
    pairs = pairs[:max_images]
    temps = _temperature(meta, [0.0, 0.8])
    log(f"super-resolving {len(pairs)} {what} x{sr_model.scale} at T={temps}, 3 samples each ...")
    rows = evaluate_sr(
        sr_model, pairs, temperatures=temps, samples=3, seed=seed, device=device, grid_dir=out / "sr", nll=True, log=log
    )
    sections.append(("super-resolution" + ("" if trained else f" ({UNTRAINED} model)"), rows, trained))

    # -- report -------------------------------------------------------------------------------
    all_rows = []
    md = ["# flowsr demo\n"]
    for title, rows, trained in sections:
        mean = summarize(rows)
        report.append(f"{title}: mean over {len({r['image'] for r in rows})} images (border = scale, 8-bit)")
        if not trained:
            report.append(f"  {UNTRAINED}: freshly initialised weights; these numbers only show the pipeline runs")
        report.extend(_gain_lines(mean))
        md.append(f"## {title}\n")
        if not trained:
            md.append(f"**{UNTRAINED} model** (freshly initialised): the numbers are not results.\n")
        md.append(markdown_table(mean + rows))
        all_rows += [{**r, "image": f"{title.split()[0]}/{r['image']}"} for r in mean + rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text("\n".join(md))
    write_csv(out / "metrics.csv", all_rows)
    log("")
    for line in report:
        log(line)
    log(f"grids: {out / 'rescaling'}/*.png, {out / 'sr'}/*.png; tables: {out / 'metrics.md'}, {out / 'metrics.csv'}")
    return 0
