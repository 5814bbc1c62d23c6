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


# -- finding recipes and their files --------------------------------------------------------------


def test_bundled_recipes_resolve_by_name(tmp_path: Path, monkeypatch) -> None:
    from flowsr.train import ConfigError, list_recipes, resolve_recipe

    monkeypatch.chdir(tmp_path)  # an empty folder: nothing but the installed package
    assert list_recipes() == sorted(p.stem for p in RECIPES)
    for name in ("hcflow_rescaling_x4_tiny", "hcflow_rescaling_x4_tiny.yaml"):
        assert resolve_recipe(name) == RECIPES[0].parent / "hcflow_rescaling_x4_tiny.yaml"
    with pytest.raises(ConfigError, match="did you mean hcflow_rescaling_x4_tiny"):
        resolve_recipe("hcflow_rescaling_x4_tiyn")
    with pytest.raises(ConfigError, match="recipe not found: 'nested/hcflow_sr_x4.yaml'"):
        resolve_recipe("nested/hcflow_sr_x4.yaml")  # a path is a path, never a bundled name
    own = tmp_path / "hcflow_sr_x4.yaml"
    own.write_text("model: {family: hcflow_sr}\n")
    assert resolve_recipe("hcflow_sr_x4.yaml").resolve() == own  # an existing file wins over a bundled name
    cfg = load_config("hcflow_sr_x4_demo")
    # the demo's data/train is beside the recipe, not in the current folder: resolved there
    assert Path(cfg.data.hr_dir) == (RECIPES[0].parent / "data" / "train").resolve()
    assert cfg.source == RECIPES[0].parent / "hcflow_sr_x4_demo.yaml"


def test_relative_paths_resolve_from_the_current_folder_then_the_recipe_folder(tmp_path: Path, monkeypatch) -> None:
    recipes, work = tmp_path / "recipes", tmp_path / "work"
    for folder in (recipes / "imgs", work / "imgs", recipes / "only_here", recipes / "weights"):
        folder.mkdir(parents=True)
    (recipes / "weights" / "vgg.pth").write_bytes(b"")
    recipe = recipes / "r.yaml"
    recipe.write_text(
        "model: {family: hcflow_sr}\n"
        "data: {source: folders, hr_dir: imgs, lr_dir: only_here}\n"
        "val: {data: {source: folders, hr_dir: nowhere}}\n"
        "losses: {perceptual_weights: weights/vgg.pth}\n"
        "train: {run_dir: runs/r}\n"
    )
    monkeypatch.chdir(work)
    cfg = load_config(recipe)
    assert cfg.data.hr_dir == "imgs"  # exists in the current folder: kept as written
    assert cfg.data.lr_dir == str((recipes / "only_here").resolve())  # only beside the recipe
    assert cfg.val.data.hr_dir == "nowhere"  # nowhere: left for the error that names it
    assert cfg.losses.perceptual_weights == str((recipes / "weights" / "vgg.pth").resolve())
    assert cfg.train.run_dir == "runs/r"  # outputs are always relative to the current folder
    over = load_config(recipe, overrides=["data.hr_dir=only_here"])  # overrides follow the same rule
    assert over.data.hr_dir == str((recipes / "only_here").resolve())


def test_a_bundled_recipe_trains_from_an_empty_folder(tmp_path: Path, monkeypatch) -> None:
    """``flowsr train hcflow_rescaling_x4_tiny --iterations 1`` after a wheel install: the recipe and
    its images come from the package, the run goes to ./runs."""
    monkeypatch.chdir(tmp_path)
    overrides = ["train.iterations=1", "data.batch_size=2", "data.patch_size=32", "val.every=0"]
    overrides += ["log.tensorboard=false", "log.plot=false", "log.progress=false", "train.device=cpu"]
    trainer = Trainer("hcflow_rescaling_x4_tiny", overrides=overrides, quiet=True)
    assert trainer.run()[0]["iteration"] == 1
    assert (tmp_path / "runs" / "hcflow_rescaling_x4_tiny" / "checkpoints" / "iter_00000001.safetensors").is_file()
