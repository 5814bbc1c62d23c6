"""The demo models shipped in ``flowsr/data/models``: cards, provenance and the targets they are
shipped for (issue #5: the rescaling model beats bicubic down+up by >= 4 dB Y-PSNR with its own
LR at >= 36 dB Y-PSNR against the bicubic LR, on images it was not trained on)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from flowsr.data import SAMPLE_KINDS, sample_images
from flowsr.demo import bundled_models_dir, find_models, recipes_dir, rescaling_pairs, sr_pairs
from flowsr.evaluate import evaluate_rescaling, evaluate_sr, summarize
from flowsr.models.checkpoint import load, read_metadata
from flowsr.train import load_config
from flowsr.train.build import build_model

MODELS = find_models()
CARD_FIELDS = ("| recipe |", "| data |", "| iterations |", "| training time |", "| machine |", "| command |")


def test_both_demo_models_ship_with_a_card() -> None:
    assert set(MODELS) == {"rescaling", "sr"}, f"bundled models in {bundled_models_dir()}: {MODELS}"
    for path in MODELS.values():
        assert path.stat().st_size < 10 * 2**20  # "a few MB"
        card = path.with_suffix(".md").read_text()
        for field in CARD_FIELDS:
            assert field in card, (path.name, field)
        meta = read_metadata(path)
        assert meta["recipe"] in card and meta["iteration"] in card


@pytest.mark.parametrize("task", ["rescaling", "sr"])
def test_the_recipe_named_in_a_model_builds_that_model(task: str) -> None:
    meta = read_metadata(MODELS[task])
    cfg = load_config(recipes_dir() / f"{meta['recipe']}.yaml")
    built = build_model(cfg.model)
    # the shipped config as loading reads it (flowsr 0.1 specs are migrated)
    assert built.config() == type(built).from_config(json.loads(meta["config"])).config()
    shipped = load(MODELS[task]).state_dict()
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in shipped.items()}


def test_demo_images_are_not_training_images() -> None:
    meta = read_metadata(MODELS["rescaling"])
    cfg = load_config(recipes_dir() / f"{meta['recipe']}.yaml")
    train_dir = Path(cfg.data.hr_dir)
    train_dir = train_dir if train_dir.is_absolute() else recipes_dir().parent.parent / train_dir  # checkout root
    trained = {p.stem for p in train_dir.iterdir()}
    shown = {name for kind in SAMPLE_KINDS for name, _, _ in sample_images(kind)}
    assert trained and not trained & shown


def test_rescaling_model_meets_its_targets() -> None:
    path = MODELS["rescaling"]
    model = load(path).eval()
    temperatures = [float(t) for t in read_metadata(path)["demo_temperatures"].split()]
    torch.manual_seed(0)
    mean = summarize(evaluate_rescaling(model, rescaling_pairs(), temperatures=temperatures, seed=0))
    bicubic = next(r for r in mean if r["method"] == "bicubic")
    for row in mean:
        if row["method"] == "bicubic":
            continue
        assert row["psnr_y"] >= bicubic["psnr_y"] + 4.0, (row, bicubic)
        assert row["lr_psnr_y"] >= 36.0, row


def test_sr_model_runs_on_the_demo_images() -> None:
    model = load(MODELS["sr"]).eval()
    pairs, _ = sr_pairs(int(model.scale))
    rows = evaluate_sr(model, pairs[:2], temperatures=[0.0, 0.8], samples=2, seed=0)
    for row in rows:
        assert math.isfinite(row["psnr_y"]) and math.isfinite(row["ssim_y"]), row
    assert {r["method"] for r in rows} == {"bicubic", "T=0", "T=0.8"}
