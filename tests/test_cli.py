"""The flowsr command (flowsr.cli), the inference helpers (flowsr.inference) and comparison grids.

Every subcommand runs through ``main([...])`` on tiny models and images; bad input must give exit
status 2 and exactly one stderr line ``flowsr: error: ...``. Tiling is tested on its arithmetic
(tile sizes, coverage, weights) and against whole-image decoding, never on timings.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import REPO, assert_one_line_error, make_files, run, smooth
from PIL import Image

from flowsr.cli import official_presets, train_api
from flowsr.data import read_image, write_image
from flowsr.models import load


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_files(tmp_path_factory)


# -- --help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, "sr", "rescale", "convert", "info", "test", "train", "demo"])
def test_help(capsys, command) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "usage: flowsr" in out
    if command is not None:
        assert "Example" in out  # every subcommand shows how to use it
    else:
        for sub in ("sr", "rescale", "convert", "info", "test", "train", "demo"):
            assert f"    {sub}" in out


def test_python_dash_m_and_console_script_entry(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowsr", "sr", str(tmp_path / "missing.png"), "-c", "x.safetensors", "-o", "o"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=900,
    )
    assert_one_line_error(proc.returncode, proc.stderr)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'flowsr = "flowsr.cli:main"' in pyproject


# -- sr ---------------------------------------------------------------------------------------------


def test_sr_writes_every_sample_at_every_temperature(capsys, files, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["sr", files["lr"], "-c", files["sr"], "-t", "0", "0.7", "-n", "2", "-o", out, "--device", "cpu"]
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["lr_t0.7_s0.png", "lr_t0.7_s1.png", "lr_t0_s0.png"]  # T=0 (the mean) once, not twice
    assert "T=0 is the mean sample" in stdout
    img = read_image(out / "lr_t0.7_s0.png")
    assert img.shape == (3, 28, 20)  # odd 7x5 LR: padded for the model, output cropped to 4x
    assert not torch.equal(img, read_image(out / "lr_t0.7_s1.png"))  # T>0: diverse
    assert "28" in stdout
    # Reproducible: the same seed gives the same files; sample 0 does not depend on the other
    # temperatures or sample counts of the run.
    code, _, _ = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0.7", "-o", tmp_path / "again")
    assert code == 0
    assert (tmp_path / "again" / "lr_t0.7_s0.png").read_bytes() == (out / "lr_t0.7_s0.png").read_bytes()
    # T=0 is deterministic: two separate runs with other seeds give the same mean sample
    code, _, _ = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0", "--seed", "5", "-o", tmp_path / "s5")
    assert code == 0
    assert (tmp_path / "s5" / "lr_t0_s0.png").read_bytes() == (out / "lr_t0_s0.png").read_bytes()


def test_sr_tiled_from_the_command_line(capsys, files, tmp_path) -> None:
    lr = write_image(tmp_path / "wide.png", smooth(12, 30, seed=3))
    code, _, err = run(capsys, "sr", lr, "-c", files["sr"], "-t", "0", "--tile", "10", "--overlap", "4", "-o", tmp_path)
    assert code == 0, err
    assert read_image(tmp_path / "wide_t0_s0.png").shape == (3, 48, 120)


def test_sr_refuses_a_rescaling_model(capsys, files, tmp_path) -> None:
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["rs"], "-o", tmp_path)
    assert_one_line_error(code, err, "rescaling model", "flowsr rescale")


# -- rescale ----------------------------------------------------------------------------------------


def test_rescale_writes_lr_and_reconstruction_and_prints_psnr(capsys, files, tmp_path) -> None:
    code, out, err = run(capsys, "rescale", files["hr"], "-c", files["rs"], "-o", tmp_path, "-t", "0")
    assert code == 0, err
    lr, rec = read_image(tmp_path / "hr_lr.png"), read_image(tmp_path / "hr_rec.png")  # named for what they are
    assert lr.shape == (3, 7, 6)  # ceil(26 / 4) x ceil(21 / 4): the HR image is padded to the scale
    assert rec.shape == (3, 26, 21)  # cropped back
    assert "PSNR" in out and "bicubic down+up" in out
    # --mode down / up split the round trip; up from the written LR gives the padded HR size.
    code, _, err = run(capsys, "rescale", files["hr"], "-c", files["rs"], "-o", tmp_path / "d", "--mode", "down")
    assert code == 0, err
    assert (tmp_path / "d" / "hr_lr.png").read_bytes() == (tmp_path / "hr_lr.png").read_bytes()
    code, _, err = run(
        capsys, "rescale", tmp_path / "hr_lr.png", "-c", files["rs"], "-o", tmp_path / "u", "--mode", "up", "-t", "0"
    )
    assert code == 0, err
    up = read_image(tmp_path / "u" / "hr_lr_rec.png")
    assert up.shape == (3, 28, 24)
    torch.testing.assert_close(up[:, :26, :21], rec)  # the same reconstruction as in the round trip
    # several temperatures: one reconstruction each, named by temperature
    code, out, err = run(capsys, "rescale", files["hr"], "-c", files["rs"], "-o", tmp_path / "m", "-t", "0", "1")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["hr_lr.png", "hr_rec_t0.png", "hr_rec_t1.png"]
    assert "T=0:" in out and "T=1:" in out


def test_rescale_refuses_an_sr_model(capsys, files, tmp_path) -> None:
    code, _, err = run(capsys, "rescale", files["hr"], "-c", files["sr"], "-o", tmp_path)
    assert_one_line_error(code, err, "not a rescaling model")


# -- info -------------------------------------------------------------------------------------------


def test_info_text_and_json(capsys, files) -> None:
    code, out, err = run(capsys, "info", files["rs"])
    assert code == 0, err
    n = sum(p.numel() for p in load(files["rs"]).parameters())
    assert "hcflow_rescaling" in out and "x4" in out and f"{n:,}" in out
    assert "tiny test model" in out  # extra metadata
    spec_text = out.split("spec:\n", 1)[1]
    assert yaml.safe_load(spec_text)["squeeze"] == "haar"
    code, out, _ = run(capsys, "info", files["sr"], "--json")
    info = json.loads(out)
    assert info["family"] == "hcflow_sr" and info["scale"] == 4 and info["task"] == "sr"
    assert info["parameters"] == sum(p.numel() for p in load(files["sr"]).parameters())


# -- convert ----------------------------------------------------------------------------------------


def test_convert_official_checkpoint_with_yaml_and_json_options(capsys, golden_dir, tmp_path) -> None:
    golden = torch.load(golden_dir / "hcflow_rescaling_small_golden.pt", weights_only=True)
    pth = tmp_path / "official.pth"
    torch.save(golden["state_dict"], pth)
    (tmp_path / "opt.yml").write_text(yaml.safe_dump(golden["opt"]))
    (tmp_path / "opt.json").write_text(json.dumps(golden["opt"]))
    for cfg in ("opt.yml", "opt.json"):
        out = tmp_path / f"{cfg}.safetensors"
        code, stdout, err = run(capsys, "convert", pth, "--config", tmp_path / cfg, "--out", out)
        assert code == 0, err
        assert "hcflow_rescaling" in stdout
    model = load(tmp_path / "opt.yml.safetensors")
    with torch.no_grad():
        lr = model.downscale(golden["hr"].float())
    torch.testing.assert_close(lr, golden["lr_quant"].float(), rtol=0, atol=1.5 / 255)
    code, stdout, _ = run(capsys, "info", tmp_path / "opt.json.safetensors")
    assert "converted_from:" in stdout and "official.pth" in stdout


def test_convert_presets_and_errors(capsys, tmp_path) -> None:
    presets = official_presets()
    assert {"hcflow:SR_DF2K_4X", "hcflow:Rescaling_DF2K_4X", "srflow:DF2K_4X", "irn:IRN_x4"} <= set(presets)
    dummy = tmp_path / "x.pth"
    torch.save({"a": torch.zeros(1)}, dummy)
    out = tmp_path / "o.safetensors"
    code, _, err = run(capsys, "convert", dummy, "--config", "no_such_preset", "--out", out)
    assert_one_line_error(code, err, "neither a file nor a preset")
    code, _, err = run(capsys, "convert", dummy, "--config", "SR_DF2K_4X", "--out", out)  # unique name: resolved
    assert_one_line_error(code, err, "cannot convert x.pth")  # ... then the state dict is refused by name
    code, _, err = run(capsys, "convert", tmp_path / "missing.pth", "--config", "SR_DF2K_4X", "--out", out)
    assert_one_line_error(code, err, "not found")
    code, _, err = run(capsys, "convert", dummy, "--config", "SR_DF2K_4X", "--out", tmp_path / "o.pth")
    assert_one_line_error(code, err, ".safetensors")
    assert not out.exists()


# -- test -------------------------------------------------------------------------------------------


def _dataset(root: Path, scale: int, with_lr: bool) -> Path:
    (root / "HR").mkdir(parents=True)
    if with_lr:
        (root / "LR").mkdir()
    from flowsr.evaluate import bicubic_down

    for i, (h, w) in enumerate([(24, 28), (26, 24)]):  # the second is cropped to a multiple of 4
        hr = smooth(h, w, seed=10 + i)
        write_image(root / "HR" / f"im{i}.png", hr)
        if with_lr:
            write_image(
                root / "LR" / f"im{i}.png", bicubic_down(hr[:, : h // scale * scale, : w // scale * scale], scale)
            )
    return root


def test_test_sr_writes_tables_grids_and_sample_strips(capsys, files, tmp_path) -> None:
    data = _dataset(tmp_path / "data", 4, with_lr=True)
    out = tmp_path / "res"
    code, stdout, err = run(capsys, "test", files["sr"], "--data", data, "-t", "0", "0.8", "-n", "2", "-o", out)
    assert code == 0, err
    md = (out / "metrics.md").read_text()
    assert "| mean | bicubic |" in md and "| im1 | T=0.8 |" in md and "LPIPS skipped" in md
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {r["method"] for r in rows} == {"bicubic", "T=0", "T=0.8"}
    t08 = [r for r in rows if r["method"] == "T=0.8" and r["image"] == "im0"][0]
    for key in ("psnr", "ssim", "psnr_y", "ssim_y", "lr_psnr", "diversity", "nll"):
        assert math.isfinite(float(t08[key])), key
    assert float([r for r in rows if r["method"] == "T=0"][0]["diversity"]) == 0.0  # T=0 samples are equal
    assert sorted(p.name for p in (out / "grids").iterdir()) == [
        "im0.png",
        "im0_samples_t0.8.png",
        "im1.png",
        "im1_samples_t0.8.png",
    ]
    grid = read_image(out / "grids" / "im0.png")
    assert grid.shape[2] > 4 * 28  # LR | bicubic | T=0 | T=0.8 | HR side by side
    assert "| mean | T=0 |" in stdout


def test_test_rescaling_on_a_folder_of_hr_images(capsys, files, tmp_path) -> None:
    data = _dataset(tmp_path / "data", 4, with_lr=False)
    out = tmp_path / "res"
    code, _, err = run(capsys, "test", files["rs"], "--data", data / "HR", "-o", out)
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {r["method"] for r in rows} == {"bicubic", "T=1"}
    assert len(list((out / "grids").glob("*.png"))) == 2


def test_test_needs_data_and_rejects_mismatched_lr(capsys, files, tmp_path) -> None:
    code, _, err = run(capsys, "test", files["sr"])
    assert_one_line_error(code, err, "--data")
    data = _dataset(tmp_path / "data", 2, with_lr=True)  # x2 LR files for a x4 model
    code, _, err = run(capsys, "test", files["sr"], "--data", data, "-o", tmp_path / "o")
    assert_one_line_error(code, err, "expected")


def test_test_pairs_lr_files_named_stem_x_scale(capsys, files, tmp_path) -> None:
    # DIV2K / BasicSR name their LR files "<stem>x<scale>" (0801x4.png); those must be used, not
    # silently replaced by bicubic LR made from the HR: dark LR files make the bicubic row worse
    data = _dataset(tmp_path / "data", 4, with_lr=True)
    for f in sorted((data / "LR").iterdir()):
        write_image(f.with_name(f"{f.stem}x4.png"), read_image(f) * 0.5)
        f.unlink()
    psnr = {}
    for name, folder in (("files", data), ("made", data / "HR")):
        code, _, err = run(capsys, "test", files["sr"], "--data", folder, "-t", "0", "-o", tmp_path / name)
        assert code == 0, err
        rows = list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
        psnr[name] = float([r for r in rows if r["method"] == "bicubic" and r["image"] == "mean"][0]["psnr"])
    assert psnr["files"] < psnr["made"] - 3


# -- train and demo ---------------------------------------------------------------------------------


def test_train_delegates_or_says_it_is_unavailable(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: nonsense}\n")
    code, _, err = run(capsys, "train", bad, "--run-dir", tmp_path / "run")
    if train_api() is None:
        assert_one_line_error(code, err, "training isn't available")
    else:
        assert_one_line_error(code, err, "model.family")
    code, _, err = run(capsys, "train", tmp_path / "missing.yaml")
    assert code == 2


def test_train_by_recipe_name_with_iterations(capsys, tmp_path, monkeypatch) -> None:
    """``flowsr train NAME --iterations N`` finds the bundled recipe and overrides train.iterations
    (the trainer is replaced: what the command hands it is the point); TrainingError is one line."""
    import flowsr.cli.train as cli_train
    from flowsr.train import TrainingError

    seen = {}

    class FakeTrainer:
        def __init__(self, config, overrides=None, run_dir=None):
            seen.update(config=Path(config), overrides=overrides)
            self.run_dir = tmp_path

        def run(self):
            raise TrainingError("the run folder is in use by pid 1 (test)")

    monkeypatch.setattr(cli_train, "train_api", lambda: FakeTrainer)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "train", "hcflow_rescaling_x4_tiny", "--iterations", "2", "--set", "log.every=1")
    assert seen["config"].name == "hcflow_rescaling_x4_tiny.yaml" and seen["config"].is_file()
    assert seen["overrides"] == ["log.every=1", "train.iterations=2"]
    assert_one_line_error(code, err, "the run folder is in use by pid 1")
    assert "TrainingError" not in err
    code, _, err = run(capsys, "train", "hcflow_rescaling_x4_tiny", "--iterations", "-1")
    assert_one_line_error(code, err, "--iterations must be >= 0")


def test_demo_untrained_runs_end_to_end_and_says_so(capsys, tmp_path) -> None:
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--untrained", "--max-images", "1", "-o", out, "--device", "cpu")
    assert code == 0, err
    assert "UNTRAINED" in stdout and "NOT results" in stdout
    assert "vs bicubic" in stdout
    md = (out / "metrics.md").read_text()
    assert md.count("**UNTRAINED model**") == 2  # both tables say so
    assert len(list((out / "rescaling").glob("*.png"))) == 1
    assert len(list((out / "sr").glob("*.png"))) == 2  # grid + sample strip
    # the default images may be shared: the redistributable sets only (issue 13)
    from flowsr.data import SAMPLE_KINDS, SAMPLE_SETS, sample_images
    from flowsr.demo import IMAGE_SETS

    assert IMAGE_SETS["open"] and all(SAMPLE_SETS[k].redistributable for k in IMAGE_SETS["open"])
    assert IMAGE_SETS["reference"] == list(SAMPLE_KINDS)  # what the model cards report on
    first = sorted(p.stem for p in (out / "rescaling").glob("*.png"))[0]
    assert first in {name for k in IMAGE_SETS["open"] for name, _, _ in sample_images(k)}


def test_demo_retrain_trains_the_demo_recipes_and_uses_their_last_checkpoints(capsys, tmp_path) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--retrain", "--retrain-iterations", "1", "--max-images", "1", "-o", out, "--device", "cpu"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    for recipe in ("hcflow_rescaling_x4_demo", "hcflow_sr_x4_demo"):
        assert "retraining the" in stdout and recipe in stdout
        assert (out / "runs" / recipe / "checkpoints" / "iter_00000001.safetensors").is_file()
    assert "UNTRAINED" not in stdout  # the retrained models are used, not the stand-ins
    assert stdout.count("iter_00000001.safetensors") == 2


# -- errors -----------------------------------------------------------------------------------------


def test_bad_inputs_give_one_line_errors(capsys, files, tmp_path) -> None:
    sr, rs = files["sr"], files["rs"]
    cases = [
        (["sr", tmp_path / "missing.png", "-c", sr, "-o", tmp_path], "no such file"),
        (["sr", files["corrupt"], "-c", sr, "-o", tmp_path], "cannot read"),
        (["sr", files["lr"], "-c", tmp_path / "missing.safetensors", "-o", tmp_path], "checkpoint not found"),
        (["sr", files["lr"], "-c", files["bad_ckpt"], "-o", tmp_path], "cannot load checkpoint"),
        (["sr", files["lr"], "-c", files["lr"], "-o", tmp_path], "cannot load checkpoint"),
        (["sr", files["lr"], "-c", sr, "-o", tmp_path, "-t", "-1"], "--temperature"),
        (["sr", files["lr"], "-c", sr, "-o", tmp_path, "-t", "hot"], "invalid float"),
        (["sr", files["lr"], "-c", sr, "-o", tmp_path, "--tile", "0"], "--tile"),
        (["sr", files["lr"], "-o", tmp_path], "--model"),  # a model is required (-m or -c)
        (["sr", files["lr"], "-m", sr, "-c", sr, "-o", tmp_path], "not allowed with"),
        (["sr", tmp_path, "-c", sr, "-o", tmp_path / "o"], "no images"),
        (["rescale", files["corrupt"], "-c", rs, "-o", tmp_path], "cannot read"),
        (["info", files["bad_ckpt"]], "cannot load checkpoint"),
        (["info", tmp_path / "nope.safetensors"], "checkpoint not found"),
        (["test", tmp_path / "nope.safetensors", "--data", tmp_path], "no such file"),
        (["bogus"], "invalid choice"),
        ([], "no command"),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, needle)


def test_debug_shows_the_traceback(capsys, files, tmp_path) -> None:
    code, _, err = run(capsys, "sr", files["corrupt"], "-c", files["sr"], "-o", tmp_path, "--debug")
    assert code == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("flowsr: error: ")


def test_grey_alpha_and_16_bit_inputs_are_converted(capsys, files, tmp_path) -> None:
    la = tmp_path / "la.png"
    Image.new("LA", (6, 5), (120, 200)).save(la)  # 2 channels in the file: grey + alpha
    grey16 = tmp_path / "g16.png"
    Image.fromarray((torch.arange(30).reshape(5, 6) * 2000).numpy().astype("uint16")).save(grey16)
    code, _, err = run(capsys, "sr", la, grey16, "-c", files["sr"], "-t", "0", "-o", tmp_path / "o")
    assert code == 0, err
    assert read_image(tmp_path / "o" / "la_t0_s0.png").shape == (3, 20, 24)
