"""``flowsr demo``: the README's main job on the bundled sample images and models.

The images: by default the redistributable bundled sets (``open_x4``: CC0 / public-domain
crops, so results may be shared); ``images="reference"`` shows the sets the model cards and the
README report on (Set5 butterfly, CelebA-HQ faces; not redistributable). :data:`IMAGE_SETS`.

1. Rescaling: every HR image of those sets is downscaled by the bundled rescaling model to an 8-bit LR
   image and upscaled back from it; PSNR/SSIM (Y, border = scale) against the HR image are printed
   next to bicubic down + up, with the model LR's PSNR against the bicubic LR.
2. Super-resolution: their bundled LR images of the SR model's scale (and the bicubic LR of the
   other HR images) are super-resolved (the model's temperatures, three samples); PSNR/SSIM next to
   bicubic upscaling of the same LR images.

Models are the ``*.safetensors`` files in ``flowsr/data/models/`` (each with a model card
``<name>.md`` beside it) or in a folder given as ``models_dir`` (then a missing folder, or a file
in it that is not a readable flowsr checkpoint, is an error). When there are none (or with
``untrained=True``), freshly initialised tiny models are used (the family's ``shrink_spec`` of a
preset) and the output says, on every table, that they are untrained: the numbers then only show
that the pipeline runs end to end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import torch
from torch import nn

from flowsr.data import SAMPLE_KINDS, SAMPLE_SETS, read_card, read_image, sample_images
from flowsr.evaluate import NLL_NOTE, Pair, evaluate_rescaling, evaluate_sr, markdown_table, summarize, write_csv
from flowsr.models import FlowSRModel, get_family
from flowsr.models.checkpoint import load, model_info, read_metadata

__all__ = [
    "IMAGE_SETS",
    "bundled_models_dir",
    "find_models",
    "rescaling_pairs",
    "sr_pairs",
    "stand_in_model",
    "tiny_rescaling_model",
    "tiny_sr_model",
    "run",
]

UNTRAINED = "UNTRAINED"


def bundled_models_dir() -> Path:
    """``flowsr/data/models`` of the installed package (it may not exist yet)."""
    return Path(str(files("flowsr.data").joinpath("models")))


def find_models(models_dir: Path | None = None) -> dict[str, Path]:
    """``{"rescaling": path, "sr": path}`` of the first model of each task in ``models_dir`` (default:
    the bundled ones; sorted by name, rescaling prefers x4).

    A ``models_dir`` that was given must exist and every ``*.safetensors`` in it must be a readable
    flowsr checkpoint: ``ValueError`` naming the file otherwise (a typo must not silently give
    untrained models). The bundled folder may be missing (no models shipped yet).
    """
    explicit = models_dir is not None
    models_dir = Path(models_dir) if explicit else bundled_models_dir()
    if explicit and not models_dir.is_dir():
        what = "is not a folder" if models_dir.exists() else "does not exist"
        raise ValueError(f"--models {models_dir} {what}")
    found: dict[str, list[tuple[int, Path]]] = {"rescaling": [], "sr": []}
    for path in sorted(models_dir.glob("*.safetensors")) if models_dir.is_dir() else []:
        try:
            info = model_info(path)
        except Exception as err:  # noqa: BLE001 - unreadable, truncated, foreign: all mean "not a model"
            raise ValueError(f"cannot use {path}: {' '.join(str(err).split())}") from None
        task, scale = info["task"], info["scale"]
        found[task].append((0 if (task == "sr" or scale == 4) else 1, path))
    if explicit and not any(found.values()):
        raise ValueError(f"--models {models_dir}: no flowsr models (*.safetensors) in this folder")
    return {task: sorted(items, key=lambda t: t[0])[0][1] for task, items in found.items() if items}


#: The untrained stand-ins: (registered family, preset) per task, shrunk with the family's shrink_spec.
STAND_INS = {"rescaling": ("hcflow_rescaling", "x4"), "sr": ("hcflow_sr", "x8")}


def stand_in_model(task: str, seed: int = 0, preset: str | None = None) -> FlowSRModel:
    """A freshly initialised (untrained) tiny model of ``task``: the family's ``shrink_spec`` of
    its preset (:data:`STAND_INS`), weights drawn with ``torch.manual_seed(seed)``."""
    family, default = STAND_INS[task]
    cls = get_family(family)
    torch.manual_seed(seed)
    return cls(cls.shrink_spec(cls.preset_spec(preset or default))).eval()


def tiny_rescaling_model(scale: int = 4, seed: int = 0) -> FlowSRModel:
    """A freshly initialised (untrained) tiny rescaling model of ``scale`` (:func:`stand_in_model`)."""
    return stand_in_model("rescaling", seed, f"x{scale}")


def tiny_sr_model(scale: int = 8, seed: int = 0) -> FlowSRModel:
    """A freshly initialised (untrained) tiny SR model of ``scale`` (:func:`stand_in_model`)."""
    return stand_in_model("sr", seed, f"x{scale}")


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
    """``<file>: <the card's first line after its front matter> (card: <path>)``."""
    card = path.with_suffix(".md")
    if not card.is_file():
        return f"{path.name} (no model card)"
    try:
        _, body = read_card(card)
    except ValueError:
        body = card.read_text()
    for line in body.splitlines():
        if line.strip():
            return f"{path.name}: {line.strip().lstrip('# ')} (card: {card})"
    return path.name


#: ``flowsr demo --images``: which bundled sets the demo shows. ``open``: the redistributable ones
#: (CC0 / public domain: results may be shared); ``reference``: the sets the model cards and the
#: README report on (Set5 butterfly, CelebA-HQ faces: not redistributable).
IMAGE_SETS: dict[str, list[str]] = {
    "open": [name for name, s in SAMPLE_SETS.items() if s.redistributable],
    "reference": list(SAMPLE_KINDS),
}


def rescaling_pairs(sets: list[str] | None = None) -> list[Pair]:
    """Every HR image of the bundled ``sets`` (default: ``IMAGE_SETS["reference"]``, the sets the
    model cards report on): the rescaling part of the demo."""
    pairs = []
    for kind in IMAGE_SETS["reference"] if sets is None else sets:
        for name, hr, _ in sample_images(kind):
            pairs.append(Pair(name, read_image(hr)))
    return pairs


def sr_pairs(scale: int, sets: list[str] | None = None) -> tuple[list[Pair], str]:
    """The bundled LR images of ``scale`` (MATLAB bicubic of their HR), then the other HR images of
    ``sets`` (default as :func:`rescaling_pairs`) with their bicubic LR made here."""
    sets = IMAGE_SETS["reference"] if sets is None else sets
    pairs, names = [], []
    for kind in sets:
        if SAMPLE_SETS[kind].scale == scale:
            pairs += [Pair(name, read_image(hr), read_image(lr)) for name, hr, lr in sample_images(kind)]
            names.append(f"bundled {kind} LR")
    bundled = {p.name for p in pairs}
    others = [Pair(p.name, p.hr, None) for p in rescaling_pairs(sets) if p.name not in bundled]
    if others:
        pairs += others
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
    images: str = "open",
    log: Callable[[str], None] = print,
) -> int:
    """Run the demo (see the module docstring); writes ``out/{rescaling,sr}/*.png`` and
    ``out/metrics.{md,csv}``. ``retrain``: first train the models again with their recipes
    (:func:`retrain_models`, ``retrain_iterations`` of them); ``max_images``: the first K images of
    each part; ``images``: a key of :data:`IMAGE_SETS`. Returns 0."""
    if images not in IMAGE_SETS:
        raise ValueError(f"images must be one of {sorted(IMAGE_SETS)}, got {images!r}")
    sets = IMAGE_SETS[images]
    out = Path(out)
    found = {} if untrained else find_models(models_dir)
    if retrain and not untrained:
        found = retrain_models(out / "runs", found, log, retrain_iterations)
    report: list[str] = []
    sections: list[tuple[str, list[dict], bool]] = []

    # -- rescaling ----------------------------------------------------------------------------
    def pick(kind: str, label: str):
        """The bundled model of ``kind``, or an untrained stand-in that says so: ``(model, meta, trained)``."""
        path = found.get(kind)
        if path is not None:
            log(f"{label} model: {_card(path)}")
            return load(path, device), read_metadata(path), True
        why = "--untrained" if untrained else f"no {label} model in {models_dir or bundled_models_dir()}"
        family, preset = STAND_INS[kind]
        log(f"{label} model: {UNTRAINED} tiny {family} {preset} ({why}); its numbers are NOT results")
        return stand_in_model(kind, seed).to(device), None, False

    model: nn.Module
    model, meta, trained = pick("rescaling", "rescaling")
    log(f"images: {images} ({', '.join(f'{k}: {SAMPLE_SETS[k].licence}' for k in sets)})")
    pairs = rescaling_pairs(sets)[:max_images]
    temps = _temperature(meta, [1.0])
    log(f"rescaling {len(pairs)} bundled HR images x{model.scale} (downscale, 8-bit LR, upscale at T={temps}) ...")
    rows = evaluate_rescaling(
        model, pairs, temperatures=temps, seed=seed, device=device, grid_dir=out / "rescaling", log=log
    )
    sections.append(("rescaling" + ("" if trained else f" ({UNTRAINED} model)"), rows, trained))

    # -- SR -----------------------------------------------------------------------------------
    sr_model, meta, trained = pick("sr", "SR")
    assert sr_model.task == "sr"
    pairs, what = sr_pairs(int(sr_model.scale), sets)
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
        if any(isinstance(r.get("nll"), float) and math.isfinite(r["nll"]) for r in rows):
            md.append(NLL_NOTE + "\n")
        all_rows += [{**r, "image": f"{title.split()[0]}/{r['image']}"} for r in mean + rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text("\n".join(md))
    write_csv(out / "metrics.csv", all_rows)
    log("")
    for line in report:
        log(line)
    log(f"grids: {out / 'rescaling'}/*.png, {out / 'sr'}/*.png; tables: {out / 'metrics.md'}, {out / 'metrics.csv'}")
    return 0
