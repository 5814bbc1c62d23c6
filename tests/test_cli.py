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
from PIL import Image

from flowsr import inference as inf
from flowsr.cli import main, official_presets, train_api
from flowsr.data import read_image, write_image
from flowsr.models import (
    IRN,
    CouplingSpec,
    FeatureSpec,
    HCFlowRescaling,
    HCFlowSR,
    HierarchySpec,
    LatentSpec,
    SRFlow,
    irn_spec,
    load,
    make_srflow_spec,
    save,
)
from flowsr.testing import perturb_parameters
from flowsr.visualize import comparison_grid, save_grid

REPO = Path(__file__).resolve().parent.parent


# -- tiny models and images -------------------------------------------------------------------------


def _fcn(hidden: int = 8) -> CouplingSpec:
    return CouplingSpec(kind="affine", subnet="fcn", hidden=hidden, scale="atan")


def tiny_sr(seed: int = 0) -> HCFlowSR:
    torch.manual_seed(seed)
    spec = HierarchySpec(
        levels=2,
        steps=1,
        coupling=_fcn(),
        latent=LatentSpec(steps=1, coupling=_fcn(), prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=True),
    )
    return perturb_parameters(HCFlowSR(spec, quant=256), seed=seed, scale=0.05).eval()


def tiny_rescaling(seed: int = 0) -> HCFlowRescaling:
    torch.manual_seed(seed)
    spec = HierarchySpec(
        levels=2,
        steps=2,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=4, scale="atan"),
        latent=LatentSpec(steps=1, coupling=_fcn(), prior="atan"),
        features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=False),
    )
    return perturb_parameters(HCFlowRescaling(spec), seed=seed, scale=0.05).eval()


def smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random (3, h, w) image in [0, 1] (natural-image-like, so border effects are realistic)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 4), max(2, w // 4), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out = {
        "sr": save(tiny_sr(), d / "sr.safetensors"),
        "rs": save(tiny_rescaling(), d / "rs.safetensors", extra={"note": "tiny test model"}),
        "lr": write_image(d / "lr.png", smooth(7, 5)),  # odd size: padded and cropped back
        "hr": write_image(d / "hr.png", smooth(26, 21, seed=1)),  # not a multiple of the scale
    }
    corrupt = d / "corrupt.png"
    corrupt.write_bytes(out["lr"].read_bytes()[:60])  # a truncated PNG
    out["corrupt"] = corrupt
    bad_ckpt = d / "bad.safetensors"
    bad_ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out["bad_ckpt"] = bad_ckpt
    return out


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flowsr: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


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
    assert names == ["lr_t0.7_s0.png", "lr_t0.7_s1.png", "lr_t0_s0.png", "lr_t0_s1.png"]
    img = read_image(out / "lr_t0.7_s0.png")
    assert img.shape == (3, 28, 20)  # odd 7x5 LR: padded for the model, output cropped to 4x
    torch.testing.assert_close(read_image(out / "lr_t0_s0.png"), read_image(out / "lr_t0_s1.png"))  # T=0: mean
    assert not torch.equal(img, read_image(out / "lr_t0.7_s1.png"))  # T>0: diverse
    assert "28" in stdout
    # Reproducible: the same seed gives the same files; the CLI equals model.sample with that seed.
    code, _, _ = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0.7", "-o", tmp_path / "again")
    assert code == 0
    assert (tmp_path / "again" / "lr_t0.7_s0.png").read_bytes() == (out / "lr_t0.7_s0.png").read_bytes()


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
    lr, rec = read_image(tmp_path / "hr_LR.png"), read_image(tmp_path / "hr_HR.png")
    assert lr.shape == (3, 7, 6)  # ceil(26 / 4) x ceil(21 / 4): the HR image is padded to the scale
    assert rec.shape == (3, 26, 21)  # cropped back
    assert "PSNR" in out and "bicubic down+up" in out
    # --mode down / up split the round trip; up from the written LR gives the padded HR size.
    code, _, err = run(capsys, "rescale", files["hr"], "-c", files["rs"], "-o", tmp_path / "d", "--mode", "down")
    assert code == 0, err
    assert (tmp_path / "d" / "hr_LR.png").read_bytes() == (tmp_path / "hr_LR.png").read_bytes()
    code, _, err = run(
        capsys, "rescale", tmp_path / "hr_LR.png", "-c", files["rs"], "-o", tmp_path / "u", "--mode", "up"
    )
    assert code == 0, err
    assert read_image(tmp_path / "u" / "hr_LR_up.png").shape == (3, 28, 24)


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
        (["sr", files["lr"], "-c", sr], "--out"),
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


def test_two_channel_tensor_is_refused_by_the_helpers(files) -> None:
    model = load(files["sr"])
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\), got \(1, 2, 8, 8\)") as info:
        inf.super_resolve(model, torch.rand(1, 2, 8, 8), 0.0)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not a rescaling model"):
        inf.downscale(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="temperature"):
        inf.super_resolve(model, torch.rand(1, 3, 8, 8), -1.0)


# -- inference helpers ------------------------------------------------------------------------------


def test_pad_to_multiple_and_crop_back() -> None:
    x = torch.rand(2, 3, 7, 5)
    y, size = inf.pad_to_multiple(x, 4)
    assert y.shape == (2, 3, 8, 8) and size == (7, 5)
    torch.testing.assert_close(inf.crop_to(y, size), x, rtol=0, atol=0)
    torch.testing.assert_close(y[..., 7, :5], x[..., 5, :])  # reflection
    same, _ = inf.pad_to_multiple(x, 1)
    assert same is x
    tiny, _ = inf.pad_to_multiple(torch.rand(3, 1, 2), 4)  # reflection impossible: replicate
    assert tiny.shape == (3, 4, 4)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(100, 32, 8, 1), (33, 16, 8, 1), (64, 64, 16, 1), (10, 32, 8, 1), (96, 32, 16, 4), (2048, 512, 64, 4)],
)
def test_tile_starts_cover_overlap_and_align(length, tile, overlap, align) -> None:
    starts = inf.tile_starts(length, tile, overlap, align)
    ends = [min(s + tile, length) for s in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert all(s % align == 0 for s in starts)
    assert all(e - s <= tile for s, e in zip(starts, ends))  # no tile is larger than asked
    for i in range(len(starts) - 1):
        assert ends[i] - starts[i + 1] >= (overlap if length > tile else 0)  # neighbours overlap enough
        assert starts[i + 1] > starts[i]
    if length > tile:  # no more tiles than needed
        assert len(starts) == 1 + math.ceil((length - tile) / (tile - overlap))


def test_tiled_peak_memory_is_bounded_by_the_tile() -> None:
    """The 2048x2048 x4 SR target: a 512x512 LR in 128-pixel tiles never hands the model more than
    128x128 LR pixels (512x512 HR), whatever the image size; the arithmetic, without a model."""
    seen = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape[2:]))
        return torch.nn.functional.interpolate(t, scale_factor=4, mode="nearest")

    x = torch.rand(1, 3, 512, 512)
    y = inf.tiled(fn, x, 128, 16, 4)
    assert y.shape == (1, 3, 2048, 2048)
    assert max(h * w for h, w in seen) <= 128 * 128 and len(seen) == 25
    torch.testing.assert_close(y, torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest"))
    boxes = inf.tile_boxes((512, 512), 128, 16)
    cover = torch.zeros(512, 512)
    for r0, r1, c0, c1 in boxes:
        cover[r0:r1, c0:c1] += 1
    assert cover.min() >= 1 and cover.max() <= 4  # every pixel covered, at most 2 tiles per axis


def test_feathered_weights_sum_to_one() -> None:
    """A function without border effects is reproduced exactly by tiling, for any scale and margin."""
    x = torch.rand(2, 3, 37, 29)
    for margin in (0, 2, None):
        torch.testing.assert_close(inf.tiled(lambda t: t * 2, x, 12, 5, margin=margin), x * 2)
    x4 = torch.rand(1, 3, 40, 36)
    pooled = inf.tiled(lambda t: torch.nn.functional.avg_pool2d(t, 4), x4, 16, 8, 0.25, align=4)
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(x4, 4))
    w = inf.ramp(10, 4, 4)
    torch.testing.assert_close(w[:4] + w[-4:], torch.ones(4))  # the previous tile fades out as this one fades in
    w = inf.ramp(10, 4, 0, margin=1)
    assert w[0] == 0 and w[-1] == 1


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_tiled_sr_matches_the_whole_image(files, temperature) -> None:
    model = load(files["sr"])
    lr = smooth(32, 28, seed=5)[None]
    whole = inf.super_resolve(model, lr, temperature, torch.Generator().manual_seed(0))
    sample = model.sample(lr, temperature, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(whole, sample, rtol=0, atol=0)  # the whole-image path is model.sample
    tiles = inf.super_resolve(model, lr, temperature, torch.Generator().manual_seed(0), tile=16, overlap=8)
    assert tiles.shape == whole.shape
    assert (tiles - whole).abs().mean() < 1 / 255  # no visible seams (latents shared by the tiles)


def test_tiled_rescaling_matches_the_whole_image(files) -> None:
    model = load(files["rs"])
    hr = smooth(136, 126, seed=6)[None]  # 126: padded to 128 for the x4 model
    lr = inf.downscale(model, hr)
    lr_tiled = inf.downscale(model, hr, tile=64, overlap=32)
    assert lr.shape == (1, 3, 34, 32)
    assert (lr - lr_tiled).abs().mean() < 1 / 255
    torch.testing.assert_close(lr, torch.round(lr * 255) / 255)  # 8-bit
    up = inf.upscale(model, lr, 0.0)
    up_tiled = inf.upscale(model, lr, 0.0, tile=16, overlap=8)
    assert (up - up_tiled).abs().mean() < 1 / 255


def test_other_families_pad_and_tile() -> None:
    torch.manual_seed(0)
    srflow = SRFlow(make_srflow_spec(4, K=1, extra_steps=0, hidden=8, nf=8, nb=2, gc=4, blocks=(0, 1)))
    irn = IRN(irn_spec(2, block_num=1, gc=4))
    assert srflow.lr_multiple == 2 and irn.lr_multiple == 1
    assert inf.hr_multiple(srflow) == 8 and inf.hr_multiple(irn) == 2
    assert srflow.task == "sr" and irn.task == "rescaling"
    lr = smooth(9, 7, seed=7)[None]  # odd: SRFlow needs an even LR, padded and cropped
    for model in (srflow.eval(), irn.eval()):
        out = inf.super_resolve(model, lr, 0.5, torch.Generator().manual_seed(0), tile=6, overlap=2)
        assert out.shape == (1, 3, 9 * model.scale, 7 * model.scale)
    assert inf.downscale(irn.eval(), smooth(9, 7)[None]).shape == (1, 3, 5, 4)


# -- grids ------------------------------------------------------------------------------------------


def test_comparison_grid_layout_and_save(tmp_path) -> None:
    lr, hr = torch.rand(3, 8, 8), torch.rand(3, 32, 32)
    grid = comparison_grid([[lr, hr, None], [hr]], ["LR", "HR", "empty"], pad=2, label_height=10)
    assert grid.shape == (3, 2 + 10 + 2 * (32 + 2), 2 + 3 * (32 + 2))
    assert grid.min() >= 0 and grid.max() <= 1
    # the LR image is shown with nearest-neighbour pixels: a 4x4 block is constant
    cell = grid[:, 12:44, 2:34]
    torch.testing.assert_close(cell[:, :4, :4], lr[:, :1, :1].expand(3, 4, 4))
    path = save_grid(tmp_path / "g" / "grid.png", [[lr, hr]], [["a", "b"]], row_labels=["row"])
    assert read_image(path).shape[0] == 3
    with pytest.raises(ValueError, match="no images"):
        comparison_grid([[]])
