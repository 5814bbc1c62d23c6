"""Every recipe in flowsr/recipes/ loads, builds its model (the full ones shrunk) and trains one step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flowsr.train import Trainer, load_config
from flowsr.train.losses import VGG19Features

RECIPES = sorted((Path(__file__).resolve().parent.parent / "flowsr" / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    """A randomly initialised VGG19 state dict in torchvision's key layout (stands in for the
    ImageNet weights, which are never downloaded)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.manual_seed(0)
    state = VGG19Features().state_dict()
    state["classifier.0.weight"] = torch.zeros(1)  # torchvision files carry classifier keys too
    torch.save(state, path)
    return path


def test_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    for base in (
        "hcflow_sr_x4",
        "hcflow_sr_x4_plus",
        "hcflow_sr_x4_plusplus",
        "hcflow_face_x8",
        "hcflow_face_x8_plus",
        "hcflow_face_x8_plusplus",
        "hcflow_rescaling_x2",
        "hcflow_rescaling_x4",
        "hcflow_rescaling_x8",
        "srflow_x4",
        "srflow_x8",
        "irn_x2",
        "irn_x4",
        "irn_x8",
    ):
        assert base in names and f"{base}_tiny" in names


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_trains_one_step(recipe: Path, tmp_path: Path, vgg_weights: Path) -> None:
    cfg = load_config(recipe)  # the recipe as written is a valid config
    tiny = recipe.stem.endswith("_tiny")
    patch = 32
    overrides = {
        "train.iterations": 1,
        "train.device": "cpu",
        "model.init_from": None,  # the + / ++ runs start from a checkpoint of the base run
        "data.batch_size": 2,
        "data.patch_size": patch,
        "data.workers": 0,
        "val.every": 0,
        "checkpoint.every": 1,
        "log.tensorboard": False,
        "log.plot": False,
        "log.progress": False,
    }
    if not tiny:
        # the papers' data are not here: the bundled faces, LR made on the fly; a tiny model
        overrides.update({"model.shrink": True, "data.source": "samples", "data.samples": "face_x8"})
        overrides["data.lr"] = "auto"
    if cfg.losses.perceptual:
        overrides["losses.perceptual_weights"] = str(vgg_weights)
    if cfg.losses.gan:
        overrides.update({"discriminator.input_size": patch, "discriminator.init_iters": 0, "discriminator.nf": 8})
    trainer = Trainer(recipe, overrides=overrides, run_dir=tmp_path / "run", quiet=True)
    if not tiny:
        assert sum(p.numel() for p in trainer.model.parameters()) < 300_000
    records = trainer.run()
    assert [r["iteration"] for r in records] == [1]
    rec = records[0]
    assert rec["skipped"] == 0 and math.isfinite(rec["loss"]), rec
    for term in trainer.terms:
        assert math.isfinite(rec[term]), (term, rec)
    assert (tmp_path / "run" / "checkpoints" / "iter_00000001.safetensors").is_file()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
